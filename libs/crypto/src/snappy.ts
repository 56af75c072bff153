// Raw Snappy block format (CONTRACT §7, storage flag bit 0): a varint of the
// uncompressed length, then literal and copy elements. Both directions are
// done here. The compressor is Snappy's reference compressFragment in the
// variant snappyjs implements (the probe step grows by one per miss), with the
// hash multiply exact in 32 bits; for the storage path it can give up as soon
// as the output cannot be smaller than the input, since compression is only
// used when it is (CONTRACT §7). The decoder is strict: a value that decodes to
// other bytes than were sealed must fail, not be served.
//
// Every stored value is offered to the compressor, and its cost is the scan
// (~1.5 µs for 256 incompressible bytes here). libs/crypto/native/snappy.c is
// the same compressor in C, byte for byte: a process uses it when
// scripts/setup.sh built it and it gives this module's bytes in a self-test
// at load, and the JS one otherwise (or when EKV_NATIVE_SNAPPY=0).

import { addonPath, chooseImpl, type Loaded, loadAddon } from "./nativeAddon.ts"

// The reference compresses 64 KiB fragments independently; copies never reach
// into an earlier fragment, so hash table positions fit in 16 bits.
const FRAGMENT_SIZE = 1 << 16
const MAX_HASH_TABLE_BITS = 14
// The match scan stops this many bytes before a fragment's end; the rest is a literal.
const INPUT_MARGIN = 15
// Below this length a literal is copied byte by byte: a subarray view costs more.
const SHORT_LITERAL = 16
// The varint of the uncompressed length is a uint32.
const MAX_INPUT_LENGTH = 0xffff_ffff

// Module scratch, reused across calls: hash tables by size (all zero between
// calls) and one output buffer (zero outside a call: it holds plaintext).
const hashTables: Array<Uint16Array | undefined> = []
let outputScratch = new Uint8Array(0)

/** The reference's bound on the encoded length of `length` bytes. */
export const maxCompressedLength = (length: number): number => 32 + length + Math.floor(length / 6)

// Any element encodes at most 64 input bytes per 3 output bytes (a 3-byte
// copy of 64), so `remaining` input bytes need at least this much more output.
const minEncodedLength = (remaining: number): number => Math.ceil((3 * remaining) / 64)

const literalTagLength = (length: number): number => (length <= 60 ? 1 : length < 256 ? 2 : 3)

const load32 = (a: Uint8Array, i: number): number =>
  a[i]! | (a[i + 1]! << 8) | (a[i + 2]! << 16) | (a[i + 3]! << 24)

const hash = (key: number, shift: number): number => Math.imul(key, 0x1e35a7bd) >>> shift

// Fragments shorter than 2^14 bytes use a table of the largest power of two not above their length.
const hashTableBits = (size: number): number => Math.min(31 - Math.clz32(size), MAX_HASH_TABLE_BITS)

const hashTable = (bits: number): Uint16Array => {
  let table = hashTables[bits]
  if (table === undefined) {
    table = new Uint16Array(1 << bits)
    hashTables[bits] = table
  }
  return table
}

const emitLiteral = (
  input: Uint8Array,
  from: number,
  length: number,
  out: Uint8Array,
  op: number,
): number => {
  const n = length - 1
  if (length <= 60) {
    out[op++] = n << 2
  } else if (length < 256) {
    out[op++] = 60 << 2
    out[op++] = n
  } else {
    // a fragment is at most 64 KiB, so two length bytes always suffice
    out[op++] = 61 << 2
    out[op++] = n & 0xff
    out[op++] = n >>> 8
  }
  if (length < SHORT_LITERAL) {
    for (let i = 0; i < length; i++) out[op + i] = input[from + i]!
  } else {
    out.set(input.subarray(from, from + length), op)
  }
  return op + length
}

// One copy element of 4..64 bytes: the 2-byte form when it fits (length < 12, offset < 2048).
const emitCopyUpTo64 = (out: Uint8Array, op: number, offset: number, length: number): number => {
  if (length < 12 && offset < 2048) {
    out[op] = 1 | ((length - 4) << 2) | ((offset >>> 8) << 5)
    out[op + 1] = offset & 0xff
    return op + 2
  }
  out[op] = 2 | ((length - 1) << 2)
  out[op + 1] = offset & 0xff
  out[op + 2] = offset >>> 8
  return op + 3
}

