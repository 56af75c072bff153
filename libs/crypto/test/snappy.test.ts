import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { compress as snappyjsCompress } from "snappyjs"
import { compress, compressIfSmaller, decompress } from "../src/snappy.ts"

// Inputs are built from small descriptions (a seed and a shape) rather than
// drawn byte by byte, so 70 KB cases stay cheap and still shrink.
const FRAGMENT = 1 << 16

const bytesFromSeed = (seed: number, length: number, alphabet = 256): Uint8Array => {
  const out = new Uint8Array(length)
  let s = seed >>> 0
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = (s >>> 24) % alphabet
  }
  return out
}

// A segment of an input: fresh bytes, a run of one byte, or a copy of earlier bytes.
type Segment =
  | { readonly kind: "fresh"; readonly seed: number; readonly length: number; readonly alphabet: number }
  | { readonly kind: "run"; readonly byte: number; readonly length: number }
  | { readonly kind: "back"; readonly distance: number; readonly length: number }

const segmentArb = (maxLength: number): fc.Arbitrary<Segment> =>
  fc.oneof(
    fc.record({
      kind: fc.constant("fresh" as const),
      seed: fc.integer(),
      length: fc.integer({ min: 0, max: maxLength }),
      alphabet: fc.constantFrom(2, 4, 16, 256),
    }),
    fc.record({
      kind: fc.constant("run" as const),
      byte: fc.integer({ min: 0, max: 255 }),
      length: fc.integer({ min: 0, max: maxLength }),
    }),
    fc.record({
      kind: fc.constant("back" as const),
      distance: fc.integer({ min: 1, max: 70_000 }),
      length: fc.integer({ min: 0, max: maxLength }),
    }),
  )

const buildSegments = (segments: ReadonlyArray<Segment>): Uint8Array => {
  const out = new Uint8Array(segments.reduce((n, s) => n + s.length, 0))
  let length = 0
  for (const s of segments) {
    if (s.kind === "fresh") out.set(bytesFromSeed(s.seed, s.length, s.alphabet), length)
    else if (s.kind === "run") out.fill(s.byte, length, length + s.length)
    else if (length === 0) continue
    else {
      // byte by byte: the copy may overlap what it writes, as a Snappy copy does
      const from = length - Math.min(s.distance, length)
      for (let i = 0; i < s.length; i++) out[length + i] = out[from + i]!
    }
    length += s.length
  }
  return out.subarray(0, length)
}

// toEqual walks typed arrays element by element; for 70 KB inputs a byte compare is far cheaper.
const expectSameBytes = (actual: Uint8Array | undefined, expected: Uint8Array): void => {
  if (actual === undefined || Buffer.compare(actual, expected) !== 0) expect(actual).toEqual(expected)
}

const randomArb = fc.uint8Array({ maxLength: 3000 })
const repetitiveArb = fc
  .tuple(fc.uint8Array({ minLength: 1, maxLength: 24 }), fc.integer({ min: 1, max: 400 }))
  .map(([unit, n]) => Uint8Array.from({ length: unit.length * n }, (_, i) => unit[i % unit.length]!))
const mixedArb = fc.array(segmentArb(600), { maxLength: 12 }).map(buildSegments)
// every length from 0 past the first 64 KiB fragment boundary, with a little or a lot to find
const longArb = fc
  .record({
    seed: fc.integer(),
    length: fc.oneof(
      fc.integer({ min: 0, max: 70_000 }),
      fc.integer({ min: FRAGMENT - 20, max: FRAGMENT + 20 }),
    ),
    alphabet: fc.constantFrom(2, 3, 16, 256),
  })
  .map(({ seed, length, alphabet }) => bytesFromSeed(seed, length, alphabet))
// whole fragments of different kinds, so giving up early is checked across fragments
const fragmentsArb = fc.array(segmentArb(FRAGMENT), { minLength: 1, maxLength: 3 }).map(buildSegments)
// Random bytes, a copy of a few of them, random bytes again: the copy saves a
// byte or two per byte copied, so the encoding lands just above, at, or just
// below the input's length.
const nearEven = (seed: number, lead: number, copied: number, tail: number): Uint8Array => {
  const head = bytesFromSeed(seed, lead)
  const input = new Uint8Array(lead + copied + tail)
  input.set(head)
  input.set(head.subarray(1, 1 + copied), lead)
  input.set(bytesFromSeed(~seed, tail), lead + copied)
  return input.subarray(0, lead + Math.min(copied, lead - 1) + tail)
}
const nearEvenArb = fc
  .tuple(
    fc.integer(),
    fc.integer({ min: 1, max: 40 }),
    fc.integer({ min: 0, max: 12 }),
    fc.integer({ min: 0, max: 300 }),
  )
  .map(([seed, lead, copied, tail]) => nearEven(seed, lead, copied, tail))

