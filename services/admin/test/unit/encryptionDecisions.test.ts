// The admin service's pure encryption decisions: the leader's gate and the
// member poll, writer batches against the members, registration verdicts,
// phases and status assembly, retire criteria, propose outcomes, history filters.
import { fullNodeId } from "@ekv/crypto"
import { ApiError, type CapabilityReport, nodeId16 } from "@ekv/wire"
import type { NodeStatusReply, ProposeReply } from "@ekv/wire/consensus-admin-protocol"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { LeaderState, StateRegistryRow } from "../../src/encryption/encryptionState.ts"
import { type HistoryEvent, parseEvent, selectEvents } from "../../src/encryption/eventHistory.ts"
import { type CapabilityAnswer, commonNextKek, leaderGate, memberPoll } from "../../src/encryption/gates.ts"
import { proposalResult } from "../../src/encryption/proposalOutcome.ts"
import { activeKeyError, retireTarget, unmetRetireCriteria } from "../../src/encryption/retireCriteria.ts"
import { assembleStatus, phaseOf } from "../../src/encryption/statusView.ts"
import {
  explicitBatch,
  findWriterTarget,
  memberIdClash,
  registrationVerdict,
  unregisteredMembers,
} from "../../src/encryption/writers.ts"

const NODES = ["n1", "n2", "n3"] as const

const report = (node: string, extra: Partial<CapabilityReport> = {}): CapabilityReport => ({
  node: node as CapabilityReport["node"],
  encryption_capable: true,
  build_sha: "t",
  sidecar_present: false,
  full_node_id: fullNodeId(node),
  local_epoch: 0,
  kek_id: "aaaaaaaaaaaaaaaa",
  next_kek_id: null,
  ...extra,
})
const ok = (node: string, extra: Partial<CapabilityReport> = {}): CapabilityAnswer => ({
  _tag: "Report",
  report: report(node, extra),
})
const silent: CapabilityAnswer = {
  _tag: "NoAnswer",
  error: new ApiError.Unavailable({ message: "no responders" }),
}

const row = (dek: number, node: string, epoch: number, raftIndex?: number): StateRegistryRow => ({
  dek_id: dek as StateRegistryRow["dek_id"],
  node_id16: nodeId16(fullNodeId(node)),
  full_node_id: fullNodeId(node),
  first_seen_local_epoch: epoch,
  last_seen_local_epoch: epoch,
  ...(raftIndex === undefined ? {} : { raft_index: raftIndex }),
})

const state = (over: Partial<LeaderState> = {}): LeaderState => ({
  cluster_id: "",
  leader: "n1" as LeaderState["leader"],
  term: 1,
  applied_index: 10,
  commit_index: 10,
  leader_capable: true,
  storage_envelope_active: false,
  active: { storage: 0, raft: 0 },
  raft_envelope_cutover_index: 0,
  last_encryption_index: 0,
  last_control_index: 0,
  keys: [],
  registry: [],
  members: NODES.map((n) => ({
    node: n as LeaderState["leader"],
    role: "voter" as const,
    full_node_id: fullNodeId(n),
  })),
  ...over,
})

const KEYS: LeaderState["keys"] = [
  { key_id: 10, purpose: "storage", created: "2026-01-01T00:00:00.000Z", retired: false },
  { key_id: 11, purpose: "storage", created: "2026-01-02T00:00:00.000Z", retired: false },
  { key_id: 12, purpose: "raft", created: "2026-01-02T00:00:00.000Z", retired: false },
  { key_id: 9, purpose: "raft", created: "2025-01-02T00:00:00.000Z", retired: true },
]

describe("the leader's gate", () => {
  it("decides EncryptionDisabled, KekNotConfigured, ApplierNotReady in the contract's order", () => {
    const reason = (capable: boolean, a: CapabilityAnswer) => {
      const v = leaderGate("n1", capable, a)
      return v._tag === "Open" ? "Open" : v.reason
    }
    expect(reason(true, ok("n1"))).toBe("Open")
    expect(reason(true, silent)).toBe("KekNotConfigured")
    expect(reason(false, silent)).toBe("KekNotConfigured")
    expect(reason(true, ok("n1", { encryption_capable: false, kek_id: null }))).toBe("EncryptionDisabled")
    // A KEK loaded but the flag off is still disabled.
    expect(reason(false, ok("n1", { encryption_capable: false }))).toBe("EncryptionDisabled")
    expect(reason(true, ok("n1", { kek_id: null }))).toBe("KekNotConfigured")
    expect(reason(false, ok("n1"))).toBe("ApplierNotReady")
  })
})

