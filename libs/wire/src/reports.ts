// The named report shapes of CONTRACT.md §3–§4: what a keystore says about
// itself, what the leader's sidecar holds, and the status views.
import { Schema } from "effect"
import { HaltCodeSchema } from "./codes.ts"
import {
  ClusterIdOrEmpty,
  Count,
  FullNodeId,
  KekId,
  KeyId,
  KeyIdOrZero,
  KeyIdString,
  LocalEpoch,
  MemberRole,
  NodeId,
  NodeId16,
  Purpose,
  RaftIndex,
  Timestamp,
} from "./ids.ts"

/** A node that stopped applying at `index` (SPEC.md §2.2). */
export const HaltedInfo = Schema.Struct({ index: RaftIndex, reason: HaltCodeSchema })
export type HaltedInfo = typeof HaltedInfo.Type

export const CapabilityReport = Schema.Struct({
  node: NodeId,
  /** flag on AND KEK loaded AND sidecar path usable AND applier ready (SPEC.md §4.5). */
  encryption_capable: Schema.Boolean,
  build_sha: Schema.String,
  sidecar_present: Schema.Boolean,
  /** 0 when not capable. */
  full_node_id: FullNodeId,
  /** 0 when not capable; else the current storage-DEK epoch. */
  local_epoch: LocalEpoch,
  kek_id: Schema.NullOr(KekId),
  next_kek_id: Schema.NullOr(KekId),
})
export type CapabilityReport = typeof CapabilityReport.Type

export const SidecarStateReport = Schema.Struct({
  /** Every unretired DEK, KEK-wrapped, base64. */
  wrapped_deks_by_id: Schema.Record(KeyIdString, Schema.Uint8ArrayFromBase64),
  active_storage_id: KeyIdOrZero,
  active_raft_id: KeyIdOrZero,
  storage_envelope_active: Schema.Boolean,
  raft_envelope_cutover_index: RaftIndex,
  latest_applied_index: RaftIndex,
  /** dek_id → last_seen_local_epoch of the caller's registry rows. */
  writer_registry_for_caller: Schema.Record(KeyIdString, LocalEpoch),
})
export type SidecarStateReport = typeof SidecarStateReport.Type

export const EncryptionPhase = Schema.Literals([
  "disabled",
  "capable",
  "bootstrapped",
  "storage-envelope",
  "raft-envelope",
])
export type EncryptionPhase = typeof EncryptionPhase.Type

export const EncryptionStatusKey = Schema.Struct({
  key_id: KeyId,
  purpose: Purpose,
  created: Timestamp,
  retired: Schema.Boolean,
})

export const RewriteProgress = Schema.Struct({
  done: Schema.Boolean,
  /** Fraction done, 0..1. */
  progress: Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 1 })),
  /** Why the rewrite stopped before it was done (then `done` is false). */
  error: Schema.optional(Schema.String),
})

export const EncryptionStatusNode = Schema.Struct({
  node: NodeId,
  role: MemberRole,
  sidecar_raft_applied_index: RaftIndex,
  local_epochs: Schema.Record(KeyIdString, LocalEpoch),
  versions_by_key_id: Schema.Record(KeyIdString, Count),
  cleartext_versions: Count,
  log_entries_by_key_id: Schema.Record(KeyIdString, Count),
  rewrite: Schema.optional(RewriteProgress),
  halted: Schema.optional(HaltedInfo),
})

export const RegistryRow = Schema.Struct({
  dek_id: KeyId,
  node_id16: NodeId16,
  full_node_id: FullNodeId,
  first_seen_local_epoch: LocalEpoch,
  last_seen_local_epoch: LocalEpoch,
})
export type RegistryRow = typeof RegistryRow.Type

export const EncryptionStatus = Schema.Struct({
  phase: EncryptionPhase,
  /** 0 = no active key of that purpose. */
  active: Schema.Struct({ storage: KeyIdOrZero, raft: KeyIdOrZero }),
  keys: Schema.Array(EncryptionStatusKey),
  nodes: Schema.Array(EncryptionStatusNode),
  registry: Schema.Array(RegistryRow),
})
export type EncryptionStatus = typeof EncryptionStatus.Type

export const ClusterMember = Schema.Struct({
  node: NodeId,
  role: MemberRole,
  applied_index: RaftIndex,
  match_index: Schema.optional(RaftIndex),
  reachable: Schema.Boolean,
  halted: Schema.optional(HaltedInfo),
})
export type ClusterMember = typeof ClusterMember.Type

export const ClusterStatus = Schema.Struct({
  /** Random 128-bit hex; "" while the answering node does not know it yet. */
  cluster_id: ClusterIdOrEmpty,
  leader: Schema.NullOr(NodeId),
  term: Count,
  commit_index: RaftIndex,
  members: Schema.Array(ClusterMember),
})
export type ClusterStatus = typeof ClusterStatus.Type
