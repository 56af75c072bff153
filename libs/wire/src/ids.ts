// Identifier schemas shared by every boundary (CONTRACT.md §1, §3, §7).
import { Schema, SchemaTransformation } from "effect"

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

/** A key id or 0 for "none" (e.g. `active.storage` before bootstrap). */
export const KeyIdOrZero = Schema.Number.check(
  Schema.isInt(),
  Schema.isBetween({ minimum: 0, maximum: 0xffffffff }),
)

/** A key id as a JSON object key (decimal, no leading zeros, ≥ 1). */
export const KeyIdString = Schema.String.check(
  Schema.isPattern(/^[1-9][0-9]{0,9}$/),
  Schema.makeFilter((s: string) => Number(s) <= 0xffffffff || "Expected a key id ≤ 4294967295"),
)

const UINT64_MAX = 0xffffffffffffffffn

/**
 * `full_node_id` on the JSON wire: a canonical decimal uint64 string (no sign,
 * no leading zeros, ≤ 2^64−1) decoded to a bigint (CONTRACT.md §3: JSON
 * numbers lose precision above 2^53).
 */
export const FullNodeId = Schema.String.check(
  Schema.isPattern(/^(0|[1-9][0-9]{0,19})$/, {
    message: "Expected full_node_id as a decimal uint64 string",
  }),
  // BigInt() throws on non-digits: leave those to the pattern's message.
  Schema.makeFilter(
    (s: string) =>
      !/^[0-9]{1,20}$/.test(s) || BigInt(s) <= UINT64_MAX || "Expected full_node_id ≤ 18446744073709551615",
  ),
).pipe(
  Schema.decodeTo(
    Schema.BigInt.check(Schema.isBetweenBigInt({ minimum: 0n, maximum: UINT64_MAX })),
    SchemaTransformation.transform({
      decode: (s: string) => BigInt(s),
      encode: (b: bigint) => b.toString(10),
    }),
  ),
)
export type FullNodeId = typeof FullNodeId.Type

/** `node_id16` = the low 16 bits of `full_node_id` (CONTRACT.md §7). */
export const nodeId16 = (fullNodeId: bigint): number => Number(fullNodeId & 0xffffn)

export const NodeId16 = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 0xffff }))

/** ISO-8601 UTC timestamp as `Date.prototype.toISOString` writes it. */
export const Timestamp = Schema.String.check(
  Schema.isPattern(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/, {
    message: "Expected an ISO-8601 UTC timestamp",
  }),
)

/** `cluster_id`, or "" when the sender does not know it yet (CONTRACT.md §5). */
export const ClusterIdOrEmpty = Schema.Union([ClusterId, Schema.Literal("")])

/** A count (versions, entries): a non-negative safe integer. */
export const Count = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))

/** A KEK's id: hex of the first 8 bytes of HMAC-SHA256(KEK, "ekv/kek-id") (SPEC.md §4.1). */
export const KekId = Schema.String.check(Schema.isPattern(/^[0-9a-f]{16}$/))

export const MemberRole = Schema.Literals(["voter", "learner"])
export type MemberRole = typeof MemberRole.Type
