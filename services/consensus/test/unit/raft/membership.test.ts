import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  applyConfChange,
  type ConfChange,
  type Config,
  decodeConfChange,
  emptyConfig,
  encodeConfChange,
} from "../../../src/raft/confChange.ts"
import { Role } from "../../../src/raft/types.ts"
import { bytes, Harness } from "./harness.ts"

const cfg = (voters: string[], learners: string[] = []): Config => ({
  voters: new Set(voters),
  learners: new Set(learners),
})

describe("applyConfChange", () => {
  it("adds a learner, promotes it, removes members", () => {
    let c = cfg(["a", "b"])
    const steps: ConfChange[] = [
      { type: "AddLearner", node: "c" },
      { type: "PromoteLearner", node: "c" },
      { type: "RemoveNode", node: "a" },
    ]
    for (const s of steps) {
      const r = applyConfChange(c, s)
      if (!r.ok) throw new Error(r.error)
      c = r.config
    }
    expect([...c.voters].sort()).toEqual(["b", "c"])
    expect(c.learners.size).toBe(0)
  })

  it("refuses what would break an invariant", () => {
    expect(applyConfChange(cfg(["a"]), { type: "RemoveNode", node: "a" })).toMatchObject({ ok: false })
    expect(applyConfChange(cfg(["a"]), { type: "AddLearner", node: "a" })).toMatchObject({ ok: false })
    expect(applyConfChange(cfg(["a"]), { type: "PromoteLearner", node: "b" })).toMatchObject({ ok: false })
    expect(applyConfChange(cfg(["a"]), { type: "RemoveNode", node: "b" })).toMatchObject({ ok: false })
    expect(applyConfChange(cfg(["a"]), { type: "Bootstrap", voters: ["x"] })).toMatchObject({ ok: false })
    expect(applyConfChange(emptyConfig, { type: "Bootstrap", voters: [] })).toMatchObject({ ok: false })
  })

  it("keeps voters ∩ learners = ∅ and at least one voter, whatever the sequence (property)", () => {
    const ids = ["a", "b", "c", "d", "e"]
    const change = fc.oneof(
      fc.record({ type: fc.constant("AddLearner" as const), node: fc.constantFrom(...ids) }),
      fc.record({ type: fc.constant("PromoteLearner" as const), node: fc.constantFrom(...ids) }),
      fc.record({ type: fc.constant("RemoveNode" as const), node: fc.constantFrom(...ids) }),
    )
    fc.assert(
      fc.property(fc.array(change, { maxLength: 40 }), (changes) => {
        let c = cfg(["a"])
        for (const ch of changes) {
          const r = applyConfChange(c, ch)
          if (r.ok) c = r.config
          expect(c.voters.size).toBeGreaterThanOrEqual(1)
          for (const l of c.learners) expect(c.voters.has(l)).toBe(false)
          expect(decodeConfChange(encodeConfChange(ch))).toEqual(ch)
        }
      }),
    )
  })

  it("treats an undecodable body as nothing", () => {
    expect(decodeConfChange(bytes("{"))).toBeNull()
    expect(decodeConfChange(bytes('{"type":"RemoveNode","node":7}'))).toBeNull()
    expect(decodeConfChange(new Uint8Array([0xff]))).toBeNull()
  })
})

