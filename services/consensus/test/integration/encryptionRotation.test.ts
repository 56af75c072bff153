// Rotations the consensus side drives (SPEC §5, §6), with real processes:
// EKV_ROTATE_ON_STARTUP rotates each purpose once when (and only when) that
// node is leader during its process load; a member left out of a rotation's
// writer batch receives the new DEK unregistered, keeps sealing under the
// previous active DEK until its own 0x03 commits, then seals under the new one.
import { fullNodeId } from "@ekv/crypto"
import { encodeEntry, Tag } from "@ekv/wire"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { collectEnvelopes, nodeId16 } from "../../../../test/src/audit.ts"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"

let sys: EkvSystem
let nc: NatsConnection
const enc = new TextEncoder()
const dec = new TextDecoder()

const internal = async (node: string, sub: string, body: unknown, timeout = 20_000) => {
  const m = await nc.request(`ekv.internal.${node}.admin.${sub}`, enc.encode(JSON.stringify(body)), {
    timeout,
  })
  const err = m.headers?.get("Nats-Service-Error-Code")
  const json = JSON.parse(dec.decode(m.data)) as Record<string, unknown>
  if (err !== undefined && err !== "") throw new Error(`${sub}: ${err} ${JSON.stringify(json)}`)
  return json
}

/** Proposes through `leader`, retrying while its writer session opens (ApplierNotReady) or it is unavailable. */
const propose = async (leader: string, entry: Uint8Array): Promise<{ index: number; status: string }> => {
  const body = { entry: Buffer.from(entry).toString("base64") }
  for (let i = 0; ; i++) {
    try {
      return (await internal(leader, "encryption.propose", body, 60_000)) as { index: number; status: string }
    } catch (e) {
      if (i > 50 || !/ApplierNotReady|503/.test(String(e))) throw e
      await new Promise((r) => setTimeout(r, 200))
    }
  }
}

const generate = async (leader: string, purposes: ("storage" | "raft")[]) => {
  const g = (await internal(leader, "encryption.generate-dek", { purposes })) as {
    deks: { purpose: string; key_id: number; wrapped: string }[]
  }
  return (p: string) => {
    const d = g.deks.find((x) => x.purpose === p)!
    return { key_id: d.key_id as never, wrapped: Buffer.from(d.wrapped, "base64") }
  }
}

interface State {
  active: { storage: number; raft: number }
  keys: { key_id: number; purpose: string }[]
  registry: {
    dek_id: number
    node_id16: number
    first_seen_local_epoch: number
    last_seen_local_epoch: number
  }[]
}
const state = async () =>
  (await internal(await sys.waitForLeader(), "encryption.state", {})) as unknown as State

const transferTo = async (node: string) => {
  await sys.until(
    `leadership at ${node}`,
    async () => {
      const leader = await sys.waitForLeader()
      if (leader === node) return true
      await internal(leader, "cluster.transfer-leader", { node }, 30_000).catch(() => undefined)
      return undefined
    },
    60_000,
    500,
  )
}

beforeAll(async () => {
  sys = await startSystem({ name: "consensus-enc-rotation", electionTimeoutMs: 500 })
  nc = await connect({
    servers: sys.nats.servers,
    user: "admin",
    pass: sys.passwords.admin ?? "",
    inboxPrefix: "_INBOX.admin",
  })
  const leader = await sys.waitForLeader()
  for (const n of sys.nodes) await sys.waitForHealthy(n)
  const d = await generate(leader, ["storage", "raft"])
  const writers = sys.nodes.map((n) => ({ full_node_id: fullNodeId(n), local_epoch: 0 as never }))
  await propose(
    leader,
    encodeEntry({ tag: Tag.Bootstrap, bootstrap: { storage: d("storage"), raft: d("raft"), writers } }),
  )
  await propose(leader, encodeEntry({ tag: Tag.Control, control: { kind: "enable-storage-envelope" } }))
}, 120_000)

afterAll(async () => {
  await nc?.close()
  await sys?.stopAll()
})

