import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { InvalidArgument } from "../../../src/stateMachine/errors.ts"
import { decodeSystemKey, metaKey, rejectionKey } from "../../../src/stateMachine/keySpace.ts"
import {
  compareBytes,
  decodeVersionKey,
  decodeVersionKeyBytes,
  hasPrefix,
  MAX_INDEX,
  prefixRange,
  versionKey,
  versionKeyFromBytes,
  versionPrefix,
  versionsEnd,
} from "../../../src/stateMachine/versionKey.ts"

const utf8 = new TextEncoder()
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex")

// Keys rich in 0x00, 0x01, 0xFF-adjacent and multi-byte characters, where escaping bugs live.
const keyArb = fc.oneof(
  fc.string({
    unit: fc.constantFrom("\u0000", "\u0001", "a", "b", "\u00ff", "é", "€", "😀", "\u007f"),
    maxLength: 6,
  }),
  fc.string({ unit: "grapheme", maxLength: 8 }),
  fc.string({ maxLength: 8 }),
)
const indexArb = fc.oneof(
  fc.integer({ min: 0, max: 20 }),
  fc.constantFrom(0xffff_ffff, 0x1_0000_0000, MAX_INDEX),
  fc.integer({ min: 0, max: MAX_INDEX }),
)

/** The order the encoding must reproduce: user key by UTF-8 bytes, then index descending (newest first). */
const naive = (a: [string, number], b: [string, number]): number => {
  const c = compareBytes(utf8.encode(a[0]), utf8.encode(b[0]))
  if (c !== 0) return c
  return b[1] - a[1]
}

describe("version key (SPEC §2.4 storage key, AAD location)", () => {
  it("has the documented byte layout", () => {
    expect(hex(versionKey("a", 1))).toBe("01" + "61" + "0001" + "fffffffffffffffe")
    expect(hex(versionKey("a\u0000b", 0))).toBe("01" + "6100ff62" + "0001" + "ffffffffffffffff")
    expect(hex(versionKey("", 0x1_0000_0001))).toBe("01" + "0001" + "fffffffefffffffe")
    expect(hex(versionKey("é", 2))).toBe("01" + "c3a9" + "0001" + "fffffffffffffffd")
  })

  it("round-trips", () => {
    fc.assert(
      fc.property(keyArb, indexArb, (k, i) => {
        expect(decodeVersionKey(versionKey(k, i))).toEqual({ key: k, index: i })
      }),
    )
  })

  it("preserves (UTF-8 key ascending, index descending) order", () => {
    fc.assert(
      fc.property(fc.tuple(keyArb, indexArb), fc.tuple(keyArb, indexArb), (a, b) => {
        expect(Math.sign(compareBytes(versionKey(...a), versionKey(...b)))).toBe(Math.sign(naive(a, b)))
      }),
    )
  })

  it("keeps all versions of a key contiguous and the newest ≤ i at the first key ≥ versionKey(k, i)", () => {
    fc.assert(
      fc.property(keyArb, keyArb, indexArb, indexArb, (k, other, i, j) => {
        const raw = utf8.encode(k)
        const vk = versionKey(k, i)
        expect(hasPrefix(vk, versionPrefix(raw))).toBe(true)
        expect(compareBytes(vk, versionsEnd(raw))).toBeLessThan(0)
        const ok = versionKey(other, j)
        if (other !== k) {
          // another key's versions are all outside [versionPrefix(k), versionsEnd(k))
          const inside = compareBytes(ok, versionPrefix(raw)) >= 0 && compareBytes(ok, versionsEnd(raw)) < 0
          expect(inside).toBe(false)
        }
        // a version j ≤ i of k sorts at or after versionKey(k, i); j > i before
        expect(compareBytes(versionKey(k, j), vk) >= 0).toBe(j <= i)
      }),
    )
  })

  it("prefix ranges hold exactly the keys with that prefix", () => {
    fc.assert(
      fc.property(keyArb, keyArb, indexArb, (p, k, i) => {
        const r = prefixRange(utf8.encode(p))
        const vk = versionKey(k, i)
        const inside = compareBytes(vk, r.gte) >= 0 && compareBytes(vk, r.lt) < 0
        expect(inside).toBe(hasPrefix(utf8.encode(k), utf8.encode(p)))
      }),
    )
  })

  it("never collides with the system key space", () => {
    fc.assert(
      fc.property(keyArb, indexArb, (k, i) => {
        expect(versionKey(k, i)[0]).toBe(0x01)
      }),
    )
    expect(metaKey("cluster_id")[0]).toBe(0x00)
    expect(decodeSystemKey(rejectionKey(42))).toEqual({ kind: "rejection", index: 42 })
    expect(decodeSystemKey(metaKey("encryption_state"))).toEqual({ kind: "meta", name: "encryption_state" })
  })

  it("refuses what it cannot encode and what does not decode", () => {
    expect(() => versionKey("\ud800", 1)).toThrow(InvalidArgument)
    expect(() => versionKey("a", -1)).toThrow(InvalidArgument)
    expect(() => versionKey("a", 1.5)).toThrow(InvalidArgument)
    expect(() => versionKey("a", MAX_INDEX + 1)).toThrow(InvalidArgument)
    expect(() => decodeVersionKeyBytes(Uint8Array.of(0x01, 0x61, 0x00, 0x02))).toThrow()
    expect(() => decodeVersionKeyBytes(Uint8Array.of(0x01, 0x61, 0x00, 0x01, 1, 2))).toThrow()
    expect(() => decodeVersionKeyBytes(Uint8Array.of(0x00, 0x01))).toThrow()
  })
})

describe("versionKey reuse", () => {
  it("hands out the bytes of exactly the (key, index) asked for, across repeats and changes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(keyArb, fc.integer({ min: 0, max: 3 })), { minLength: 1, maxLength: 30 }),
        (calls) => {
          for (const [key, index] of calls) {
            const a = versionKey(key, index)
            const again = versionKey(key, index)
            expect(again).toBe(a)
            expect(decodeVersionKey(a)).toEqual({ key, index })
            expect(hex(a)).toBe(hex(versionKeyFromBytes(utf8.encode(key), index)))
          }
        },
      ),
      { numRuns: 500 },
    )
  })
})
