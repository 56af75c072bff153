// The JetStream events of CONTRACT.md §5 and their de-duplication ids.
import { Schema } from "effect"
import { EventCodeSchema, RejectionCodeSchema } from "./codes.ts"
import { ClusterIdOrEmpty, Count, KeyId, NodeId, RaftIndex, Timestamp } from "./ids.ts"

export const EncryptionEventKind = Schema.Literals([
  "registration",
  "bootstrap",
  "rotate-dek",
  "rewrap-deks",
  "retire-dek",
  "enable-storage-envelope",
  "enable-raft-envelope",
])
export type EncryptionEventKind = typeof EncryptionEventKind.Type

export const EncryptionEventOutcome = Schema.Literals([
  "inserted",
  "advanced",
  "unchanged",
  "applied",
  "rejected",
])
export type EncryptionEventOutcome = typeof EncryptionEventOutcome.Type

/** `<p>.events.encryption.<node>`: one per applied encryption entry (0x03–0x05). */
export const EncryptionEvent = Schema.Struct({
  cluster_id: ClusterIdOrEmpty,
  node: NodeId,
  index: RaftIndex,
  kind: EncryptionEventKind,
  key_ids: Schema.Array(KeyId),
  outcome: EncryptionEventOutcome,
  /** The rejection code when `outcome` is "rejected". */
  code: Schema.optional(RejectionCodeSchema),
  at: Timestamp,
})
export type EncryptionEvent = typeof EncryptionEvent.Type

export const ClusterEventKind = Schema.Literals(["leader", "halted", "resumed", "rejected", "refused-start"])
export type ClusterEventKind = typeof ClusterEventKind.Type

/** `<p>.events.cluster.<node>`. */
export const ClusterEvent = Schema.Struct({
  cluster_id: ClusterIdOrEmpty,
  node: NodeId,
  kind: ClusterEventKind,
  term: Schema.optional(Count),
  index: Schema.optional(RaftIndex),
  /** Halt code (halted), rejection code (rejected) or refused-start code. */
  code: Schema.optional(EventCodeSchema),
  reason: Schema.optional(Schema.String),
  at: Timestamp,
})
export type ClusterEvent = typeof ClusterEvent.Type

/** `Nats-Msg-Id` of an encryption event: `<cluster_id>:<node>:<raft_index>`. */
export const encryptionEventMsgId = (clusterId: string, node: string, index: number): string =>
  `${clusterId}:${node}:${index}`

/** `Nats-Msg-Id` of a cluster event: `<cluster_id>:<node>:<kind>:<index or term>`. */
export const clusterEventMsgId = (
  clusterId: string,
  node: string,
  kind: ClusterEventKind,
  indexOrTerm: number,
): string => `${clusterId}:${node}:${kind}:${indexOrTerm}`