const anyArb = fc.oneof(randomArb, repetitiveArb, mixedArb, nearEvenArb)

// snappyjs multiplies the 4-byte hash in floating point, which rounds once the
// product passes 2^53; where no position's hash comes out different from the
// exact 32-bit multiply, the two compressors must agree byte for byte.
const snappyjsHashesExactly = (input: Uint8Array): boolean => {
  for (let start = 0; start < input.length; start += FRAGMENT) {
    const size = Math.min(FRAGMENT, input.length - start)
    const shift = 32 - Math.min(31 - Math.clz32(size), 14)
    for (let i = start; i < start + size && i + 3 < input.length; i++) {
      const key = input[i]! | (input[i + 1]! << 8) | (input[i + 2]! << 16) | (input[i + 3]! << 24)
      if ((key * 0x1e35a7bd) >>> shift !== Math.imul(key, 0x1e35a7bd) >>> shift) return false
    }
  }
  return true
}

describe("raw Snappy compressor", () => {
  it("round-trips random, repetitive and mixed inputs", () => {
    fc.assert(
      fc.property(anyArb, (input) => {
        expectSameBytes(decompress(compress(input)), input)
      }),
      { numRuns: 4000 },
    )
  })

  it("round-trips inputs of 0..70,000 bytes, across the 64 KiB fragment boundary", () => {
    fc.assert(
      fc.property(longArb, (input) => {
        expectSameBytes(decompress(compress(input)), input)
      }),
      { numRuns: 1000 },
    )
  })

  it("round-trips inputs made of whole fragments of different kinds", () => {
    fc.assert(
      fc.property(fragmentsArb, (input) => {
        const c = compress(input)
        expectSameBytes(decompress(c), input)
        const smaller = compressIfSmaller(input)
        if (c.length < input.length) expectSameBytes(smaller, c)
        else expect(smaller).toBeUndefined()
      }),
      { numRuns: 200 },
    )
  })

  it("compressIfSmaller gives the encoding exactly when it is strictly shorter", () => {
    let shorter = 0
    let notShorter = 0
    fc.assert(
      fc.property(fc.oneof(anyArb, longArb), (input) => {
        const c = compress(input)
        const smaller = compressIfSmaller(input)
        if (c.length < input.length) {
          shorter++
          expectSameBytes(smaller, c)
        } else {
          notShorter++
          expect(smaller).toBeUndefined()
        }
      }),
      { numRuns: 4000 },
    )
    // both outcomes were exercised, not one of them vacuously
    expect(shorter).toBeGreaterThan(400)
    expect(notShorter).toBeGreaterThan(400)
  })

  it("decides at the boundary: one byte shorter, as long, one byte longer", () => {
    const lengths = new Set<number>()
    for (let lead = 1; lead <= 40; lead++) {
      for (let copied = 0; copied <= 12; copied++) {
        for (let tail = 0; tail <= 80; tail += 4) {
          const input = nearEven(lead * 1000 + copied * 100 + tail, lead, copied, tail)
          const c = compress(input)
          lengths.add(c.length - input.length)
          expect(compressIfSmaller(input)).toEqual(c.length < input.length ? c : undefined)
        }
      }
    }
    expect([-1, 0, 1].every((d) => lengths.has(d))).toBe(true)
    const even = new TextEncoder().encode("xxxxxxabcdefghij")
    expect(compress(even).length).toBe(even.length)
    expect(compressIfSmaller(even)).toBeUndefined()
    expect(compress(new Uint8Array())).toEqual(Uint8Array.from([0]))
    expect(compressIfSmaller(new Uint8Array())).toBeUndefined()
  })

  it("gives up mid-fragment only when it must: incompressible fragments, then a short copy", () => {
    // Each incompressible fragment adds a few bytes over its length, so after
    // several the scan of the last one can give up before its end; the copy at
    // the end decides, by a byte or two either way, whether it had to.
    let near = 0
    for (const fragments of [4, 8, 16]) {
      const base = fragments * FRAGMENT
      const prefix = bytesFromSeed(fragments, base + 100)
      for (let copied = 4; copied <= 90; copied++) {
        for (const flipLast of [false, true]) {
          const input = new Uint8Array(base + 100 + copied)
          input.set(prefix)
          input.set(prefix.subarray(base + 1, base + 1 + copied), base + 100)
          if (flipLast) input[input.length - 1]! ^= 0x55
          const c = compress(input)
          if (Math.abs(c.length - input.length) <= 2) near++
          const smaller = compressIfSmaller(input)
          if (c.length < input.length) expectSameBytes(smaller, c)
          else expect(smaller).toBeUndefined()
        }
      }
    }
    expect(near).toBeGreaterThan(20)
  })

  it("reads a view at its offset, not its whole buffer", () => {
    fc.assert(
      fc.property(anyArb, fc.nat({ max: 64 }), (input, lead) => {
        const backing = new Uint8Array(lead + input.length + 7).fill(0x61)
        backing.set(input, lead)
        const view = backing.subarray(lead, lead + input.length)
        expect(compress(view)).toEqual(compress(input))
        expect(compressIfSmaller(view)).toEqual(compressIfSmaller(input))
      }),
      { numRuns: 500 },
    )
  })

  it("returns fresh, exactly sized arrays that a later call does not touch", () => {
    const a = new Uint8Array(4096).fill(0x61)
    const b = new TextEncoder().encode("the same words again and again, ".repeat(40))
    const first = compressIfSmaller(a)!
    const kept = Array.from(first)
    const second = compressIfSmaller(b)!
    const third = compress(a)
    for (const [x, y] of [
      [first, second],
      [first, third],
      [second, third],
    ] as const) {
      expect(x.buffer).not.toBe(y.buffer)
    }
    for (const x of [first, second, third]) {
      expect(x.byteOffset).toBe(0)
      expect(x.buffer.byteLength).toBe(x.length)
    }
    expect(Array.from(first)).toEqual(kept)
    expect(decompress(first)).toEqual(a)
    expect(decompress(second)).toEqual(b)
  })
})

