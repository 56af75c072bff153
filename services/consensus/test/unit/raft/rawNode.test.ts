import { describe, expect, it } from "vitest"
import { bootstrapState, emptyState, RawNode } from "../../../src/raft/rawNode.ts"
import type { Entry } from "../../../src/raft/types.ts"
import { bytes, Harness } from "./harness.ts"

const entry = (index: number, term: number): Entry => ({
  index,
  term,
  type: "Normal",
  data: new Uint8Array(0),
})

describe("RawNode: the Ready/advance contract", () => {
  it("refuses a second ready() before advance(), and an advance() of another Ready", () => {
    const rn = new RawNode({
      id: "n1",
      electionTick: 10,
      heartbeatTick: 1,
      random: () => 0,
      storage: bootstrapState(["n1"]),
    })
    rn.campaign()
    const rd = rn.ready()
    expect(rn.hasReady()).toBe(false)
    expect(() => rn.ready()).toThrow(/advance/)
    expect(() => rn.advance({ ...rd })).toThrow(/outstanding/)
    rn.advance(rd)
  })

  it("states the truncation point when a new leader replaces persisted entries", () => {
    const rn = new RawNode({
      id: "n3",
      electionTick: 10,
      heartbeatTick: 1,
      random: () => 0,
      storage: emptyState(),
    })
    rn.step({
      type: "App",
      from: "n1",
      to: "n3",
      term: 2,
      prevIndex: 0,
      prevTerm: 0,
      entries: [entry(1, 1), entry(2, 2), entry(3, 2)],
      commit: 1,
    })
    const rd1 = rn.ready()
    expect(rd1.truncateFrom).toBeNull()
    expect(rd1.entries.map((e) => e.index)).toEqual([1, 2, 3])
    rn.advance(rd1)
    rn.step({
      type: "App",
      from: "n2",
      to: "n3",
      term: 3,
      prevIndex: 1,
      prevTerm: 1,
      entries: [entry(2, 3)],
      commit: 1,
    })
    const rd2 = rn.ready()
    expect(rd2.truncateFrom).toBe(2)
    expect(rd2.entries.map((e) => `${e.index}/${e.term}`)).toEqual(["2/3"])
    expect(rd2.mustSync).toBe(true)
  })

  it("lets a leader send its appends and heartbeats before its own write, and nothing else", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.stabilize()
    // The leader's steady state: new entries and the appends carrying them.
    const leader = h.rn("n1")
    leader.propose(bytes("a"))
    const rd = leader.ready()
    expect(rd.entries).toHaveLength(1)
    expect(rd.messages.map((m) => m.type)).toEqual(["App", "App"])
    expect(rd.messagesBeforePersist).toBe(true)
    // The leader's own copy counts toward commit only once the write is reported.
    expect(leader.status().progress.get("n1")?.match).toBeLessThan(rd.entries[0]!.index)
    leader.advance(rd)
    expect(leader.status().progress.get("n1")?.match).toBe(rd.entries[0]!.index)
    // A follower's acknowledgement waits for its write.
    const follower = h.rn("n2")
    for (const m of rd.messages) if (m.to === "n2") follower.step(m)
    const ack = follower.ready()
    expect(ack.messages.map((m) => m.type)).toEqual(["AppResp"])
    expect(ack.messagesBeforePersist).toBe(false)
    follower.advance(ack)
    h.stabilize()
    // A campaign changes term and vote: its votes wait for the write.
    follower.campaign()
    const campaign = follower.ready()
    expect(campaign.messages.some((m) => m.type === "Vote" || m.type === "PreVote")).toBe(true)
    expect(campaign.messagesBeforePersist).toBe(false)
    follower.advance(campaign)
  })

  it("rewindApply hands out again what a halted driver dropped", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.node("n2").autoApply = false
    h.propose("n1", "a")
    h.propose("n1", "b")
    h.stabilize()
    const n2 = h.node("n2")
    expect(n2.toApply.map((e) => e.index)).toEqual([3, 4])
    h.apply("n2", 1) // then halts at 4 and drops what it holds
    n2.toApply = []
    h.rn("n2").setHalted(true)
    h.rn("n2").setHalted(false)
    h.rn("n2").rewindApply()
    h.stabilize()
    expect(n2.toApply.map((e) => e.index)).toEqual([4])
  })

  it("bounds what is handed out but not yet applied (maxApplyingEntries)", () => {
    const h = new Harness(["n1", "n2", "n3"], { maxApplyingEntries: 3 })
    h.elect("n1")
    h.node("n2").autoApply = false
    for (let i = 0; i < 10; i++) h.propose("n1", `e${i}`)
    h.stabilize()
    expect(h.node("n2").toApply).toHaveLength(3)
    h.apply("n2")
    h.stabilize()
    expect(h.node("n2").toApply).toHaveLength(3)
  })

  it("status reports the leader's view of its followers", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    const s = h.rn("n1").status()
    expect(s.softState).toEqual({ leader: "n1", role: "Leader", term: 2 })
    expect(s.confState).toEqual({ voters: ["n1", "n2", "n3"], learners: [] })
    expect(s.progress.get("n2")?.match).toBe(2)
    expect(h.rn("n2").status().progress.size).toBe(0)
  })

  it("refuses inconsistent persisted state", () => {
    const s = bootstrapState(["n1"])
    const mk = (storage: typeof s) => () =>
      new RawNode({ id: "n1", electionTick: 10, heartbeatTick: 1, random: () => 0, storage })
    expect(mk({ ...s, applied: 5 })).toThrow(/applied/)
    expect(mk({ ...s, hardState: { term: 0, vote: null, commit: 1 } })).toThrow(/term/)
    expect(mk({ ...s, entries: [entry(2, 1)] })).toThrow(/out of place/)
  })
})
