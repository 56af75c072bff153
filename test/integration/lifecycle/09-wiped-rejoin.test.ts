// Acceptance: a node wiped after bootstrap and a rotation rejoins through a
// snapshot (SPEC §4.6) and ends with the same registry and wrapped DEKs as the
// others, and can read every value.
//
// "Through a snapshot": the log is compacted (ekv.admin.cluster.snapshot)
// past the bootstrap and the rotation before the wipe, so the encryption
// state can only come from the snapshot; afterwards the wiped node's Raft log
// starts above index 1. "Can read every value": leadership is moved to the
// rejoined node, so its state machine serves the linearizable reads.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { raftLogEntries, readSidecarFile, registryRows, replicatedSidecar } from "../../src/audit.ts"
import { firstMutator, halts, leadOn, ok, readBack, type Written, writeSet } from "../../src/lifecycle.ts"
import { type EkvSystem, startSystem } from "../../src/system.ts"

let sys: EkvSystem

beforeAll(async () => {
  sys = await startSystem({ name: "wiped-rejoin" })
  await sys.waitForReady()
})

afterAll(async () => {
  await sys?.stopAll()
})

describe("wiped node rejoins through a snapshot", () => {
  it("ends with the same registry and wrapped DEKs and reads every value", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const data: Written[] = []
    data.push(...(await writeSet(sys, "p", 10)))
    ok("enable-storage-envelope", await firstMutator(sys, "enable-storage-envelope"))
    data.push(...(await writeSet(sys, "s", 10)))
    const rot = ok(
      "rotate-dek",
      await sys.encryption<{ index: number }>("rotate-dek", { purpose: "storage" }),
    )
    await sys.waitForApplied(rot.index)
    ok("enable-raft-envelope", await sys.encryption("enable-raft-envelope", {}, 60_000))
    data.push(...(await writeSet(sys, "r", 10)))
    const snaps = ok(
      "snapshot",
      await sys.cluster<{ snapshots: { node: string; index: number }[] }>("snapshot", {}, 60_000),
    )
    expect(snaps.snapshots.length).toBe(3)
    for (const s of snaps.snapshots) expect(s.index).toBeGreaterThan(rot.index)

    const leader = await sys.waitForLeader()
    const f = sys.nodes.find((n) => n !== leader) as string
    await sys.killNode(f)
    await sys.wipeNode(f)
    // Writes while it is away, then it rejoins with nothing.
    data.push(...(await writeSet(sys, "away", 10)))
    await sys.startNode(f)
    await sys.waitForHealthy(f, 120_000)
    data.push(...(await writeSet(sys, "back", 10)))
    await sys.waitForApplied(data[data.length - 1]?.index ?? 0, sys.nodes, 90_000)
    expect(await halts(sys)).toEqual([])

    // Reads served by the rejoined node.
    await leadOn(sys, f)
    expect(await readBack(sys, data)).toEqual([])

    await sys.kill("admin")
    for (const n of sys.nodes) await sys.killNode(n)
    const first = (await raftLogEntries(sys.raftDir(f)))[0]
    expect(first?.index ?? 0, "the wiped node's log starts after a snapshot").toBeGreaterThan(rot.index)
    const rows = await Promise.all(sys.nodes.map((n) => registryRows(sys.keystoreDir(n))))
    const sidecars = await Promise.all(sys.nodes.map((n) => readSidecarFile(sys.sidecarPath(n))))
    expect(rows[0]?.length).toBeGreaterThan(0)
    for (let i = 1; i < sys.nodes.length; i++) {
      expect(rows[i], `${sys.nodes[i]} registry`).toEqual(rows[0])
      const a = sidecars[i]
      const b = sidecars[0]
      if (a === undefined || b === undefined) throw new Error("missing sidecar")
      expect(replicatedSidecar(a), `${sys.nodes[i]} sidecar`).toEqual(replicatedSidecar(b))
    }
  })
})
