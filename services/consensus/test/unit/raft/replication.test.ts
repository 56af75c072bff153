import { describe, expect, it } from "vitest"
import { bootstrapState, RawNode } from "../../../src/raft/rawNode.ts"
import type { AppendRequest, Message } from "../../../src/raft/types.ts"
import { Role } from "../../../src/raft/types.ts"
import { Harness } from "./harness.ts"

const five = ["n1", "n2", "n3", "n4", "n5"]
const isApp = (m: Message): m is AppendRequest => m.type === "App"

describe("replication", () => {
  it("commits by quorum and applies in order everywhere", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    for (const d of ["a", "b", "c"]) h.propose("n1", d)
    h.stabilize()
    for (const id of ["n1", "n2", "n3"]) expect(h.node(id).applied.slice(2)).toEqual(["a", "b", "c"])
  })

  it("group commit: proposals between two Readies go out in one append per follower", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.lines.length = 0
    for (const d of ["a", "b", "c", "d"]) h.propose("n1", d)
    const rd = h.processReady("n1")
    expect(rd.entries.map((e) => e.index)).toEqual([3, 4, 5, 6])
    const apps = rd.messages.filter(isApp)
    expect(apps).toHaveLength(2)
    for (const m of apps) expect(m.entries.map((e) => e.index)).toEqual([3, 4, 5, 6])
  })

  it("batching and pipelining: appends carry at most maxMsgEntries, at most maxInflightMsgs unacknowledged", () => {
    const h = new Harness(["n1", "n2"], { maxMsgEntries: 2, maxInflightMsgs: 3 })
    h.elect("n1")
    for (let i = 0; i < 10; i++) h.propose("n1", `e${i}`)
    const rd = h.processReady("n1")
    const apps = rd.messages.filter(isApp)
    // Replicate state: three appends of two entries each, then the window is full.
    expect(apps.map((m) => m.entries.map((e) => e.index))).toEqual([
      [3, 4],
      [5, 6],
      [7, 8],
    ])
    h.stabilize()
    expect(h.node("n2").applied.length).toBe(12)
  })

  it("a follower never applies an entry its leader has not committed", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.dropIf = (m) => m.type === "AppResp" // nobody's acknowledgement reaches n1
    h.propose("n1", "x")
    h.stabilize()
    expect(h.rn("n1").raft.log.committed).toBe(2)
    for (const id of ["n2", "n3"]) {
      expect(h.rn(id).raft.log.lastIndex()).toBe(3)
      expect(h.node(id).applied).not.toContain("x")
    }
    h.heal()
    h.tick("n1")
    h.stabilize()
    for (const id of ["n1", "n2", "n3"]) expect(h.node(id).applied.at(-1)).toBe("x")
  })

  it("fast backtracking: a follower with a long divergent tail is repaired in one round trip per term", async () => {
    const h = new Harness(["n1", "n2", "n3"], { jitter: { n3: 0.5 } })
    h.elect("n1") // term 2
    // n1 appends 20 entries that reach nobody, then loses leadership.
    h.isolate("n1")
    for (let i = 0; i < 20; i++) h.propose("n1", `stale${i}`)
    h.stabilize()
    h.crash("n1")
    h.heal()
    h.tickAll(10) // n2 times out first and wins term 3
    h.stabilize()
    expect(h.leader()).toBe("n2")
    for (let i = 0; i < 10; i++) h.propose("n2", `fresh${i}`)
    h.stabilize()
    // n1 comes back (still cut off) and leadership moves to n3 (term 4), whose probe
    // for n1 starts at its last index.
    h.restart("n1")
    h.isolate("n1")
    h.rn("n2").transferLeader("n3")
    h.stabilize()
    expect(h.leader()).toBe("n3")
    h.heal()
    h.lines.length = 0
    h.tick("n3") // heartbeat: n1 learns of the leader, n3 probes it
    h.stabilize()
    const rejections = h.lines.filter((l) => l.includes("n1->n3 AppResp") && l.includes("REJECT"))
    // One rejection skips all of n1's term-2 tail (probing one index at a time would take 11).
    expect(rejections).toHaveLength(1)
    expect(h.node("n1").applied.slice(-2)).toEqual(["fresh9", "<empty 4>"])
    expect(h.rn("n1").raft.log.lastIndex()).toBe(h.rn("n3").raft.log.lastIndex())
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/fast-backtracking.txt")
  })

  it("Figure 8: an entry of an earlier term is not committed by counting replicas", async () => {
    // Leases off: this is about the commit rule, and scripted elections are simpler without them.
    const h = new Harness(five, { maxMsgEntries: 1, checkQuorum: false })
    h.elect("n1") // term 2, Empty at 2
    // (a) n1 appends x at 3 (term 2) and it reaches n2 only.
    h.dropIf = (m) => m.from === "n1" && m.to !== "n2"
    h.propose("n1", "x")
    h.stabilize()
    h.crash("n1")
    h.heal()
    // (b) n5 wins term 3 with n3, n4; its Empty at 3 (term 3) reaches nobody.
    h.isolate("n2")
    h.dropIf = (m) => isApp(m) && m.from === "n5"
    h.elect("n5")
    expect(h.rn("n5").raft.term).toBe(3)
    h.crash("n5")
    h.heal()
    // (c) n1 comes back and wins term 4 (n2, n3, n4 vote; n5 down); it replicates
    // x (term 2) to n3, but its own Empty at 4 (term 4) reaches nobody.
    h.restart("n1")
    // (Appends carrying term-4 entries are dropped wherever they would be accepted.)
    h.dropIf = (m) =>
      isApp(m) &&
      m.from === "n1" &&
      m.entries.some((e) => e.term === 4) &&
      h.rn(m.to).raft.log.matchTerm(m.prevIndex, m.prevTerm)
    h.campaign("n1") // restarted at term 2, n1 first learns of term 3 from the rejections
    h.stabilize()
    h.elect("n1")
    expect(h.rn("n1").raft.term).toBeGreaterThanOrEqual(4)
    h.tick("n1", 3)
    h.stabilize()
    const r1 = h.rn("n1").raft
    // x is on n1, n2, n3 — a majority — but of term 2: not committed.
    const holders = five.filter((id) => h.nodes.get(id)!.rn?.raft.log.entry(3)?.term === 2)
    expect(holders.length).toBeGreaterThanOrEqual(3)
    expect(r1.log.committed).toBe(2)
    // (d) n1 fails; n5 (last entry of term 3) can win, and overwrites x at 3.
    h.crash("n1")
    h.heal()
    h.restart("n5")
    h.campaign("n5") // learns of term 4 from the rejections
    h.stabilize()
    h.elect("n5")
    expect(h.rn("n5").raft.log.entry(3)!.term).toBe(3)
    for (const id of ["n2", "n3", "n4", "n5"]) {
      expect(h.node(id).applied).not.toContain("x")
      expect(h.rn(id).raft.log.entry(3)!.term).toBe(3)
    }
  })

  it("Figure 8, other branch: once the leader's own-term entry is on a majority, the older entry commits with it", () => {
    const h = new Harness(five, { checkQuorum: false })
    h.elect("n1")
    h.dropIf = (m) => m.from === "n1" && m.to !== "n2"
    h.propose("n1", "x")
    h.stabilize()
    h.crash("n1")
    h.heal()
    h.isolate("n2")
    h.dropIf = (m) => isApp(m) && m.from === "n5"
    h.elect("n5")
    h.crash("n5")
    h.heal()
    h.restart("n1")
    h.campaign("n1")
    h.stabilize()
    h.elect("n1")
    h.tick("n1")
    h.stabilize()
    expect(h.rn("n1").raft.log.committed).toBe(4)
    for (const id of ["n1", "n2", "n3", "n4"]) expect(h.node(id).applied).toContain("x")
    // n5 can no longer win: its log (3/3) is behind a majority's (4/4).
    h.crash("n1")
    h.restart("n5")
    h.campaign("n5")
    h.stabilize()
    expect(h.rn("n5").raft.role).not.toBe(Role.Leader)
  })

  it("a stale leader learns the new term from the reply to its append and steps down", () => {
    const h = new Harness(["n1", "n2", "n3"], { jitter: { n3: 0.5 } })
    h.elect("n1")
    h.isolate("n1")
    h.tick("n1", 9) // (kept below its check-quorum round)
    h.tick("n2", 10)
    h.tick("n3", 10) // out of its lease on n1, not yet campaigning
    h.stabilize()
    h.tick("n2", 10)
    h.stabilize()
    expect(h.rn("n2").raft.role).toBe(Role.Leader)
    h.heal()
    expect(h.rn("n1").raft.role).toBe(Role.Leader)
    h.tick("n1") // heartbeat at term 2 → answered at term 3
    h.stabilize()
    expect(h.rn("n1").raft.role).toBe(Role.Follower)
    expect(h.rn("n1").raft.term).toBe(3)
  })

  it("an acknowledgement of entries replaced before they were persisted is withdrawn", () => {
    // n3 accepts 2/2 from the term-2 leader, then, before
    // its next Ready, a term-3 leader replaces index 2. Acknowledging 2 to the
    // term-2 leader after persisting 2/3 would be a lie it could commit on.
    const rn = new RawNode({
      id: "n3",
      electionTick: 10,
      heartbeatTick: 1,
      random: () => 0,
      storage: bootstrapState(["n1", "n2", "n3"]),
      debug: true,
    })
    const entry = (term: number) => ({ term, index: 2, type: "Normal" as const, data: new Uint8Array(0) })
    rn.step({
      type: "App",
      from: "n1",
      to: "n3",
      term: 2,
      prevIndex: 1,
      prevTerm: 1,
      entries: [entry(2)],
      commit: 1,
    })
    rn.step({
      type: "App",
      from: "n2",
      to: "n3",
      term: 3,
      prevIndex: 1,
      prevTerm: 1,
      entries: [entry(3)],
      commit: 1,
    })
    const rd = rn.ready()
    expect(rd.entries.map((e) => `${e.index}/${e.term}`)).toEqual(["2/3"])
    expect(rd.messages).toEqual([
      { type: "AppResp", from: "n3", to: "n2", term: 3, index: 2, reject: false, hintIndex: 0, hintTerm: 0 },
    ])
  })

  it("crash before persisting loses the unpersisted tail, never anything acknowledged", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.propose("n1", "a")
    h.stabilize()
    h.propose("n1", "lost") // never reaches a Ready
    h.crash("n1")
    h.restart("n1")
    expect(h.rn("n1").raft.log.lastIndex()).toBe(3)
    expect(h.node("n1").store.applied).toBe(3)
    h.tick("n2", 10)
    h.stabilize()
    expect(h.node("n1").applied).toContain("a")
    expect(h.node("n2").applied).not.toContain("lost")
  })
})
