// A check of a LevelDB directory's on-disk format, done before LevelDB opens it
// (SPEC §2 "Every log entry carries a checksum verified when read", §7
// `CorruptLog`). classic-level turns on neither `paranoid_checks` nor
// `verify_checksums`: LevelDB then never checks a table block's CRC (damaged
// bytes reach its key decoder, which aborts the process on an assertion) and
// silently skips damaged write-ahead-log records (acknowledged entries lost).
//
// What is checked (LevelDB 1.20's formats, as classic-level 3 writes them):
//   - CURRENT names an existing MANIFEST;
//   - the MANIFEST: every log record (below) and every version edit; it gives
//     the live table files, their sizes and the live write-ahead logs;
//   - the live write-ahead logs (`*.log`): every record;
//   - the live tables (`*.ldb`, `*.sst`): the size the manifest recorded, and
//     with `tables: "checksums"` the footer, the CRC of every block (data,
//     filter, metaindex, index), and that the blocks tile the file exactly, so
//     no byte of a table escapes a check.
// Files LevelDB itself ignores and deletes at open (a compaction's unfinished
// output after a kill, logs older than the manifest's log number, older
// manifests) are not checked: damage there loses nothing.
//
// Log records (log_format.h): 32 KiB blocks; a record is masked CRC32C (4, LE)
// over type ‖ payload, length (2, LE), type (1: FULL, 2: FIRST, 3: MIDDLE,
// 4: LAST) and never crosses a block; fewer than 7 bytes left in a block are
// zero padding. A torn tail is accepted, only at the end of the newest live log
// and of the current manifest (the writer died mid-append; that batch's fsync
// never returned, so it was never acknowledged): the file ends inside a record
// header, inside a record whose header is intact, after a FIRST/MIDDLE part, or
// in bytes that are all zero (a file extended without its data). A complete
// record whose CRC fails, a length that would cross its block, a length that
// runs past the end of the file while the bytes up to the end do match the
// record's CRC (its length field was damaged), a wrong type, non-zero padding,
// or any of these in an older log are damage.
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { crc32c, unmaskCrc } from "./crc32c.ts"

export interface LevelDbProblem {
  /** File name inside the directory. */
  readonly file: string
  /** Byte offset in the file of the damaged part, when there is one. */
  readonly offset: number | null
  readonly what: string
}

export interface LevelDbVerification {
  readonly problems: ReadonlyArray<LevelDbProblem>
  /** Files read or measured. */
  readonly files: number
  /** Bytes read and checked. */
  readonly bytes: number
}

export interface VerifyOptions {
  /**
   * `checksums`: read every live table and check every block (the Raft log:
   * bounded by the snapshot interval). `sizes`: only compare each live table's
   * size with the manifest (the state DB: its tables grow with the data).
   */
  readonly tables: "checksums" | "sizes"
}

/** One line naming the first problem (file and offset) and how many others there are. */
export const describeProblems = (problems: ReadonlyArray<LevelDbProblem>): string => {
  const first = problems[0]
  if (first === undefined) return "no problems"
  const at = first.offset === null ? "" : ` offset ${first.offset}`
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : ""
  return `LevelDB file ${first.file}${at}: ${first.what}${more}`
}

// ---- bounded readers ----------------------------------------------------------------------

interface Read<T> {
  readonly value: T
  readonly next: number
}

/** A varint of at most `maxBytes` bytes inside [pos, end); undefined when it does not fit. */
const varint = (b: Uint8Array, pos: number, end: number, maxBytes: number): Read<number> | undefined => {
  let value = 0
  for (let i = 0; i < maxBytes; i++) {
    if (pos + i >= end) return undefined
    const byte = b[pos + i]!
    value += (byte & 0x7f) * 2 ** (7 * i)
    if (byte < 0x80) return { value, next: pos + i + 1 }
  }
  return undefined
}
const varint32 = (b: Uint8Array, pos: number, end: number) => varint(b, pos, end, 5)
const varint64 = (b: Uint8Array, pos: number, end: number) => varint(b, pos, end, 10)

const varintLength = (v: number): number => {
  let n = 1
  for (let rest = v; rest >= 0x80; rest = Math.floor(rest / 0x80)) n++
  return n
}

const u32le = (b: Uint8Array, pos: number): number =>
  (b[pos]! | (b[pos + 1]! << 8) | (b[pos + 2]! << 16) | (b[pos + 3]! << 24)) >>> 0

