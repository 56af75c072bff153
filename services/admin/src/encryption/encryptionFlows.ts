// The `<p>.admin.encryption.*` operations (SPEC.md §5), each in CONTRACT.md
// §1's order: (request decoded already) → target exists → registry verdicts →
// the leader's gate → state preconditions → member poll (mutators producing a
// 0x04/0x05) → propose through the leader, which gates and pre-validates again
// and replies after apply.
import {
  ApiError,
  type BootstrapReply,
  type BootstrapRequest,
  type CapabilityMember,
  type CapabilityReply,
  type EnableRaftEnvelopeReply,
  type EnableStorageEnvelopeReply,
  type EncryptionStatus,
  type EntryPayload,
  encodeEntry,
  type KeyId,
  type NodeId,
  nodeId16,
  type RaftIndex,
  type RegisterWriterReply,
  type RegisterWriterRequest,
  type ResyncSidecarReply,
  type RetireDekReply,
  type RewrapDeksReply,
  type RewriteReply,
  type RotateDekReply,
  type SidecarStateReport,
  Tag,
} from "@ekv/wire"
import type { NodeStatusReply, ProposeReply } from "@ekv/wire/consensus-admin-protocol"
import { Effect } from "effect"
import type { AdminConfig } from "../config.ts"
import { ConsensusNodes } from "../consensusNodes.ts"
import { EncryptionBus } from "./encryptionBus.ts"
import { isBootstrapped, type LeaderState, memberByNode, unretiredKeys } from "./encryptionState.ts"
import { EventIndex } from "./eventIndex.ts"
import {
  type CapabilityAnswer,
  commonNextKek,
  gateError,
  leaderGate,
  memberPoll,
  type PolledMember,
  pollError,
} from "./gates.ts"
import { PendingCandidates } from "./pendingCandidates.ts"
import { proposalResult } from "./proposalOutcome.ts"
import { activeKeyError, retireCriteriaError, retireTarget, unmetRetireCriteria } from "./retireCriteria.ts"
import { assembleStatus } from "./statusView.ts"
import {
  type BatchLine,
  explicitBatch,
  findWriterTarget,
  memberIdClash,
  memberNotRegistered,
  notAMember,
  registrationVerdict,
  unregisteredMembers,
} from "./writers.ts"

export type Services = ConsensusNodes | EncryptionBus | PendingCandidates | EventIndex
type Op<A> = Effect.Effect<A, ApiError.ApiError, Services>

/** The leader and its applied encryption state; one retry with a fresh leader when Unavailable. */
export interface LeaderContext {
  readonly leader: string
  readonly state: LeaderState
}

export const leaderContext: Effect.Effect<LeaderContext, ApiError.ApiError, ConsensusNodes | EncryptionBus> =
  Effect.gen(function* () {
    const nodes = yield* ConsensusNodes
    const bus = yield* EncryptionBus
    const attempt = Effect.gen(function* () {
      const { leader } = yield* nodes.leader
      const state = yield* bus.state(leader)
      // A follower forwards `state` to its leader: trust the answer's leader.
      return { leader: state.leader, state }
    })
    return yield* attempt.pipe(
      Effect.catchTag("Unavailable", (first) =>
        Effect.logInfo(`asking a fresh leader for encryption state: ${first.message}`).pipe(
          Effect.andThen(nodes.forgetLeader),
          Effect.andThen(attempt),
        ),
      ),
    )
  })

const answerOf = (node: string, timeoutMs?: number): Effect.Effect<CapabilityAnswer, never, EncryptionBus> =>
  Effect.flatMap(Effect.service(EncryptionBus), (bus) =>
    bus.capability(node, timeoutMs).pipe(
      Effect.map((report): CapabilityAnswer => ({ _tag: "Report", report })),
      Effect.catch((error) => Effect.succeed<CapabilityAnswer>({ _tag: "NoAnswer", error })),
    ),
  )