describe("membership changes in a running cluster", () => {
  it("add learner → it catches up without voting → promote → it counts for quorum", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.propose("n1", "before")
    h.stabilize()
    h.addNode("n4")
    h.lines.length = 0
    expect(h.rn("n1").proposeConfChange({ type: "AddLearner", node: "n4" })._tag).toBe("ProposalAccepted")
    h.stabilize()
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/add-learner.txt")
    expect(h.node("n4").applied).toContain("before")
    expect(h.rn("n4").raft.config.learners.has("n4")).toBe(true)
    expect(h.rn("n1").proposeConfChange({ type: "PromoteLearner", node: "n4" })._tag).toBe("ProposalAccepted")
    h.stabilize()
    for (const id of ["n1", "n2", "n3", "n4"]) expect(h.rn(id).raft.config.voters.has("n4")).toBe(true)
    // Four voters: quorum is three, so two down stops commits.
    h.isolate("n3")
    h.cut.add("n1->n4")
    h.propose("n1", "needs-three")
    h.stabilize()
    expect(h.node("n1").applied).not.toContain("needs-three")
    h.heal()
    h.tick("n1")
    h.stabilize()
    expect(h.node("n1").applied).toContain("needs-three")
  })

  it("one change at a time: a second change waits until the first is committed", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.isolate("n1")
    expect(h.rn("n1").proposeConfChange({ type: "AddLearner", node: "n4" })._tag).toBe("ProposalAccepted")
    expect(h.rn("n1").proposeConfChange({ type: "AddLearner", node: "n5" })).toMatchObject({
      reason: "ConfChangePending",
    })
    h.heal()
    h.tick("n1")
    h.stabilize()
    expect(h.rn("n1").proposeConfChange({ type: "AddLearner", node: "n5" })._tag).toBe("ProposalAccepted")
    expect(h.rn("n1").proposeConfChange({ type: "RemoveNode", node: "n9" })).toMatchObject({
      reason: "ConfChangePending",
    })
  })

  it("a new leader accepts no change until its Empty entry is committed; invalid changes are refused", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.dropIf = (m) => m.type === "AppResp" // the Empty entry cannot commit
    h.elect("n1")
    expect(h.rn("n1").raft.log.committed).toBe(1)
    expect(h.rn("n1").proposeConfChange({ type: "AddLearner", node: "n4" })).toMatchObject({
      reason: "ApplyBarrier",
    })
    h.heal()
    h.tick("n1")
    h.stabilize()
    expect(h.rn("n1").proposeConfChange({ type: "RemoveNode", node: "n9" })).toMatchObject({
      reason: "InvalidConfChange",
    })
    expect(h.rn("n1").proposeConfChange({ type: "PromoteLearner", node: "n2" })).toMatchObject({
      reason: "InvalidConfChange",
    })
  })

  it("removing the leader: it steps down once the removal commits and hands over", async () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.lines.length = 0
    expect(h.rn("n1").proposeConfChange({ type: "RemoveNode", node: "n1" })._tag).toBe("ProposalAccepted")
    h.stabilize()
    await expect(h.transcript()).toMatchFileSnapshot("./transcripts/remove-leader.txt")
    expect(h.rn("n1").raft.role).toBe(Role.Follower)
    const l = h.leader()
    expect(["n2", "n3"]).toContain(l)
    expect(h.rn(l!).raft.config.voters.has("n1")).toBe(false)
    // The removed node never campaigns again.
    h.tick("n1", 100)
    h.stabilize()
    expect(h.leader()).toBe(l)
    h.propose(l!, "after")
    h.stabilize()
    expect(h.node(l === "n2" ? "n3" : "n2").applied).toContain("after")
    expect(h.node("n1").applied).not.toContain("after")
  })

  it("never removes the last voter; a two-voter cluster shrinks to one and still commits", () => {
    const h = new Harness(["n1", "n2"])
    h.elect("n1")
    h.rn("n1").proposeConfChange({ type: "RemoveNode", node: "n2" })
    h.stabilize()
    expect([...h.rn("n1").raft.config.voters]).toEqual(["n1"])
    expect(h.rn("n1").proposeConfChange({ type: "RemoveNode", node: "n1" })).toMatchObject({
      reason: "InvalidConfChange",
    })
    h.propose("n1", "alone")
    h.stabilize()
    expect(h.node("n1").applied.at(-1)).toBe("alone")
  })

  it("a restarted node rebuilds its configuration from its log", () => {
    const h = new Harness(["n1", "n2", "n3"])
    h.elect("n1")
    h.addNode("n4")
    h.rn("n1").proposeConfChange({ type: "AddLearner", node: "n4" })
    h.stabilize()
    h.crash("n2")
    h.restart("n2")
    expect([...h.rn("n2").raft.config.learners]).toEqual(["n4"])
  })
})