// ---- tables ---------------------------------------------------------------------------------

const FOOTER_SIZE = 48
const BLOCK_TRAILER = 5
/** kTableMagicNumber 0xdb4775248b80fb57, fixed64 little-endian. */
const TABLE_MAGIC = Uint8Array.of(0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb)

interface BlockHandle {
  readonly offset: number
  readonly size: number
}

const blockHandle = (b: Uint8Array, pos: number, end: number): Read<BlockHandle> | undefined => {
  const offset = varint64(b, pos, end)
  if (offset === undefined) return undefined
  const size = varint64(b, offset.next, end)
  if (size === undefined) return undefined
  return { value: { offset: offset.value, size: size.value }, next: size.next }
}

interface BlockEntry {
  readonly key: Uint8Array
  readonly value: Uint8Array
}

/** The entries of a block (block_builder.cc), or a description of what is malformed. */
const blockEntries = (block: Uint8Array): BlockEntry[] | string => {
  if (block.length < 4) return "block shorter than its restart count"
  const restarts = u32le(block, block.length - 4)
  if (restarts > (block.length - 4) / 4) return `restart count ${restarts} does not fit the block`
  const end = block.length - 4 - 4 * restarts
  for (let i = 0; i < restarts; i++) {
    if (u32le(block, end + 4 * i) >= Math.max(end, 1)) return "restart point outside the entries"
  }
  const entries: BlockEntry[] = []
  let key = new Uint8Array(0)
  let pos = 0
  while (pos < end) {
    const shared = varint32(block, pos, end)
    const nonShared = shared && varint32(block, shared.next, end)
    const valueLength = nonShared && varint32(block, nonShared.next, end)
    if (shared === undefined || nonShared === undefined || valueLength === undefined)
      return `entry header at ${pos} runs past the entries`
    const keyAt = valueLength.next
    const valueAt = keyAt + nonShared.value
    const next = valueAt + valueLength.value
    if (shared.value > key.length || next > end) return `entry at ${pos} runs past the entries`
    const k = new Uint8Array(shared.value + nonShared.value)
    k.set(key.subarray(0, shared.value))
    k.set(block.subarray(keyAt, valueAt), shared.value)
    key = k
    entries.push({ key, value: block.subarray(valueAt, next) })
    pos = next
  }
  return entries
}

/** The handles stored as the values of an index or metaindex block. */
const handlesOf = (entries: ReadonlyArray<BlockEntry>): BlockHandle[] | string => {
  const out: BlockHandle[] = []
  for (const e of entries) {
    const h = blockHandle(e.value, 0, e.value.length)
    if (h === undefined || h.next !== e.value.length) return "entry value is not a block handle"
    out.push(h.value)
  }
  return out
}

/**
 * Checks one table file (table/format.h): its size against the manifest's, the
 * footer, every block's CRC and that the blocks cover the file exactly. Pure.
 */
