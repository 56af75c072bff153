// The keystore's internal request/reply shapes on `<p>.internal.<node>.keystore.*`
// (JSON, strict; bytes as base64). Only this node's consensus may call them
// (CONTRACT.md §9), except `resync`. Node-local failures of dispatch, session,
// restore and generate-dek reply `Halted` with `details: { reason: <halt code>, index? }`.
import { Schema } from "effect"
import { RejectionCodeSchema } from "./codes.ts"
import { EncryptionEventKind } from "./events.ts"
import { ClusterId, FullNodeId, KekId, KeyIdString, LocalEpoch, NodeId, SessionId } from "./ids.ts"

const Int = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))
const KeyIdNum = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 1, maximum: 0xffffffff }))
const Bytes = Schema.Uint8ArrayFromBase64
const PublicKey = Schema.Uint8ArrayFromBase64.check(Schema.isMinLength(32), Schema.isMaxLength(32))
const Purpose = Schema.Literals(["storage", "raft"])
const Epoch = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 0xffff }))

/** The encryption state a snapshot carries (SPEC.md §4.6); JSON-safe. */
export const EncryptionStateExport = Schema.Struct({
  /** Last 0x04/0x05 index reflected (the sidecar's raft_applied_index). */
  raft_applied_index: Int,
  /** Last 0x03 index reflected. */
  last_registry_index: Int,
  storage_envelope_active: Schema.Boolean,
  raft_envelope_cutover_index: Int,
  active: Schema.Struct({ storage: Int, raft: Int }),
  keys: Schema.Array(
    Schema.Struct({
      key_id: KeyIdNum,
      purpose: Schema.Literals(["storage", "raft"]),
      /** base64 of the KEK wrap; "" when retired. */
      wrapped: Schema.String,
      created: Schema.String,
      retired: Schema.Boolean,
    }),
  ),
  writers: Schema.Array(
    Schema.Struct({
      dek_id: KeyIdNum,
      node_id16: Epoch,
      full_node_id: Schema.String.check(Schema.isPattern(/^(0|[1-9][0-9]{0,19})$/)),
      first_seen_local_epoch: Epoch,
      last_seen_local_epoch: Epoch,
      last_session_id: Schema.NullOr(Schema.String),
      raft_index: Int,
    }),
  ),
})
export type EncryptionStateExport = typeof EncryptionStateExport.Type

/** `session`: open a writer session (SPEC.md §4.3). */
export const SessionRequest = Schema.Struct({
  session_id: SessionId,
  /** Ephemeral X25519 public key, 32 raw bytes. */
  public_key: PublicKey,
  /** dek_id → highest epoch registered for this node in the leader's log (SPEC.md §6). */
  floors: Schema.Record(KeyIdString, LocalEpoch),
  /** The leader's last log index when the floors were taken. */
  floors_as_of_index: Int,
})
export type SessionRequest = typeof SessionRequest.Type

export const SessionReply = Schema.Struct({
  /** sealHandover of (key_id, purpose, dek, local_epoch) for every DEK handed over. */
  sealed: Bytes,
  key_ids: Schema.Array(KeyIdNum),
  /** Unretired DEKs left out because their epoch would pass 0xFFFF. */
  exhausted_key_ids: Schema.Array(KeyIdNum),
})
export type SessionReply = typeof SessionReply.Type

/** `dispatch`: apply one encryption entry (SPEC.md §2.3). */
export const DispatchRequest = Schema.Struct({
  index: Int,
  prev_encryption_index: Int,
  /** The entry's payload bytes as in the log (tag 0x03, 0x04 or 0x05 first). */
  entry: Bytes,
  session: Schema.optional(Schema.Struct({ session_id: SessionId, public_key: PublicKey })),
  /** The cluster's id once the FSM knows it; events carry it (CONTRACT.md §5). */
  cluster_id: Schema.optional(ClusterId),
})
export type DispatchRequest = typeof DispatchRequest.Type