describe("the member poll", () => {
  it("passes when every member answers capable with its own identity", () => {
    const r = memberPoll(state().members, new Map(NODES.map((n) => [n, ok(n)])))
    expect(r._tag).toBe("Ok")
    if (r._tag === "Ok") expect(r.members.map((m) => m.node)).toEqual([...NODES])
  })

  it("names every failing member, in member order, with a reason", () => {
    const answers = new Map<string, CapabilityAnswer>([
      ["n3", ok("n3", { encryption_capable: false })],
      ["n1", ok("n1", { full_node_id: 42n })],
      ["n2", silent],
    ])
    const r = memberPoll(state().members, answers)
    expect(r._tag).toBe("Failed")
    if (r._tag !== "Failed") return
    expect(r.nodes.map((n) => n.node)).toEqual(["n1", "n2", "n3"])
    expect(r.nodes[0]?.reason).toMatch(/^FullNodeIdMismatch/)
    expect(r.nodes[1]?.reason).toMatch(/^Unreachable/)
    expect(r.nodes[2]?.reason).toBe("NotEncryptionCapable")
  })

  it("a member never asked fails the poll", () => {
    const r = memberPoll(state().members, new Map([["n1", ok("n1")]]))
    expect(r._tag === "Failed" && r.nodes.map((n) => `${n.node}:${n.reason}`)).toEqual([
      "n2:NotPolled",
      "n3:NotPolled",
    ])
  })

  it("rewrap needs one common non-null next KEK", () => {
    const polled = (ids: ReadonlyArray<string | null>) =>
      ids.map((id, i) => ({
        node: `n${i + 1}`,
        role: "voter" as const,
        full_node_id: 1n,
        report: report(`n${i + 1}`, { next_kek_id: id }),
      }))
    expect(commonNextKek(polled(["bbbbbbbbbbbbbbbb", "bbbbbbbbbbbbbbbb"]))).toEqual({
      _tag: "Ok",
      nextKekId: "bbbbbbbbbbbbbbbb",
    })
    for (const ids of [
      ["bbbbbbbbbbbbbbbb", "cccccccccccccccc"],
      ["bbbbbbbbbbbbbbbb", null],
      [null, null],
    ]) {
      const r = commonNextKek(polled(ids))
      expect(r._tag).toBe("Mismatch")
      if (r._tag === "Mismatch") expect(r.error.details?.reason).toBe("KekNextMismatch")
    }
  })
})

describe("writer batches", () => {
  const line = (n: string, e = 0) => ({ full_node_id: fullNodeId(n), local_epoch: e })

  it("an explicit batch must be exactly the members", () => {
    const exact = explicitBatch(state(), [], [line("n3", 4), line("n1"), line("n2")])
    expect(exact._tag === "Ok" && exact.lines.map((l) => [l.node, l.local_epoch])).toEqual([
      ["n3", 4],
      ["n1", 0],
      ["n2", 0],
    ])
    const stranger = explicitBatch(state(), [], [line("n1"), line("n2"), line("n3"), line("n9")])
    expect(stranger._tag === "Error" && stranger.error.details?.reason).toBe("NotAMember")
    const missing = explicitBatch(state(), [], [line("n1"), line("n3")])
    expect(missing._tag === "Error" && missing.error.details).toMatchObject({
      reason: "MemberNotRegistered",
      nodes: ["n2"],
    })
  })

  it("a stranger is reported before a missing member", () => {
    const both = explicitBatch(state(), [], [line("n1"), line("n9")])
    expect(both._tag === "Error" && both.error.details?.reason).toBe("NotAMember")
  })

  it("a pending candidate may be named; a node only pending is not a member", () => {
    expect(findWriterTarget(state(), ["n4"], fullNodeId("n4"))).toEqual({
      node: "n4",
      full_node_id: fullNodeId("n4"),
      pending: true,
    })
    expect(findWriterTarget(state(), [], fullNodeId("n4"))).toBeUndefined()
    expect(findWriterTarget(state(), ["n4"], fullNodeId("n2"))?.pending).toBe(false)
  })

  it("members sharing a node_id16 cannot all be writers", () => {
    expect(memberIdClash(state().members)).toBeUndefined()
    const members = [
      ...state().members,
      {
        node: "x" as LeaderState["leader"],
        role: "learner" as const,
        full_node_id: fullNodeId("n1") + (1n << 16n),
      },
    ]
    expect(memberIdClash(members)?._tag).toBe("NodeIDCollision")
  })

  it("unregistered members under a DEK", () => {
    const s = state({ registry: [row(11, "n1", 1), row(11, "n3", 1), row(12, "n2", 1)] })
    expect(unregisteredMembers(s, 11).map((m) => m.node)).toEqual(["n2"])
  })
})

