// The hot path of the key-value API (CONTRACT §2): puts, gets and deletes are
// most of the traffic, and the schema decoder costs more per request than
// the rest of the request's work on the node. These functions accept exactly
// the common, valid shapes and return `undefined` for anything else, which
// then goes through the schema (so every error reply stays the schema's own).
// They must never accept what the schema rejects, nor produce other bytes
// than its encoder: `kvFastCodec.test.ts` checks both against the schemas.
import { Buffer } from "node:buffer"
import { MAX_KEY_BYTES, MAX_VALUE_BYTES, RESERVED_KEY_PREFIX, utf8Length } from "./kv.ts"

/** Longest base64 text of a value within MAX_VALUE_BYTES. */
const MAX_VALUE_BASE64 = Math.ceil(MAX_VALUE_BYTES / 3) * 4

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype

/** Exactly the keys named (each present), no others. */
const hasOnlyKeys = (
  o: Record<string, unknown>,
  required: readonly string[],
  optional: readonly string[],
) => {
  let n = 0
  for (const k in o) {
    if (!Object.hasOwn(o, k)) return false
    if (required.includes(k) || optional.includes(k)) n++
    else return false
  }
  for (const k of required) if (!Object.hasOwn(o, k)) return false
  return n >= required.length
}

const isKey = (v: unknown): v is string =>
  typeof v === "string" &&
  v.length > 0 &&
  v.length <= MAX_KEY_BYTES &&
  !v.startsWith(RESERVED_KEY_PREFIX) &&
  v.isWellFormed() &&
  utf8Length(v) <= MAX_KEY_BYTES

/**
 * The bytes of a value in canonical standard base64 (padded, zero pad bits):
 * Node's decoder is lenient, so the text must be exactly what encoding the
 * bytes gives back — two native calls, cheaper than a regular expression.
 */
const decodedValue = (v: unknown): Uint8Array | undefined => {
  if (typeof v !== "string" || v.length > MAX_VALUE_BASE64) return undefined
  const bytes = Buffer.from(v, "base64")
  if (bytes.length > MAX_VALUE_BYTES || bytes.toString("base64") !== v) return undefined
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length)
}

const isConsistency = (v: unknown): v is "linearizable" | "serializable" =>
  v === "linearizable" || v === "serializable"

export const fastPutRequest = (json: unknown): { key: string; value: Uint8Array } | undefined => {
  if (!isPlainObject(json) || !hasOnlyKeys(json, ["key", "value"], []) || !isKey(json.key)) return undefined
  const value = decodedValue(json.value)
  return value === undefined ? undefined : { key: json.key, value }
}

export const fastGetRequest = (
  json: unknown,
): { key: string; consistency?: "linearizable" | "serializable" } | undefined => {
  if (!isPlainObject(json) || !hasOnlyKeys(json, ["key"], ["consistency"]) || !isKey(json.key))
    return undefined
  if (json.consistency === undefined)
    return Object.hasOwn(json, "consistency") ? undefined : { key: json.key }
  return isConsistency(json.consistency) ? { key: json.key, consistency: json.consistency } : undefined
}

export const fastDeleteRequest = (json: unknown): { key: string } | undefined =>
  isPlainObject(json) && hasOnlyKeys(json, ["key"], []) && isKey(json.key) ? { key: json.key } : undefined

const isIndex = (n: unknown): n is number => typeof n === "number" && Number.isSafeInteger(n) && n >= 0

/** `{"index":N}` (put and batch replies); `undefined` when `v` is not that shape. */
export const fastIndexReply = (v: { readonly index: number }): string | undefined =>
  isIndex(v.index) && hasOnlyKeys(v as Record<string, unknown>, ["index"], [])
    ? `{"index":${v.index}}`
    : undefined

/** The get reply's JSON; `undefined` when `v` is not one of its two common shapes. */
export const fastGetReply = (v: {
  readonly found: boolean
  readonly value?: Uint8Array
  readonly version?: number
}): string | undefined => {
  const o = v as Record<string, unknown>
  if (v.found === false) return hasOnlyKeys(o, ["found"], []) ? `{"found":false}` : undefined
  if (v.found !== true || !(v.value instanceof Uint8Array) || !isIndex(v.version)) return undefined
  if (!hasOnlyKeys(o, ["found", "value", "version"], [])) return undefined
  const b64 = Buffer.from(v.value.buffer, v.value.byteOffset, v.value.byteLength).toString("base64")
  return `{"found":true,"value":"${b64}","version":${v.version}}`
}
