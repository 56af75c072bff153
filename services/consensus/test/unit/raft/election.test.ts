import { describe, expect, it } from "vitest"
import { Role } from "../../../src/raft/types.ts"
import { Harness } from "./harness.ts"

describe("leader election", () => {
  it("elects a leader with pre-vote then vote, and the leader appends its Empty entry", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    const r = h.rn("n1").raft
    expect(r.role).toBe(Role.Leader)
    expect(r.term).toBe(2)
    // Bootstrap entry 1 (term 1), then the leader's Empty entry 2 (term 2), committed everywhere.
    for (const id of ["n1", "n2", "n3"]) {
      expect(h.rn(id).raft.log.committed).toBe(2)
      expect(h.node(id).applied).toEqual([
        '<conf {"type":"Bootstrap","voters":["n1","n2","n3"]}>',
        "<empty 2>",
      ])
      expect(h.rn(id).raft.lead).toBe("n1")
    }
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/election.txt")
  })

  it("times out into an election after electionTick ticks", () => {
    const h = new Harness(["n1", "n2", "n3"], { electionTick: 10 })
    h.tick("n2", 9)
    h.stabilize()
    expect(h.leader()).toBeNull()
    h.tick("n2", 1)
    h.stabilize()
    expect(h.leader()).toBe("n2")
  })

  it("a candidate with a stale log loses: votes need an up-to-date log", () => {
    const h = new Harness(["n1", "n2", "n3"], { jitter: { n2: 0.5 } })
    h.elect("n1")
    h.isolate("n3")
    h.propose("n1", "x")
    h.stabilize()
    h.heal()
    h.crash("n1")
    h.tick("n2", 10) // n2's lease on n1 runs out (its own timeout is 15)
    // n3 lacks entry 3: n2 refuses its pre-vote (and would refuse a vote).
    h.campaign("n3")
    h.stabilize()
    expect(h.lines).toContain("  n2->n3 PreVoteResp term=2 REJECT")
    expect(h.rn("n3").raft.role).not.toBe(Role.Leader)
    expect(h.rn("n3").raft.term).toBe(2) // the pre-vote failed: no term was burnt
    h.campaign("n2")
    h.stabilize()
    expect(h.leader()).toBe("n2")
  })

  it("without pre-vote too, a vote needs an up-to-date log", () => {
    const h = new Harness(["n1", "n2", "n3"], { preVote: false, jitter: { n2: 0.5 } })
    h.elect("n1")
    h.isolate("n3")
    h.propose("n1", "x")
    h.stabilize()
    h.heal()
    h.crash("n1")
    h.tick("n2", 10)
    h.campaign("n3")
    h.stabilize()
    expect(h.lines).toContain("  n2->n3 VoteResp term=3 REJECT")
    expect(h.rn("n3").raft.role).not.toBe(Role.Leader)
  })

  it("a vote granted in a term the voter had already reached is persisted before the grant is sent", () => {
    const h = new Harness(["n1", "n2", "n3", "n4"], { preVote: false, checkQuorum: false })
    h.elect("n4")
    h.isolate("n2")
    h.propose("n4", "x") // n2 stays stale
    h.stabilize()
    h.heal()
    h.crash("n4")
    // n2 (stale) and n1 campaign in term 3; n2's request reaches n3 first and is refused.
    h.dropIf = (m) => m.type === "Vote" && m.to !== "n3"
    h.campaign("n2")
    h.stabilize()
    expect(h.node("n3").store.hardState).toMatchObject({ term: 3, vote: null })
    h.heal()
    h.rn("n1").campaign()
    h.dropIf = (m) => m.type === "Vote" && m.from === "n1" && m.to !== "n3"
    const rd = h.processReady("n1")
    expect(rd.hardState).toMatchObject({ term: 3, vote: "n1" })
    h.deliverOne()
    h.deliverOne()
    const v = h.processReady("n3")
    expect(v.messages).toMatchObject([{ type: "VoteResp", to: "n1", reject: false }])
    expect(v.hardState).toMatchObject({ term: 3, vote: "n1" })
    expect(h.node("n3").store.hardState.vote).toBe("n1")
  })

  it("pre-vote: a partitioned node does not inflate its term, and rejoining does not disrupt the leader", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.isolate("n3")
    // n3 times out repeatedly but cannot win a pre-vote, so its term stays.
    for (let i = 0; i < 5; i++) {
      h.tick("n3", 10)
      h.stabilize()
    }
    expect(h.rn("n3").raft.term).toBe(2)
    h.heal()
    h.lines.length = 0
    // n3 campaigns again after rejoining: n1 and n2 are in the lease of a live leader and ignore it.
    h.tick("n1", 1)
    h.stabilize()
    h.campaign("n3")
    h.stabilize()
    expect(h.leader()).toBe("n1")
    expect(h.rn("n1").raft.term).toBe(2)
    expect(h.rn("n2").raft.lead).toBe("n1")
    // n3 rejoins at the next heartbeat.
    h.tick("n1", 1)
    h.stabilize()
    expect(h.rn("n3").raft.role).toBe(Role.Follower)
    expect(h.rn("n3").raft.lead).toBe("n1")
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/prevote-rejoin.txt")
  })

  it("a follower with a live leader ignores even a higher-term vote request (leader lease)", () => {
    const h = new Harness(["n1", "n2", "n3"], { preVote: false })
    h.elect("n1")
    h.isolate("n3")
    h.tick("n3", 10) // without pre-vote, n3 burns a term
    h.stabilize()
    expect(h.rn("n3").raft.term).toBe(3)
    h.heal()
    h.tick("n3", 10)
    h.stabilize()
    // n2 heard from n1 within the election timeout: n3's vote requests were ignored.
    expect(h.rn("n2").raft.vote).toBe("n1")
    expect(h.rn("n2").raft.lead).toBe("n1")
  })

  it("check-quorum: an isolated leader steps down after an election timeout", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.isolate("n1")
    // Progress starts "recently active" (the votes just came in), so the first
    // check passes; the second, one election timeout later, fails.
    h.tick("n1", 19)
    expect(h.rn("n1").raft.role).toBe(Role.Leader)
    h.tick("n1", 1)
    expect(h.rn("n1").raft.role).toBe(Role.Follower)
    expect(h.rn("n1").raft.lead).toBeNull()
  })

  it("check-quorum: a leader that hears from a quorum stays", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.cut.add("n1->n3")
    h.cut.add("n3->n1")
    for (let i = 0; i < 30; i++) {
      h.tick("n1")
      h.stabilize()
    }
    expect(h.rn("n1").raft.role).toBe(Role.Leader)
  })

  it("learners receive the log but never campaign and never count as votes", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.addNode("n4")
    expect(h.rn("n1").proposeConfChange({ type: "AddLearner", node: "n4" })._tag).toBe("ProposalAccepted")
    h.stabilize()
    h.propose("n1", "a")
    h.stabilize()
    expect(h.node("n4").applied.at(-1)).toBe("a")
    expect(h.rn("n4").raft.config.learners.has("n4")).toBe(true)
    h.crash("n1")
    h.tick("n4", 100)
    h.stabilize()
    expect(h.rn("n4").raft.role).toBe(Role.Follower)
    expect(h.rn("n4").raft.term).toBe(2)
    expect(h.rn("n4").campaign()).toMatchObject({ ok: false, reason: "NotVoter" })
    // A vote from a learner is not counted: n2 still needs n3.
    h.isolate("n3")
    h.campaign("n2")
    h.stabilize()
    expect(h.leader()).toBeNull()
    h.heal()
    h.tick("n3", 10) // n3's lease on n1 runs out and it campaigns
    h.stabilize()
    expect(h.leader()).toBe("n3")
    expect(h.rn("n4").raft.role).toBe(Role.Follower)
  })

  it("a single-voter cluster elects itself and commits alone", () => {
    const h = new Harness(["n1"])
    h.elect("n1")
    h.propose("n1", "solo")
    h.stabilize()
    expect(h.node("n1").applied.at(-1)).toBe("solo")
  })
})
