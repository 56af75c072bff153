// The LevelDB key of one MVCC version (SPEC §2.4). This byte format is stable:
// a storage envelope's AAD is bound to these exact bytes (CONTRACT §7), so a
// change here makes every sealed value unreadable.
//
//   versionKey(k, i) = 0x01 ‖ escape(utf8(k)) ‖ 0x00 0x01 ‖ BE u64 (2^64 − 1 − i)
//
//   escape: every 0x00 byte of the key becomes 0x00 0xFF; no other byte changes.
//
// Why this shape:
// - 0x01 is the version key space; system records live under 0x00
//   (keySpace.ts), so the two never collide and versions sort after them.
// - escape + the 0x00 0x01 terminator keep the byte order of user keys
//   (CONTRACT §2 scan order: ascending UTF-8 bytes), including a key that is a
//   prefix of another ("a" < "a\0" < "a\x01"), and make every version of one
//   user key one contiguous range starting with versionPrefix(k).
// - the inverted big-endian index puts the newest version first, so the newest
//   version ≤ i is the first key ≥ versionKey(k, i): one seek.
import { utf8Bytes } from "@ekv/wire"
import { writeU32 } from "../bigEndian.ts"
import { CorruptRecord, InvalidArgument } from "./errors.ts"

export const VERSION_SPACE = 0x01
const ESCAPE = 0xff
const TERMINATOR = 0x01
const INDEX_BYTES = 8

const utf8Fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** The largest index a key can encode (indexes are JS safe integers). */
export const MAX_INDEX = Number.MAX_SAFE_INTEGER

export const requireIndex = (name: string, index: number): void => {
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new InvalidArgument({ message: `${name} must be a safe non-negative integer, got ${index}` })
  }
}

/** UTF-8 of a user key; a string with lone surrogates has no UTF-8 form and is refused. */
export const userKeyBytes = (userKey: string): Uint8Array => {
  const bytes = utf8Bytes(userKey)
  // The bytes outnumber the string's code units exactly when a character is
  // not ASCII; only then can one be a lone surrogate (TextEncoder made it U+FFFD).
  if (bytes.length !== userKey.length && !userKey.isWellFormed()) {
    throw new InvalidArgument({ message: "key is not well-formed Unicode (lone surrogate)" })
  }
  return bytes
}

const escapedLength = (raw: Uint8Array): number => {
  let n = raw.length
  for (const b of raw) if (b === 0) n++
  return n
}

const writeEscaped = (out: Uint8Array, at: number, raw: Uint8Array): number => {
  let o = at
  for (const b of raw) {
    out[o++] = b
    if (b === 0) out[o++] = ESCAPE
  }
  return o
}

/** 0x01 ‖ escape(raw) ‖ extra (the common head of every key built here). */
const head = (raw: Uint8Array, extra: readonly number[], tail: number): { out: Uint8Array; at: number } => {
  const out = new Uint8Array(1 + escapedLength(raw) + extra.length + tail)
  out[0] = VERSION_SPACE
  let at = writeEscaped(out, 1, raw)
  for (const b of extra) out[at++] = b
  return { out, at }
}

const writeInvertedIndex = (out: Uint8Array, at: number, index: number): void => {
  const hi = Math.floor(index / 0x1_0000_0000)
  const lo = index % 0x1_0000_0000
  writeU32(out, at, 0xffff_ffff - hi)
  writeU32(out, at + 4, 0xffff_ffff - lo)
}

// Applying a put builds the same storage key twice in a row: as the storage
// envelope's AAD location, then as the LevelDB key. The last one is kept and
// handed out again (callers only read it).
let lastVersionKey: { readonly userKey: string; readonly index: number; readonly bytes: Uint8Array } | null =
  null

/** The storage key of version `index` of `userKey` (the storage envelope's AAD location). Read-only. */
export const versionKey = (userKey: string, index: number): Uint8Array => {
  const last = lastVersionKey
  if (last !== null && last.index === index && last.userKey === userKey) return last.bytes
  const bytes = versionKeyFromBytes(userKeyBytes(userKey), index)
  lastVersionKey = { userKey, index, bytes }
  return bytes
}

export const versionKeyFromBytes = (raw: Uint8Array, index: number): Uint8Array => {
  requireIndex("index", index)
  const { out, at } = head(raw, [0x00, TERMINATOR], INDEX_BYTES)
  writeInvertedIndex(out, at, index)
  return out
}

