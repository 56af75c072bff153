// The native AES-256-GCM backend (libs/crypto/native/aead.c, built by
// scripts/setup.sh) against node:crypto: the same bytes for every length,
// the same refusals, in-place use, and typed errors (never a crash) for bad
// arguments. The loader refuses an addon that is missing or seals wrongly.
import { randomBytes, randomInt } from "node:crypto"
import { mkdtempSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { type Aead, aeadBackend, loadNativeAead, NATIVE_AEAD_PATH, nodeCryptoAead } from "../src/aesGcm.ts"

const loaded = loadNativeAead()
const native = (): Aead => {
  if (loaded.impl === undefined)
    throw new Error(`native AES-GCM not available: ${loaded.reason} (run npm run setup)`)
  return loaded.impl
}

const seal = (aead: Aead, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array) => {
  const out = new Uint8Array(pt.length + 16)
  aead.sealInto(key, nonce, aad, pt, out, 0)
  return out
}

const LENGTHS = [0, 1, 15, 16, 17, 31, 255, 256, 300, 4096, 65_537]

describe("native AES-256-GCM", () => {
  it("is what this process uses (setup builds it)", () => {
    native()
    expect(aeadBackend).toEqual({ name: "openssl-native", why: NATIVE_AEAD_PATH })
  })

  it("seals exactly as node:crypto and opens node:crypto's seals, for every length", () => {
    const aead = native()
    const cases = [...LENGTHS, ...Array.from({ length: 200 }, () => randomInt(0, 5_000))]
    for (const length of cases) {
      const key = new Uint8Array(randomBytes(32))
      const nonce = new Uint8Array(randomBytes(12))
      const aad = new Uint8Array(randomBytes(randomInt(0, 100)))
      const pt = new Uint8Array(randomBytes(length))
      const mine = seal(aead, key, nonce, aad, pt)
      const theirs = seal(nodeCryptoAead, key, nonce, aad, pt)
      expect(Buffer.from(mine).equals(Buffer.from(theirs)), `length ${length}`).toBe(true)
      expect(aead.open(key, nonce, aad, theirs.subarray(0, length), theirs.subarray(length))).toEqual(pt)
      expect(nodeCryptoAead.open(key, nonce, aad, mine.subarray(0, length), mine.subarray(length))).toEqual(
        pt,
      )
    }
  })

  it("refuses any change to ciphertext, tag, AAD, nonce or key, with no plaintext out", () => {
    const aead = native()
    const key = new Uint8Array(randomBytes(32))
    const nonce = new Uint8Array(randomBytes(12))
    const aad = new Uint8Array(randomBytes(24))
    const pt = new Uint8Array(randomBytes(300))
    const sealed = seal(aead, key, nonce, aad, pt)
    const flip = (a: Uint8Array, i: number) => {
      const b = a.slice()
      b[i]! ^= 0x01
      return b
    }
    const ct = sealed.subarray(0, 300)
    const tag = sealed.subarray(300)
    expect(aead.open(key, nonce, aad, flip(ct, 0), tag)).toBeUndefined()
    expect(aead.open(key, nonce, aad, flip(ct, 299), tag)).toBeUndefined()
    expect(aead.open(key, nonce, aad, ct, flip(tag, 15))).toBeUndefined()
    expect(aead.open(key, nonce, flip(aad, 3), ct, tag)).toBeUndefined()
    expect(aead.open(key, flip(nonce, 11), aad, ct, tag)).toBeUndefined()
    expect(aead.open(flip(key, 31), nonce, aad, ct, tag)).toBeUndefined()
    expect(aead.open(key, nonce, aad, ct, tag.subarray(0, 12))).toBeUndefined()
    expect(aead.open(key, nonce, aad, ct, tag)).toEqual(pt)
  })

  it("seals at an offset and in place (plaintext overlapping the output) like node:crypto", () => {
    const aead = native()
    const key = new Uint8Array(randomBytes(32))
    const nonce = new Uint8Array(randomBytes(12))
    const aad = new Uint8Array(randomBytes(10))
    const pt = new Uint8Array(randomBytes(256))
    const want = seal(nodeCryptoAead, key, nonce, aad, pt)
    const at = new Uint8Array(7 + 272 + 5)
    aead.sealInto(key, nonce, aad, pt, at, 7)
    expect(at.subarray(7, 7 + 272)).toEqual(want)
    expect(at.subarray(0, 7).every((b) => b === 0) && at.subarray(279).every((b) => b === 0)).toBe(true)
    for (const shift of [0, 1, 16, 100]) {
      const buf = new Uint8Array(shift + 272 + 16)
      buf.set(pt, shift)
      aead.sealInto(key, nonce, aad, buf.subarray(shift, shift + 256), buf, 0)
      expect(buf.subarray(0, 272), `plaintext ${shift} bytes into the output`).toEqual(want)
    }
  })

  it("answers bad arguments with a thrown error, never a crash", () => {
    const addon = createRequire(import.meta.url)(NATIVE_AEAD_PATH) as {
      createKey(k: unknown): object
      seal(...a: unknown[]): void
      open(...a: unknown[]): boolean
    }
    native()
    const ctx = addon.createKey(new Uint8Array(32))
    const u = (n: number) => new Uint8Array(n)
    expect(() => addon.createKey(u(16))).toThrow(RangeError)
    expect(() => addon.createKey("k")).toThrow(TypeError)
    expect(() => addon.seal({}, u(12), u(0), u(4), u(20))).toThrow(TypeError)
    expect(() => addon.seal(ctx, u(11), u(0), u(4), u(20))).toThrow(RangeError)
    expect(() => addon.seal(ctx, u(12), u(0), u(4), u(19))).toThrow(RangeError)
    expect(() => addon.seal(ctx, u(12), [1, 2], u(4), u(20))).toThrow(TypeError)
    expect(() => addon.open(ctx, u(12), u(0), u(4), u(15), u(4))).toThrow(RangeError)
    expect(() => addon.open(ctx, u(12), u(0), u(4), u(16), u(5))).toThrow(RangeError)
    expect(() => addon.seal(ctx)).toThrow()
  })

  it("the loader refuses a missing addon and one that seals wrongly", () => {
    expect(loadNativeAead("/nonexistent/aead.node").reason).toMatch(/not loadable/)
    const dir = mkdtempSync(join(tmpdir(), "ekv-aead-"))
    const fake = join(dir, "fake.cjs")
    // Looks like the addon, but its "ciphertext" is the plaintext itself.
    writeFileSync(
      fake,
      `exports.createKey = () => ({})
exports.seal = (_c, _n, _a, pt, out) => { out.set(pt); }
exports.open = (_c, _n, _a, ct, _t, out) => { out.set(ct); return true }`,
    )
    expect(loadNativeAead(fake).reason).toMatch(/self-test: its seal differs/)
    const lenient = join(dir, "lenient.cjs")
    // Seals by delegating to node:crypto, but opens anything.
    writeFileSync(
      lenient,
      `const c = require("node:crypto")
exports.createKey = (k) => ({ k: Buffer.from(k) })
exports.seal = (ctx, n, a, pt, out) => { const x = c.createCipheriv("aes-256-gcm", ctx.k, n); x.setAAD(a); out.set(Buffer.concat([x.update(pt), x.final(), x.getAuthTag()])) }
exports.open = (ctx, n, a, ct, t, out) => { const x = c.createDecipheriv("aes-256-gcm", ctx.k, n); x.setAAD(a); out.set(x.update(ct)); return true }`,
    )
    expect(loadNativeAead(lenient).reason).toMatch(/self-test: it opened a tampered ciphertext/)
  })
})