export const verifyTable = (
  file: string,
  bytes: Uint8Array,
  expectedSize?: number,
): ReadonlyArray<LevelDbProblem> => {
  const problems: LevelDbProblem[] = []
  const problem = (offset: number | null, what: string) => problems.push({ file, offset, what })
  if (expectedSize !== undefined && bytes.length !== expectedSize)
    problem(null, `size ${bytes.length}, the manifest says ${expectedSize}`)
  if (bytes.length < FOOTER_SIZE) {
    problem(0, "shorter than a table footer")
    return problems
  }
  const footerAt = bytes.length - FOOTER_SIZE
  const magicAt = bytes.length - TABLE_MAGIC.length
  if (TABLE_MAGIC.some((m, i) => bytes[magicAt + i] !== m)) {
    problem(magicAt, "bad table magic number")
    return problems
  }
  const metaindex = blockHandle(bytes, footerAt, magicAt)
  const index = metaindex && blockHandle(bytes, metaindex.next, magicAt)
  if (metaindex === undefined || index === undefined) {
    problem(footerAt, "footer block handles do not decode")
    return problems
  }
  // The writer encodes minimally: an over-long varint (a flipped continuation bit) is damage too.
  const minimal = [metaindex.value.offset, metaindex.value.size, index.value.offset, index.value.size]
    .map(varintLength)
    .reduce((a, b) => a + b)
  if (index.next - footerAt !== minimal) problem(footerAt, "footer block handles are not minimally encoded")
  for (let i = index.next; i < magicAt; i++) {
    if (bytes[i] !== 0) {
      problem(i, "footer padding is not zero")
      break
    }
  }

  // A block's contents (decompressed when snappy), or undefined after recording why not.
  const covered: BlockHandle[] = []
  const block = (h: BlockHandle, kind: string, decode: boolean): Uint8Array | undefined => {
    if (h.offset + h.size + BLOCK_TRAILER > footerAt) {
      problem(
        h.offset <= bytes.length ? h.offset : null,
        `${kind} block [${h.offset}, +${h.size}) outside the file`,
      )
      return undefined
    }
    covered.push(h)
    const typeAt = h.offset + h.size
    const stored = unmaskCrc(u32le(bytes, typeAt + 1))
    if (crc32c(bytes.subarray(h.offset, typeAt + 1)) !== stored) {
      problem(h.offset, `${kind} block checksum mismatch`)
      return undefined
    }
    const type = bytes[typeAt]!
    if (type !== 0 && type !== 1) {
      problem(typeAt, `${kind} block has unknown compression type ${type}`)
      return undefined
    }
    if (!decode) return bytes.subarray(h.offset, typeAt)
    if (type === 0) return bytes.subarray(h.offset, typeAt)
    const raw = snappyDecompress(bytes.subarray(h.offset, typeAt))
    if (raw === undefined) problem(h.offset, `${kind} block does not decompress`)
    return raw
  }
  const handlesIn = (h: BlockHandle, kind: string): BlockHandle[] | undefined => {
    const contents = block(h, kind, true)
    if (contents === undefined) return undefined
    const entries = blockEntries(contents)
    const handles = typeof entries === "string" ? entries : handlesOf(entries)
    if (typeof handles === "string") {
      problem(h.offset, `${kind} block: ${handles}`)
      return undefined
    }
    return handles
  }

  const dataBlocks = handlesIn(index.value, "index")
  const metaBlocks = handlesIn(metaindex.value, "metaindex")
  for (const h of dataBlocks ?? []) block(h, "data", false)
  for (const h of metaBlocks ?? []) block(h, "meta", false)
  if (dataBlocks === undefined || metaBlocks === undefined || problems.length > 0) return problems

  // The writer lays the blocks end to end from offset 0 up to the footer.
  covered.sort((a, b) => a.offset - b.offset)
  let at = 0
  for (const h of covered) {
    if (h.offset !== at) {
      problem(
        Math.min(at, h.offset),
        h.offset > at ? `${h.offset - at} bytes not in any block` : "blocks overlap",
      )
      return problems
    }
    at = h.offset + h.size + BLOCK_TRAILER
  }
  if (at !== footerAt) problem(at, `${footerAt - at} bytes not in any block`)
  return problems
}

// Raw snappy (format_description.txt), strict and bounded: undefined for anything malformed.
const snappyDecompress = (input: Uint8Array): Uint8Array | undefined => {
  const header = varint32(input, 0, input.length)
  // No element expands more than 64 bytes out of 2 in: a bigger claim is damage.
  if (header === undefined || header.value > 32 * input.length) return undefined
  const out = new Uint8Array(header.value)
  let pos = header.next
  let o = 0
  while (pos < input.length) {
    const tag = input[pos++]!
    let len: number
    if ((tag & 3) === 0) {
      len = (tag >>> 2) + 1
      if (len > 60) {
        const extra = len - 60
        if (pos + extra > input.length) return undefined
        len = 1
        for (let i = 0; i < extra; i++) len += input[pos + i]! * 2 ** (8 * i)
        pos += extra
      }
      if (pos + len > input.length || o + len > out.length) return undefined
      out.set(input.subarray(pos, pos + len), o)
      pos += len
      o += len
      continue
    }
    let offset: number
    const extra = [0, 1, 2, 4][tag & 3]!
    if (pos + extra > input.length) return undefined
    if ((tag & 3) === 1) {
      len = ((tag >>> 2) & 7) + 4
      offset = ((tag >>> 5) << 8) | input[pos]!
    } else {
      len = (tag >>> 2) + 1
      offset = extra === 2 ? input[pos]! | (input[pos + 1]! << 8) : u32le(input, pos)
    }
    pos += extra
    if (offset === 0 || offset > o || o + len > out.length) return undefined
    for (let i = 0; i < len; i++, o++) out[o] = out[o - offset]!
  }
  return o === out.length ? out : undefined
}

