// Requests and replies of the admin API, CONTRACT.md §3 (`<p>.admin.encryption.*`
// and `<p>.admin.cluster.*`).
import { Schema } from "effect"
import { ErrorBody } from "./apiError.ts"
import {
  FullNodeId,
  KeyId,
  LocalEpoch,
  MemberRole,
  NodeId,
  NodeId16,
  Purpose,
  RaftIndex,
  SessionId,
} from "./ids.ts"
import { CapabilityReport, ClusterStatus, EncryptionStatus, SidecarStateReport } from "./reports.ts"

/**
 * A request with no fields: `{}`. (`Schema.Struct({})` alone accepts any
 * object, even with fields, so the check names what must not be there.)
 */
export const EmptyRequest = Schema.Struct({}).check(
  Schema.makeFilter((o: object) => {
    const keys = Object.keys(o)
    return keys.length === 0 || `Expected no fields, got unknown field(s) ${keys.join(", ")}`
  }),
)
export type EmptyRequest = typeof EmptyRequest.Type

/** The `error` object of an error reply, as embedded in a fan-out result. */
export const ErrorInfo = ErrorBody.fields.error
export type ErrorInfo = typeof ErrorInfo.Type

// ---- ekv.admin.encryption.status
export const EncryptionStatusRequest = EmptyRequest
export const EncryptionStatusReply = EncryptionStatus

// ---- ekv.admin.encryption.capability
export const CapabilityRequest = Schema.Struct({ node: Schema.optional(NodeId) })
export type CapabilityRequest = typeof CapabilityRequest.Type
export const CapabilityMember = Schema.Struct({
  node: NodeId,
  role: MemberRole,
  report: Schema.optional(CapabilityReport),
  error: Schema.optional(ErrorInfo),
})
export type CapabilityMember = typeof CapabilityMember.Type
/** Fan-out to Voters ∪ Learners (request without `node`). */
export const CapabilityFanOut = Schema.Struct({ members: Schema.Array(CapabilityMember) })
export type CapabilityFanOut = typeof CapabilityFanOut.Type
export const CapabilityReply = Schema.Union([CapabilityReport, CapabilityFanOut])
export type CapabilityReply = typeof CapabilityReply.Type

// ---- ekv.admin.encryption.sidecar-state
export const SidecarStateRequest = Schema.Struct({ caller_full_node_id: Schema.optional(FullNodeId) })
export type SidecarStateRequest = typeof SidecarStateRequest.Type
export const SidecarStateReply = SidecarStateReport

// ---- ekv.admin.encryption.bootstrap
/** One writer of an explicit bootstrap batch. */
export const BootstrapWriterRequest = Schema.Struct({ full_node_id: FullNodeId, local_epoch: LocalEpoch })
export type BootstrapWriterRequest = typeof BootstrapWriterRequest.Type
export const BootstrapExplicit = Schema.Struct({
  writers: Schema.Array(BootstrapWriterRequest).check(Schema.isMinLength(1)),
})
export const BootstrapDiscover = Schema.Struct({ discover: Schema.Literal(true) })
/**
 * Either an explicit batch (exactly Voters ∪ Learners) or `{ discover: true }`.
 * Duplicate / zero ids and node_id16 clashes are checked by `checkWriterIds`.
 */
export const BootstrapRequest = Schema.Union([BootstrapExplicit, BootstrapDiscover])
export type BootstrapRequest = typeof BootstrapRequest.Type
export const BootstrapReplyWriter = Schema.Struct({
  node: NodeId,
  full_node_id: FullNodeId,
  node_id16: NodeId16,
  local_epoch: LocalEpoch,
})
export const BootstrapReply = Schema.Struct({
  index: RaftIndex,
  storage_key_id: KeyId,
  raft_key_id: KeyId,
  writers: Schema.Array(BootstrapReplyWriter),
})
export type BootstrapReply = typeof BootstrapReply.Type

// ---- ekv.admin.encryption.register-writer
export const RegisterWriterRequest = Schema.Struct({
  dek_id: KeyId,
  full_node_id: FullNodeId,
  local_epoch: LocalEpoch,
  session_id: Schema.optional(SessionId),
})
export type RegisterWriterRequest = typeof RegisterWriterRequest.Type
export const RegistrationOutcome = Schema.Literals(["inserted", "advanced", "unchanged"])
export type RegistrationOutcome = typeof RegistrationOutcome.Type
/** `unchanged` proposes nothing and returns the row's raft_index. */
export const RegisterWriterReply = Schema.Struct({ index: RaftIndex, outcome: RegistrationOutcome })
export type RegisterWriterReply = typeof RegisterWriterReply.Type

