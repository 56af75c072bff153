// Identifier schemas shared by every boundary (CONTRACT.md §1, §3, §7).
import { Schema } from "effect"

/** `[a-z0-9-]{1,64}` (CONTRACT.md §1). */
export const NodeId = Schema.String.check(Schema.isPattern(/^[a-z0-9-]{1,64}$/)).pipe(Schema.brand("NodeId"))
export type NodeId = typeof NodeId.Type

/** A DEK's key id: uint32, never 0 (CONTRACT.md §7). */
export const KeyId = Schema.Number.check(
  Schema.isInt(),
  Schema.isBetween({ minimum: 1, maximum: 0xffffffff }),
).pipe(Schema.brand("KeyId"))
export type KeyId = typeof KeyId.Type

/** A Raft log index (0 = none). */
export const RaftIndex = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)).pipe(
  Schema.brand("RaftIndex"),
)
export type RaftIndex = typeof RaftIndex.Type

export const MAX_LOCAL_EPOCH = 0xffff

/**
 * A local_epoch as a plain number. Range (≤ 0xFFFF) is checked separately by
 * the request decoder so it can answer `LocalEpochOutOfRange`, not
 * `InvalidArgument` (CONTRACT.md §1 order of checks).
 */
export const LocalEpochNumber = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))
export const LocalEpoch = LocalEpochNumber.check(Schema.isLessThanOrEqualTo(MAX_LOCAL_EPOCH))

/** 128 random bits as 32 lowercase hex characters. */
export const SessionId = Schema.String.check(Schema.isPattern(/^[0-9a-f]{32}$/))
export const ClusterId = SessionId

export const Purpose = Schema.Literals(["storage", "raft"])
export type Purpose = typeof Purpose.Type
