// What the applier records per applied encryption entry (SPEC.md §4.4:
// "stored per index"), so a replay returns the same verdict with no effect.
// It never holds key material: a replay re-seals from the sidecar if needed.
import { EncryptionEventKind, EncryptionEventOutcome, RejectionCodeSchema } from "@ekv/wire"
import { Schema } from "effect"

const Int = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))

/** A DEK handed over with the entry's outcome, without its bytes. */
export const HandoverLine = Schema.Struct({
  key_id: Int,
  purpose: Schema.Literals(["storage", "raft"]),
  local_epoch: Int,
  /**
   * true: this node may seal at once (its batch line registered the epoch and
   * the entry came after the session's floors, SPEC.md §6); false: consensus
   * must get a 0x03 for this epoch committed first.
   */
  registered: Schema.Boolean,
})
export type HandoverLine = typeof HandoverLine.Type

export const RecordedOutcome = Schema.Struct({
  index: Int,
  kind: EncryptionEventKind,
  outcome: EncryptionEventOutcome,
  code: Schema.optional(RejectionCodeSchema),
  reason: Schema.optional(Schema.String),
  key_ids: Schema.Array(Int),
  /** The writer session open when the entry was applied, if any. */
  session_id: Schema.optional(Schema.String),
  handover: Schema.optional(Schema.Array(HandoverLine)),
  /** DEKs a session could not take because their epoch would pass 0xFFFF. */
  exhausted_key_ids: Schema.optional(Schema.Array(Int)),
})
export type RecordedOutcome = typeof RecordedOutcome.Type

/** The writer session a keystore serves (SPEC.md §4.3), persisted so a restart can still seal dispatch replies. */
export const SessionRecord = Schema.Struct({
  session_id: Schema.String,
  /** Raw X25519 public key, base64. */
  public_key: Schema.String,
  /** dek_id → highest epoch registered for this node anywhere in the leader's log. */
  floors: Schema.Record(Schema.String, Int),
  /** Last index of the leader's log when the floors were taken (SPEC.md §6 "appended after"). */
  floors_as_of_index: Int,
})
export type SessionRecord = typeof SessionRecord.Type
