// The encryption lifecycle of CONTRACT §3 on the system from its images,
// through `ekv.admin.encryption.*` as the operator only: capability fan-out →
// bootstrap (discover) → enable the storage envelope → writes → rotate the
// storage DEK → a consensus container killed and restarted → enable the raft
// envelope → re-wrap the DEKs under the next KEK → a keystore restarted →
// every write still reads back. Each step also checks what the metrics say:
// active key ids on every keystore, no halts; and at the end no decrypt
// failures anywhere.
import { join } from "node:path"
import { ClassicLevel } from "classic-level"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import {
  type ContainerSystem,
  chownToImageUser,
  declaredMetrics,
  eventually,
  type Metrics,
  parseMetrics,
  series,
  startContainerSystem,
} from "./containerSystem.ts"

interface CapabilityReport {
  node: string
  encryption_capable: boolean
  full_node_id: string
  local_epoch: number
  kek_id: string | null
  next_kek_id: string | null
}
interface EncryptionStatus {
  phase: "disabled" | "capable" | "bootstrapped" | "storage-envelope" | "raft-envelope"
  active: { storage: number; raft: number }
  keys: Array<{ key_id: number; purpose: string; retired: boolean }>
  nodes: Array<{ node: string; halted?: unknown }>
}

let system: ContainerSystem
const written = new Map<string, string>()
let storageKey = 0
let raftKey = 0

const write = async (prefix: string, n: number) => {
  for (let i = 0; i < n; i++) {
    const key = `${prefix}-${i}`
    await system.put(key, `${prefix} value ${i}`)
    written.set(key, `${prefix} value ${i}`)
  }
}

const readAll = async () => {
  for (const [k, v] of written) expect(await system.get(k), k).toBe(v)
}

const encryptionStatus = () => system.call<EncryptionStatus>("ekv.admin.encryption.status", {})

const activeKeyIds = (m: Metrics) => Object.fromEntries(series(m, "ekv_active_key_id"))

/** Every keystore reports these active key ids; no process reports a decrypt failure or a halt. */
const checkMetrics = async (storage: number, raft: number) => {
  for (const n of system.nodes) {
    const k = await eventually(
      `keystore-${n} active key ids`,
      () => system.metrics(`keystore-${n}`),
      (m) => m.get('ekv_active_key_id{purpose="storage"}') === storage,
    )
    expect(activeKeyIds(k)).toEqual({
      'ekv_active_key_id{purpose="raft"}': raft,
      'ekv_active_key_id{purpose="storage"}': storage,
    })
    const c = await system.metrics(`consensus-${n}`)
    expect(c.get("ekv_apply_halted")).toBe(0)
    // Consensus may report the active ids too; when it does, they agree.
    const mine = activeKeyIds(c)
    if (Object.keys(mine).length > 0)
      expect(
        await eventually(
          `consensus-${n} active key ids`,
          async () => activeKeyIds(await system.metrics(`consensus-${n}`)),
          (ids) => ids['ekv_active_key_id{purpose="storage"}'] === storage,
        ),
      ).toEqual(activeKeyIds(k))
  }
}

/** A node's ekv_decrypt_failures_total: declared by its consensus or keystore, and the series. */
const decryptFailures = async (n: string) => {
  const texts = [await system.metricsText(`consensus-${n}`), await system.metricsText(`keystore-${n}`)]
  return {
    declared: texts.some((t) => declaredMetrics(t).has("ekv_decrypt_failures_total")),
    series: texts.flatMap((t) => series(parseMetrics(t), "ekv_decrypt_failures_total")),
  }
}

/** `docker restart` of the leader's keystore; it must come back capable and the cluster keep serving. */
const restartLeaderKeystore = async (prefix: string) => {
  const node = (await system.status()).leader!
  await system.restart(`keystore-${node}`)
  const cap = await eventually(
    `${node} capable again`,
    () => system.call<CapabilityReport>(`ekv.node.${node}.capability`, {}, 5_000),
    (c) => c.encryption_capable,
  )
  expect(cap.node).toBe(node)
  await write(prefix, 10)
  await readAll()
  await checkMetrics(storageKey, raftKey)
  const st = await encryptionStatus()
  expect(st.nodes.filter((n) => n.halted !== undefined)).toEqual([])
}