/** The leader's gate (CONTRACT.md §1): FailedPrecondition EncryptionDisabled | KekNotConfigured | ApplierNotReady. */
export const requireLeaderGate = (ctx: LeaderContext, config: AdminConfig) =>
  Effect.gen(function* () {
    const answer = yield* answerOf(ctx.leader, config.statusTimeoutMs)
    const verdict = leaderGate(ctx.leader, ctx.state.leader_capable, answer)
    if (verdict._tag === "Closed") return yield* Effect.fail(gateError(ctx.leader, verdict))
    return verdict.report
  })

/** The member poll: capability of Voters ∪ Learners within one election timeout. */
export const requireMemberPoll = (ctx: LeaderContext, config: AdminConfig) =>
  Effect.gen(function* () {
    const answers = yield* Effect.forEach(
      ctx.state.members,
      (m) => Effect.map(answerOf(m.node, config.electionTimeoutMs), (a) => [m.node, a] as const),
      { concurrency: "unbounded" },
    )
    const poll = memberPoll(ctx.state.members, new Map(answers))
    if (poll._tag === "Failed") return yield* Effect.fail(pollError(poll.nodes))
    return poll.members
  })

const notBootstrapped = () =>
  ApiError.failedPrecondition(
    ApiError.PreconditionReason.NotBootstrapped,
    "the cluster has no DEKs yet (bootstrap first)",
  )

/**
 * Appends one encryption entry through the leader. A proposal that found no
 * responder was not appended and is retried once with a fresh leader; any
 * other failure is reported as is (it may have been appended).
 */
export const propose = (
  ctx: LeaderContext,
  payload: EntryPayload,
  preconditionReason: ApiError.PreconditionReason,
): Op<ProposeReply> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const nodes = yield* ConsensusNodes
    const entry = encodeEntry(payload)
    const reply = yield* bus.propose(ctx.leader, entry).pipe(
      Effect.catchIf(
        (e) => e._tag === "Unavailable" && e.details?.reason === "NoResponders",
        () =>
          nodes.forgetLeader.pipe(
            Effect.andThen(nodes.leader),
            Effect.flatMap(({ leader }) => bus.propose(leader, entry)),
          ),
      ),
    )
    const result = proposalResult(reply, preconditionReason)
    if (result._tag === "Rejected") return yield* Effect.fail(result.error)
    return result.reply
  })

// ---- status

export const status = (config: AdminConfig): Op<EncryptionStatus> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const ctx = yield* leaderContext
    const answer = yield* answerOf(ctx.leader, config.statusTimeoutMs)
    // ApplierNotReady (a leader still opening its session) does not make the cluster `disabled`.
    const verdict = leaderGate(ctx.leader, ctx.state.leader_capable, answer)
    const nodeCapable = verdict._tag === "Open" || verdict.reason === "ApplierNotReady"
    const results = yield* Effect.forEach(
      ctx.state.members,
      (m) =>
        bus.nodeStatus(m.node).pipe(
          Effect.map((r) => [m.node, r] as const),
          Effect.catch((e) =>
            Effect.logWarning(`node-status of ${m.node}: ${e._tag}: ${e.message}`).pipe(Effect.as(undefined)),
          ),
        ),
      { concurrency: "unbounded" },
    )
    const byNode = new Map<string, NodeStatusReply>(results.filter((r) => r !== undefined))
    return assembleStatus(ctx.state, nodeCapable, byNode)
  })

// ---- capability

export const capability = (node: NodeId | undefined, config: AdminConfig): Op<CapabilityReply> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const nodes = yield* ConsensusNodes
    const cluster = yield* nodes.status
    if (node !== undefined) {
      const member = cluster.members.some((m) => m.node === node)
      return yield* bus.capability(node).pipe(
        Effect.catchIf(
          (e) => !member && e._tag === "Unavailable",
          () =>
            Effect.fail(
              new ApiError.NotFound({
                message: `node ${node} is not a member and no keystore answers for it`,
                details: { node },
              }),
            ),
        ),
      )
    }
    const members: ReadonlyArray<CapabilityMember> = yield* Effect.forEach(
      cluster.members,
      (m) =>
        bus.capability(m.node, config.electionTimeoutMs).pipe(
          Effect.map((report): CapabilityMember => ({ node: m.node, role: m.role, report })),
          Effect.catch((e) =>
            Effect.succeed<CapabilityMember>({
              node: m.node,
              role: m.role,
              error: {
                code: e._tag,
                message: e.message,
                ...(e.details === undefined ? {} : { details: e.details }),
              },
            }),
          ),
        ),
      { concurrency: "unbounded" },
    )
    return { members }
  })

