// (3) A node whose data dir is wiped rejoins through a snapshot (a file the leader writes for
//     it: automatic snapshots are checkpoints without one) and ends with identical state.
// (4) A learner added under load catches up (through a snapshot) and is promoted.
import { describe, expect, it } from "vitest"
import type { ProcessCluster } from "../../../../test/src/processCluster.ts"
import { useProcessCluster } from "../../../../test/src/useProcessCluster.ts"
import { maxIndex, missingFrom, readAllOn, sleep, startWriters } from "./load.ts"

let c: ProcessCluster

useProcessCluster({ env: { EKV_ELECTION_TIMEOUT_MS: "500", EKV_SNAPSHOT_ENTRIES: "200" } }, (started) => {
  c = started
})

const statusOf = async (node: string) => {
  const r = await c.clusterStatus(node)
  if (!r.ok) throw new Error(`status: ${r.error.message}`)
  return r.value
}

describe("snapshots", () => {
  it("a wiped node rejoins through a snapshot and ends with identical state", async () => {
    const w = startWriters(c, 16, "wipe")
    await sleep(1_500)
    const leader = await c.waitForLeader()
    const victim = c.nodes.find((n) => n !== leader)!
    await c.kill(victim)
    await c.wipe(victim)
    // Enough writes while it is away that the others compact past everything it had.
    const before = w.acked.length
    while (w.acked.length < before + 600) await sleep(100)
    await c.start(victim)
    await c.waitForHealth(victim)
    await sleep(1_000)
    await w.stop()
    const top = maxIndex(w.acked)
    await c.waitForApplied(top, c.running(), 60_000)
    const installed = await c.logEntries(victim, "snapshot installed")
    expect(installed.length).toBeGreaterThan(0)
    // Automatic snapshots are checkpoints (no file); the file the victim installed was
    // written for it, at the leader's applied index, when it needed one.
    expect((await c.logEntries(leader, "log compacted")).length).toBeGreaterThan(0)
    expect(await c.logEntries(leader, "snapshot taken")).toEqual([])
    const sent = await c.logEntries(leader, "snapshot file written to send")
    expect(sent.length).toBeGreaterThan(0)
    expect(installed.map((e) => e.index)).toContain(sent[0]!.index)
    const ref = await readAllOn(c, leader, "")
    const mine = await readAllOn(c, victim, "")
    expect(missingFrom(w.acked, mine)).toEqual([])
    expect(mine.size).toBe(ref.size)
    expect([...mine].sort()).toEqual([...ref].sort())
    const st = await statusOf(victim)
    expect(st.cluster_id).toMatch(/^[0-9a-f]{32}$/)
    expect(st.cluster_id).toBe((await statusOf(leader)).cluster_id)
    console.log(
      `wiped ${victim}: ${w.acked.length} writes, installed snapshot at ${JSON.stringify(installed.map((e) => e.index))}`,
    )
  })

  it("a learner added under load catches up and is promoted", async () => {
    const w = startWriters(c, 8, "learner")
    await sleep(1_000)
    await c.start("n4")
    await c.waitForHealth("n4")
    const add = await c.cluster("n2", "add-learner", { node: "n4" })
    expect(add.ok, JSON.stringify(add)).toBe(true)
    let st = await statusOf("n1")
    expect(st.members.find((m) => m.node === "n4")?.role).toBe("learner")
    await sleep(1_500)
    const mid = maxIndex(w.acked)
    await c.waitForApplied(mid, ["n4"], 60_000)
    const promote = await c.cluster("n3", "promote", { node: "n4" })
    expect(promote.ok, JSON.stringify(promote)).toBe(true)
    await sleep(500)
    await w.stop()
    st = await statusOf(await c.waitForLeader())
    expect(st.members.find((m) => m.node === "n4")).toMatchObject({ role: "voter", reachable: true })
    expect(st.members.filter((m) => m.role === "voter").length).toBe(4)
    const top = maxIndex(w.acked)
    await c.waitForApplied(top, ["n4"], 60_000)
    expect(missingFrom(w.acked, await readAllOn(c, "n4", "learner-"))).toEqual([])
    // Invalid membership requests are typed errors.
    const again = await c.cluster("n1", "add-learner", { node: "n4" })
    expect(again.ok === false && again.error.code).toBe("InvalidArgument")
    const unknown = await c.cluster("n1", "promote", { node: "n9" })
    expect(unknown.ok === false && unknown.error.code).toBe("NotFound")
    console.log(
      `learner n4: ${w.acked.length} writes during the change, promoted at ${promote.ok ? JSON.stringify(promote.value) : "-"}`,
    )
  })
})
