import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { envelopeArray, SLAB_BYTES } from "../src/envelopeSlab.ts"
import { makeNonce, openRaft, sealRaft } from "../src/mod.ts"

describe("envelopeSlab", () => {
  it("hands out zero-filled, exactly sized regions of shared slabs that never overlap", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 600 }), { minLength: 1, maxLength: 200 }), (lengths) => {
        const arrays = lengths.map((n) => {
          const a = envelopeArray(n)
          expect(a.length).toBe(n)
          expect(a.every((b) => b === 0)).toBe(true)
          a.fill(0xff)
          return a
        })
        // writing every region in full left no other region's byte alone or changed
        for (const a of arrays) expect(a.every((b) => b === 0xff)).toBe(true)
        const regions = arrays
          .filter((a) => a.length > 0)
          .map((a) => ({ buffer: a.buffer, from: a.byteOffset, to: a.byteOffset + a.length }))
        for (let i = 0; i < regions.length; i++)
          for (let j = i + 1; j < regions.length; j++) {
            const x = regions[i]!
            const y = regions[j]!
            if (x.buffer === y.buffer) expect(x.to <= y.from || y.to <= x.from).toBe(true)
          }
      }),
    )
  })

  it("carves small envelopes out of one slab and gives large ones an array of their own", () => {
    const a = envelopeArray(300)
    const b = envelopeArray(300)
    if (a.buffer === b.buffer) expect(b.byteOffset).toBeGreaterThanOrEqual(a.byteOffset + 300)
    else expect(b.byteOffset).toBe(0) // a new slab began
    expect(a.buffer.byteLength).toBe(SLAB_BYTES)
    const large = envelopeArray(SLAB_BYTES / 8 + 1)
    expect(large.buffer.byteLength).toBe(SLAB_BYTES / 8 + 1)
    expect(large.byteOffset).toBe(0)
  })

  it("seals built in slab regions open to the plaintext sealed", () => {
    const dek = new Uint8Array(32).fill(7)
    const plaintexts = Array.from({ length: 100 }, (_, i) => new Uint8Array(i * 7).fill(i))
    const envelopes = plaintexts.map((plaintext, i) =>
      sealRaft({ dek, keyId: 1, nonce: makeNonce(1, 1, BigInt(i)), plaintext }),
    )
    expect(new Set(envelopes.map((e) => e.buffer)).size).toBeLessThan(envelopes.length)
    envelopes.forEach((envelope, i) => {
      const r = openRaft(envelope, () => dek)
      expect(r._tag).toBe("Success")
      if (r._tag === "Success") expect(r.success.plaintext).toEqual(plaintexts[i])
    })
  })
})