describe("raw Snappy compressor against snappyjs (the compressor it replaces)", () => {
  it("both encodings decode with the strict decoder to the input; byte-equal where snappyjs hashes exactly", () => {
    let compared = 0
    let total = 0
    fc.assert(
      fc.property(fc.oneof(anyArb, longArb), (input) => {
        const old = Uint8Array.from(snappyjsCompress(input))
        const ours = compress(input)
        expectSameBytes(decompress(old), input)
        expectSameBytes(decompress(ours), input)
        total++
        if (snappyjsHashesExactly(input)) {
          compared++
          expectSameBytes(ours, old)
        }
      }),
      { numRuns: 3000 },
    )
    // the exact-hash condition holds for most inputs (long ones are likelier to
    // hit a rounded hash somewhere), so the byte comparison is not vacuous
    expect(compared).toBeGreaterThan(total * 0.75)
  })

  it("matches snappyjs on a fixed corpus, and is never longer in total", () => {
    const text = new TextEncoder().encode(
      "Raft log entries carry sealed values; followers append, the leader commits. ".repeat(200),
    )
    const json = new TextEncoder().encode(
      JSON.stringify(
        Array.from({ length: 300 }, (_, i) => ({ id: i, name: `user-${i % 17}`, active: i % 3 === 0 })),
      ),
    )
    const corpus = [
      new Uint8Array(),
      Uint8Array.from([1, 2, 3]),
      new Uint8Array(100_000),
      new Uint8Array(FRAGMENT).fill(0xab),
      bytesFromSeed(1, 256),
      bytesFromSeed(2, 4096),
      bytesFromSeed(3, 70_000, 4),
      text,
      json,
      text.subarray(0, 255),
      text.subarray(0, 256),
      text.subarray(0, 257),
    ]
    let ours = 0
    let theirs = 0
    for (const input of corpus) {
      const old = Uint8Array.from(snappyjsCompress(input))
      const c = compress(input)
      ours += c.length
      theirs += old.length
      if (snappyjsHashesExactly(input)) expectSameBytes(c, old)
    }
    expect(ours).toBeLessThanOrEqual(theirs)
  })
})
