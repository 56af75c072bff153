// Storage-level encryption work on one node's own state, with real processes:
// `rewrite` re-seals cleartext and old-DEK versions at the same storage keys
// at a bounded rate (SPEC §2.4) until node-status reports it done; a stored
// value tampered with on disk reads as IntegrityError and is counted in
// ekv_decrypt_failures_total (SPEC §2.4, §9); ekv_local_epoch follows each
// new session.
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import { ClassicLevel } from "classic-level"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { nodeId16, stateVersions } from "../../../../test/src/audit.ts"
import { freePort } from "../../../../test/src/natsFixture.ts"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"
import { decodeVersionKey, VERSION_SPACE } from "../../src/stateMachine/versionKey.ts"
import { InternalAdminClient, writersAt0 } from "./internalAdminClient.ts"

let sys: EkvSystem
let admin: InternalAdminClient
const ports: Record<string, number> = {}

const metric = async (node: string, name: string, labels = ""): Promise<number> => {
  const text = await fetch(`http://127.0.0.1:${ports[node]}/metrics`).then((r) => r.text())
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (labels === "" ? rest.startsWith(" ") : rest.startsWith(`{${labels}}`))
      return Number(line.split(" ").at(-1))
  }
  return 0
}

interface NodeStatus {
  versions_by_key_id: Record<string, number>
  cleartext_versions: number
  local_epochs: Record<string, number>
  rewrite?: { done: boolean; progress: number }
}
const nodeStatus = async (n: string) =>
  (await admin.internal(n, "encryption.node-status", {})) as unknown as NodeStatus

const written = new Map<string, Buffer>()
const put = async (key: string, size = 48) => {
  const v = randomBytes(size)
  written.set(key, v)
  return sys.putRetry(key, v)
}
const readAll = async (): Promise<string[]> => {
  const bad: string[] = []
  for (const [k, v] of written) {
    const r = await sys.kv.get(k, "linearizable", 15_000)
    if (!r.ok) bad.push(`${k}: ${r.error.code} ${r.error.message}`)
    else if (!r.value.found || !Buffer.from(r.value.value!, "base64").equals(v)) bad.push(`${k}: wrong`)
  }
  return bad
}

let storageKeyIds: number[] = []

beforeAll(async () => {
  for (const n of ["n1", "n2", "n3"]) ports[n] = await freePort()
  sys = await startSystem({
    name: "consensus-enc-rewrite",
    electionTimeoutMs: 500,
    processEnv: Object.fromEntries(
      Object.entries(ports).map(([n, p]) => [`consensus-${n}`, { EKV_METRICS_PORT: String(p) }]),
    ),
  })
  admin = await InternalAdminClient.connect(sys)
  const leader = await sys.waitForLeader()
  for (const n of sys.nodes) await sys.waitForHealthy(n)
  // Cleartext versions, then versions under the first storage DEK, then a rotation.
  for (let i = 0; i < 20; i++) await put(`rw/plain/${i}`, 2048)
  const { dek: d, writers } = await admin.bootstrapWithStorageEnvelope(leader, sys.nodes)
  for (let i = 0; i < 20; i++) await put(`rw/old/${i}`, 2048)
  const { dek: r } = await admin.rotateDek(leader, "storage", writers)
  let last = 0
  for (let i = 0; i < 5; i++) last = await put(`rw/new/${i}`)
  await sys.waitForApplied(last)
  storageKeyIds = [(d("storage") as { key_id: number }).key_id, (r("storage") as { key_id: number }).key_id]
}, 150_000)

afterAll(async () => {
  await admin?.close()
  await sys?.stopAll()
})

