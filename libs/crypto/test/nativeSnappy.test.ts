// The native Snappy compressor (libs/crypto/native/snappy.c, built by
// scripts/setup.sh) against the JS one in src/snappy.ts: the same return and
// the same bytes for every input and limit — so the storage envelope's bytes
// and its compressed flag never depend on which one a node runs — the output
// zero again whenever it gives up, typed errors (never a crash) for bad
// arguments, and a loader that refuses an addon that is missing or differs.
import { mkdtempSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  ABANDONED,
  decompress,
  type Encoder,
  jsEncoder,
  loadNativeSnappy,
  maxCompressedLength,
  NATIVE_SNAPPY_PATH,
  snappyBackend,
} from "../src/snappy.ts"

const loaded = loadNativeSnappy()
const native = (): Encoder => {
  if (loaded.impl === undefined)
    throw new Error(`native Snappy not available: ${loaded.reason} (run npm run setup)`)
  return loaded.impl
}

const run = (encoder: Encoder, input: Uint8Array, limit: number) => {
  const out = new Uint8Array(maxCompressedLength(input.length))
  return { length: encoder(input, out, limit), out }
}

/** Both compressors on one input and limit: equal results, and a zero output when abandoned. */
const expectSame = (input: Uint8Array, limit: number) => {
  const want = run(jsEncoder, input, limit)
  const got = run(native(), input, limit)
  expect(got.length).toBe(want.length)
  expect(Buffer.from(got.out).equals(Buffer.from(want.out))).toBe(true)
  if (got.length === ABANDONED) expect(got.out.every((b) => b === 0)).toBe(true)
  else expect(decompress(got.out.subarray(0, got.length))).toEqual(input)
}

// Values with structure to find: runs, repeats at every distance, a small alphabet, noise.
const valueArb = fc.oneof(
  fc.uint8Array({ maxLength: 600 }),
  fc
    .array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { maxLength: 60 })
    .chain((pieces) =>
      fc
        .array(fc.nat({ max: Math.max(0, pieces.length - 1) }), { maxLength: 120 })
        .map((picks) => new Uint8Array(Buffer.concat(picks.map((i) => pieces[i] ?? new Uint8Array(0))))),
    ),
  fc.array(fc.constantFrom(97, 98, 99, 0), { maxLength: 3000 }).map((a) => Uint8Array.from(a)),
)

describe("native Snappy", () => {
  it("is what this process uses (setup builds it)", () => {
    native()
    expect(snappyBackend).toEqual({ name: "native", why: NATIVE_SNAPPY_PATH })
  })

  it("gives the JS compressor's length and bytes for any value, with no limit, the envelope's limit, or any other", () => {
    fc.assert(
      fc.property(valueArb, fc.integer({ min: -2, max: 700 }), (input, limit) => {
        expectSame(input, Number.POSITIVE_INFINITY)
        expectSame(input, input.length - 1)
        expectSame(input, limit)
      }),
      { numRuns: 600 },
    )
  })

  it("agrees across fragments and hash table sizes, up to several 64 KiB fragments", () => {
    let x = 12345
    const noise = (n: number) =>
      Uint8Array.from({ length: n }, () => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0
        return x >>> 24
      })
    const text = new TextEncoder().encode("ekv seals every stored value; ".repeat(9000))
    const halves = new Uint8Array(200_000)
    halves.set(noise(100_000))
    halves.set(text.subarray(0, 100_000), 100_000)
    for (const input of [noise(65_536), noise(65_537), text, halves, new Uint8Array(300_000).fill(7)]) {
      for (const limit of [Number.POSITIVE_INFINITY, input.length - 1, input.length >> 1, 1000]) {
        expectSame(input, limit)
      }
    }
    for (let n = 0; n < 300; n++) expectSame(noise(n), n - 1)
  })

  it("refuses bad arguments with typed errors, never a crash", () => {
    const addon = createRequire(import.meta.url)(NATIVE_SNAPPY_PATH) as {
      compress: (...args: unknown[]) => number
    }
    const u = (n: number) => new Uint8Array(n)
    expect(() => addon.compress([1, 2], u(40), 0)).toThrow(TypeError)
    expect(() => addon.compress(u(4), new Uint16Array(40), 0)).toThrow(TypeError)
    expect(() => addon.compress(u(4), u(40), Number.NaN)).toThrow(TypeError)
    expect(() => addon.compress(u(4), u(40), 1.5)).toThrow(TypeError)
    expect(() => addon.compress(u(4), u(40))).toThrow(TypeError)
    // Snappy's bound for 60 bytes is 32 + 60 + 10
    expect(() => addon.compress(u(60), u(101), Number.POSITIVE_INFINITY)).toThrow(RangeError)
    expect(addon.compress(u(60), u(102), Number.POSITIVE_INFINITY)).toBeGreaterThan(0)
    const shared = new Uint8Array(300)
    expect(() => addon.compress(shared.subarray(0, 40), shared.subarray(20), 0)).toThrow(RangeError)
  })

  it("the loader refuses a missing addon and one that encodes differently", () => {
    expect(loadNativeSnappy("/nonexistent/snappy.node").reason).toMatch(/not loadable/)
    const dir = mkdtempSync(join(tmpdir(), "ekv-snappy-"))
    const literal = join(dir, "literal.cjs")
    // Valid raw Snappy, but every value as one literal: not the bytes the JS compressor writes.
    writeFileSync(
      literal,
      `exports.compress = (input, out, limit) => {
  const n = input.length; let op = 0
  for (let v = n; ; v >>>= 7) { if (v < 0x80) { out[op++] = v; break } out[op++] = (v & 0x7f) | 0x80 }
  if (n > 0) { out[op++] = 61 << 2; out[op++] = (n - 1) & 0xff; out[op++] = (n - 1) >>> 8; out.set(input, op); op += n }
  if (op > limit) { out.fill(0); return -1 }
  return op
}`,
    )
    expect(loadNativeSnappy(literal).reason).toMatch(/self-test: it encodes \d+ bytes under limit/)
  })
})