/** Every version of the key starts with these bytes (0x01 ‖ escape(k) ‖ 0x00 0x01). */
export const versionPrefix = (raw: Uint8Array): Uint8Array => head(raw, [0x00, TERMINATOR], 0).out

/**
 * The first storage key after every version of the key (0x01 ‖ escape(k) ‖ 0x00 0x02):
 * the exclusive end of its versions and the inclusive start of the keys greater than it.
 */
export const versionsEnd = (raw: Uint8Array): Uint8Array => head(raw, [0x00, TERMINATOR + 1], 0).out

/** The storage-key range `[gte, lt)` of every version of every user key that starts with `prefix`. */
export const prefixRange = (prefix: Uint8Array): { readonly gte: Uint8Array; readonly lt: Uint8Array } => {
  const gte = head(prefix, [], 0).out
  return { gte, lt: successor(gte) }
}

/** The whole version key space. */
export const versionSpace = {
  gte: Uint8Array.of(VERSION_SPACE),
  lt: Uint8Array.of(VERSION_SPACE + 1),
} as const

/** The shortest byte string greater than every string that starts with `p` (p must not be all 0xFF). */
export const successor = (p: Uint8Array): Uint8Array => {
  let end = p.length
  while (end > 0 && p[end - 1] === 0xff) end--
  if (end === 0) throw new InvalidArgument({ message: "no successor of an all-0xFF prefix" })
  const out = p.slice(0, end)
  out[end - 1] = out[end - 1]! + 1
  return out
}

export interface DecodedVersionKey {
  /** UTF-8 bytes of the user key. */
  readonly keyBytes: Uint8Array
  readonly index: number
  /** Length of the prefix shared by every version of this user key (versionPrefix). */
  readonly prefixLength: number
}

/** Splits a version storage key into user key bytes and index; anything else is a CorruptRecord. */
export const decodeVersionKeyBytes = (bytes: Uint8Array): DecodedVersionKey => {
  if (bytes[0] !== VERSION_SPACE) throw corrupt("not in the version key space")
  const raw: number[] = []
  let i = 1
  for (;;) {
    const b = bytes[i]
    if (b === undefined) throw corrupt("no terminator")
    if (b !== 0) {
      raw.push(b)
      i++
      continue
    }
    const next = bytes[i + 1]
    if (next === ESCAPE) {
      raw.push(0)
      i += 2
      continue
    }
    if (next === TERMINATOR) break
    throw corrupt("0x00 not followed by 0xFF or 0x01")
  }
  const prefixLength = i + 2
  if (bytes.length !== prefixLength + INDEX_BYTES) throw corrupt("index is not 8 bytes")
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const hi = 0xffff_ffff - view.getUint32(prefixLength)
  const lo = 0xffff_ffff - view.getUint32(prefixLength + 4)
  const index = hi * 0x1_0000_0000 + lo
  if (!Number.isSafeInteger(index)) throw corrupt("index above 2^53 − 1")
  return { keyBytes: Uint8Array.from(raw), index, prefixLength }
}

export interface DecodedVersion {
  readonly key: string
  readonly index: number
}

/** decodeVersionKeyBytes plus UTF-8 decoding of the user key. */
export const decodeVersionKey = (bytes: Uint8Array): DecodedVersion => {
  const d = decodeVersionKeyBytes(bytes)
  return { key: decodeUtf8(d.keyBytes), index: d.index }
}

export const decodeUtf8 = (bytes: Uint8Array): string => {
  try {
    return utf8Fatal.decode(bytes)
  } catch {
    throw corrupt("user key is not valid UTF-8")
  }
}

/** Lexicographic byte comparison (LevelDB's default comparator). */
export const compareBytes = (a: Uint8Array, b: Uint8Array): number => {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d
  }
  return a.length - b.length
}

export const bytesEqual = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && compareBytes(a, b) === 0

/** True when the storage key `bytes` starts with `prefix`. */
export const hasPrefix = (bytes: Uint8Array, prefix: Uint8Array): boolean => {
  if (bytes.length < prefix.length) return false
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false
  return true
}

const corrupt = (why: string): CorruptRecord => new CorruptRecord({ message: `bad version key: ${why}` })
