// A follower whose durable log went backwards (data dir wiped, or restored from
// an old copy) is caught up by the leader, and a late stale rejection neither
// undoes progress for long nor loops (progress.ts maybeDecrTo).
import { describe, expect, it } from "vitest"
import { Progress, ProgressState } from "../../../src/raft/progress.ts"
import { emptyState } from "../../../src/raft/rawNode.ts"
import type { Message } from "../../../src/raft/types.ts"
import { Harness, type Store, takeSnapshot, toStore } from "./harness.ts"

const copyStore = (s: Store): Store => ({
  hardState: { ...s.hardState },
  snapshot: s.snapshot,
  entries: [...s.entries],
  applied: s.applied,
})

const sameLog = (h: Harness, a: string, b: string): void => {
  const la = h.rn(a).raft.log
  const lb = h.rn(b).raft.log
  expect(lb.lastIndex()).toBe(la.lastIndex())
  expect(lb.lastTerm()).toBe(la.lastTerm())
  expect(lb.committed).toBe(la.committed)
}

describe("a follower whose log went backwards", () => {
  it("wiped: an idle leader notices on its heartbeat and re-sends the whole log", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    for (let i = 0; i < 4; i++) h.propose("n1", `e${i}`)
    h.stabilize()
    expect(h.rn("n1").raft.progress.get("n3")!.match).toBe(6)
    h.crash("n3")
    h.node("n3").store = toStore(emptyState())
    h.node("n3").applied = []
    h.restart("n3")
    h.lines.length = 0
    h.tick("n1") // a heartbeat, nothing to append
    h.stabilize()
    sameLog(h, "n1", "n3")
    expect(h.node("n3").applied.slice(1)).toEqual(["<empty 2>", "e0", "e1", "e2", "e3"])
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/wiped-follower.txt")
  })

  it("wiped behind the leader's compaction: gets a snapshot", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    for (let i = 0; i < 4; i++) h.propose("n1", `e${i}`)
    h.stabilize()
    takeSnapshot(h, "n1")
    h.crash("n3")
    h.node("n3").store = toStore(emptyState())
    h.node("n3").applied = []
    h.restart("n3")
    h.propose("n1", "after")
    h.stabilize()
    sameLog(h, "n1", "n3")
    expect(h.node("n3").applied).toEqual(["<snapshot 6>", "after"])
  })

  it("restored from an old copy: the leader probes back to the copy's end and re-sends", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.propose("n1", "old")
    h.stabilize()
    const copy = copyStore(h.node("n3").store)
    for (let i = 0; i < 5; i++) h.propose("n1", `new${i}`)
    h.stabilize()
    h.crash("n3")
    h.node("n3").store = copy
    h.restart("n3")
    h.lines.length = 0
    h.propose("n1", "next")
    h.stabilize()
    sameLog(h, "n1", "n3")
    expect(h.node("n3").applied.slice(-6)).toEqual(["new0", "new1", "new2", "new3", "new4", "next"])
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/stale-restore.txt")
  })

  it("restored from a copy holding an old uncommitted tail: the tail is not counted as replicated", () => {
    // Five voters; n5's copy holds x at 3 (term 2) that never committed and was overwritten.
    const five = ["n1", "n2", "n3", "n4", "n5"]
    const h = new Harness(five, { checkQuorum: false })
    h.elect("n1") // term 2
    h.dropIf = (m) => m.type === "App" && m.from === "n1" && m.to !== "n5"
    h.propose("n1", "x")
    h.stabilize()
    const copy = copyStore(h.node("n5").store)
    expect(copy.entries.at(-1)!.term).toBe(2)
    h.crash("n1")
    h.heal()
    h.elect("n2") // term 3: overwrites x on n5
    for (let i = 0; i < 3; i++) h.propose("n2", `y${i}`)
    h.stabilize()
    h.crash("n5")
    h.node("n5").store = copy
    h.restart("n5")
    h.propose("n2", "z")
    h.stabilize()
    sameLog(h, "n2", "n5")
    expect(h.node("n5").applied.slice(-4)).toEqual(["y0", "y1", "y2", "z"])
    expect(h.rn("n5").raft.log.entry(3)!.term).toBe(3)
  })

  it("a late stale rejection costs one probe round trip and re-sends nothing", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    for (let i = 0; i < 8; i++) h.propose("n1", `e${i}`)
    h.stabilize()
    const pr = h.rn("n1").raft.progress.get("n2")!
    expect(pr.match).toBe(10)
    expect(pr.state).toBe(ProgressState.Replicate)
    const term = h.rn("n1").raft.term
    // A rejection n2 sent long ago (prevIndex 5, its log ended at 3 then), delivered now.
    const stale: Message = {
      type: "AppResp",
      from: "n2",
      to: "n1",
      term,
      index: 5,
      reject: true,
      hintIndex: 3,
      hintTerm: term,
    }
    h.lines.length = 0
    h.rn("n1").step(stale)
    h.stabilize()
    const apps = h.lines.filter((l) => l.includes("n1->n2 App "))
    expect(apps.length).toBeGreaterThan(0)
    for (const a of apps) expect(a).toBe("  n1->n2 App term=2 prev=10/2 commit=10 entries=[]")
    expect(pr.state).toBe(ProgressState.Replicate)
    expect(pr.match).toBe(10)
    // Delivered again while n1 probes at match: believed once, costs one resend, then settles.
    pr.becomeProbe()
    h.rn("n1").step({ ...stale, index: 10 })
    h.stabilize()
    expect(pr.state).toBe(ProgressState.Replicate)
    expect(pr.match).toBe(10)
    sameLog(h, "n1", "n2")
  })
})

describe("Progress.maybeDecrTo with a hint below match", () => {
  const replicating = (match: number): Progress => {
    const p = new Progress(match + 1, false, 4, 0)
    p.maybeUpdate(match)
    p.becomeReplicate()
    return p
  }

  it("Replicate: a rejection at or below match with a hint ≥ match is stale", () => {
    const p = replicating(10)
    expect(p.maybeDecrTo(8, 10)).toBe(false)
    expect(p.maybeDecrTo(10, 12)).toBe(false)
  })

  it("Replicate: a hint below match asks for a probe at match, without lowering match", () => {
    const p = replicating(10)
    expect(p.maybeDecrTo(10, 3)).toBe(true)
    expect(p.match).toBe(10)
    expect(p.next).toBe(11)
  })

  it("Probe: the rejection of the probe in flight with a hint below match resets match and probes at hint + 1", () => {
    const p = replicating(10)
    p.becomeProbe()
    expect(p.maybeDecrTo(10, 3)).toBe(true)
    expect(p.match).toBe(0)
    expect(p.next).toBe(4)
    expect(p.probeSent).toBe(false)
  })

  it("Probe: a rejection of another index is stale whatever its hint", () => {
    const p = replicating(10)
    p.becomeProbe()
    expect(p.maybeDecrTo(7, 3)).toBe(false)
    expect(p.match).toBe(10)
    expect(p.next).toBe(11)
  })
})