describe("registration verdicts (SPEC.md §4.4)", () => {
  const rows = [row(11, "n2", 5, 40)]
  const reg = (epoch: number, session?: string) => ({
    dek_id: 11,
    full_node_id: fullNodeId("n2"),
    local_epoch: epoch,
    ...(session === undefined ? {} : { session_id: session }),
  })

  it("covers each case", () => {
    expect(registrationVerdict([], reg(0))._tag).toBe("Inserted")
    expect(registrationVerdict(rows, reg(6))._tag).toBe("Advanced")
    expect(registrationVerdict(rows, reg(5))).toMatchObject({ _tag: "Unchanged", row: { raft_index: 40 } })
    expect(registrationVerdict(rows, reg(5, "0".repeat(32)))._tag).toBe("LeaderDecides")
    const back = registrationVerdict(rows, reg(4))
    expect(back._tag === "Rejected" && back.error._tag).toBe("LocalEpochRollback")
    const other = registrationVerdict(rows, { ...reg(9), full_node_id: fullNodeId("n2") + (7n << 16n) })
    expect(other._tag === "Rejected" && other.error._tag).toBe("NodeIDCollision")
  })

  it("is decided by the row under (dek_id, node_id16) alone", () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
        fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        (registered, asking, last, epoch) => {
          const r: StateRegistryRow = {
            dek_id: 7 as StateRegistryRow["dek_id"],
            node_id16: nodeId16(registered),
            full_node_id: registered,
            first_seen_local_epoch: 0,
            last_seen_local_epoch: last,
          }
          const v = registrationVerdict([r], { dek_id: 7, full_node_id: asking, local_epoch: epoch })
          if (nodeId16(asking) !== nodeId16(registered)) return v._tag === "Inserted"
          if (asking !== registered) return v._tag === "Rejected" && v.error._tag === "NodeIDCollision"
          if (epoch > last) return v._tag === "Advanced"
          if (epoch < last) return v._tag === "Rejected" && v.error._tag === "LocalEpochRollback"
          return v._tag === "Unchanged"
        },
      ),
    )
  })
})

describe("phase and status", () => {
  it("computes the phase from the leader's node and the replicated state", () => {
    expect(phaseOf(state(), false)).toBe("disabled")
    expect(phaseOf(state({ keys: KEYS, storage_envelope_active: true }), false)).toBe("disabled")
    expect(phaseOf(state(), true)).toBe("capable")
    expect(phaseOf(state({ keys: KEYS, active: { storage: 11, raft: 12 } }), true)).toBe("bootstrapped")
    expect(phaseOf(state({ keys: KEYS, storage_envelope_active: true }), true)).toBe("storage-envelope")
    expect(
      phaseOf(state({ keys: KEYS, storage_envelope_active: true, raft_envelope_cutover_index: 30 }), true),
    ).toBe("raft-envelope")
  })

  it("assembles nodes in member order, leaving out nodes that did not answer", () => {
    const ns = (node: string): NodeStatusReply => ({
      node: node as NodeStatusReply["node"],
      role: "learner",
      sidecar_raft_applied_index: 7,
      local_epochs: { "11": 3 },
      versions_by_key_id: { "11": 2 },
      cleartext_versions: 1,
      log_entries_by_key_id: {},
      snapshots_by_key_id: { "11": 1 },
      halted: { index: 9 as never, reason: "KekMismatch" },
    })
    const s = assembleStatus(
      state({ keys: KEYS, active: { storage: 11, raft: 12 }, registry: [row(11, "n1", 1, 3)] }),
      true,
      new Map([
        ["n3", ns("n3")],
        ["n1", ns("n1")],
      ]),
    )
    expect(s.phase).toBe("bootstrapped")
    expect(s.nodes.map((n) => [n.node, n.role])).toEqual([
      ["n1", "voter"],
      ["n3", "voter"],
    ])
    expect(s.nodes[0]).not.toHaveProperty("snapshots_by_key_id")
    expect(s.nodes[0]?.halted).toEqual({ index: 9, reason: "KekMismatch" })
    expect(s.registry[0]).not.toHaveProperty("raft_index")
    expect(s.keys.map((k) => k.key_id)).toEqual([10, 11, 12, 9])
  })
})