// ---- log files (write-ahead logs and manifests) ----------------------------------------------

const LOG_BLOCK = 32 * 1024
const LOG_HEADER = 7
const FULL = 1
const FIRST = 2
const MIDDLE = 3
const LAST = 4

export interface LogFileRead {
  /** The complete logical records, in order (up to the first problem). */
  readonly records: ReadonlyArray<Uint8Array>
  readonly problems: ReadonlyArray<LevelDbProblem>
  /** Where an accepted torn tail begins, and what it looks like. */
  readonly tornTail: { readonly offset: number; readonly what: string } | null
}

const allZero = (b: Uint8Array, from: number, to: number): boolean => {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false
  return true
}

/** Whether some prefix of `payload` matches the CRC of a record of `type`: its length was damaged. */
const somePrefixMatches = (type: number, payload: Uint8Array, crc: number): boolean => {
  let c = crc32c(Uint8Array.of(type))
  if (c === crc) return true
  for (let i = 0; i < payload.length; i++) {
    c = crc32c(payload.subarray(i, i + 1), c)
    if (c === crc) return true
  }
  return false
}

/**
 * Reads a LevelDB log file (db/log_format.h) and checks every record; stops at
 * the first damage. `tailMayBeTorn`: this is the newest file of its kind, so an
 * unfinished last record is a crash's normal outcome (see the header). Pure.
 */
