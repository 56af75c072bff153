import { describe, expect, it } from "vitest"
import { Harness, takeSnapshot } from "./harness.ts"

describe("snapshots", () => {
  it("compaction keeps the log after the snapshot; restart cost is bounded by it", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    for (let i = 0; i < 10; i++) h.propose("n1", `e${i}`)
    h.stabilize()
    takeSnapshot(h, "n1")
    const log = h.rn("n1").raft.log
    expect(log.firstIndex()).toBe(13)
    expect(log.entries).toHaveLength(0)
    h.crash("n1")
    h.restart("n1")
    expect(h.rn("n1").raft.log.firstIndex()).toBe(13)
    expect(h.rn("n1").raft.config.voters.size).toBe(3)
  })

  it("a follower behind the leader's compaction gets a snapshot, installed only at advance", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.crash("n3")
    for (let i = 0; i < 5; i++) h.propose("n1", `e${i}`)
    h.stabilize()
    takeSnapshot(h, "n1")
    h.propose("n1", "after")
    h.stabilize()
    h.restart("n3")
    h.lines.length = 0
    // Step by hand to see the snapshot in a Ready before it is installed.
    h.tick("n1")
    let sawSnapshot = false
    for (let i = 0; i < 50 && !sawSnapshot; i++) {
      h.deliverOne()
      for (const n of h.nodes.values()) {
        if (!n.rn?.hasReady()) continue
        if (n.id === "n3" && n.rn.raft.log.pendingSnapshot !== null) {
          // Not installed yet: applied is still behind the snapshot.
          expect(n.rn.raft.log.applied).toBeLessThan(7)
          sawSnapshot = true
        }
        h.processReady(n.id)
      }
    }
    expect(sawSnapshot).toBe(true)
    expect(h.rn("n3").raft.log.applied).toBe(7)
    h.stabilize()
    expect(h.node("n3").applied.slice(-2)).toEqual(["<snapshot 7>", "after"])
    expect(h.node("n3").store.snapshot.meta.index).toBe(7)
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/snapshot-install.txt")
  })

  it("a new learner joins through a snapshot and learns the configuration from it", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.propose("n1", "x")
    h.stabilize()
    takeSnapshot(h, "n1")
    h.addNode("n4")
    h.rn("n1").proposeConfChange({ type: "AddLearner", node: "n4" })
    h.stabilize()
    h.tick("n1")
    h.stabilize()
    const r4 = h.rn("n4").raft
    expect(r4.config.voters.size).toBe(3)
    expect(r4.config.learners.has("n4")).toBe(true)
    expect(h.node("n4").applied[0]).toBe("<snapshot 3>")
  })

  it("a failed snapshot stream is retried", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.crash("n3")
    h.propose("n1", "a")
    h.stabilize()
    takeSnapshot(h, "n1")
    h.restart("n3")
    let drops = 1
    h.dropIf = (m) => m.type === "Snap" && drops-- > 0
    for (let i = 0; i < 6; i++) {
      h.tick("n1")
      h.stabilize()
    }
    expect(h.node("n3").applied.at(-1)).toBe("<snapshot 3>")
  })
})
