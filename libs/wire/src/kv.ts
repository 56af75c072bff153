// The key-value API of CONTRACT.md §2: requests, replies and their limits.
import { Schema } from "effect"
import { RaftIndex } from "./ids.ts"

export const MAX_KEY_BYTES = 4096
export const MAX_VALUE_BYTES = 1024 * 1024
export const MAX_BATCH_OPS = 1000
export const MAX_BATCH_VALUE_BYTES = 2 * 1024 * 1024
export const MAX_SCAN_LIMIT = 1000
export const DEFAULT_SCAN_LIMIT = 100
/** Keys starting with this are internal (`!encryption|...`). */
export const RESERVED_KEY_PREFIX = "!"

/** UTF-8 length of a well-formed string, without encoding it. */
export const utf8Length = (s: string): number => {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4
      i++
    } else n += 3
  }
  return n
}

// Lone surrogates have no UTF-8 form; a key must be exactly its UTF-8 bytes.
const isWellFormed = Schema.makeFilter(
  (s: string) => s.isWellFormed() || "Expected well-formed Unicode (no lone surrogates)",
)
const maxBytes = (max: number) =>
  Schema.makeFilter((s: string) => utf8Length(s) <= max || `Expected at most ${max} UTF-8 bytes`)

/** A user key: 1..4096 UTF-8 bytes, not starting with `!`. */
export const Key = Schema.String.check(
  Schema.isMinLength(1),
  isWellFormed,
  maxBytes(MAX_KEY_BYTES),
  Schema.makeFilter(
    (s: string) => !s.startsWith(RESERVED_KEY_PREFIX) || "Expected a key not starting with '!' (reserved)",
  ),
)

/** A scan bound (`prefix`, `after`): any well-formed string of at most 4096 UTF-8 bytes. */
export const KeyBound = Schema.String.check(isWellFormed, maxBytes(MAX_KEY_BYTES))

/** A value on the JSON wire: standard base64, 0..1 MiB decoded. */
export const Value = Schema.Uint8ArrayFromBase64.check(Schema.isMaxLength(MAX_VALUE_BYTES))

export const Consistency = Schema.Literals(["linearizable", "serializable"])
export type Consistency = typeof Consistency.Type

export const KvPutRequest = Schema.Struct({ key: Key, value: Value })
export type KvPutRequest = typeof KvPutRequest.Type
export const KvPutReply = Schema.Struct({ index: RaftIndex })
export type KvPutReply = typeof KvPutReply.Type

/** `consistency` defaults to linearizable when absent. */
export const KvGetRequest = Schema.Struct({ key: Key, consistency: Schema.optional(Consistency) })
export type KvGetRequest = typeof KvGetRequest.Type
export const KvGetReply = Schema.Struct({
  found: Schema.Boolean,
  value: Schema.optional(Value),
  version: Schema.optional(RaftIndex),
})
export type KvGetReply = typeof KvGetReply.Type

export const KvDeleteRequest = Schema.Struct({ key: Key })
export type KvDeleteRequest = typeof KvDeleteRequest.Type
export const KvDeleteReply = Schema.Struct({ index: RaftIndex, deleted: Schema.Boolean })
export type KvDeleteReply = typeof KvDeleteReply.Type

export const KvBatchPut = Schema.Struct({ op: Schema.Literal("put"), key: Key, value: Value })
export const KvBatchDelete = Schema.Struct({ op: Schema.Literal("delete"), key: Key })
export const KvBatchOp = Schema.Union([KvBatchPut, KvBatchDelete])
export type KvBatchOp = typeof KvBatchOp.Type

/** Sum of the put values' decoded lengths. */
export const batchValueBytes = (ops: ReadonlyArray<{ readonly op: string; readonly value?: Uint8Array }>) => {
  let total = 0
  for (const o of ops) if (o.value !== undefined) total += o.value.length
  return total
}

export const KvBatchRequest = Schema.Struct({
  ops: Schema.Array(KvBatchOp).check(
    Schema.isMinLength(1),
    Schema.isMaxLength(MAX_BATCH_OPS),
    Schema.makeFilter(
      (ops: ReadonlyArray<KvBatchOp>) =>
        batchValueBytes(ops) <= MAX_BATCH_VALUE_BYTES ||
        `Expected the batch's values to total at most ${MAX_BATCH_VALUE_BYTES} bytes`,
    ),
  ),
})
export type KvBatchRequest = typeof KvBatchRequest.Type
export const KvBatchReply = Schema.Struct({ index: RaftIndex })
export type KvBatchReply = typeof KvBatchReply.Type

export const ScanLimit = Schema.Number.check(
  Schema.isInt(),
  Schema.isBetween({ minimum: 1, maximum: MAX_SCAN_LIMIT }),
)

/**
 * `limit` defaults to 100 and `consistency` to linearizable when absent.
 * A `prefix` starting with `!` could only match reserved keys and is refused.
 */
export const KvScanRequest = Schema.Struct({
  prefix: Schema.optional(
    KeyBound.check(
      Schema.makeFilter(
        (s: string) =>
          !s.startsWith(RESERVED_KEY_PREFIX) || "Expected a prefix not starting with '!' (reserved)",
      ),
    ),
  ),
  after: Schema.optional(KeyBound),
  limit: Schema.optional(ScanLimit),
  consistency: Schema.optional(Consistency),
})
export type KvScanRequest = typeof KvScanRequest.Type

export const KvScanItem = Schema.Struct({ key: Key, value: Value, version: RaftIndex })
export type KvScanItem = typeof KvScanItem.Type
export const KvScanReply = Schema.Struct({ items: Schema.Array(KvScanItem), more: Schema.Boolean })
export type KvScanReply = typeof KvScanReply.Type