// Pieces of 64, and 60 before a last piece that would otherwise be under 4 bytes.
const emitCopy = (out: Uint8Array, op: number, offset: number, length: number): number => {
  let rest = length
  while (rest >= 68) {
    op = emitCopyUpTo64(out, op, offset, 64)
    rest -= 64
  }
  if (rest > 64) {
    op = emitCopyUpTo64(out, op, offset, 60)
    rest -= 60
  }
  return emitCopyUpTo64(out, op, offset, rest)
}

// Result of a fragment whose output would pass the limit; what it wrote is already zeroed.
export const ABANDONED = -1

const abandon = (out: Uint8Array, op: number): number => {
  out.fill(0, 0, op)
  return ABANDONED
}

// The input position from which the pending literal (from `nextEmit`) plus
// the least the rest of the input can cost would take the output past `limit`.
// Rounded so that it is never before the exact position: giving up is sound.
const scanGiveUpPosition = (op: number, nextEmit: number, inputEnd: number, limit: number): number =>
  Math.floor((64 * (limit - op + nextEmit - 1) - 3 * inputEnd) / 61) + 1

/**
 * Snappy's compressFragment over `input[start, end)`, written at `out[op]`;
 * returns the new output position, or ABANDONED once the whole output is
 * bound to exceed `limit` bytes. `table` is all zero on entry.
 */
const compressFragment = (
  input: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  op: number,
  limit: number,
  table: Uint16Array,
  shift: number,
): number => {
  const inputEnd = input.length
  let nextEmit = start
  if (end - start >= INPUT_MARGIN) {
    const ipLimit = end - INPUT_MARGIN
    let ip = start + 1
    let nextKey = load32(input, ip)
    let nextHash = hash(nextKey, shift)
    scan: for (;;) {
      // Look for a 4-byte match, probing further apart the longer none is found
      // (one more byte between probes every 32 misses). Past `stop` the scan
      // either reached its end or can give up.
      const stop = Math.min(ipLimit, scanGiveUpPosition(op, nextEmit, inputEnd, limit) - 1)
      let skip = 32
      let nextIp = ip
      let candidate: number
      let key: number
      do {
        ip = nextIp
        key = nextKey
        const h = nextHash
        nextIp = ip + (skip >>> 5)
        skip += 1
        if (ip > stop) {
          if (ip > ipLimit) break scan
          return abandon(out, op)
        }
        // past ipLimit the next probe is never made, so its bytes are not read
        if (nextIp <= ipLimit) {
          nextKey = load32(input, nextIp)
          nextHash = hash(nextKey, shift)
        }
        candidate = start + table[h]!
        table[h] = ip - start
      } while (key !== load32(input, candidate))

      op = emitLiteral(input, nextEmit, ip - nextEmit, out, op)

      // Extend the match, emit it, and keep going while the next position matches too.
      do {
        const base = ip
        let matched = 4
        while (ip + matched < end && input[ip + matched] === input[candidate + matched]) matched++
        ip += matched
        op = emitCopy(out, op, base - candidate, matched)
        nextEmit = ip
        if (ip >= ipLimit) break scan
        table[hash(load32(input, ip - 1), shift)] = ip - 1 - start
        key = load32(input, ip)
        const h = hash(key, shift)
        candidate = start + table[h]!
        table[h] = ip - start
      } while (key === load32(input, candidate))

      ip += 1
      nextKey = load32(input, ip)
      nextHash = hash(nextKey, shift)
    }
  }
  if (nextEmit < end) {
    // the literal is only copied if the output can still come in under the limit
    const length = end - nextEmit
    if (op + literalTagLength(length) + length + minEncodedLength(inputEnd - end) > limit) {
      return abandon(out, op)
    }
    op = emitLiteral(input, nextEmit, length, out, op)
  }
  return op
}

