// Byte formats of the durable Raft log (SPEC.md §2 "Durability"): every record
// carries a CRC32 over its index and contents, verified whenever it is read; a
// mismatch is the node-local fault `CorruptLog`.
import { crc32 } from "node:zlib"
import { Data } from "effect"
import { writeU32, writeU64 } from "../bigEndian.ts"

export class CorruptLog extends Data.TaggedError("CorruptLog")<{
  readonly index: number | null
  readonly reason: string
}> {}

/** A log entry as the store keeps it; `type` is the core's entry type, opaque here. */
export interface StoredEntry {
  readonly index: number
  readonly term: number
  readonly type: number
  readonly data: Uint8Array
}

export interface HardState {
  readonly term: number
  readonly vote: string | null
  readonly commit: number
  /** Kept under REJOIN_KEY beside the record (older stores have none: false). */
  readonly rejoining?: boolean
}

/** The last snapshot the log was compacted to; `conf` is the core's encoded configuration. */
export interface SnapshotMark {
  readonly index: number
  readonly term: number
  readonly conf: Uint8Array
}

const ENTRY_PREFIX = 0x65 // 'e'
export const HARD_STATE_KEY = Uint8Array.of(0x68) // 'h'
export const SNAPSHOT_KEY = Uint8Array.of(0x73) // 's'
/** Present while the node rejoins after losing its durable state (raft.ts "Rejoining"). */
export const REJOIN_KEY = Uint8Array.of(0x6a) // 'j'
export const REJOIN_VALUE = Uint8Array.of(1)

// Entry keys go straight into LevelDB batches. A small fresh Uint8Array lives
// on V8's heap and is moved off it when native code reads it; a pooled Buffer
// is off-heap already (keys are not secret, and a batch holds them briefly).
export const entryKey = (index: number): Uint8Array => {
  const k = Buffer.allocUnsafe(9)
  k[0] = ENTRY_PREFIX
  writeU64(k, 1, index)
  return k
}
export const ENTRY_KEY_LOW = entryKey(0)
export const ENTRY_KEY_HIGH = Uint8Array.of(ENTRY_PREFIX + 1)

export const indexOfEntryKey = (key: Uint8Array): number =>
  Number(new DataView(key.buffer, key.byteOffset, key.byteLength).getBigUint64(1))

const indexScratch = new Uint8Array(8)

const checksum = (index: number, body: Uint8Array): number => {
  writeU64(indexScratch, 0, index)
  return crc32(body, crc32(indexScratch))
}

// entry value = crc32 (4, over index ‖ body) ‖ body; body = term (8) ‖ type (1) ‖ data
export const encodeEntry = (e: StoredEntry): Uint8Array => {
  const out = new Uint8Array(4 + 9 + e.data.byteLength)
  writeU64(out, 4, e.term)
  out[12] = e.type
  out.set(e.data, 13)
  writeU32(out, 0, checksum(e.index, out.subarray(4)))
  return out
}

export const decodeEntry = (index: number, value: Uint8Array): StoredEntry => {
  if (value.byteLength < 13)
    throw new CorruptLog({ index, reason: `entry record of ${value.byteLength} bytes` })
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  const body = value.subarray(4)
  if (view.getUint32(0) !== checksum(index, body))
    throw new CorruptLog({ index, reason: "entry checksum mismatch" })
  return {
    index,
    term: Number(view.getBigUint64(4)),
    type: value[12]!,
    data: new Uint8Array(value.subarray(13)),
  }
}

// hard state = crc32 (4, over index 0 ‖ body) ‖ term (8) ‖ commit (8) ‖ vote (UTF-8, may be empty)
export const encodeHardState = (h: HardState): Uint8Array => {
  const vote = new TextEncoder().encode(h.vote ?? "")
  const out = new Uint8Array(20 + vote.byteLength)
  const view = new DataView(out.buffer)
  view.setBigUint64(4, BigInt(h.term))
  view.setBigUint64(12, BigInt(h.commit))
  out.set(vote, 20)
  view.setUint32(0, checksum(0, out.subarray(4)))
  return out
}

export const decodeHardState = (value: Uint8Array): HardState => {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  if (value.byteLength < 20 || view.getUint32(0) !== checksum(0, value.subarray(4))) {
    throw new CorruptLog({ index: null, reason: "hard state checksum mismatch" })
  }
  const vote = new TextDecoder().decode(value.subarray(20))
  return {
    term: Number(view.getBigUint64(4)),
    commit: Number(view.getBigUint64(12)),
    vote: vote === "" ? null : vote,
  }
}

// snapshot mark = crc32 (4, over its index ‖ body) ‖ index (8) ‖ term (8) ‖ conf
export const encodeSnapshotMark = (s: SnapshotMark): Uint8Array => {
  const out = new Uint8Array(20 + s.conf.byteLength)
  const view = new DataView(out.buffer)
  view.setBigUint64(4, BigInt(s.index))
  view.setBigUint64(12, BigInt(s.term))
  out.set(s.conf, 20)
  view.setUint32(0, checksum(s.index, out.subarray(4)))
  return out
}

export const decodeSnapshotMark = (value: Uint8Array): SnapshotMark => {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength)
  if (value.byteLength < 20) throw new CorruptLog({ index: null, reason: "snapshot mark too short" })
  const index = Number(view.getBigUint64(4))
  if (view.getUint32(0) !== checksum(index, value.subarray(4))) {
    throw new CorruptLog({ index, reason: "snapshot mark checksum mismatch" })
  }
  return { index, term: Number(view.getBigUint64(12)), conf: Uint8Array.from(value.subarray(20)) }
}