describe("storage encryption work on a node's own state", () => {
  it("rewrite re-seals cleartext and old-DEK versions in place, at a bounded rate, to done", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const [oldId, newId] = storageKeyIds as [number, number]
    const before = await Promise.all(sys.nodes.map(nodeStatus))
    for (const s of before) {
      expect(s.cleartext_versions).toBe(20)
      expect(s.versions_by_key_id[String(oldId)]).toBe(20)
      expect(s.versions_by_key_id[String(newId)]).toBe(5)
    }
    const versionsBefore = (await stateVersions(join(sys.stateDir("n1"), "db"))).length
    // 40 versions of ~2 KiB at 0.04 MiB/s: about 2 s per node.
    const rate = 0.04
    const t0 = Date.now()
    for (const n of sys.nodes)
      expect(await admin.internal(n, "encryption.rewrite", { rate_mib_s: rate })).toEqual({ started: true })
    // A second request while one runs starts nothing.
    expect(await admin.internal(sys.nodes[0]!, "encryption.rewrite", { rate_mib_s: rate })).toEqual({
      started: false,
    })
    const seen = new Set<number>()
    await sys.until(
      "rewrite done everywhere",
      async () => {
        const st = await Promise.all(sys.nodes.map(nodeStatus))
        for (const s of st) if (s.rewrite !== undefined) seen.add(s.rewrite.progress)
        return st.every((s) => s.rewrite?.done === true) ? true : undefined
      },
      60_000,
      200,
    )
    const elapsed = (Date.now() - t0) / 1000
    expect(elapsed).toBeGreaterThan(((40 * 2048) / (rate * 1024 * 1024)) * 0.7)
    expect([...seen].some((p) => p > 0 && p < 1)).toBe(true)
    for (const s of await Promise.all(sys.nodes.map(nodeStatus))) {
      expect(s.rewrite).toEqual({ done: true, progress: 1 })
      expect(s.cleartext_versions).toBe(0)
      expect(s.versions_by_key_id).toEqual({ [String(newId)]: 45 })
    }
    // Same storage keys: no version added or lost.
    await sys.kill("consensus-n1")
    expect((await stateVersions(join(sys.stateDir("n1"), "db"))).length).toBe(versionsBefore)
    await sys.start("consensus-n1")
    await sys.waitForHealthy("n1")
    expect(await readAll()).toEqual([])
  }, 120_000)

  it("a status that says a rewrite is done counts the store as the rewrite left it", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const leader = await sys.waitForLeader()
    const { dek } = await admin.rotateDek(leader, "storage", writersAt0(sys.nodes))
    const active = (dek("storage") as { key_id: number }).key_id
    await sys.waitForApplied(await put("rw/after-second-rotation"))
    // Unthrottled, so that the last re-seal and "done" are moments apart; statuses
    // asked back to back, four at a time per node from its rewrite's start, are
    // being counted then.
    const doneButNotResealed: string[] = []
    let polling = true
    const poll = async (n: string) => {
      while (polling) {
        const s = await nodeStatus(n)
        const under = Object.keys(s.versions_by_key_id).filter((id) => id !== String(active))
        if (s.rewrite?.done === true && (s.cleartext_versions > 0 || under.length > 0))
          doneButNotResealed.push(
            `${n}: ${JSON.stringify(s.versions_by_key_id)} + ${s.cleartext_versions} cleartext`,
          )
      }
    }
    const pollers: Promise<void>[] = []
    try {
      for (const n of sys.nodes) {
        expect(await admin.internal(n, "encryption.rewrite", { rate_mib_s: 1024 })).toEqual({ started: true })
        pollers.push(poll(n), poll(n), poll(n), poll(n))
      }
      await sys.until(
        "rewrite done everywhere",
        async () => {
          const st = await Promise.all(sys.nodes.map(nodeStatus))
          return st.every((s) => s.rewrite?.done === true) ? true : undefined
        },
        60_000,
        50,
      )
    } finally {
      polling = false
      await Promise.all(pollers)
    }
    expect(doneButNotResealed).toEqual([])
    for (const s of await Promise.all(sys.nodes.map(nodeStatus)))
      expect(s.versions_by_key_id).toEqual({ [String(active)]: 46 })
  }, 120_000)

  it("a value tampered with on disk reads as IntegrityError and counts in ekv_decrypt_failures_total", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const t = (await sys.waitForLeader()) === "n2" ? "n3" : "n2"
    const key = "rw/new/0"
    await sys.kill(`consensus-${t}`)
    // Flip one ciphertext byte of the stored value (the AEAD tag then fails).
    const db = new ClassicLevel<Uint8Array, Uint8Array>(join(sys.stateDir(t), "db"), {
      keyEncoding: "view",
      valueEncoding: "view",
    })
    await db.open()
    let tampered = 0
    for await (const [k, v] of db.iterator()) {
      if (k[0] !== VERSION_SPACE || decodeVersionKey(k).key !== key) continue
      const b = Uint8Array.from(v)
      b[b.length - 20]! ^= 0x01
      await db.put(k, b)
      tampered++
    }
    await db.close()
    expect(tampered).toBe(1)
    await sys.start(`consensus-${t}`)
    await sys.waitForHealthy(t)
    await admin.transferTo(sys, t)
    expect(await metric(t, "ekv_decrypt_failures_total", 'reason="IntegrityError"')).toBe(0)
    const r = await sys.kv.get(key)
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.error.code).toBe("IntegrityError")
      expect(r.status).toBe(500)
      expect(JSON.stringify(r.error.details)).toContain(key)
    }
    expect(await metric(t, "ekv_decrypt_failures_total", 'reason="IntegrityError"')).toBe(1)
    // Other values on the same node still read.
    written.delete(key)
    expect(await readAll()).toEqual([])
  }, 120_000)

  it("ekv_local_epoch follows every new session", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const check = async (n: string) => {
      const st = await nodeStatus(n)
      const reg = (await admin.internal(n, "encryption.state", {})) as {
        registry: { dek_id: number; node_id16: number; last_seen_local_epoch: number }[]
        active: { storage: number; raft: number }
      }
      for (const id of [reg.active.storage, reg.active.raft]) {
        const epoch = st.local_epochs[String(id)]!
        expect(epoch, `${n} epoch of ${id}`).toBeGreaterThanOrEqual(0)
        expect(await metric(n, "ekv_local_epoch", `key_id="${id}"`), `${n} metric of ${id}`).toBe(epoch)
        const row = reg.registry.find((r) => r.dek_id === id && r.node_id16 === nodeId16(n))!
        expect(row.last_seen_local_epoch).toBe(epoch)
      }
      return st.local_epochs
    }
    const n = sys.nodes.find((x) => x !== "n1")!
    const e1 = await check(n)
    await sys.restartNode(n)
    await sys.waitForHealthy(n)
    const e2 = await check(n)
    for (const [id, e] of Object.entries(e2)) expect(e, id).toBeGreaterThan(e1[id] ?? -1)
  }, 120_000)
})
