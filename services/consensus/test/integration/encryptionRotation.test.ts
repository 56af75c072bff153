// Rotations the consensus side drives (SPEC §5, §6), with real processes:
// EKV_ROTATE_ON_STARTUP rotates each purpose once when (and only when) that
// node is leader during its process load; a member left out of a rotation's
// writer batch receives the new DEK unregistered, keeps sealing under the
// previous active DEK until its own 0x03 commits, then seals under the new one.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { collectEnvelopes, nodeId16 } from "../../../../test/src/audit.ts"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"
import { InternalAdminClient, writersAt0 } from "./internalAdminClient.ts"

let sys: EkvSystem
let admin: InternalAdminClient

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
  (await admin.internal(await sys.waitForLeader(), "encryption.state", {})) as unknown as State

beforeAll(async () => {
  sys = await startSystem({ name: "consensus-enc-rotation", electionTimeoutMs: 500 })
  admin = await InternalAdminClient.connect(sys)
  const leader = await sys.waitForLeader()
  for (const n of sys.nodes) await sys.waitForHealthy(n)
  await admin.bootstrapWithStorageEnvelope(leader, sys.nodes)
}, 120_000)

afterAll(async () => {
  await admin?.close()
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

    await admin.transferTo(sys, x)
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
    await admin.transferTo(sys, sys.nodes.find((n) => n !== x)!)
    await admin.transferTo(sys, x)
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
    const batch = writersAt0(sys.nodes.filter((x) => x !== m))
    const { dek: d, proposed: rot } = await admin.rotateDek(leader, "storage", batch)
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