/**
 * A compressor: writes the encoding of `input` at `out[0..]` (at least
 * maxCompressedLength(input.length) long, zero on entry) and returns its
 * length, or ABANDONED with `out` zero again as soon as the encoding is bound
 * to exceed `limit` bytes.
 */
export type Encoder = (input: Uint8Array, out: Uint8Array, limit: number) => number

/** The compressor in JS. */
export const jsEncoder: Encoder = (input, out, limit) => {
  const length = input.length
  let op = 0
  for (let v = length; ; v >>>= 7) {
    if (v < 0x80) {
      out[op++] = v
      break
    }
    out[op++] = (v & 0x7f) | 0x80
  }
  for (let start = 0; start < length; start += FRAGMENT_SIZE) {
    const end = Math.min(start + FRAGMENT_SIZE, length)
    const bits = hashTableBits(end - start)
    const table = hashTable(bits)
    op = compressFragment(input, start, end, out, op, limit, table, 32 - bits)
    // Short fragments never touch the table; otherwise it is cleared for the next fragment or call.
    if (end - start >= INPUT_MARGIN) table.fill(0)
    if (op === ABANDONED) return ABANDONED
  }
  return op > limit ? abandon(out, op) : op
}

/** The addon's function (snappy.c): an Encoder. */
interface NativeSnappy {
  compress(input: Uint8Array, out: Uint8Array, limit: number): number
}

/** Where setup builds the addon. */
export const NATIVE_SNAPPY_PATH = addonPath("snappy.node")

// Inputs that take every path: empty, shorter than the scan margin, literals of
// each tag length, copies of each form, runs, incompressible bytes, and more
// than one fragment; each under no limit, the limit compressIfSmaller sets, and
// a tight one.
const selfTestInputs = (): Uint8Array[] => {
  let x = 0x9e3779b9
  const random = (n: number) =>
    Uint8Array.from({ length: n }, () => {
      x ^= x << 13
      x ^= x >>> 17
      x ^= x << 5
      return x & 0xff
    })
  const text = new TextEncoder().encode("the storage envelope seals a value under its key; ".repeat(40))
  // past one 64 KiB fragment: noise, a repetitive stretch, a run of zeros, noise
  const fragments = new Uint8Array(65_536 + 300)
  fragments.set(random(2_000))
  fragments.set(text, 4_000)
  fragments.set(random(300), 65_536)
  return [new Uint8Array(0), random(7), random(256), random(4096), text, fragments]
}

/** Compresses fixed inputs with `candidate` and the JS encoder; a reason when they differ. */
const selfTest = (candidate: Encoder): string | undefined => {
  for (const input of selfTestInputs()) {
    for (const limit of [Number.POSITIVE_INFINITY, input.length - 1, Math.floor(input.length / 3)]) {
      const capacity = maxCompressedLength(input.length)
      const want = new Uint8Array(capacity)
      const got = new Uint8Array(capacity)
      const wantLength = jsEncoder(input, want, limit)
      const gotLength = candidate(input, got, limit)
      if (gotLength !== wantLength || got.some((b, i) => b !== want[i]))
        return `it encodes ${input.length} bytes under limit ${limit} differently from the JS compressor`
    }
  }
  return undefined
}

/** The native compressor, or why not (missing, not loadable, failed the self-test). */
export const loadNativeSnappy = (path = NATIVE_SNAPPY_PATH): Loaded<Encoder> =>
  loadAddon(
    path,
    (addon: NativeSnappy): Encoder =>
      (input, out, limit) =>
        addon.compress(input, out, limit),
    selfTest,
  )

const chosen = chooseImpl("EKV_NATIVE_SNAPPY", () => loadNativeSnappy(), NATIVE_SNAPPY_PATH, jsEncoder)

/** The compressor this process uses, and why (for start-up logs and benchmarks). */
export const snappyBackend: { readonly name: "native" | "js"; readonly why: string } = {
  name: chosen.native ? "native" : "js",
  why: chosen.why,
}

const activeEncoder = chosen.impl

/**
 * Encodes `input` into the output scratch and returns the encoded length, or
 * ABANDONED (scratch left zero) as soon as the encoding is bound to exceed
 * `limit` bytes.
 */