beforeAll(async () => {
  system = await startContainerSystem({ encryption: true })
})

afterAll(async () => {
  await system?.stop()
})

describe("encryption lifecycle from the images", () => {
  it("every member is encryption-capable under the same KEK", async () => {
    onTestFailed(() => console.error(system.logTail(60)))
    const st = await eventually("phase capable", encryptionStatus, (s) => s.phase === "capable")
    expect(st.keys).toEqual([])
    const fan = await system.call<{ members: Array<{ node: string; report?: CapabilityReport }> }>(
      "ekv.admin.encryption.capability",
      {},
    )
    expect(fan.members.map((m) => m.node).sort()).toEqual([...system.nodes])
    const reports = fan.members.map((m) => m.report!)
    expect(reports.every((r) => r.encryption_capable)).toBe(true)
    expect(new Set(reports.map((r) => r.kek_id)).size).toBe(1)
    expect(reports.every((r) => r.next_kek_id !== null && r.next_kek_id !== r.kek_id)).toBe(true)
    await write("plain", 10)
    // Capable is not yet ready: a leader elected moments ago may still be opening its
    // writer session (health Unavailable/Registering; the gate says ApplierNotReady).
    for (const n of system.nodes) await eventually(`${n} session open`, () => system.health(n))
  })

  it("bootstraps with discovered writers and enables the storage envelope", async () => {
    onTestFailed(() => console.error(system.logTail(60)))
    const boot = await system.call<{
      index: number
      storage_key_id: number
      raft_key_id: number
      writers: Array<{ node: string }>
    }>("ekv.admin.encryption.bootstrap", { discover: true })
    expect(boot.storage_key_id).toBeGreaterThan(0)
    expect(boot.raft_key_id).toBeGreaterThan(0)
    expect(boot.writers.map((w) => w.node).sort()).toEqual([...system.nodes])
    storageKey = boot.storage_key_id
    raftKey = boot.raft_key_id
    expect((await encryptionStatus()).phase).toBe("bootstrapped")

    const env = await system.call<{ index: number; bootstrapped: boolean }>(
      "ekv.admin.encryption.enable-storage-envelope",
      {},
    )
    expect(env.bootstrapped).toBe(false)
    const st = await encryptionStatus()
    expect(st.phase).toBe("storage-envelope")
    expect(st.active).toEqual({ storage: storageKey, raft: raftKey })
    await write("sealed", 20)
    await readAll()
    await checkMetrics(storageKey, raftKey)
  })

  it("rotates the storage DEK; old and new values read back", async () => {
    onTestFailed(() => console.error(system.logTail(60)))
    const rot = await system.call<{ index: number; key_id: number }>("ekv.admin.encryption.rotate-dek", {
      purpose: "storage",
    })
    expect(rot.key_id).not.toBe(storageKey)
    storageKey = rot.key_id
    expect((await encryptionStatus()).active.storage).toBe(storageKey)
    await write("rotated", 20)
    await readAll()
    await checkMetrics(storageKey, raftKey)
  })

  it("recovers a killed consensus container in the storage-envelope phase", async () => {
    onTestFailed(() => console.error(system.logTail(60)))
    const s = await system.status()
    const follower = system.nodes.find((n) => n !== s.leader)!
    await system.kill(`consensus-${follower}`)
    await write("while-down", 10)
    await system.start(`consensus-${follower}`)
    const last = (await system.status()).commit_index
    await eventually(
      `${follower} caught up`,
      () => system.health(follower),
      (h) => h.consensus === "ok" && h.applied_index >= last,
    )
    await readAll()
  })

  it("enables the raft envelope; writes and reads continue", async () => {
    onTestFailed(() => console.error(system.logTail(60)))
    const cut = await system.call<{ index: number; cutover_index: number }>(
      "ekv.admin.encryption.enable-raft-envelope",
      {},
    )
    expect(cut.cutover_index).toBe(cut.index)
    expect((await encryptionStatus()).phase).toBe("raft-envelope")
    await write("raft-sealed", 20)
    await readAll()
    await checkMetrics(storageKey, raftKey)
  })

  it("survives `docker restart` of the leader's keystore in the raft-envelope phase", async () => {
    onTestFailed(() => console.error(system.logTail(60)))
    await restartLeaderKeystore("after-keystore-restart")
  })

  it("re-wraps the DEKs under the next KEK; a keystore restarted afterwards opens them", async () => {
    onTestFailed(() => console.error(system.logTail(60)))
    const rewrap = await system.call<{ index: number; key_ids: number[] }>(
      "ekv.admin.encryption.rewrap-deks",
      {},
    )
    expect(rewrap.key_ids).toEqual(expect.arrayContaining([storageKey, raftKey]))
    await restartLeaderKeystore("after-rewrap")
  })

  it("reports no decrypt failures after the whole lifecycle", async () => {
    for (const n of system.nodes) {
      const failures = await decryptFailures(n)
      expect(failures.declared, `${n}: ekv_decrypt_failures_total is exported`).toBe(true)
      expect(failures.series.filter(([, v]) => v !== 0)).toEqual([])
    }
  })

  it("answers IntegrityError for a tampered stored value and counts it as a decrypt failure", async () => {
    onTestFailed(() => console.error(system.logTail(60)))
    const key = "tamper-me"
    const index = await system.put(key, "sealed secret")
    const victim = system.nodes.find((n) => n !== system.nodes[0])!
    await eventually(
      `${victim} applied`,
      () => system.health(victim),
      (h) => h.applied_index >= index,
    )

    // Flip one bit of the newest version's GCM tag in the victim's state database, offline.
    await system.stopContainer(`consensus-${victim}`)
    const dbDir = join(system.dataDir(victim), "consensus", "state", "db")
    const db = new ClassicLevel<Uint8Array, Uint8Array>(dbDir, { keyEncoding: "view", valueEncoding: "view" })
    await db.open()
    const raw = new TextEncoder().encode(key)
    // versionKey(k, i) = 0x01 ‖ k ‖ 0x00 0x01 ‖ BE u64 (2^64 − 1 − i): the newest version sorts first.
    const prefix = Uint8Array.from([0x01, ...raw, 0x00, 0x01])
    const end = Uint8Array.from([0x01, ...raw, 0x00, 0x02])
    const [newest] = await db.iterator({ gte: prefix, lt: end, limit: 1 }).all()
    expect(newest, "the sealed version is in the victim's state database").toBeDefined()
    const [versionKey, value] = newest!
    expect(value[0], "value header: storage envelope").toBe(0x02)
    const tampered = Uint8Array.from(value)
    tampered[tampered.length - 1]! ^= 0x01
    await db.put(versionKey, tampered)
    await db.close()
    chownToImageUser(dbDir)
    await system.start(`consensus-${victim}`)

    // Reads are served by the leader: make the victim lead, then read the key.
    await eventually(
      `${victim} leads`,
      async () => {
        const s = await system.status()
        if (s.leader !== victim) await system.ask("ekv.admin.cluster.transfer-leader", { node: victim })
        return system.status()
      },
      (s) => s.leader === victim,
      60_000,
    )
    // A new leader answers Unavailable until its first entry commits.
    const r = await eventually(
      "a read that is not Unavailable",
      () => system.ask<{ found?: boolean }>("ekv.kv.get", { key }),
      (r) => r.body.error?.code !== "Unavailable",
    )
    expect(r.code).toBe("500")
    expect(r.body.error?.code).toBe("IntegrityError")

    const counted = (await decryptFailures(victim)).series
    expect(counted.filter(([, v]) => v !== 0)).toEqual([
      ['ekv_decrypt_failures_total{reason="IntegrityError"}', 1],
    ])
    for (const n of system.nodes.filter((n) => n !== victim)) {
      expect((await decryptFailures(n)).series.filter(([, v]) => v !== 0)).toEqual([])
    }
    // Everything else still opens; a new version of the key replaces the damaged one.
    await readAll()
    await system.put(key, "fresh")
    expect(await system.get(key)).toBe("fresh")
  })
})
