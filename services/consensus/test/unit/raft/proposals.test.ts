import { describe, expect, it } from "vitest"
import { Role } from "../../../src/raft/types.ts"
import { bytes, Harness } from "./harness.ts"

describe("proposals: the apply barrier, forwarding hints, transfer and halts (SPEC §2, §2.2)", () => {
  it("a new leader refuses proposals until it has applied its Empty entry; its session registration bypasses", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.node("n1").autoApply = false
    h.elect("n1")
    const r = h.rn("n1").raft
    expect(r.log.committed).toBe(2)
    expect(r.log.applied).toBe(0)
    expect(h.propose("n1", "early")).toMatchObject({ _tag: "ProposalDropped", reason: "ApplyBarrier" })
    // The leader's own session registration may go in at once.
    expect(h.propose("n1", "session", true)).toMatchObject({ _tag: "ProposalAccepted", index: 3 })
    h.apply("n1", 1) // the bootstrap entry: still short of the Empty entry at 2
    expect(h.propose("n1", "early")._tag).toBe("ProposalDropped")
    h.apply("n1", 1)
    expect(h.propose("n1", "now")).toMatchObject({ _tag: "ProposalAccepted", index: 4 })
    h.node("n1").autoApply = true
    h.stabilize()
    h.apply("n1")
    expect(h.node("n2").applied.slice(2)).toEqual(["session", "now"])
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/apply-barrier.txt")
  })

  it("a follower refuses with the leader's id so the driver can forward", () => {
    const h = new Harness(["n1", "n2", "n3"])
    expect(h.propose("n2", "x")).toMatchObject({ _tag: "ProposalDropped", reason: "NotLeader", leader: null })
    h.elect("n1")
    expect(h.propose("n2", "x")).toMatchObject({ _tag: "ProposalDropped", reason: "NotLeader", leader: "n1" })
  })

  it("backpressure: proposals are refused while too many bytes are uncommitted", () => {
    const h = new Harness(["n1", "n2", "n3"], { maxUncommittedBytes: 100 })
    h.elect("n1")
    h.isolate("n1")
    expect(h.rn("n1").propose(bytes("a".repeat(60)))._tag).toBe("ProposalAccepted")
    expect(h.rn("n1").propose(bytes("b".repeat(60)))).toMatchObject({ reason: "Backpressure" })
    h.heal()
    h.tick("n1")
    h.stabilize()
    expect(h.rn("n1").propose(bytes("c".repeat(60)))._tag).toBe("ProposalAccepted")
  })
})

describe("leader transfer", () => {
  it("catches the transferee up, then sends TimeoutNow; proposals are dropped meanwhile", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.isolate("n3")
    h.propose("n1", "a")
    h.stabilize()
    h.heal()
    h.lines.length = 0
    expect(h.rn("n1").transferLeader("n3")).toEqual({ ok: true })
    expect(h.propose("n1", "during")).toMatchObject({ reason: "LeaderTransfer", leader: "n3" })
    h.tick("n1") // heartbeat → n3 answers → n1 sends it what it lacks → TimeoutNow
    h.stabilize()
    expect(h.leader()).toBe("n3")
    expect(h.rn("n3").raft.term).toBe(3)
    expect(h.node("n3").applied).toContain("a")
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/leader-transfer.txt")
  })

  it("is aborted after an election timeout if the transferee does not take over", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.isolate("n3")
    expect(h.rn("n1").transferLeader("n3").ok).toBe(true)
    for (let i = 0; i < 9; i++) {
      h.tick("n1")
      h.stabilize()
    }
    expect(h.propose("n1", "x")).toMatchObject({ reason: "LeaderTransfer" })
    h.tick("n1")
    h.stabilize()
    expect(h.propose("n1", "x")._tag).toBe("ProposalAccepted")
    expect(h.leader()).toBe("n1")
  })

  it("refuses learners and non-members as transferees", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    expect(h.rn("n1").transferLeader("n9")).toMatchObject({ ok: false, reason: "NotVoter" })
    expect(h.rn("n2").transferLeader("n3")).toMatchObject({ ok: false, reason: "NotLeader", leader: "n1" })
  })
})

describe("halts (SPEC §2.2)", () => {
  it("a halted leader steps down (handing over to a caught-up voter) and never campaigns", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.lines.length = 0
    h.rn("n1").setHalted(true)
    h.stabilize()
    expect(h.rn("n1").raft.role).toBe(Role.Follower)
    expect(h.leader()).not.toBe("n1")
    expect(h.leader()).not.toBeNull()
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/halt-leader.txt")
  })

  it("a halted node keeps following, persisting and voting, but ignores timeouts, campaign() and TimeoutNow", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.rn("n2").setHalted(true)
    h.propose("n1", "a")
    h.stabilize()
    expect(h.node("n2").store.entries.at(-1)?.index).toBe(3) // persisted as a follower
    expect(h.rn("n2").campaign()).toMatchObject({ ok: false, reason: "Halted" })
    // Transfer to a halted node: its TimeoutNow is ignored.
    h.rn("n1").transferLeader("n2")
    h.stabilize()
    expect(h.leader()).toBe("n1")
    h.tick("n1", 10) // the transfer is aborted
    h.stabilize()
    // With the leader gone, the halted node never times out into a campaign...
    h.crash("n1")
    for (let i = 0; i < 50; i++) {
      h.tick("n2")
      h.stabilize()
    }
    expect(h.rn("n2").raft.role).toBe(Role.Follower)
    expect(h.rn("n2").raft.term).toBe(2)
    // ...but it still votes, so n3 can win with it.
    h.tick("n3", 10)
    h.stabilize()
    expect(h.leader()).toBe("n3")
    expect(h.rn("n2").raft.vote).toBe("n3")
    // Resumed, it behaves normally again.
    h.rn("n2").setHalted(false)
    h.rn("n3").transferLeader("n2")
    h.stabilize()
    h.tick("n3")
    h.stabilize()
    expect(h.leader()).toBe("n2")
  })
})