// ---- sidecar-state

export const sidecarState = (caller: bigint | undefined): Op<SidecarStateReport> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const ctx = yield* leaderContext
    return yield* bus.sidecarState(ctx.leader, caller)
  })

// ---- bootstrap

const writersOf = (lines: ReadonlyArray<BatchLine>) =>
  lines.map((l) => ({ full_node_id: l.full_node_id, local_epoch: l.local_epoch }))

const replyWriters = (lines: ReadonlyArray<BatchLine>): BootstrapReply["writers"] =>
  lines.map((l) => ({
    node: l.node as NodeId,
    full_node_id: l.full_node_id,
    node_id16: nodeId16(l.full_node_id),
    local_epoch: l.local_epoch,
  }))

const discoveredBatch = (polled: ReadonlyArray<PolledMember>): ReadonlyArray<BatchLine> =>
  polled.map((p) => ({ node: p.node, full_node_id: p.full_node_id, local_epoch: 0 }))

/** Generates both DEKs on the leader's keystore and proposes the 0x04. */
const proposeBootstrap = (ctx: LeaderContext, lines: ReadonlyArray<BatchLine>): Op<BootstrapReply> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const { deks } = yield* bus.generateDek(ctx.leader, ["storage", "raft"])
    const storage = deks.find((d) => d.purpose === "storage")
    const raft = deks.find((d) => d.purpose === "raft")
    if (storage === undefined || raft === undefined)
      return yield* Effect.fail(
        new ApiError.Internal({
          message: `the leader ${ctx.leader}'s generate-dek did not return both DEKs`,
        }),
      )
    const reply = yield* propose(
      ctx,
      {
        tag: Tag.Bootstrap,
        bootstrap: {
          storage: { key_id: storage.key_id as KeyId, wrapped: storage.wrapped },
          raft: { key_id: raft.key_id as KeyId, wrapped: raft.wrapped },
          writers: writersOf(lines),
        },
      },
      ApiError.PreconditionReason.AlreadyBootstrapped,
    )
    return {
      index: reply.index as RaftIndex,
      storage_key_id: storage.key_id as KeyId,
      raft_key_id: raft.key_id as KeyId,
      writers: replyWriters(lines),
    }
  })

const alreadyBootstrapped = () =>
  ApiError.failedPrecondition(ApiError.PreconditionReason.AlreadyBootstrapped, "the cluster already has DEKs")

export const bootstrap = (req: BootstrapRequest, config: AdminConfig): Op<BootstrapReply> =>
  Effect.gen(function* () {
    const pending = yield* (yield* PendingCandidates).list
    const ctx = yield* leaderContext
    let explicit: ReadonlyArray<BatchLine> | undefined
    if ("writers" in req) {
      const batch = explicitBatch(ctx.state, pending, req.writers)
      if (batch._tag === "Error") return yield* Effect.fail(batch.error)
      explicit = batch.lines
    }
    yield* requireLeaderGate(ctx, config)
    if (isBootstrapped(ctx.state)) return yield* Effect.fail(alreadyBootstrapped())
    const polled = yield* requireMemberPoll(ctx, config)
    const lines = explicit ?? discoveredBatch(polled)
    const clash = memberIdClash(ctx.state.members)
    if (clash !== undefined) return yield* Effect.fail(clash)
    return yield* proposeBootstrap(ctx, lines)
  })

// ---- register-writer

