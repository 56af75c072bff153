import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import {
  generateDek,
  type Keyring,
  kekId,
  openRaft,
  openStorage,
  type Purpose,
  unwrapDek,
  WRAPPED_DEK_LENGTH,
  wrapDek,
} from "../src/mod.ts"
import { hex, loadVectors, toHex } from "./vectors.ts"

const file = loadVectors("dek_wraps.json")
const derived = (label: string): string =>
  createHash("sha256").update(`ekv-vectors/v1/${label}`).digest("hex")

describe("dek_wraps.json (CONTRACT §7)", () => {
  it("has vectors and re-derivable keys and nonces", () => {
    expect(file.vectors.length).toBeGreaterThan(0)
    expect(WRAPPED_DEK_LENGTH).toBe(61)
    for (const k of file.keys) expect(derived(k.label)).toBe(k.hex)
    for (const v of file.vectors) expect(derived(v.nonce_label).slice(0, 24)).toBe(v.nonce_hex)
  })

  for (const v of file.vectors) {
    describe(v.name, () => {
      it("wraps byte for byte with the injected nonce", () => {
        const purposeByte = v.purpose === "storage" ? "53" : "52"
        expect(v.purpose_byte_hex).toBe(purposeByte)
        expect(
          toHex(new TextEncoder().encode("ekv/dek")) + purposeByte + v.key_id.toString(16).padStart(8, "0"),
        ).toBe(v.aad_hex)
        const wrapped = wrapDek({
          kek: hex(v.kek_hex),
          dek: hex(v.dek_hex),
          purpose: v.purpose,
          keyId: v.key_id,
          nonce: hex(v.nonce_hex),
        })
        expect(wrapped.length).toBe(v.wrapped_len)
        expect(toHex(wrapped)).toBe(v.wrapped_hex)
      })
      it("unwraps byte for byte", () => {
        const r = unwrapDek({
          kek: hex(v.kek_hex),
          wrapped: hex(v.wrapped_hex),
          purpose: v.purpose,
          keyId: v.key_id,
        })
        expect(Result.isSuccess(r) && toHex(r.success)).toBe(v.dek_hex)
      })
    })
  }

  it("unwrapping the kek-1 wraps yields the key ring that opens every envelope vector", () => {
    const kek1 = file.keys.find((k: { label: string }) => k.label === "kek-1")
    const ring = new Map<number, Uint8Array>()
    for (const v of file.vectors.filter((w: { kek_label: string }) => w.kek_label === "kek-1")) {
      const r = unwrapDek({
        kek: hex(kek1.hex),
        wrapped: hex(v.wrapped_hex),
        purpose: v.purpose,
        keyId: v.key_id,
      })
      if (Result.isFailure(r)) throw r.failure
      ring.set(v.key_id, r.success)
    }
    const keyring: Keyring = (id) => ring.get(id)
    const storage = loadVectors("storage_envelopes.json")
    const raft = loadVectors("raft_envelopes.json")
    for (const v of storage.vectors) {
      const r = openStorage(hex(v.envelope_hex), keyring, hex(v.location_hex))
      expect(Result.isSuccess(r) && toHex(r.success.plaintext)).toBe(v.plaintext_hex)
    }
    for (const v of raft.vectors) {
      const r = openRaft(hex(v.envelope_hex), keyring)
      expect(Result.isSuccess(r) && toHex(r.success.plaintext)).toBe(v.plaintext_hex)
    }
  })
})

const keyArb = fc.uint8Array({ minLength: 32, maxLength: 32 })
const wrapArb = fc.record({
  kek: keyArb,
  dek: keyArb,
  purpose: fc.constantFrom<Purpose>("storage", "raft"),
  keyId: fc.integer({ min: 1, max: 0xffff_ffff }),
})
const tagOf = <A, E extends { _tag: string }>(r: Result.Result<A, E>): string =>
  Result.isFailure(r) ? r.failure._tag : "Success"

describe("DEK wrap properties", () => {
  it("wrap/unwrap round trip with a random nonce, distinct nonces each time", () => {
    fc.assert(
      fc.property(wrapArb, (p) => {
        const a = wrapDek(p)
        const b = wrapDek(p)
        expect(a.length).toBe(61)
        expect(toHex(a.subarray(1, 13))).not.toBe(toHex(b.subarray(1, 13)))
        const r = unwrapDek({ ...p, wrapped: a })
        expect(Result.isSuccess(r) && r.success).toEqual(p.dek)
      }),
    )
  })

  it("any single-byte change, other purpose, other key id or other KEK fails", () => {
    fc.assert(
      fc.property(wrapArb, fc.nat(60), fc.integer({ min: 1, max: 255 }), keyArb, (p, i, mask, otherKek) => {
        const w = wrapDek(p)
        const bad = w.slice()
        bad[i]! ^= mask
        expect(tagOf(unwrapDek({ ...p, wrapped: bad }))).toBe(
          i === 0 ? "UnsupportedVersion" : "IntegrityError",
        )
        const other: Purpose = p.purpose === "storage" ? "raft" : "storage"
        expect(tagOf(unwrapDek({ ...p, purpose: other, wrapped: w }))).toBe("IntegrityError")
        expect(tagOf(unwrapDek({ ...p, keyId: (p.keyId % 0xffff_ffff) + 1, wrapped: w }))).toBe(
          "IntegrityError",
        )
        fc.pre(toHex(otherKek) !== toHex(p.kek))
        expect(tagOf(unwrapDek({ ...p, kek: otherKek, wrapped: w }))).toBe("IntegrityError")
      }),
    )
  })

  it("anything but exactly 61 bytes is Truncated, shorter or longer", () => {
    const p = { kek: generateDek(), dek: generateDek(), purpose: "storage" as const, keyId: 42 }
    const w = wrapDek(p)
    for (const len of [0, 1, 60])
      expect(tagOf(unwrapDek({ ...p, wrapped: w.subarray(0, len) }))).toBe("Truncated")
    const longer = new Uint8Array(62)
    longer.set(w)
    expect(tagOf(unwrapDek({ ...p, wrapped: longer }))).toBe("Truncated")
  })
})

describe("kekId (CONTRACT §3)", () => {
  it("is hex of the first 8 bytes of HMAC-SHA256(KEK, 'ekv/kek-id')", async () => {
    const { createHmac } = await import("node:crypto")
    for (const k of file.keys.filter((k: { label: string }) => k.label.startsWith("kek-"))) {
      const expected = createHmac("sha256", hex(k.hex)).update("ekv/kek-id").digest("hex").slice(0, 16)
      expect(kekId(hex(k.hex))).toBe(expected)
    }
    // pinned with Python's hmac, independently of node:crypto
    expect(kekId(hex(derived("kek-1")))).toBe("a2737c224cff8faa")
    expect(kekId(hex(derived("kek-2")))).toBe("1fe8f0503927da8c")
    expect(() => kekId(new Uint8Array(31))).toThrow()
  })
})
