// The decoded shapes of the state-machine entry payloads (SPEC.md §2.1). The
// binary codec (entryCodec.ts) turns bytes into these and back; every decode
// is validated against these schemas.
import { Schema } from "effect"
import { KekId, KeyId, LocalEpoch, Purpose, SessionId } from "./ids.ts"
import { batchValueBytes, Key, MAX_BATCH_OPS, MAX_BATCH_VALUE_BYTES, MAX_VALUE_BYTES } from "./kv.ts"

export const Tag = {
  KvOp: 0x00,
  KvBatch: 0x01,
  ClusterMeta: 0x02,
  Registration: 0x03,
  Bootstrap: 0x04,
  Control: 0x05,
  RaftEnvelope: 0x06,
} as const
export type Tag = (typeof Tag)[keyof typeof Tag]

/** uint64 held as a bigint (full_node_id). */
export const Uint64 = Schema.BigInt.check(
  Schema.isBetweenBigInt({ minimum: 0n, maximum: 0xffffffffffffffffn }),
)

export const WrappedDek = Schema.Uint8Array.check(Schema.isMinLength(61), Schema.isMaxLength(61))

/** Bytes of a value in a log entry: 0..1 MiB (CONTRACT.md §2). */
export const EntryValue = Schema.Uint8Array.check(Schema.isMaxLength(MAX_VALUE_BYTES))

// Keys and values obey the KV API limits here too, so a payload that bypassed
// the API is rejected identically on every replica (MalformedEntry).
export const KvPut = Schema.Struct({
  op: Schema.Literal("put"),
  key: Key,
  value: EntryValue,
})
export const KvDelete = Schema.Struct({ op: Schema.Literal("delete"), key: Key })
export const KvOp = Schema.Union([KvPut, KvDelete])
export type KvOp = typeof KvOp.Type

/** The ops of one 0x01 batch: 1..1000, values ≤ 2 MiB in total (CONTRACT.md §2). */
export const KvBatchOps = Schema.Array(KvOp).check(
  Schema.isMinLength(1),
  Schema.isMaxLength(MAX_BATCH_OPS),
  Schema.makeFilter(
    (ops: ReadonlyArray<KvOp>) =>
      batchValueBytes(ops) <= MAX_BATCH_VALUE_BYTES ||
      `Expected the batch's values to total at most ${MAX_BATCH_VALUE_BYTES} bytes`,
  ),
)

/** Smallest raft envelope: 0x01 ‖ flag ‖ key_id (4) ‖ nonce (12) ‖ tag (16) (CONTRACT.md §7). */
export const MIN_ENVELOPE_BYTES = 34
export const RaftEnvelopeBytes = Schema.Uint8Array.check(Schema.isMinLength(MIN_ENVELOPE_BYTES))

/** One writer line of a bootstrap or rotation batch. */
export const BatchWriter = Schema.Struct({ full_node_id: Uint64, local_epoch: LocalEpoch })
export type BatchWriter = typeof BatchWriter.Type

export const Registration = Schema.Struct({
  dek_id: KeyId,
  full_node_id: Uint64,
  local_epoch: LocalEpoch,
  session_id: Schema.optional(SessionId),
})
export type Registration = typeof Registration.Type

export const NewDek = Schema.Struct({ key_id: KeyId, wrapped: WrappedDek })
export type NewDek = typeof NewDek.Type

export const Bootstrap = Schema.Struct({
  storage: NewDek,
  raft: NewDek,
  writers: Schema.Array(BatchWriter),
})
export type Bootstrap = typeof Bootstrap.Type

export const RotateDek = Schema.Struct({
  kind: Schema.Literal("rotate-dek"),
  purpose: Purpose,
  dek: NewDek,
  writers: Schema.Array(BatchWriter),
})
export const RewrapDeks = Schema.Struct({
  kind: Schema.Literal("rewrap-deks"),
  /** kek_id (16 hex) of the KEK the new wraps are under. */
  next_kek_id: KekId,
  wraps: Schema.Array(NewDek),
})
export const RetireDek = Schema.Struct({ kind: Schema.Literal("retire-dek"), key_id: KeyId })
export const EnableStorageEnvelope = Schema.Struct({ kind: Schema.Literal("enable-storage-envelope") })
export const EnableRaftEnvelope = Schema.Struct({ kind: Schema.Literal("enable-raft-envelope") })
export const Control = Schema.Union([
  RotateDek,
  RewrapDeks,
  RetireDek,
  EnableStorageEnvelope,
  EnableRaftEnvelope,
])
export type Control = typeof Control.Type
export type ControlKind = Control["kind"]

export const KvOpPayload = Schema.Struct({ tag: Schema.Literal(Tag.KvOp), op: KvOp })
export const KvBatchPayload = Schema.Struct({ tag: Schema.Literal(Tag.KvBatch), ops: KvBatchOps })
export const ClusterMetaPayload = Schema.Struct({
  tag: Schema.Literal(Tag.ClusterMeta),
  cluster_id: SessionId,
})
export const RegistrationPayload = Schema.Struct({
  tag: Schema.Literal(Tag.Registration),
  registration: Registration,
})
export const BootstrapPayload = Schema.Struct({ tag: Schema.Literal(Tag.Bootstrap), bootstrap: Bootstrap })
export const ControlPayload = Schema.Struct({ tag: Schema.Literal(Tag.Control), control: Control })
export const RaftEnvelopePayload = Schema.Struct({
  tag: Schema.Literal(Tag.RaftEnvelope),
  envelope: RaftEnvelopeBytes,
})

/** A decoded state-machine payload, discriminated by its first byte. */
export const EntryPayload = Schema.Union([
  KvOpPayload,
  KvBatchPayload,
  ClusterMetaPayload,
  RegistrationPayload,
  BootstrapPayload,
  ControlPayload,
  RaftEnvelopePayload,
])
export type EntryPayload = typeof EntryPayload.Type

/** The encryption entries (0x03–0x05) that the FSM dispatches to its keystore (SPEC.md §2.3). */
export type EncryptionPayload = Extract<EntryPayload, { tag: 0x03 | 0x04 | 0x05 }>