describe("retire-dek", () => {
  const s = state({ keys: KEYS, active: { storage: 11, raft: 12 } })

  it("NotFound for unknown or retired keys, ActiveKey for active ones", () => {
    expect(retireTarget(s, 99)).toMatchObject({ _tag: "Error", error: { _tag: "NotFound" } })
    expect(retireTarget(s, 9)).toMatchObject({ _tag: "Error", error: { _tag: "NotFound" } })
    expect(retireTarget(s, 10)._tag).toBe("Ok")
    expect(activeKeyError(s, 11)?.details).toMatchObject({ reason: "ActiveKey", purpose: "storage" })
    expect(activeKeyError(s, 12)?.details).toMatchObject({ reason: "ActiveKey", purpose: "raft" })
    expect(activeKeyError(s, 10)).toBeUndefined()
  })

  it("lists every unmet criterion per node; a silent node is unmet", () => {
    const ns = (over: Partial<NodeStatusReply>): NodeStatusReply => ({
      node: "n1" as NodeStatusReply["node"],
      role: "voter",
      sidecar_raft_applied_index: 0,
      local_epochs: {},
      versions_by_key_id: {},
      cleartext_versions: 0,
      log_entries_by_key_id: {},
      snapshots_by_key_id: {},
      ...over,
    })
    const unmet = unmetRetireCriteria(
      ["n1", "n2", "n3"],
      10,
      new Map<string, NodeStatusReply | ApiError.ApiError>([
        ["n1", ns({ versions_by_key_id: { "10": 3, "11": 9 }, snapshots_by_key_id: { "10": 1 } })],
        ["n2", ns({ log_entries_by_key_id: { "10": 0, "11": 4 } })],
        ["n3", new ApiError.Unavailable({ message: "timeout" })],
      ]),
    )
    expect(unmet).toEqual([
      { node: "n1", criterion: "stored-versions", count: 3 },
      { node: "n1", criterion: "snapshots", count: 1 },
      { node: "n3", criterion: "node-status-unavailable", message: "timeout" },
    ])
    expect(unmetRetireCriteria(["n1"], 10, new Map([["n1", ns({})]]))).toEqual([])
  })
})

describe("propose outcomes", () => {
  const reply = (over: Partial<ProposeReply>): ProposeReply => ({
    index: 30,
    kind: "registration",
    status: "applied",
    key_ids: [],
    ...over,
  })
  it("maps recorded rejections to contract errors", () => {
    expect(proposalResult(reply({}), "NotBootstrapped")._tag).toBe("Applied")
    const code = (c: ProposeReply["code"]) => {
      const r = proposalResult(reply({ status: "rejected", code: c }), "NotBootstrapped")
      return r._tag === "Rejected" ? [r.error._tag, r.error.details?.reason] : undefined
    }
    expect(code("LocalEpochRollback")).toEqual(["LocalEpochRollback", undefined])
    expect(code("NodeIDCollision")).toEqual(["NodeIDCollision", undefined])
    expect(code("AlreadyBootstrapped")).toEqual(["FailedPrecondition", "AlreadyBootstrapped"])
    expect(code("PreconditionFailed")).toEqual(["FailedPrecondition", "NotBootstrapped"])
    expect(code("MalformedEntry")).toEqual(["Internal", undefined])
  })
})

describe("history", () => {
  const enc = (node: string, index: number, seq: number): HistoryEvent => ({
    stream: "encryption",
    seq,
    event: {
      cluster_id: "",
      node: node as never,
      index: index as never,
      kind: "registration",
      key_ids: [],
      outcome: "inserted",
      at: "2026-01-01T00:00:00.000Z",
    },
  })
  const leader: HistoryEvent = {
    stream: "cluster",
    seq: 4,
    event: { cluster_id: "", node: "n2" as never, kind: "leader", term: 3, at: "2026-01-01T00:00:00.000Z" },
  }
  const all = [enc("n1", 5, 1), enc("n2", 5, 2), enc("n1", 7, 3), leader, enc("n1", 9, 5)]

  it("filters by node and index and keeps the most recent", () => {
    expect(selectEvents(all, {}).length).toBe(5)
    expect(selectEvents(all, { node: "n1" }).map((e) => e.seq)).toEqual([1, 3, 5])
    expect(selectEvents(all, { sinceIndex: 7 }).map((e) => e.seq)).toEqual([3, 5])
    expect(selectEvents(all, { node: "n1", limit: 2 }).map((e) => e.seq)).toEqual([3, 5])
    expect(selectEvents(all, { node: "n2" }).map((e) => e.seq)).toEqual([2, 4])
  })

  it("parses each kind by subject and skips what does not decode", () => {
    const data = (o: unknown) => new TextEncoder().encode(JSON.stringify(o))
    const good = {
      cluster_id: "",
      node: "n1",
      index: 3,
      kind: "bootstrap",
      key_ids: [1, 2],
      outcome: "applied",
      at: "2026-01-01T00:00:00.000Z",
    }
    expect(parseEvent("ekv", "ekv.events.encryption.n1", 1, data(good))?.stream).toBe("encryption")
    expect(parseEvent("ekv", "ekv.events.cluster.n1", 1, data(good))).toBeUndefined()
    expect(parseEvent("ekv", "ekv.events.encryption.n1", 1, data({ ...good, extra: 1 }))).toBeUndefined()
    expect(parseEvent("other", "ekv.events.encryption.n1", 1, data(good))).toBeUndefined()
  })
})
