// A voter that lost its durable state starts in the rejoining mode (raft.ts
// "Rejoining"): no votes, no campaigns until a leader has caught it up; then
// its vote is locked on that leader for the term.
import { describe, expect, it } from "vitest"
import { emptyState } from "../../../src/raft/rawNode.ts"
import type { Message } from "../../../src/raft/types.ts"
import { Role } from "../../../src/raft/types.ts"
import { Harness, toStore } from "./harness.ts"

/** What storage.ts gives a wiped voter whose peers report a cluster at `term`. */
const wipeToRejoin = (h: Harness, id: string, term: number): void => {
  const n = h.node(id)
  const e = emptyState()
  n.store = toStore({ ...e, hardState: { term, vote: null, commit: 0, rejoining: true } })
  n.applied = []
}

const voteFrom = (from: string, to: string, term: number, type: "Vote" | "PreVote" = "Vote"): Message => ({
  type,
  from,
  to,
  term,
  lastIndex: 1000,
  lastTerm: term,
  force: true,
})

describe("a rejoining voter", () => {
  it("neither campaigns nor votes until a leader caught it up; then its vote is the leader's", async () => {
    const h = new Harness(["n1", "n2", "n3"], { jitter: { n2: 0.5, n3: 0 } })
    h.elect("n1") // term 2
    h.propose("n1", "a")
    h.stabilize()
    h.lines.length = 0
    h.crash("n3")
    wipeToRejoin(h, "n3", 2)
    h.restart("n3")
    h.crash("n1")
    // n3 times out first many times over: it never campaigns.
    h.tick("n3", 40)
    h.stabilize()
    expect(h.rn("n3").raft.role).toBe(Role.Follower)
    expect(h.rn("n3").raft.term).toBe(2)
    expect(h.rn("n3").campaign()).toEqual({ ok: false, reason: "Rejoining", leader: null })
    // n2 campaigns: n3 refuses the pre-vote, so n2 (with n1 down) cannot win.
    h.campaign("n2")
    h.stabilize()
    expect(h.leader()).toBe(null)
    // A forced vote request (as from a transfer) is refused too.
    h.lines.push("forced vote request n2 -> n3 in term 3 (n3 rejoining)")
    h.rn("n3").step(voteFrom("n2", "n3", 3))
    h.stabilize()
    expect(h.rn("n3").raft.vote).toBe(null)
    expect(h.rn("n3").raft.hardState().rejoining).toBe(true)
    // n1 comes back and wins term 3 with n2 alone; it catches n3 up.
    h.restart("n1")
    h.elect("n1")
    expect(h.rn("n1").raft.term).toBe(3)
    h.tick("n1")
    h.stabilize()
    const r3 = h.rn("n3").raft
    expect(r3.log.lastIndex()).toBe(h.rn("n1").raft.log.lastIndex())
    expect(r3.hardState()).toEqual({ term: 3, vote: "n1", commit: r3.log.committed })
    expect(h.node("n3").store.hardState).toEqual({ term: 3, vote: "n1", commit: r3.log.committed })
    expect(h.node("n3").applied.slice(-2)).toEqual(["a", "<empty 3>"])
    // Another candidate in the same term gets no vote from it.
    h.lines.push("vote request n2 -> n3 in term 3")
    h.rn("n3").step(voteFrom("n2", "n3", 3))
    h.stabilize()
    expect(h.lines).toContain("  n3->n2 VoteResp term=3 REJECT")
    expect(r3.vote).toBe("n1")
    // From then on it is an ordinary voter: it can vote in a later term, and campaign.
    h.rn("n3").step(voteFrom("n2", "n3", 4))
    h.stabilize()
    expect(r3.vote).toBe("n2")
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/rejoin.txt")
  })

  it("a leader's append that leaves its commit behind the leader's, or not of the leader's term, keeps it rejoining", () => {
    const h = new Harness(["n1", "n2", "n3"], { maxMsgEntries: 1 })
    h.elect("n1")
    for (let i = 0; i < 5; i++) h.propose("n1", `e${i}`)
    h.stabilize()
    h.crash("n3")
    wipeToRejoin(h, "n3", 2)
    h.restart("n3")
    // Deliver n1's appends to n3 one at a time: each carries one entry, commit is 7.
    h.tick("n1")
    let sawRejoiningAck = false
    for (let i = 0; i < 200 && h.rn("n3").raft.hardState().rejoining === true; i++) {
      for (const n of h.nodes.values()) if (n.rn?.hasReady()) h.processReady(n.id)
      const r3 = h.rn("n3").raft
      if (r3.log.lastIndex() > 0 && r3.log.committed < 7) {
        sawRejoiningAck = true
        expect(r3.hardState().rejoining).toBe(true)
      }
      h.deliverOne()
    }
    h.stabilize()
    expect(sawRejoiningAck).toBe(true)
    expect(h.rn("n3").raft.hardState()).toEqual({ term: 2, vote: "n1", commit: 7 })
  })

  it("a restart before any leader contact keeps it rejoining", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.crash("n3")
    wipeToRejoin(h, "n3", 2)
    h.restart("n3")
    h.tick("n3", 30)
    h.crash("n3")
    h.restart("n3")
    expect(h.rn("n3").raft.hardState().rejoining).toBe(true)
    h.tick("n1")
    h.stabilize()
    expect(h.rn("n3").raft.hardState()).toEqual({ term: 2, vote: "n1", commit: 2 })
  })
})
