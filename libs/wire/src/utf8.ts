// UTF-8 of the short strings on the request path: user keys, node ids, small
// JSON replies. TextEncoder.encode hands back an array with a backing store
// of its own, about 0.6 µs for a 20-character key — several times a plain
// loop into a small array, which V8 keeps on its heap (docs/performance.md,
// change 20). Strings of up to SHORT characters that are all ASCII take the
// loop; anything else goes to TextEncoder, with its exact behaviour (a lone
// surrogate becomes U+FFFD).

const encoder = new TextEncoder()

/** Longest string the loop takes: V8 keeps typed arrays of up to 64 bytes on its heap. */
const SHORT = 64

/** The UTF-8 bytes of `s`, as TextEncoder.encode gives them. */
export const utf8Bytes = (s: string): Uint8Array => {
  const n = s.length
  if (n > SHORT) return encoder.encode(s)
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c > 0x7f) return encoder.encode(s)
    out[i] = c
  }
  return out
}
