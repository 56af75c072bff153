import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { compress as snappyjsCompress, uncompress as snappyjsUncompress } from "snappyjs"
import {
  FLAG_COMPRESSED,
  type Keyring,
  makeNonce,
  openStorage,
  openStorageValue,
  sealStorage,
  sealStorageValue,
} from "../src/mod.ts"
import { compress, decompress } from "../src/snappy.ts"
import { hex, loadVectors } from "./vectors.ts"

const dekArb = fc.uint8Array({ minLength: 32, maxLength: 32 })
const keyIdArb = fc.integer({ min: 1, max: 0xffff_ffff })
// values with repeats so both branches (compressed and not) are exercised
const valueArb = fc.oneof(
  fc.uint8Array({ maxLength: 2000 }),
  fc
    .tuple(fc.uint8Array({ minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 300 }))
    .map(([unit, n]) => Uint8Array.from({ length: unit.length * n }, (_, i) => unit[i % unit.length]!)),
  fc.string({ maxLength: 500 }).map((s) => new TextEncoder().encode(s.repeat(3))),
)
const only =
  (keyId: number, dek: Uint8Array): Keyring =>
  (id) =>
    id === keyId ? dek : undefined

describe("storage values (SPEC §2.4, CONTRACT §7: compress-then-encrypt)", () => {
  it("round trip, compressed only when strictly smaller", () => {
    fc.assert(
      fc.property(
        dekArb,
        keyIdArb,
        fc.uint8Array({ maxLength: 40 }),
        valueArb,
        (dek, keyId, location, value) => {
          const nonce = makeNonce(1, 2, 3n)
          const env = sealStorageValue({ dek, keyId, nonce, location, value })
          const raw = openStorage(env, only(keyId, dek), location)
          if (Result.isFailure(raw)) throw raw.failure
          const smaller = compress(value).length < value.length
          expect(raw.success.flag).toBe(smaller ? FLAG_COMPRESSED : 0)
          expect(env.length).toBeLessThanOrEqual(value.length + 34)
          const r = openStorageValue(env, only(keyId, dek), location)
          expect(Result.isSuccess(r) && r.success).toEqual(value)
          const moved = openStorageValue(env, only(keyId, dek), Uint8Array.from([...location, 0]))
          expect(Result.isFailure(moved) && moved.failure._tag).toBe("IntegrityError")
        },
      ),
    )
  })

  it("compresses a repetitive value and stores an incompressible one as is", () => {
    const dek = new Uint8Array(32).fill(7)
    const nonce = makeNonce(1, 0, 0n)
    const location = new TextEncoder().encode("k")
    const repetitive = new Uint8Array(4096).fill(0x61)
    const a = sealStorageValue({ dek, keyId: 9, nonce, location, value: repetitive })
    expect(a[1]).toBe(1)
    expect(a.length).toBeLessThan(repetitive.length)
    // compression that saves nothing is not used: the flag stays 0
    const even = new TextEncoder().encode("xxxxxxabcdefghij")
    expect(compress(even).length).toBe(even.length)
    expect(sealStorageValue({ dek, keyId: 9, nonce, location, value: even })[1]).toBe(0)
    const empty = sealStorageValue({ dek, keyId: 9, nonce, location, value: new Uint8Array() })
    expect(empty[1]).toBe(0)
    expect(empty.length).toBe(34)
  })

  it("a compressed-flag envelope that does not decompress is an IntegrityError, with no value", () => {
    const dek = new Uint8Array(32).fill(3)
    const location = new Uint8Array([1])
    for (const bogus of [
      new Uint8Array(),
      Uint8Array.from([5, 0x00]),
      Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
    ]) {
      const env = sealStorage({
        dek,
        keyId: 4,
        flag: 1,
        nonce: makeNonce(1, 0, 0n),
        location,
        plaintext: bogus,
      })
      const r = openStorageValue(env, () => dek, location)
      expect(Result.isFailure(r) && r.failure).toMatchObject({
        _tag: "IntegrityError",
        reason: "Decompression",
      })
    }
  })

  it("the flag-1 vector opens at the AEAD layer; its arbitrary bytes are refused by decompression", () => {
    const v = loadVectors("storage_envelopes.json").vectors.find((x: { flag: number }) => x.flag === 1)
    const dek = hex(v.dek_hex)
    const raw = openStorage(hex(v.envelope_hex), () => dek, hex(v.location_hex))
    expect(Result.isSuccess(raw) && raw.success.flag).toBe(1)
    if (decompress(hex(v.plaintext_hex)) === undefined) {
      const r = openStorageValue(hex(v.envelope_hex), () => dek, hex(v.location_hex))
      expect(Result.isFailure(r) && r.failure._tag).toBe("IntegrityError")
    }
  })

  it("round-trips values at the densest compression ratio", () => {
    const dek = new Uint8Array(32).fill(5)
    for (const value of [new Uint8Array(1 << 20), new Uint8Array(1 << 20).fill(0xab), new Uint8Array(65)]) {
      const env = sealStorageValue({
        dek,
        keyId: 3,
        nonce: makeNonce(1, 0, 0n),
        location: new Uint8Array(),
        value,
      })
      const r = openStorageValue(env, () => dek, new Uint8Array())
      expect(Result.isSuccess(r) && r.success).toEqual(value)
    }
  })

  it("reports envelope errors before decompression", () => {
    const r = openStorageValue(new Uint8Array(10), () => undefined, new Uint8Array())
    expect(Result.isFailure(r) && r.failure._tag).toBe("Truncated")
  })
})

describe("strict raw Snappy decoder", () => {
  it("decodes what snappyjs encodes, and agrees with snappyjs", () => {
    fc.assert(
      fc.property(valueArb, (value) => {
        const c = snappyjsCompress(value)
        expect(decompress(c)).toEqual(value)
        expect(Uint8Array.from(snappyjsUncompress(c))).toEqual(value)
      }),
    )
  })

  it("refuses every strict prefix of a valid stream", () => {
    fc.assert(
      fc.property(valueArb, fc.nat(), (value, cut) => {
        const c = compress(value)
        fc.pre(c.length > 1)
        expect(decompress(c.subarray(0, cut % c.length))).toBeUndefined()
      }),
    )
  })

  it("never throws on arbitrary input and never returns more than the declared length", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
        const out = decompress(junk)
        if (out !== undefined) expect(compress(out).length).toBeGreaterThan(0)
      }),
      { numRuns: 2000 },
    )
  })

  it("refuses trailing bytes, zero offsets, offsets before the start, and impossible lengths", () => {
    expect(decompress(Uint8Array.from([0x01, 0x00, 0x61]))).toEqual(Uint8Array.from([0x61]))
    expect(decompress(Uint8Array.from([0x01, 0x00, 0x61, 0x00]))).toBeUndefined() // element past the declared length
    expect(decompress(Uint8Array.from([0x05, 0x00, 0x61, 0x01, 0x00]))).toBeUndefined() // offset 0
    expect(decompress(Uint8Array.from([0x05, 0x00, 0x61, 0x01, 0x02]))).toBeUndefined() // offset 2 > 1 byte out
    expect(decompress(Uint8Array.from([0x05, 0x00, 0x61, 0x01, 0x01]))).toEqual(
      Uint8Array.from([0x61, 0x61, 0x61, 0x61, 0x61]),
    )
    expect(decompress(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0x0f]))).toBeUndefined() // 4 GiB from 5 bytes
    expect(decompress(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]))).toBeUndefined() // varint too long
    expect(decompress(new Uint8Array())).toBeUndefined()
    expect(decompress(Uint8Array.from([0x00]))).toEqual(new Uint8Array())
  })
})
