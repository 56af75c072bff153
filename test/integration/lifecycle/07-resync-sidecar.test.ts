// Acceptance: resync-sidecar. A node whose sidecar was rolled back to an
// older copy refuses to start with SidecarBehindRaftLog; resync brings it
// back, both with the log available (mode log-replay) and with the log
// compacted past it (mode full-state).
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { readSidecarFile, replicatedSidecar } from "../../src/audit.ts"
import { firstMutator, halts, ok, readBack, type Written, writeSet } from "../../src/lifecycle.ts"
import { type EkvSystem, sleep, startSystem } from "../../src/system.ts"

let sys: EkvSystem

beforeAll(async () => {
  sys = await startSystem({ name: "resync" })
  await sys.waitForReady()
})

afterAll(async () => {
  await sys?.stopAll()
})

/**
 * Starts the node after its sidecar was rolled back: one of its processes
 * must refuse with SidecarBehindRaftLog (exit non-zero, log line, refused-start
 * event). Leaves the keystore running and the consensus stopped, as resync needs.
 */
const expectRefusal = async (node: string) => {
  await sys.start(`keystore-${node}`, { waitReady: false })
  await sleep(1_500)
  if (sys.isRunning(`keystore-${node}`)) await sys.start(`consensus-${node}`, { waitReady: false })
  const t0 = Date.now()
  while (sys.isRunning(`keystore-${node}`) && sys.isRunning(`consensus-${node}`) && Date.now() - t0 < 60_000)
    await sleep(200)
  const exited = [`keystore-${node}`, `consensus-${node}`].filter((p) => !sys.isRunning(p))
  expect(exited.length, `neither process of ${node} refused to start`).toBeGreaterThan(0)
  const logs = (await Promise.all(exited.map((p) => sys.readLog(p)))).join("\n")
  expect(logs).toContain("SidecarBehindRaftLog")
  const refused = await sys.until(
    "refused-start event",
    async () =>
      (await sys.events(`ekv.events.cluster.${node}`)).find(
        (e) => e.body.kind === "refused-start" && e.body.code === "SidecarBehindRaftLog",
      ),
    20_000,
    500,
  )
  expect(refused.body.node).toBe(node)
  await sys.kill(`consensus-${node}`)
  if (!sys.isRunning(`keystore-${node}`)) await sys.start(`keystore-${node}`)
}

const sameSidecarAsLeader = async (node: string) => {
  const leader = await sys.waitForLeader()
  const a = await readSidecarFile(sys.sidecarPath(node))
  const b = await readSidecarFile(sys.sidecarPath(leader))
  if (a === undefined || b === undefined) throw new Error("missing sidecar")
  expect(replicatedSidecar(a)).toEqual(replicatedSidecar(b))
}

describe("resync-sidecar", () => {
  it("brings back a rolled-back sidecar from the log, then from full state after compaction", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const data: Written[] = []
    ok("enable-storage-envelope", await firstMutator(sys, "enable-storage-envelope"))
    data.push(...(await writeSet(sys, "a", 5)))
    const leader = await sys.waitForLeader()
    const f = sys.nodes.find((n) => n !== leader) as string

    // --- log available
    await sys.copySidecar(f, "old1")
    const old1 = await readSidecarFile(sys.sidecarPath(f))
    const r1 = ok("rotate-dek", await sys.encryption<{ index: number }>("rotate-dek", { purpose: "storage" }))
    const r2 = ok("rotate-dek", await sys.encryption<{ index: number }>("rotate-dek", { purpose: "raft" }))
    await sys.waitForApplied(r2.index)
    data.push(...(await writeSet(sys, "b", 5)))
    await sys.killNode(f)
    await sys.rollbackSidecar(f, "old1")
    expect((await readSidecarFile(sys.sidecarPath(f)))?.raft_applied_index).toBe(old1?.raft_applied_index)
    await expectRefusal(f)
    const rs1 = ok(
      "resync-sidecar",
      await sys.encryption<{ node: string; mode: string; raft_applied_index: number }>(
        "resync-sidecar",
        { node: f },
        60_000,
      ),
    )
    expect(rs1).toEqual({ node: f, mode: "log-replay", raft_applied_index: r2.index })
    expect(r1.index).toBeLessThan(r2.index)
    await sys.start(`consensus-${f}`)
    await sys.waitForHealthy(f, 90_000)
    await sameSidecarAsLeader(f)

    // --- log compacted past the old sidecar
    await sys.copySidecar(f, "old2")
    const r3 = ok("rotate-dek", await sys.encryption<{ index: number }>("rotate-dek", { purpose: "storage" }))
    await sys.waitForApplied(r3.index)
    data.push(...(await writeSet(sys, "c", 5)))
    const snaps = ok(
      "snapshot",
      await sys.cluster<{ snapshots: { node: string; index: number }[] }>("snapshot", {}, 60_000),
    )
    for (const s of snaps.snapshots) expect(s.index).toBeGreaterThan(r3.index)
    await sys.killNode(f)
    await sys.rollbackSidecar(f, "old2")
    await expectRefusal(f)
    const rs2 = ok(
      "resync-sidecar",
      await sys.encryption<{ node: string; mode: string; raft_applied_index: number }>(
        "resync-sidecar",
        { node: f },
        60_000,
      ),
    )
    expect(rs2).toEqual({ node: f, mode: "full-state", raft_applied_index: r3.index })
    await sys.start(`consensus-${f}`)
    await sys.waitForHealthy(f, 90_000)
    await sameSidecarAsLeader(f)

    data.push(...(await writeSet(sys, "d", 5)))
    const last = data[data.length - 1]?.index ?? 0
    await sys.waitForApplied(last)
    expect(await halts(sys)).toEqual([])
    expect(await readBack(sys, data)).toEqual([])
  })
})