export const DispatchReply = Schema.Union([
  Schema.Struct({
    status: Schema.Literal("applied"),
    index: Int,
    kind: EncryptionEventKind,
    outcome: Schema.Literals(["inserted", "advanced", "unchanged", "applied"]),
    key_ids: Schema.Array(KeyIdNum),
    replay: Schema.Boolean,
    handover: Schema.optional(
      Schema.Struct({
        sealed: Bytes,
        key_ids: Schema.Array(KeyIdNum),
        /** Seal under these only after a 0x03 of their epoch commits (SPEC.md §6). */
        unregistered_key_ids: Schema.Array(KeyIdNum),
      }),
    ),
    exhausted_key_ids: Schema.Array(KeyIdNum),
  }),
  Schema.Struct({
    status: Schema.Literal("rejected"),
    index: Int,
    kind: EncryptionEventKind,
    key_ids: Schema.Array(KeyIdNum),
    code: RejectionCodeSchema,
    reason: Schema.String,
    replay: Schema.Boolean,
  }),
])
export type DispatchReply = typeof DispatchReply.Type

/** `liveness`. */
export const LivenessRequest = Schema.Struct({})
export const LivenessReply = Schema.Struct({
  ready: Schema.Boolean,
  encryption_capable: Schema.Boolean,
  /** Highest encryption entry index this keystore reflects. */
  applied_index: Int,
  /** The sidecar's last 0x04/0x05 index (consensus: SidecarBehind/AheadOfRaftLog, SPEC.md §7). */
  raft_applied_index: Int,
  /** The sidecar's c (consensus: EnvelopeCutoverDivergence). */
  raft_envelope_cutover_index: Int,
  /** Active DEKs whose local epoch is below this node's registry row (consensus: LocalEpochRollback). */
  epoch_below_registry_key_ids: Schema.Array(KeyIdNum),
})

/** `export`: the encryption state for a snapshot (SPEC.md §4.6). */
export const ExportRequest = Schema.Struct({})
export const ExportReply = EncryptionStateExport

/** `restore`: install a snapshot's encryption state. */
export const RestoreRequest = EncryptionStateExport
export const RestoreReply = Schema.Struct({ applied_index: Int })

/** `generate-dek`: new wrapped DEKs for the leader's proposal. */
export const GenerateDekRequest = Schema.Struct({
  purposes: Schema.Array(Purpose).check(Schema.isMinLength(1), Schema.isMaxLength(2)),
})
export const GenerateDekReply = Schema.Struct({
  deks: Schema.Array(Schema.Struct({ purpose: Purpose, key_id: KeyIdNum, wrapped: Bytes })),
})

/**
 * `rewrap`: every unretired DEK unwrapped with the current KEK and wrapped
 * under the loaded next KEK (EKV_KEK_NEXT_FILE), which must be `next_kek_id`;
 * only the new wraps leave the keystore, for the leader's 0x05 rewrap-deks
 * entry (SPEC.md §4.4, §5). Refusals are FailedPrecondition: `KekNextMismatch`
 * when no next KEK is loaded or it is another (details: `next_kek_id`,
 * `loaded_next_kek_id` or null), `KekNotConfigured` without a current KEK,
 * `NotBootstrapped` without DEKs. A current KEK that fails to unwrap → Halted.
 */
export const RewrapRequest = Schema.Struct({ next_kek_id: KekId })
export const RewrapReply = Schema.Struct({
  next_kek_id: KekId,
  wraps: Schema.Array(Schema.Struct({ key_id: KeyIdNum, wrapped: Bytes })),
})
export type RewrapReply = typeof RewrapReply.Type

/** `sidecar-state`: this keystore's SidecarStateReport (CONTRACT.md §3). */
export const SidecarStateRequest = Schema.Struct({ caller_full_node_id: Schema.optional(FullNodeId) })

/** `resync` (from the admin service, SPEC.md §5): the leader to read from. */
export const ResyncRequest = Schema.Struct({ leader: NodeId })
export const ResyncReply = Schema.Struct({
  node: NodeId,
  mode: Schema.Literals(["log-replay", "full-state"]),
  raft_applied_index: Int,
})

/**
 * What resync reads from the leader's consensus (proposed shapes for
 * `<p>.internal.<leader>.admin.log.entries` / `.state`): committed encryption
 * entries after an index, or — once compacted past — its keystore's export.
 */
export const LogEntriesRequest = Schema.Struct({ after: Int })
export const LogEntriesReply = Schema.Struct({
  compacted: Schema.Boolean,
  entries: Schema.Array(Schema.Struct({ index: Int, prev_encryption_index: Int, entry: Bytes })),
})
export const LogStateRequest = Schema.Struct({})
export const LogStateReply = EncryptionStateExport
