// Arrays that envelopes are built in. A fresh typed array of more than 64
// bytes gets an off-heap backing store of its own, which costs about 0.9 µs —
// a fifth of the AES-GCM seal of a 256 B value, and a garbage collector's
// chore afterwards (docs/performance.md, change 19). Envelopes are instead
// carved, in order, out of shared zero-filled slabs; each region is handed out
// once, so it starts all zero like a fresh array.
//
// What this trades, and why only envelopes come from here:
// - an array's `.buffer` is its whole slab, so a slab must never hold a secret
//   or a plaintext byte: an envelope is header, nonce, ciphertext and tag (and
//   the caller's prefix in its headroom), all public once sealed;
// - a slab lives as long as any array carved from it: one envelope kept for
//   long keeps at most SLAB_BYTES alive, and an envelope larger than an eighth
//   of a slab gets an array of its own.

export const SLAB_BYTES = 16 * 1024
const OWN_ARRAY_ABOVE = SLAB_BYTES / 8
// Regions start 8-byte aligned, as a fresh array's would.
const ALIGN = 8

let slab = new ArrayBuffer(SLAB_BYTES)
let used = 0

/** A zero-filled array of `length` bytes for an envelope (see above). */
export const envelopeArray = (length: number): Uint8Array => {
  if (length > OWN_ARRAY_ABOVE) return new Uint8Array(length)
  if (used + length > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES)
    used = 0
  }
  const out = new Uint8Array(slab, used, length)
  used = Math.min(SLAB_BYTES, (used + length + ALIGN - 1) & ~(ALIGN - 1))
  return out
}
