// The state-machine snapshot file: every LevelDB record of the store at one
// applied index, as stored (ciphertext stays ciphertext, SPEC §2.4). It holds
// user keys in the clear, so it lives under consensus/state/snapshots, never
// in the Raft log directory.
//
//   header  (24 bytes)
//     0   8  magic "EKVSNAP\0"
//     8   4  format version, BE u32 = 1
//     12  4  reserved, zero
//     16  8  applied index, BE u64
//   records, in strictly ascending storage-key order, each
//     u32 BE key length (1..MAX_KEY_BYTES) ‖ key ‖ u32 BE value length (0..MAX_VALUE_BYTES) ‖ value
//   end mark: u32 BE 0 (a key length of zero)
//   footer  (40 bytes)
//     0   8  record count, BE u64
//     8  32  SHA-256 of every byte before it (header, records, end mark, record count)
//
// The count and checksum trail the records so the file is written in one
// streaming pass from a LevelDB snapshot. A reader trusts no record until the
// checksum at the end verified (installSnapshot reads the file twice).
import { createHash, type Hash } from "node:crypto"
import { CorruptRecord, SnapshotCorrupt, ValueHeaderError } from "./errors.ts"
import { appliedKey, decodeSystemKey, decodeU64Value, STORE_FORMAT, SYSTEM_SPACE } from "./keySpace.ts"
import { decodeRejection } from "./rejectionRecord.ts"
import { decodeStoredValue } from "./valueHeader.ts"
import { compareBytes, decodeVersionKeyBytes, requireIndex, VERSION_SPACE } from "./versionKey.ts"

export const MAGIC = Uint8Array.from([0x45, 0x4b, 0x56, 0x53, 0x4e, 0x41, 0x50, 0x00]) // "EKVSNAP\0"
export const FORMAT_VERSION = 1
export const HEADER_BYTES = 24
export const FOOTER_BYTES = 40
export const MAX_KEY_BYTES = 64 * 1024
export const MAX_VALUE_BYTES = 64 * 1024 * 1024

export interface SnapshotRecord {
  readonly key: Uint8Array
  readonly value: Uint8Array
}

export const encodeSnapshotHeader = (index: number): Uint8Array => {
  requireIndex("snapshot index", index)
  const out = new Uint8Array(HEADER_BYTES)
  out.set(MAGIC, 0)
  const view = new DataView(out.buffer)
  view.setUint32(8, FORMAT_VERSION)
  view.setUint32(12, 0)
  writeU64(view, 16, index)
  return out
}

const requireRecord = (r: SnapshotRecord): void => {
  if (r.key.length < 1 || r.key.length > MAX_KEY_BYTES) throw new RangeError("snapshot record key length")
  if (r.value.length > MAX_VALUE_BYTES) throw new RangeError("snapshot record value length")
}

/** Writes `r` framed (u32 key length ‖ key ‖ u32 value length ‖ value) at `at`; returns the end. */
const putRecord = (out: Uint8Array, view: DataView, at: number, r: SnapshotRecord): number => {
  view.setUint32(at, r.key.length)
  out.set(r.key, at + 4)
  const v = at + 4 + r.key.length
  view.setUint32(v, r.value.length)
  out.set(r.value, v + 4)
  return v + 4 + r.value.length
}

export const encodeRecord = (r: SnapshotRecord): Uint8Array => {
  requireRecord(r)
  const out = new Uint8Array(8 + r.key.length + r.value.length)
  putRecord(out, new DataView(out.buffer), 0, r)
  return out
}

/** Several records framed back to back in one buffer (same bytes as `encodeRecord` of each). */
export const encodeRecords = (rs: ReadonlyArray<SnapshotRecord>): Uint8Array => {
  let size = 0
  for (const r of rs) {
    requireRecord(r)
    size += 8 + r.key.length + r.value.length
  }
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  let at = 0
  for (const r of rs) at = putRecord(out, view, at, r)
  return out
}

export const END_MARK = new Uint8Array(4)

export const encodeRecordCount = (count: number): Uint8Array => {
  const out = new Uint8Array(8)
  writeU64(new DataView(out.buffer), 0, count)
  return out
}

/**
 * Streams a snapshot into bytes while hashing them: `header`, `record` per
 * record (ascending), then `finish` returns the end mark and footer.
 */
