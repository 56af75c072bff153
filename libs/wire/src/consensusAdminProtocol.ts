// The consensus service's internal encryption subjects, called by the admin
// service (and by consensus nodes among themselves):
//   <p>.internal.<n>.admin.encryption.<op>   (op below)
//   <p>.internal.<n>.admin.log.<op>          (entries | state, for resync-sidecar)
// JSON, strict (unknown fields rejected), bytes as base64; errors are the
// CONTRACT.md §1 error replies. "Leader" ops received by a follower are
// forwarded once to its leader (header `Ekv-Forwarded: 1`); "node" ops are
// answered by the node addressed.
import { Schema } from "effect"
import { RejectionCodeSchema } from "./codes.ts"
import { EncryptionEventKind } from "./events.ts"
import { ClusterIdOrEmpty, FullNodeId, KekId, KeyIdString, LocalEpoch, MemberRole, NodeId } from "./ids.ts"
import { HaltedInfo, RegistryRow, RewriteProgress } from "./reports.ts"

const Int = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))
const KeyIdNum = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 0xffffffff }))
const KeyIdOrZeroNum = Schema.Number.check(
  Schema.isInt(),
  Schema.isBetween({ minimum: 0, maximum: 0xffffffff }),
)
const Purpose = Schema.Literals(["storage", "raft"])
const Bytes = Schema.Uint8ArrayFromBase64
const Empty = Schema.Struct({})

export const EncryptionOp = {
  /** leader: append one encryption entry (0x03–0x05) after the gate and pre-validation. */
  propose: "propose",
  /** leader: new KEK-wrapped DEKs from the leader's keystore. */
  generateDek: "generate-dek",
  /** leader: every unretired DEK wrapped under the next KEK by the leader's keystore (SPEC.md §4.4). */
  rewrapDeks: "rewrap-deks",
  /** leader: the applied encryption state, as the leader sees it. */
  state: "state",
  /** leader: per-DEK epoch floors for a node (SPEC.md §6). */
  floors: "floors",
  /** leader: its keystore's SidecarStateReport (CONTRACT.md §3 sidecar-state). */
  sidecarState: "sidecar-state",
  /** node: this node's encryption figures for EncryptionStatus.nodes. */
  nodeStatus: "node-status",
  /** node: start the background re-seal of this node's stored versions (SPEC.md §2.4). */
  rewrite: "rewrite",
} as const
export type EncryptionOp = (typeof EncryptionOp)[keyof typeof EncryptionOp]

export const LogOp = { entries: "entries", state: "state" } as const

/**
 * `propose`. The leader, whatever the source (SPEC.md §2.2, §5):
 * 1. gate: its own keystore is capable — else FailedPrecondition
 *    (EncryptionDisabled | KekNotConfigured | ApplierNotReady), and VerifyLeader
 *    (a quorum check) — else Unavailable;
 * 2. pre-validates `entry` against its fully applied state: a registration
 *    verdict → LocalEpochRollback / NodeIDCollision (409); a bootstrap when DEKs
 *    exist → FailedPrecondition AlreadyBootstrapped; a control entry whose
 *    preconditions are false → FailedPrecondition with the matching reason
 *    (NotBootstrapped, StorageEnvelopeNotActive, ActiveKey, KekNextMismatch, ...);
 *    an undecodable entry → InvalidArgument;
 * 3. keeps at most one 0x03–0x05 entry in flight (another in flight → Unavailable,
 *    retryable), and for enable-raft-envelope raises the proposal barrier (SPEC.md §2.5);
 * 4. appends and replies once the entry is committed and applied on the leader.
 * A failed check appends nothing.
 */
export const ProposeRequest = Schema.Struct({
  /** An encoded 0x03, 0x04 or 0x05 payload (wire's encodeEntry). */
  entry: Bytes,
})
export const ProposeReply = Schema.Struct({
  index: Int,
  kind: EncryptionEventKind,
  /** What the leader's apply recorded (the same on every replica). */
  status: Schema.Literals(["applied", "rejected"]),
  outcome: Schema.optional(Schema.Literals(["inserted", "advanced", "unchanged", "applied"])),
  code: Schema.optional(RejectionCodeSchema),
  reason: Schema.optional(Schema.String),
  key_ids: Schema.Array(KeyIdNum),
})
export type ProposeReply = typeof ProposeReply.Type