// ---- ekv.admin.encryption.rotate-dek
export const RotateDekRequest = Schema.Struct({ purpose: Purpose })
export type RotateDekRequest = typeof RotateDekRequest.Type
export const RotateDekReply = Schema.Struct({ index: RaftIndex, key_id: KeyId })
export type RotateDekReply = typeof RotateDekReply.Type

// ---- ekv.admin.encryption.rewrap-deks
export const RewrapDeksRequest = EmptyRequest
export const RewrapDeksReply = Schema.Struct({ index: RaftIndex, key_ids: Schema.Array(KeyId) })
export type RewrapDeksReply = typeof RewrapDeksReply.Type

// ---- ekv.admin.encryption.retire-dek
export const RetireDekRequest = Schema.Struct({ key_id: KeyId })
export type RetireDekRequest = typeof RetireDekRequest.Type
export const RetireDekReply = Schema.Struct({ index: RaftIndex })
export type RetireDekReply = typeof RetireDekReply.Type

// ---- ekv.admin.encryption.enable-storage-envelope
export const EnableStorageEnvelopeRequest = EmptyRequest
/** `bootstrapped`: this call bootstrapped first. */
export const EnableStorageEnvelopeReply = Schema.Struct({ index: RaftIndex, bootstrapped: Schema.Boolean })
export type EnableStorageEnvelopeReply = typeof EnableStorageEnvelopeReply.Type

// ---- ekv.admin.encryption.enable-raft-envelope
export const EnableRaftEnvelopeRequest = EmptyRequest
/** Both fields are the index of the cutover entry. */
export const EnableRaftEnvelopeReply = Schema.Struct({ index: RaftIndex, cutover_index: RaftIndex })
export type EnableRaftEnvelopeReply = typeof EnableRaftEnvelopeReply.Type

// ---- ekv.admin.encryption.resync-sidecar
export const ResyncSidecarRequest = Schema.Struct({ node: NodeId })
export type ResyncSidecarRequest = typeof ResyncSidecarRequest.Type
export const ResyncMode = Schema.Literals(["log-replay", "full-state"])
export type ResyncMode = typeof ResyncMode.Type
export const ResyncSidecarReply = Schema.Struct({
  node: NodeId,
  mode: ResyncMode,
  raft_applied_index: RaftIndex,
})
export type ResyncSidecarReply = typeof ResyncSidecarReply.Type

// ---- ekv.admin.encryption.rewrite
export const MAX_REWRITE_RATE_MIB_S = 100_000
export const RewriteRequest = Schema.Struct({
  rate_mib_s: Schema.optional(
    Schema.Number.check(
      Schema.isFinite(),
      Schema.isGreaterThan(0),
      Schema.isLessThanOrEqualTo(MAX_REWRITE_RATE_MIB_S),
    ),
  ),
})
export type RewriteRequest = typeof RewriteRequest.Type
export const RewriteReply = Schema.Struct({ started: Schema.Array(NodeId) })
export type RewriteReply = typeof RewriteReply.Type

// ---- ekv.admin.cluster.status
export const ClusterStatusRequest = EmptyRequest
export const ClusterStatusReply = ClusterStatus

// ---- ekv.admin.cluster.add-learner | promote | remove
export const ClusterNodeRequest = Schema.Struct({ node: NodeId })
export type ClusterNodeRequest = typeof ClusterNodeRequest.Type
export const ClusterIndexReply = Schema.Struct({ index: RaftIndex })
export type ClusterIndexReply = typeof ClusterIndexReply.Type
export const AddLearnerRequest = ClusterNodeRequest
export const AddLearnerReply = ClusterIndexReply
export const PromoteRequest = ClusterNodeRequest
export const PromoteReply = ClusterIndexReply
export const RemoveRequest = ClusterNodeRequest
export const RemoveReply = ClusterIndexReply

// ---- ekv.admin.cluster.transfer-leader
export const TransferLeaderRequest = ClusterNodeRequest
export const TransferLeaderReply = Schema.Struct({ leader: NodeId })
export type TransferLeaderReply = typeof TransferLeaderReply.Type

// ---- ekv.admin.cluster.snapshot
/** Without `node`: every node. */
export const SnapshotRequest = Schema.Struct({ node: Schema.optional(NodeId) })
export type SnapshotRequest = typeof SnapshotRequest.Type
export const SnapshotReply = Schema.Struct({
  snapshots: Schema.Array(Schema.Struct({ node: NodeId, index: RaftIndex })),
})
export type SnapshotReply = typeof SnapshotReply.Type
