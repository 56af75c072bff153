// AES-GCM keeps one KeyObject per key array (speed), but never an old key for an array
// whose bytes changed: a zeroed or overwritten key seals as what it now holds. What
// open returns is the decipher's own output, handed over without a copy.
import { createCipheriv, randomBytes } from "node:crypto"
import { describe, expect, it } from "vitest"
import { open, sealInto } from "../src/aesGcm.ts"

const sealWith = (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array => {
  const out = new Uint8Array(pt.length + 16)
  sealInto(key, nonce, aad, pt, out, 0)
  return out
}

/** Reference: Node's AES-GCM with the key passed raw, no cache. */
const reference = (key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array => {
  const c = createCipheriv("aes-256-gcm", Buffer.from(key), nonce, { authTagLength: 16 })
  c.setAAD(aad)
  return new Uint8Array(Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]))
}

describe("aesGcm key objects", () => {
  it("the same key array seals like the raw key, call after call", () => {
    const key = new Uint8Array(randomBytes(32))
    for (let i = 0; i < 20; i++) {
      const nonce = randomBytes(12)
      const aad = randomBytes(i)
      const pt = randomBytes(i * 7)
      const sealed = sealWith(key, nonce, aad, pt)
      expect(sealed).toEqual(reference(key, nonce, aad, pt))
      expect(open(key, nonce, aad, sealed.subarray(0, pt.length), sealed.subarray(pt.length))).toEqual(
        new Uint8Array(pt),
      )
    }
  })

  it("a key array changed in place (zeroed, overwritten) is never used with its old bytes", () => {
    const key = new Uint8Array(randomBytes(32))
    const nonce = randomBytes(12)
    const aad = randomBytes(8)
    const pt = randomBytes(40)
    const before = sealWith(key, nonce, aad, pt)
    key.fill(0)
    const zeroed = sealWith(key, nonce, aad, pt)
    expect(zeroed).toEqual(reference(new Uint8Array(32), nonce, aad, pt))
    expect(zeroed).not.toEqual(before)
    key.set(randomBytes(32))
    expect(sealWith(key, nonce, aad, pt)).toEqual(reference(key, nonce, aad, pt))
    // The old key no longer opens what the array's new bytes sealed, and vice versa.
    expect(open(key, nonce, aad, before.subarray(0, 40), before.subarray(40))).toBeUndefined()
  })
})

describe("aesGcm open", () => {
  it("returns a plain Uint8Array that owns its bytes: slice() copies, and nothing else shares its memory", () => {
    const key = new Uint8Array(randomBytes(32))
    for (const length of [0, 1, 15, 16, 256, 4096]) {
      const nonce = randomBytes(12)
      const pt = randomBytes(length)
      const sealed = sealWith(key, nonce, new Uint8Array(), pt)
      const opened = open(key, nonce, new Uint8Array(), sealed.subarray(0, length), sealed.subarray(length))
      expect(opened).toEqual(new Uint8Array(pt))
      expect(Object.getPrototypeOf(opened)).toBe(Uint8Array.prototype)
      expect(opened!.byteOffset).toBe(0)
      expect(opened!.buffer.byteLength).toBe(length)
      if (length > 0) {
        const copy = opened!.slice()
        copy[0]! ^= 0xff
        expect(opened![0]).toBe(pt[0])
      }
    }
  })
})