describe("rotations driven by consensus", () => {
  it("EKV_ROTATE_ON_STARTUP rotates each purpose once, when the node is leader during its process load", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const before = await state()
    expect(before.keys.length).toBe(2)
    const leader = await sys.waitForLeader()
    const x = sys.nodes.find((n) => n !== leader)!
    sys.setEnv(`consensus-${x}`, { EKV_ROTATE_ON_STARTUP: "true" })
    await sys.restart(`consensus-${x}`)
    await sys.waitForHealthy(x)
    // A follower requests nothing.
    await new Promise((r) => setTimeout(r, 2_500))
    expect((await state()).keys.length).toBe(2)

    await transferTo(x)
    const rotated = await sys.until(
      "both purposes rotated",
      async () => {
        const s = await state()
        return s.active.storage !== before.active.storage && s.active.raft !== before.active.raft
          ? s
          : undefined
      },
      60_000,
      500,
    )
    expect(rotated.keys.length).toBe(4)
    // Health is ok once the rotation committed.
    await sys.waitForHealthy(x)
    const rotatedLog = await sys.logEntries(`consensus-${x}`, "rotated on startup")
    expect(rotatedLog.length).toBe(1)

    // Once per process load: losing and regaining leadership rotates nothing more.
    await transferTo(sys.nodes.find((n) => n !== x)!)
    await transferTo(x)
    await new Promise((r) => setTimeout(r, 2_500))
    expect((await state()).keys.length).toBe(4)
    sys.setEnv(`consensus-${x}`, { EKV_ROTATE_ON_STARTUP: "" })
  }, 150_000)

  it("a member missing from a rotation batch seals under the previous DEK until its own 0x03 commits", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const leader = await sys.waitForLeader()
    const m = sys.nodes.find((n) => n !== leader)!
    const prev = (await state()).active.storage
    // Writers keep the apply busy across the rotation.
    let stop = false
    let n = 0
    const writers = Array.from({ length: 3 }, async (_, w) => {
      while (!stop) await sys.kv.put(`rot/${w}/${n++}`, `value-${n}`).catch(() => undefined)
    })
    await new Promise((r) => setTimeout(r, 500))
    const d = await generate(leader, ["storage"])
    const batch = sys.nodes
      .filter((x) => x !== m)
      .map((x) => ({ full_node_id: fullNodeId(x), local_epoch: 0 as never }))
    const rot = await propose(
      leader,
      encodeEntry({
        tag: Tag.Control,
        control: { kind: "rotate-dek", purpose: "storage", dek: d("storage"), writers: batch },
      }),
    )
    expect(rot.status).toBe("applied")
    const fresh = (d("storage") as { key_id: number }).key_id
    await new Promise((r) => setTimeout(r, 1_500))
    stop = true
    await Promise.all(writers)
    const last = await sys.putRetry("rot/last", "last")
    await sys.waitForApplied(last)
    for (const x of sys.nodes) expect((await sys.health(x)).ok, x).toBe(true)

    // m registered the new DEK by its own 0x03 (a row its batch did not give it), at an epoch above 0.
    const s = await state()
    const row = s.registry.find((r) => r.dek_id === fresh && r.node_id16 === nodeId16(m))!
    expect(row).toBeDefined()
    expect(row.first_seen_local_epoch).toBeGreaterThan(0)
    expect(
      (await sys.logEntries(`consensus-${m}`, "registration committed")).some((l) => l.key_id === fresh),
    ).toBe(true)

    // What m sealed after the rotation: the previous DEK first, then the new one at its registered epoch.
    await sys.kill(`consensus-${m}`)
    const col = await collectEnvelopes([{ node: m, stateDir: sys.stateDir(m), raftDir: sys.raftDir(m) }])
    await sys.start(`consensus-${m}`)
    const mine = col.envelopes
      .filter((e) => e.kind === "storage" && e.nodeId16 === nodeId16(m) && e.index > rot.index)
      .sort((a, b) => a.index - b.index)
    expect(mine.length).toBeGreaterThan(0)
    for (const e of mine) expect([prev, fresh]).toContain(e.keyId)
    const firstNew = mine.findIndex((e) => e.keyId === fresh)
    expect(firstNew).toBeGreaterThanOrEqual(0)
    for (const e of mine.slice(firstNew)) {
      expect(e.keyId).toBe(fresh)
      expect(e.localEpoch).toBe(row.first_seen_local_epoch)
    }
    await sys.waitForHealthy(m)
  }, 150_000)
})