export class SnapshotEncoder {
  private readonly hash: Hash = createHash("sha256")
  private count = 0
  private last: Uint8Array | undefined
  bytes = 0

  header(index: number): Uint8Array {
    return this.take(encodeSnapshotHeader(index))
  }

  record(r: SnapshotRecord): Uint8Array {
    this.ascending(r)
    return this.take(encodeRecord(r))
  }

  /** A chunk of records (ascending, continuing the previous ones) as one buffer. */
  records(rs: ReadonlyArray<SnapshotRecord>): Uint8Array {
    for (const r of rs) this.ascending(r)
    return this.take(encodeRecords(rs))
  }

  private ascending(r: SnapshotRecord): void {
    if (this.last !== undefined && compareBytes(this.last, r.key) >= 0) {
      throw new RangeError("snapshot records must be in strictly ascending key order")
    }
    this.last = r.key
    this.count++
  }

  /** End mark + footer; returns the bytes to write and the file's SHA-256 (hex). */
  finish(): { readonly bytes: Uint8Array; readonly sha256: string; readonly records: number } {
    const tail = new Uint8Array(4 + FOOTER_BYTES)
    tail.set(END_MARK, 0)
    tail.set(encodeRecordCount(this.count), 4)
    this.hash.update(tail.subarray(0, 12))
    const digest = this.hash.digest()
    tail.set(digest, 12)
    this.bytes += tail.length
    return { bytes: tail, sha256: digest.toString("hex"), records: this.count }
  }

  private take(b: Uint8Array): Uint8Array {
    this.hash.update(b)
    this.bytes += b.length
    return b
  }
}

export interface SnapshotSummary {
  readonly index: number
  readonly records: number
  readonly bytes: number
  /** SHA-256 of the file content before the digest (the footer's digest), hex. */
  readonly sha256: string
}

type Phase = "header" | "records" | "count" | "digest" | "done"

/**
 * Incremental snapshot parser: feed it the file in chunks of any size; it
 * returns the records it completed and checks framing, order and each
 * record's shape as it goes. `end()` checks the record count and the
 * checksum: until it returned, no record is trustworthy.
 */
export class SnapshotDecoder {
  private readonly hash: Hash = createHash("sha256")
  private buf: Uint8Array = new Uint8Array(0)
  private phase: Phase = "header"
  private count = 0
  private total = 0
  private last: Uint8Array | undefined
  private index = -1
  private digest = ""
  private readonly path: string

  constructor(path: string) {
    this.path = path
  }

  get snapshotIndex(): number {
    return this.index
  }

  push(chunk: Uint8Array): SnapshotRecord[] {
    this.total += chunk.length
    const borrowed = this.buf.length === 0
    this.buf = borrowed ? chunk : concat(this.buf, chunk)
    const out: SnapshotRecord[] = []
    let pos = 0
    const avail = (): number => this.buf.length - pos
    const consume = (n: number): Uint8Array => {
      const b = this.buf.subarray(pos, pos + n)
      pos += n
      return b
    }
    loop: for (;;) {
      switch (this.phase) {
        case "header": {
          if (avail() < HEADER_BYTES) break loop
          const h = consume(HEADER_BYTES)
          this.hash.update(h)
          this.index = this.decodeHeader(h)
          this.phase = "records"
          break
        }
        case "records": {
          if (avail() < 4) break loop
          const view = new DataView(this.buf.buffer, this.buf.byteOffset + pos)
          const keyLen = view.getUint32(0)
          if (keyLen === 0) {
            this.hash.update(consume(4))
            this.phase = "count"
            break
          }
          if (keyLen > MAX_KEY_BYTES) throw this.fail("BadFraming", `record key length ${keyLen}`)
          if (avail() < 8 + keyLen) break loop
          const valueLen = view.getUint32(4 + keyLen)
          if (valueLen > MAX_VALUE_BYTES) throw this.fail("BadFraming", `record value length ${valueLen}`)
          if (avail() < 8 + keyLen + valueLen) break loop
          const raw = consume(8 + keyLen + valueLen)
          this.hash.update(raw)
          // Copies, so a record does not pin the whole chunk it came in.
          const key = raw.slice(4, 4 + keyLen)
          const value = raw.slice(8 + keyLen)
          if (this.last !== undefined && compareBytes(this.last, key) >= 0) {
            throw this.fail("BadRecord", "records not in strictly ascending key order")
          }
          this.last = key
          this.count++
          this.checkRecord(key, value)
          out.push({ key, value })
          break
        }
        case "count": {
          if (avail() < 8) break loop
          const c = consume(8)
          this.hash.update(c)
          const count = readU64(c)
          if (count !== this.count) {
            throw this.fail("BadFraming", `footer counts ${count} records, file holds ${this.count}`)
          }
          this.phase = "digest"
          break
        }
        case "digest": {
          if (avail() < 32) break loop
          const d = Buffer.from(consume(32)).toString("hex")
          const mine = this.hash.digest("hex")
          if (d !== mine)
            throw this.fail("ChecksumMismatch", "SHA-256 of the snapshot does not match its footer")
          this.digest = mine
          this.phase = "done"
          break
        }
        case "done":
          if (avail() > 0) throw this.fail("TrailingBytes", `${avail()} bytes after the footer`)
          break loop
      }
    }
    // Never keep a view of the caller's chunk: it may reuse that memory.
    this.buf = borrowed ? this.buf.slice(pos) : this.buf.subarray(pos)
    return out
  }