const encode = (input: Uint8Array, limit: number): number => {
  const capacity = maxCompressedLength(input.length)
  if (outputScratch.length < capacity)
    outputScratch = new Uint8Array(Math.max(capacity, 2 * outputScratch.length))
  return activeEncoder(input, outputScratch, limit)
}

// A fresh, exactly sized copy of the first `length` scratch bytes, which are then zeroed.
const takeOutput = (length: number): Uint8Array => {
  const result = outputScratch.slice(0, length)
  outputScratch.fill(0, 0, length)
  return result
}

/** Raw Snappy compression of `bytes` (a fresh Uint8Array). */
export const compress = (bytes: Uint8Array): Uint8Array => {
  if (bytes.length > MAX_INPUT_LENGTH) throw new RangeError("raw Snappy input must be under 4 GiB")
  // no limit: the output never outgrows maxCompressedLength
  return takeOutput(encode(bytes, Number.POSITIVE_INFINITY))
}

/**
 * The raw Snappy encoding of `bytes` if it is strictly shorter than `bytes`
 * (a fresh Uint8Array), else `undefined` — decided as early as possible, with
 * no output allocated when it is not shorter.
 */
export const compressIfSmaller = (bytes: Uint8Array): Uint8Array | undefined => {
  if (bytes.length > MAX_INPUT_LENGTH) return undefined
  const length = encode(bytes, bytes.length - 1)
  return length === ABANDONED ? undefined : takeOutput(length)
}

// The densest element is a 3-byte copy of 64 bytes: no valid input decodes to
// more than 64/3 bytes per input byte, so a larger declared length is refused
// before anything is allocated.
const MAX_EXPANSION_NUM = 64
const MAX_EXPANSION_DEN = 3

/** Strict raw Snappy decompression; `undefined` for any malformed input. */
export const decompress = (input: Uint8Array): Uint8Array | undefined => {
  let pos = 0
  let length = 0
  for (let shift = 0; ; shift += 7) {
    if (pos >= input.length || shift > 28) return undefined
    const b = input[pos++]!
    length += (b & 0x7f) * 2 ** shift
    if (b < 0x80) break
  }
  if (length > 0xffff_ffff) return undefined
  if (length * MAX_EXPANSION_DEN > (input.length - pos) * MAX_EXPANSION_NUM) return undefined
  const out = new Uint8Array(length)
  let outPos = 0
  while (pos < input.length) {
    const tag = input[pos++]!
    const kind = tag & 0x03
    if (kind === 0) {
      // literal: length-1 in the upper 6 bits, or in 1–4 following bytes (LE) when those bits are 60–63
      let len = (tag >>> 2) + 1
      if (len > 60) {
        const extra = len - 60
        if (pos + extra > input.length) return undefined
        let v = 0
        for (let i = 0; i < extra; i++) v += input[pos + i]! * 2 ** (8 * i)
        pos += extra
        len = v + 1
      }
      if (pos + len > input.length || outPos + len > length) return undefined
      out.set(input.subarray(pos, pos + len), outPos)
      pos += len
      outPos += len
      continue
    }
    let len: number
    let offset: number
    if (kind === 1) {
      if (pos + 1 > input.length) return undefined
      len = ((tag >>> 2) & 0x07) + 4
      offset = ((tag >>> 5) << 8) | input[pos]!
      pos += 1
    } else if (kind === 2) {
      if (pos + 2 > input.length) return undefined
      len = (tag >>> 2) + 1
      offset = input[pos]! | (input[pos + 1]! << 8)
      pos += 2
    } else {
      if (pos + 4 > input.length) return undefined
      len = (tag >>> 2) + 1
      offset =
        (input[pos]! | (input[pos + 1]! << 8) | (input[pos + 2]! << 16) | (input[pos + 3]! << 24)) >>> 0
      pos += 4
    }
    if (offset === 0 || offset > outPos || outPos + len > length) return undefined
    // byte by byte: a copy may overlap its own output (offset < len repeats a pattern)
    for (let i = 0; i < len; i++) {
      out[outPos + i] = out[outPos - offset + i]!
    }
    outPos += len
  }
  return outPos === length ? out : undefined
}
