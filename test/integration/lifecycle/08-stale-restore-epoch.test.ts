// Acceptance: a node restored from a stale copy of its data dir starts with an
// epoch above every epoch it ever used — checked on the nonces it writes
// against the ones it wrote before the copy was restored (SPEC §6: the floor
// comes from the leader's log, not from the local disk).
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import {
  checkNonceReuse,
  collectEnvelopes,
  describeReuse,
  type EnvelopeRecord,
  nodeId16,
} from "../../src/audit.ts"
import { firstMutator, halts, ok, readBack, type Written, writeSet } from "../../src/lifecycle.ts"
import { type EkvSystem, startSystem } from "../../src/system.ts"

let sys: EkvSystem

beforeAll(async () => {
  sys = await startSystem({ name: "stale-restore" })
  await sys.waitForReady()
})

afterAll(async () => {
  await sys?.stopAll()
})

/** Storage envelopes in `node`'s own state machine that `node` sealed (its node_id16 in the nonce). */
const ownEnvelopes = async (node: string): Promise<EnvelopeRecord[]> => {
  const col = await collectEnvelopes([{ node, stateDir: sys.stateDir(node), raftDir: sys.raftDir(node) }])
  expect(col.malformed).toEqual([])
  return col.envelopes.filter((e) => e.kind === "storage" && e.nodeId16 === nodeId16(node))
}

const maxEpochByKey = (es: readonly EnvelopeRecord[]): Map<number, number> => {
  const m = new Map<number, number>()
  for (const e of es) m.set(e.keyId, Math.max(m.get(e.keyId) ?? -1, e.localEpoch))
  return m
}

describe("stale data dir restore", () => {
  it("starts at an epoch above every epoch the node ever used", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const data: Written[] = []
    ok("enable-storage-envelope", await firstMutator(sys, "enable-storage-envelope"))
    data.push(...(await writeSet(sys, "w1", 10)))
    const leader = await sys.waitForLeader()
    const f = sys.nodes.find((n) => n !== leader) as string
    await sys.waitForApplied(data[data.length - 1]?.index ?? 0)

    // The stale copy, taken while the node is stopped.
    await sys.killNode(f)
    await sys.copyDataDir(f, "stale")
    const epochsInCopy = maxEpochByKey(await ownEnvelopes(f))
    expect(epochsInCopy.size).toBeGreaterThan(0)

    // Two more sessions after the copy, each sealing new writes.
    for (const phase of ["w2", "w3"]) {
      await sys.startNode(f)
      await sys.waitForHealthy(f, 90_000)
      data.push(...(await writeSet(sys, phase, 10)))
      await sys.waitForApplied(data[data.length - 1]?.index ?? 0)
      await sys.killNode(f)
    }
    const before = await ownEnvelopes(f)
    const usedBefore = maxEpochByKey(before)
    for (const [k, e] of epochsInCopy) expect(usedBefore.get(k) ?? -1, `key ${k}`).toBeGreaterThan(e)

    // Restore the stale copy and start.
    await sys.restoreDataDir(f, "stale")
    await sys.startNode(f)
    await sys.waitForHealthy(f, 90_000)
    const cap = ok(`capability ${f}`, await sys.capability(f))
    const active = ok("status", await sys.encryptionStatus()).active.storage
    expect(cap.local_epoch, "capability epoch after restore").toBeGreaterThan(usedBefore.get(active) ?? -1)
    data.push(...(await writeSet(sys, "w4", 10)))
    await sys.waitForApplied(data[data.length - 1]?.index ?? 0)
    expect(await readBack(sys, data)).toEqual([])
    expect(await halts(sys)).toEqual([])

    await sys.killNode(f)
    const after = await ownEnvelopes(f)
    const beforeDigests = new Set(before.map((e) => e.digest))
    const fresh = after.filter((e) => !beforeDigests.has(e.digest))
    expect(fresh.length).toBeGreaterThan(0)
    const low = fresh.filter((e) => e.localEpoch <= (usedBefore.get(e.keyId) ?? -1))
    expect(
      low.map((e) => `${e.source}: key ${e.keyId} epoch ${e.localEpoch} ≤ ${usedBefore.get(e.keyId)}`),
      "envelopes sealed after the restore at an epoch already used",
    ).toEqual([])
    const reuse = checkNonceReuse([...before, ...after])
    expect(reuse.length, describeReuse(reuse)).toBe(0)
  })
})