export const readLogFile = (file: string, bytes: Uint8Array, tailMayBeTorn: boolean): LogFileRead => {
  const records: Uint8Array[] = []
  let parts: Uint8Array[] | null = null
  const end = bytes.length
  const result = (offset: number, what: string, torn: boolean): LogFileRead =>
    torn && tailMayBeTorn
      ? { records, problems: [], tornTail: { offset, what } }
      : { records, problems: [{ file, offset, what }], tornTail: null }
  let pos = 0
  while (pos < end) {
    const blockEnd = (Math.floor(pos / LOG_BLOCK) + 1) * LOG_BLOCK
    if (blockEnd - pos < LOG_HEADER) {
      const to = Math.min(blockEnd, end)
      if (!allZero(bytes, pos, to)) return result(pos, "block padding is not zero", false)
      pos = to
      continue
    }
    if (end - pos < LOG_HEADER) return result(pos, "file ends inside a record header", true)
    const crc = unmaskCrc(u32le(bytes, pos))
    const length = bytes[pos + 4]! | (bytes[pos + 5]! << 8)
    const type = bytes[pos + 6]!
    const payloadAt = pos + LOG_HEADER
    if (payloadAt + length > blockEnd)
      return result(pos, `record length ${length} crosses its 32 KiB block`, false)
    if (allZero(bytes, pos, Math.min(end, blockEnd)) && allZero(bytes, blockEnd, end))
      return result(pos, "zero bytes up to the end of the file", true)
    if (payloadAt + length > end) {
      // Torn, unless the bytes up to the end are a whole record under its CRC (a damaged length).
      if (somePrefixMatches(type, bytes.subarray(payloadAt, end), crc))
        return result(pos, `record length ${length} runs past the end of the file`, false)
      return result(pos, "file ends inside a record", true)
    }
    if (crc32c(bytes.subarray(pos + 6, payloadAt + length)) !== crc)
      return result(pos, "record checksum mismatch", false)
    const payload = bytes.subarray(payloadAt, payloadAt + length)
    if (type === FULL || type === FIRST) {
      if (parts !== null) return result(pos, "a fragmented record has no last part", false)
      if (type === FULL) records.push(payload)
      else parts = [payload]
    } else if (type === MIDDLE || type === LAST) {
      if (parts === null) return result(pos, "a record part without its first part", false)
      parts.push(payload)
      if (type === LAST) {
        records.push(concat(parts))
        parts = null
      }
    } else return result(pos, `unknown record type ${type}`, false)
    pos = payloadAt + length
  }
  if (parts !== null) return result(end, "file ends after a first part of a record", true)
  return { records, problems: [], tornTail: null }
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

// ---- manifest (db/version_edit.cc) ---------------------------------------------------------

export interface ManifestState {
  /** Live table files: file number → size recorded by the manifest. */
  readonly tables: ReadonlyMap<number, number>
  readonly logNumber: number
  readonly prevLogNumber: number
}

/** Applies the version edits in order; a description of the first malformed one otherwise. */
export const applyVersionEdits = (records: ReadonlyArray<Uint8Array>): ManifestState | string => {
  const tables = new Map<number, number>()
  let logNumber = 0
  let prevLogNumber = 0
  for (const [n, r] of records.entries()) {
    let pos = 0
    const bad = (what: string) => `version edit ${n}: ${what}`
    const num = () => {
      const v = varint64(r, pos, r.length)
      if (v !== undefined) pos = v.next
      return v?.value
    }
    const slice = () => {
      const len = varint32(r, pos, r.length)
      if (len === undefined || len.next + len.value > r.length) return false
      pos = len.next + len.value
      return true
    }
    while (pos < r.length) {
      const tag = varint32(r, pos, r.length)
      if (tag === undefined) return bad("tag does not decode")
      pos = tag.next
      switch (tag.value) {
        case 1: // comparator
          if (!slice()) return bad("comparator name")
          break
        case 2: // log number
        case 3: // next file number
        case 4: // last sequence
        case 9: {
          // previous log number
          const v = num()
          if (v === undefined) return bad(`field ${tag.value}`)
          if (tag.value === 2) logNumber = v
          if (tag.value === 9) prevLogNumber = v
          break
        }
        case 5: // compact pointer: level, internal key
          if (num() === undefined || !slice()) return bad("compaction pointer")
          break
        case 6: {
          // deleted file: level, number
          const level = num()
          const file = num()
          if (level === undefined || file === undefined) return bad("deleted file")
          tables.delete(file)
          break
        }
        case 7: {
          // new file: level, number, size, smallest, largest
          const level = num()
          const file = num()
          const size = num()
          if (level === undefined || file === undefined || size === undefined || !slice() || !slice())
            return bad("new file")
          tables.set(file, size)
          break
        }
        default:
          return bad(`unknown tag ${tag.value}`)
      }
    }
  }
  return { tables, logNumber, prevLogNumber }
}

// ---- the directory --------------------------------------------------------------------------

const errorCode = (e: unknown): string =>
  typeof e === "object" && e !== null && "code" in e ? String(e.code) : String(e)

type Reader = (file: string) => Promise<Uint8Array | undefined>

/**
 * CURRENT → the current MANIFEST → its version edits, as LevelDB recovers them;
 * undefined (with `problems` filled in when something is wrong) when there is
 * no manifest to go by.
 */
const currentManifest = async (
  names: ReadonlyArray<string>,
  read: Reader,
  problems: LevelDbProblem[],
): Promise<ManifestState | undefined> => {
  const present = new Set(names)
  if (!present.has("CURRENT")) {
    // A manifest alone is a creation cut short; logs or tables without CURRENT would be silently replaced.
    const data = names.find((n) => /^\d+\.(log|ldb|sst)$/.test(n))
    if (data !== undefined)
      problems.push({ file: "CURRENT", offset: null, what: `missing, while ${data} exists` })
    return undefined
  }
  const current = await read("CURRENT")
  if (current === undefined) return undefined
  const manifest = /^(MANIFEST-\d+)\n$/.exec(new TextDecoder().decode(current))?.[1]
  if (manifest === undefined) {
    problems.push({ file: "CURRENT", offset: 0, what: "does not name a manifest" })
    return undefined
  }
  if (!present.has(manifest)) {
    problems.push({ file: "CURRENT", offset: 0, what: `names ${manifest}, which does not exist` })
    return undefined
  }
  const manifestBytes = await read(manifest)
  if (manifestBytes === undefined) return undefined
  const edits = readLogFile(manifest, manifestBytes, true)
  problems.push(...edits.problems)
  if (edits.problems.length > 0) return undefined
  const state = applyVersionEdits(edits.records)
  if (typeof state === "string") {
    problems.push({ file: manifest, offset: null, what: state })
    return undefined
  }
  return state
}

/** A live table's file name (`.ldb`, or the older `.sst`), or undefined when neither exists. */
const tableFile = (number: number, present: ReadonlySet<string>): string | undefined => {
  const base = String(number).padStart(6, "0")
  return [`${base}.ldb`, `${base}.sst`].find((n) => present.has(n))
}

export interface LiveTable {
  /** File name inside the directory. */
  readonly file: string
  /** Size recorded by the manifest. */
  readonly size: number
}

/**
 * The live tables of the current MANIFEST of `dir`, oldest file number first,
 * read while LevelDB may have the directory open (the manifest is append-only
 * and its torn tail is accepted). A table the manifest names that is gone from
 * the directory was deleted by a compaction after the listing: left out.
 * `problems`: the manifest could not be read (no tables then).
 */
export const liveTables = async (
  dir: string,
): Promise<{
  readonly tables: ReadonlyArray<LiveTable>
  readonly problems: ReadonlyArray<LevelDbProblem>
}> => {
  const problems: LevelDbProblem[] = []
  let names: string[]
  try {
    names = await fs.readdir(dir)
  } catch (e) {
    if (errorCode(e) === "ENOENT") return { tables: [], problems }
    problems.push({ file: ".", offset: null, what: `directory cannot be listed (${errorCode(e)})` })
    return { tables: [], problems }
  }
  const read: Reader = async (file) => {
    try {
      const b = await fs.readFile(path.join(dir, file))
      return new Uint8Array(b.buffer, b.byteOffset, b.length)
    } catch (e) {
      problems.push({ file, offset: null, what: `cannot be read (${errorCode(e)})` })
      return undefined
    }
  }
  const state = await currentManifest(names, read, problems)
  if (state === undefined) return { tables: [], problems }
  const present = new Set(names)
  const tables: LiveTable[] = []
  for (const [number, size] of [...state.tables].sort((a, b) => a[0] - b[0])) {
    const file = tableFile(number, present)
    if (file !== undefined) tables.push({ file, size })
  }
  return { tables, problems }
}

/**
 * Verifies the LevelDB directory `dir` without opening it in LevelDB. A missing
 * directory or one without any LevelDB file is fine (LevelDB creates it); I/O
 * errors are problems too, never thrown.
 */
export const verifyLevelDbDir = async (dir: string, options: VerifyOptions): Promise<LevelDbVerification> => {
  const problems: LevelDbProblem[] = []
  let files = 0
  let bytes = 0
  const done = () => ({ problems, files, bytes })
  const read: Reader = async (file) => {
    try {
      const b = await fs.readFile(path.join(dir, file))
      files++
      bytes += b.length
      return new Uint8Array(b.buffer, b.byteOffset, b.length)
    } catch (e) {
      problems.push({ file, offset: null, what: `cannot be read (${errorCode(e)})` })
      return undefined
    }
  }

  let names: string[]
  try {
    names = await fs.readdir(dir)
  } catch (e) {
    if (errorCode(e) === "ENOENT") return done()
    problems.push({ file: ".", offset: null, what: `directory cannot be listed (${errorCode(e)})` })
    return done()
  }
  const present = new Set(names)
  const state = await currentManifest(names, read, problems)
  if (state === undefined) return done()

  // Live write-ahead logs, as DBImpl::Recover picks them; only the newest may end torn.
  const logs = names
    .map((n) => /^(\d+)\.log$/.exec(n))
    .filter((m) => m !== null)
    .map((m) => ({ name: m[0], number: Number(m[1]) }))
    .filter((l) => l.number >= state.logNumber || l.number === state.prevLogNumber)
    .sort((a, b) => a.number - b.number)
  for (const [i, log] of logs.entries()) {
    const b = await read(log.name)
    if (b !== undefined) problems.push(...readLogFile(log.name, b, i === logs.length - 1).problems)
  }

  for (const [number, size] of [...state.tables].sort((a, b) => a[0] - b[0])) {
    const name = tableFile(number, present)
    if (name === undefined) {
      problems.push({
        file: `${String(number).padStart(6, "0")}.ldb`,
        offset: null,
        what: "live table named by the manifest is missing",
      })
      continue
    }
    if (options.tables === "checksums") {
      const b = await read(name)
      if (b !== undefined) problems.push(...verifyTable(name, b, size))
      continue
    }
    try {
      const actual = (await fs.stat(path.join(dir, name))).size
      files++
      if (actual !== size)
        problems.push({ file: name, offset: null, what: `size ${actual}, the manifest says ${size}` })
    } catch (e) {
      problems.push({ file: name, offset: null, what: `cannot be measured (${errorCode(e)})` })
    }
  }
  return done()
}
