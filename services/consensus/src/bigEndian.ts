// Big-endian integers written with shifts. A DataView over a small, fresh
// Uint8Array makes V8 move the array off its heap, which cost more than the
// rest of building a log key or a version key (docs/performance.md).

/** `n` (0..2^32−1) into out[at..at+4). */
export const writeU32 = (out: Uint8Array, at: number, n: number): void => {
  out[at] = n >>> 24
  out[at + 1] = (n >>> 16) & 0xff
  out[at + 2] = (n >>> 8) & 0xff
  out[at + 3] = n & 0xff
}

/** `n` (a safe integer ≥ 0) into out[at..at+8). */
export const writeU64 = (out: Uint8Array, at: number, n: number): void => {
  writeU32(out, at, Math.floor(n / 0x1_0000_0000))
  writeU32(out, at + 4, n >>> 0)
}
