import { describe, expect, it } from "vitest"
import { Harness } from "./harness.ts"

describe("ReadIndex", () => {
  it("the leader confirms leadership with a heartbeat round before answering", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.propose("n1", "a")
    h.stabilize()
    h.lines.length = 0
    expect(h.rn("n1").readIndex("r1")).toEqual({ ok: true })
    expect(h.node("n1").readStates).toEqual([])
    h.stabilize()
    expect(h.node("n1").readStates).toEqual([{ index: 3, ctx: "r1" }])
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/read-index.txt")
  })

  it("a follower forwards to the leader and gets the leader's commit index", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.propose("n1", "a")
    h.stabilize()
    expect(h.rn("n2").readIndex("f1")).toEqual({ ok: true })
    h.stabilize()
    expect(h.node("n2").readStates).toEqual([{ index: 3, ctx: "f1" }])
  })

  it("without a leader a read is refused at once", () => {
    const h = new Harness(["n1", "n2", "n3"])
    expect(h.rn("n2").readIndex("x")).toMatchObject({ ok: false, reason: "NoLeader" })
  })

  it("an isolated (deposed) leader never answers", () => {
    const h = new Harness(["n1", "n2", "n3"], { jitter: { n3: 0.5 } })
    h.elect("n1")
    h.isolate("n1")
    h.tickAll(10) // n2 wins term 3 (n1 is still leader in its own eyes: its check-quorum has not fired)
    h.propose("n2", "newer")
    h.stabilize()
    expect(h.rn("n1").raft.role).toBe("Leader")
    h.rn("n1").readIndex("stale")
    for (let i = 0; i < 5; i++) {
      h.tick("n1")
      h.stabilize()
    }
    expect(h.node("n1").readStates).toEqual([])
  })

  it("a new leader serves reads only after committing an entry of its term", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.dropIf = (m) => m.type === "AppResp"
    h.elect("n1")
    h.rn("n1").readIndex("early")
    h.tick("n1")
    h.stabilize()
    expect(h.node("n1").readStates).toEqual([])
    h.heal()
    h.tick("n1")
    h.stabilize()
    expect(h.node("n1").readStates).toEqual([{ index: 2, ctx: "early" }])
  })

  it("a single voter answers at once", () => {
    const h = new Harness(["n1"])
    h.elect("n1")
    h.rn("n1").readIndex("solo")
    h.stabilize()
    expect(h.node("n1").readStates).toEqual([{ index: 2, ctx: "solo" }])
  })
})