export const registerWriter = (req: RegisterWriterRequest, config: AdminConfig): Op<RegisterWriterReply> =>
  Effect.gen(function* () {
    const pending = yield* (yield* PendingCandidates).list
    const ctx = yield* leaderContext
    const key = ctx.state.keys.find((k) => k.key_id === req.dek_id)
    if (key === undefined || key.retired)
      return yield* Effect.fail(
        new ApiError.NotFound({
          message: key === undefined ? `no DEK with key id ${req.dek_id}` : `DEK ${req.dek_id} is retired`,
          details: { key_id: req.dek_id },
        }),
      )
    if (findWriterTarget(ctx.state, pending, req.full_node_id) === undefined)
      return yield* Effect.fail(notAMember([req.full_node_id]))
    const verdict = registrationVerdict(ctx.state.registry, req)
    if (verdict._tag === "Rejected") return yield* Effect.fail(verdict.error)
    yield* requireLeaderGate(ctx, config)
    if (verdict._tag === "Unchanged" && verdict.row.raft_index !== undefined)
      return { index: verdict.row.raft_index as RaftIndex, outcome: "unchanged" as const }
    const reply = yield* propose(
      ctx,
      {
        tag: Tag.Registration,
        registration: {
          dek_id: req.dek_id,
          full_node_id: req.full_node_id,
          local_epoch: req.local_epoch,
          ...(req.session_id === undefined ? {} : { session_id: req.session_id }),
        },
      },
      ApiError.PreconditionReason.NotAMember,
    )
    const outcome = reply.outcome === "applied" || reply.outcome === undefined ? "inserted" : reply.outcome
    return { index: reply.index as RaftIndex, outcome }
  })

// ---- rotate-dek

const everyMemberAtZero = (state: LeaderState) =>
  state.members.map((m) => ({ full_node_id: m.full_node_id, local_epoch: 0 }))

export const rotateDek = (purpose: "storage" | "raft", config: AdminConfig): Op<RotateDekReply> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const ctx = yield* leaderContext
    yield* requireLeaderGate(ctx, config)
    if (!isBootstrapped(ctx.state)) return yield* Effect.fail(notBootstrapped())
    yield* requireMemberPoll(ctx, config)
    const clash = memberIdClash(ctx.state.members)
    if (clash !== undefined) return yield* Effect.fail(clash)
    const { deks } = yield* bus.generateDek(ctx.leader, [purpose])
    const dek = deks.find((d) => d.purpose === purpose)
    if (dek === undefined)
      return yield* Effect.fail(new ApiError.Internal({ message: `generate-dek returned no ${purpose} DEK` }))
    const reply = yield* propose(
      ctx,
      {
        tag: Tag.Control,
        control: {
          kind: "rotate-dek",
          purpose,
          dek: { key_id: dek.key_id as KeyId, wrapped: dek.wrapped },
          writers: everyMemberAtZero(ctx.state),
        },
      },
      ApiError.PreconditionReason.NotBootstrapped,
    )
    return { index: reply.index as RaftIndex, key_id: dek.key_id as KeyId }
  })

// ---- rewrap-deks

export const rewrapDeks = (config: AdminConfig): Op<RewrapDeksReply> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const ctx = yield* leaderContext
    yield* requireLeaderGate(ctx, config)
    if (!isBootstrapped(ctx.state)) return yield* Effect.fail(notBootstrapped())
    const polled = yield* requireMemberPoll(ctx, config)
    const next = commonNextKek(polled)
    if (next._tag === "Mismatch") return yield* Effect.fail(next.error)
    const want = unretiredKeys(ctx.state).map((k) => k.key_id)
    const wraps = yield* bus.rewrapWraps(ctx.leader, next.nextKekId).pipe(
      Effect.catchIf(
        (e) => e._tag === "Unavailable" && e.details?.reason === "NoResponders",
        (e) =>
          Effect.fail(
            new ApiError.Unavailable({
              message: `the leader ${ctx.leader} does not serve rewrap-deks wraps (${e.message})`,
              details: { reason: "RewrapNotServed", leader: ctx.leader },
            }),
          ),
      ),
    )
    const got = wraps.wraps.map((w) => w.key_id)
    if (
      wraps.next_kek_id !== next.nextKekId ||
      got.length !== want.length ||
      want.some((id) => !got.includes(id))
    )
      return yield* Effect.fail(
        new ApiError.Internal({
          message: `the leader's rewrap covered [${got.join(", ")}] under ${wraps.next_kek_id}; expected [${want.join(", ")}] under ${next.nextKekId}`,
        }),
      )
    const reply = yield* propose(
      ctx,
      {
        tag: Tag.Control,
        control: {
          kind: "rewrap-deks",
          next_kek_id: next.nextKekId,
          wraps: wraps.wraps.map((w) => ({ key_id: w.key_id as KeyId, wrapped: w.wrapped })),
        },
      },
      ApiError.PreconditionReason.KekNextMismatch,
    )
    return { index: reply.index as RaftIndex, key_ids: got as unknown as ReadonlyArray<KeyId> }
  })

