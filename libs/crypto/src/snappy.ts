// Raw Snappy block format (CONTRACT §7, storage flag bit 0): a varint of the
// uncompressed length, then literal and copy elements. Compression is
// snappyjs; decompression is done here, strictly: snappyjs's decoder reads
// past its input as zeros and does not check the decoded length, and a value
// that decodes to other bytes than were sealed must fail, not be served.
import { compress as snappyCompress } from "snappyjs"

/** Raw Snappy compression of `bytes` (a fresh Uint8Array). */
export const compress = (bytes: Uint8Array): Uint8Array => Uint8Array.from(snappyCompress(bytes))

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