export const GenerateDekRequest = Schema.Struct({
  purposes: Schema.Array(Purpose).check(Schema.isMinLength(1), Schema.isMaxLength(2)),
})
export const GenerateDekReply = Schema.Struct({
  deks: Schema.Array(Schema.Struct({ purpose: Purpose, key_id: KeyIdNum, wrapped: Bytes })),
})

/**
 * `rewrap-deks`: the leader's keystore unwraps every unretired DEK with its
 * current KEK and wraps it under its next KEK `next_kek_id`, returning only
 * the new wraps for the admin's 0x05 rewrap-deks entry. The keystore's
 * FailedPrecondition passes through (keystoreProtocol.ts RewrapRequest).
 */
export const RewrapDeksRequest = Schema.Struct({ next_kek_id: KekId })
export const RewrapDeksReply = Schema.Struct({
  next_kek_id: KekId,
  wraps: Schema.Array(Schema.Struct({ key_id: KeyIdNum, wrapped: Bytes })),
})
export type RewrapDeksReply = typeof RewrapDeksReply.Type

/** A registry row with the index of the entry that last wrote it (register-writer's `unchanged`). */
export const StateRegistryRow = Schema.Struct({
  ...RegistryRow.fields,
  raft_index: Schema.optional(Int),
})

/** A member as the leader's applied configuration has it. */
export const StateMember = Schema.Struct({ node: NodeId, role: MemberRole, full_node_id: FullNodeId })

/** `state`: replicated encryption state from the leader's applied state machine and keystore. */
export const StateRequest = Empty
export const StateReply = Schema.Struct({
  cluster_id: ClusterIdOrEmpty,
  leader: NodeId,
  term: Int,
  applied_index: Int,
  commit_index: Int,
  /** Whether the leader's node is encryption-capable (flag AND KEK AND applier). */
  leader_capable: Schema.Boolean,
  storage_envelope_active: Schema.Boolean,
  active: Schema.Struct({ storage: KeyIdOrZeroNum, raft: KeyIdOrZeroNum }),
  raft_envelope_cutover_index: Int,
  /** Index of the last applied 0x03–0x05 entry, and of the last 0x04/0x05 entry. */
  last_encryption_index: Int,
  last_control_index: Int,
  /** An appended but not yet applied 0x03–0x05 entry, if any. */
  pending_encryption_index: Schema.optional(Int),
  keys: Schema.Array(
    Schema.Struct({
      key_id: KeyIdNum,
      purpose: Purpose,
      created: Schema.String,
      retired: Schema.Boolean,
    }),
  ),
  registry: Schema.Array(StateRegistryRow),
  /** Index at which enable-storage-envelope applied (0 or absent: never / not recorded). */
  storage_envelope_index: Schema.optional(Int),
  members: Schema.Array(StateMember),
})
export type StateReply = typeof StateReply.Type

/**
 * `floors`: for `full_node_id`, per DEK, the highest epoch registered for it
 * anywhere in the leader's log — applied registry rows and registrations not yet
 * applied alike (SPEC.md §6) — and the leader's last index when taken.
 */
export const FloorsRequest = Schema.Struct({ full_node_id: FullNodeId })
export const FloorsReply = Schema.Struct({
  floors: Schema.Record(KeyIdString, LocalEpoch),
  as_of_index: Int,
})

export const NodeStatusRequest = Empty
export const NodeStatusReply = Schema.Struct({
  node: NodeId,
  role: MemberRole,
  sidecar_raft_applied_index: Int,
  local_epochs: Schema.Record(KeyIdString, LocalEpoch),
  versions_by_key_id: Schema.Record(KeyIdString, Int),
  cleartext_versions: Int,
  log_entries_by_key_id: Schema.Record(KeyIdString, Int),
  /** Snapshots this node keeps that hold versions sealed under each key id. */
  snapshots_by_key_id: Schema.Record(KeyIdString, Int),
  rewrite: Schema.optional(RewriteProgress),
  halted: Schema.optional(HaltedInfo),
})
export type NodeStatusReply = typeof NodeStatusReply.Type

export const RewriteRequest = Schema.Struct({
  rate_mib_s: Schema.optional(Schema.Number),
  /**
   * The leader's commit index when the operator asked: the node applies at least
   * this far before it looks for versions to re-seal, so a rotation committed
   * before the request is one it re-seals onto.
   */
  as_of_index: Schema.optional(Int),
})
export const RewriteReply = Schema.Struct({ started: Schema.Boolean })

// `log.entries` / `log.state` (resync-sidecar, SPEC.md §5) use LogEntriesRequest/Reply and
// LogStateRequest/Reply of keystoreProtocol.ts: the keystore is their caller.