// ---- retire-dek

export const retireDek = (keyId: number, config: AdminConfig): Op<RetireDekReply> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const ctx = yield* leaderContext
    const target = retireTarget(ctx.state, keyId)
    if (target._tag === "Error") return yield* Effect.fail(target.error)
    yield* requireLeaderGate(ctx, config)
    const active = activeKeyError(ctx.state, keyId)
    if (active !== undefined) return yield* Effect.fail(active)
    const statuses = yield* Effect.forEach(
      ctx.state.members,
      (m) =>
        bus.nodeStatus(m.node).pipe(
          Effect.map((r): NodeStatusReply | ApiError.ApiError => r),
          Effect.catch((e) => Effect.succeed<NodeStatusReply | ApiError.ApiError>(e)),
          Effect.map((r) => [m.node, r] as const),
        ),
      { concurrency: "unbounded" },
    )
    const unmet = unmetRetireCriteria(
      ctx.state.members.map((m) => m.node),
      keyId,
      new Map(statuses),
    )
    if (unmet.length > 0) return yield* Effect.fail(retireCriteriaError(keyId, unmet))
    yield* requireMemberPoll(ctx, config)
    const reply = yield* propose(
      ctx,
      { tag: Tag.Control, control: { kind: "retire-dek", key_id: keyId as KeyId } },
      ApiError.PreconditionReason.RetireCriteriaUnmet,
    )
    return { index: reply.index as RaftIndex }
  })

// ---- enable-storage-envelope / enable-raft-envelope

export const enableStorageEnvelope = (config: AdminConfig): Op<EnableStorageEnvelopeReply> =>
  Effect.gen(function* () {
    let ctx = yield* leaderContext
    yield* requireLeaderGate(ctx, config)
    if (ctx.state.storage_envelope_active) {
      const index = yield* storageEnvelopeIndex(ctx.state)
      return { index, bootstrapped: false }
    }
    let bootstrapped = false
    if (isBootstrapped(ctx.state)) {
      const missing = unregisteredMembers(ctx.state, ctx.state.active.storage)
      if (missing.length > 0)
        return yield* Effect.fail(memberNotRegistered(ctx.state.active.storage, missing))
      yield* requireMemberPoll(ctx, config)
    } else {
      const polled = yield* requireMemberPoll(ctx, config)
      const clash = memberIdClash(ctx.state.members)
      if (clash !== undefined) return yield* Effect.fail(clash)
      yield* proposeBootstrap(ctx, discoveredBatch(polled))
      bootstrapped = true
      ctx = yield* leaderContext
      // The batch registered every member; a member added meanwhile would not be.
      const missing = unregisteredMembers(ctx.state, ctx.state.active.storage)
      if (missing.length > 0)
        return yield* Effect.fail(memberNotRegistered(ctx.state.active.storage, missing))
    }
    const reply = yield* propose(
      ctx,
      { tag: Tag.Control, control: { kind: "enable-storage-envelope" } },
      ApiError.PreconditionReason.NotBootstrapped,
    )
    return { index: reply.index as RaftIndex, bootstrapped }
  })