  /** The whole file was pushed: it must have ended exactly after a verified footer. */
  end(): SnapshotSummary {
    if (this.phase !== "done") throw this.fail("Truncated", `file ends in the ${this.phase} section`)
    return { index: this.index, records: this.count, bytes: this.total, sha256: this.digest }
  }

  private decodeHeader(h: Uint8Array): number {
    for (let i = 0; i < MAGIC.length; i++) {
      if (h[i] !== MAGIC[i]) throw this.fail("BadMagic", "not an ekv state-machine snapshot")
    }
    const view = new DataView(h.buffer, h.byteOffset, h.byteLength)
    const version = view.getUint32(8)
    if (version !== FORMAT_VERSION || view.getUint32(12) !== 0) {
      throw this.fail("UnsupportedFormat", `snapshot format ${version} (this build reads ${FORMAT_VERSION})`)
    }
    const index = view.getUint32(16) * 0x1_0000_0000 + view.getUint32(20)
    if (!Number.isSafeInteger(index)) throw this.fail("BadFraming", "applied index above 2^53 − 1")
    return index
  }

  /** Every record must be a key this store understands, with a value of the right shape. */
  private checkRecord(key: Uint8Array, value: Uint8Array): void {
    try {
      if (key[0] === VERSION_SPACE) {
        decodeVersionKeyBytes(key)
        decodeStoredValue(value)
        return
      }
      if (key[0] !== SYSTEM_SPACE) throw new CorruptRecord({ message: `unknown key space ${key[0]}` })
      const rec = decodeSystemKey(key)
      switch (rec.kind) {
        case "format":
          if (Buffer.from(value).toString("latin1") !== STORE_FORMAT) {
            throw new CorruptRecord({ message: "store format differs" })
          }
          return
        case "applied": {
          const applied = decodeU64Value(value, "applied index")
          if (applied !== this.index) {
            throw this.fail("IndexMismatch", `applied index record ${applied} ≠ header index ${this.index}`)
          }
          return
        }
        case "gcHorizon":
          decodeU64Value(value, "GC horizon")
          return
        case "rejection":
          decodeRejection(value)
          return
        case "meta":
          return
        case "installMarker":
          throw new CorruptRecord({ message: "a snapshot never carries the install marker" })
      }
    } catch (e) {
      if (e instanceof SnapshotCorrupt) throw e
      if (e instanceof CorruptRecord || e instanceof ValueHeaderError) throw this.fail("BadRecord", e.message)
      throw e
    }
  }

  private fail(reason: SnapshotCorrupt["reason"], message: string): SnapshotCorrupt {
    return new SnapshotCorrupt({ message: `snapshot ${this.path}: ${message}`, path: this.path, reason })
  }
}

/** True when `key` is the applied-index record (installSnapshot writes it last). */
export const isAppliedKey = (key: Uint8Array): boolean => compareBytes(key, appliedKey) === 0

const writeU64 = (view: DataView, at: number, n: number): void => {
  view.setUint32(at, Math.floor(n / 0x1_0000_0000))
  view.setUint32(at + 4, n % 0x1_0000_0000)
}

const readU64 = (b: Uint8Array): number => {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength)
  return view.getUint32(0) * 0x1_0000_0000 + view.getUint32(4)
}

const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}