/** The index of the applied enable-storage-envelope: from the leader's state, else from the events stream. */
const storageEnvelopeIndex = (state: LeaderState): Op<RaftIndex> =>
  Effect.gen(function* () {
    if (state.storage_envelope_index !== undefined && state.storage_envelope_index > 0)
      return state.storage_envelope_index as RaftIndex
    const events = yield* EventIndex
    const found = yield* events.firstApplied(state.cluster_id, "enable-storage-envelope")
    if (found === undefined)
      return yield* Effect.fail(
        new ApiError.Unavailable({
          message: "the storage envelope is active but the index of its entry is not known (no event found)",
          details: { reason: "IndexUnknown" },
        }),
      )
    return found as RaftIndex
  })

export const enableRaftEnvelope = (config: AdminConfig): Op<EnableRaftEnvelopeReply> =>
  Effect.gen(function* () {
    const ctx = yield* leaderContext
    yield* requireLeaderGate(ctx, config)
    const c = ctx.state.raft_envelope_cutover_index
    if (c > 0) return { index: c as RaftIndex, cutover_index: c as RaftIndex }
    if (!isBootstrapped(ctx.state)) return yield* Effect.fail(notBootstrapped())
    if (!ctx.state.storage_envelope_active)
      return yield* Effect.fail(
        ApiError.failedPrecondition(
          ApiError.PreconditionReason.StorageEnvelopeNotActive,
          "enable the storage envelope before the raft envelope",
        ),
      )
    const missing = unregisteredMembers(ctx.state, ctx.state.active.raft)
    if (missing.length > 0) return yield* Effect.fail(memberNotRegistered(ctx.state.active.raft, missing))
    yield* requireMemberPoll(ctx, config)
    const reply = yield* propose(
      ctx,
      { tag: Tag.Control, control: { kind: "enable-raft-envelope" } },
      ApiError.PreconditionReason.StorageEnvelopeNotActive,
    )
    return { index: reply.index as RaftIndex, cutover_index: reply.index as RaftIndex }
  })

// ---- rewrite

export const rewrite = (rateMibS: number | undefined, config: AdminConfig): Op<RewriteReply> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const ctx = yield* leaderContext
    yield* requireLeaderGate(ctx, config)
    if (!ctx.state.storage_envelope_active)
      return yield* Effect.fail(
        ApiError.failedPrecondition(
          ApiError.PreconditionReason.StorageEnvelopeNotActive,
          "rewrite re-seals under the active storage DEK; enable the storage envelope first",
        ),
      )
    const results = yield* Effect.forEach(
      ctx.state.members,
      (m) =>
        bus.rewrite(m.node, rateMibS, ctx.state.commit_index).pipe(
          Effect.result,
          Effect.map((r) => ({ node: m.node, r })),
        ),
      { concurrency: "unbounded" },
    )
    const started = results.flatMap(({ node, r }) =>
      r._tag === "Success" && r.success.started ? [node as NodeId] : [],
    )
    const failed = results.flatMap(({ node, r }) =>
      r._tag === "Failure" ? [{ node, error: r.failure }] : [],
    )
    if (failed.length > 0)
      return yield* Effect.fail(
        new ApiError.Unavailable({
          message: `rewrite did not start on ${failed.map((f) => `${f.node} (${f.error._tag}: ${f.error.message})`).join(", ")}`,
          details: {
            reason: "PartialFanOut",
            nodes: failed.map((f) => ({ node: f.node, code: f.error._tag, message: f.error.message })),
            started,
          },
        }),
      )
    return { started }
  })

// ---- resync-sidecar

export const resyncSidecar = (node: NodeId, config: AdminConfig): Op<ResyncSidecarReply> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const ctx = yield* leaderContext
    if (memberByNode(ctx.state, node) === undefined)
      return yield* Effect.fail(
        new ApiError.NotFound({
          message: `node ${node} is not a member of the cluster`,
          details: { node, members: ctx.state.members.map((m) => m.node) },
        }),
      )
    yield* requireLeaderGate(ctx, config)
    const r = yield* bus.resync(node, ctx.leader)
    return { node: r.node, mode: r.mode, raft_applied_index: r.raft_applied_index as RaftIndex }
  })
