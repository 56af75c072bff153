import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import {
  ENVELOPE_OVERHEAD,
  envelopeHeader,
  type Keyring,
  MAX_HEADROOM,
  makeNonce,
  openRaft,
  openStorage,
  sealRaft,
  sealStorage,
} from "../src/mod.ts"
import { hex, loadVectors, toHex } from "./vectors.ts"

const storage = loadVectors("storage_envelopes.json")
const raft = loadVectors("raft_envelopes.json")

const keyringOf = (keys: ReadonlyArray<{ key_id: number; hex: string }>): Keyring => {
  const m = new Map(keys.map((k) => [k.key_id, hex(k.hex)]))
  return (id) => m.get(id)
}

const derived = (label: string): string =>
  createHash("sha256").update(`ekv-vectors/v1/${label}`).digest("hex")

describe("storage_envelopes.json (CONTRACT §7)", () => {
  it("has vectors and re-derivable keys", () => {
    expect(storage.vectors.length).toBeGreaterThan(0)
    expect(ENVELOPE_OVERHEAD).toBe(34)
    for (const k of storage.keys) expect(derived(k.label)).toBe(k.hex)
  })
  const keyring = keyringOf(storage.keys)

  for (const v of storage.vectors) {
    describe(v.name, () => {
      const nonce = makeNonce(v.node_id16, v.local_epoch, BigInt(v.write_count))
      it("seals byte for byte", () => {
        expect(toHex(nonce)).toBe(v.nonce_hex)
        expect(toHex(hex(v.plaintext_hex)).length / 2).toBe(v.plaintext_len)
        const env = sealStorage({
          dek: hex(v.dek_hex),
          keyId: v.key_id,
          flag: v.flag,
          nonce,
          location: hex(v.location_hex),
          plaintext: hex(v.plaintext_hex),
        })
        expect(env.length).toBe(v.envelope_len)
        expect(env.length).toBe(v.plaintext_len + 34)
        expect(toHex(env.subarray(0, 6)) + v.location_hex).toBe(v.aad_hex)
        expect(toHex(env.subarray(env.length - 16))).toBe(v.tag_hex)
        expect(toHex(env)).toBe(v.envelope_hex)
      })
      it("opens byte for byte", () => {
        const r = openStorage(hex(v.envelope_hex), keyring, hex(v.location_hex))
        expect(Result.isSuccess(r)).toBe(true)
        if (Result.isFailure(r)) return
        expect(toHex(r.success.plaintext)).toBe(v.plaintext_hex)
        expect(r.success.flag).toBe(v.flag)
        expect(r.success.keyId).toBe(v.key_id)
        expect(toHex(r.success.nonce)).toBe(v.nonce_hex)
      })
      it("exposes its header", () => {
        const h = envelopeHeader(hex(v.envelope_hex))
        expect(Result.isSuccess(h) && h.success).toEqual({
          flag: v.flag,
          keyId: v.key_id,
          nonce: hex(v.nonce_hex),
        })
      })
    })
  }
})

describe("raft_envelopes.json (CONTRACT §7)", () => {
  it("has vectors and re-derivable keys", () => {
    expect(raft.vectors.length).toBeGreaterThan(0)
    for (const k of raft.keys) expect(derived(k.label)).toBe(k.hex)
  })
  const keyring = keyringOf(raft.keys)

  for (const v of raft.vectors) {
    describe(v.name, () => {
      const nonce = makeNonce(v.node_id16, v.local_epoch, BigInt(v.write_count))
      it("seals byte for byte", () => {
        expect(v.flag).toBe(0)
        expect(toHex(nonce)).toBe(v.nonce_hex)
        const env = sealRaft({ dek: hex(v.dek_hex), keyId: v.key_id, nonce, plaintext: hex(v.plaintext_hex) })
        expect(env.length).toBe(v.envelope_len)
        expect("52" + toHex(env.subarray(0, 6))).toBe(v.aad_hex)
        expect(toHex(env.subarray(env.length - 16))).toBe(v.tag_hex)
        expect(toHex(env)).toBe(v.envelope_hex)
      })
      it("opens byte for byte", () => {
        const r = openRaft(hex(v.envelope_hex), keyring)
        expect(Result.isSuccess(r)).toBe(true)
        if (Result.isFailure(r)) return
        expect(toHex(r.success.plaintext)).toBe(v.plaintext_hex)
        expect(r.success.keyId).toBe(v.key_id)
        expect(toHex(r.success.nonce)).toBe(v.nonce_hex)
      })
    })
  }
})

// ---- properties -------------------------------------------------------------

const dekArb = fc.uint8Array({ minLength: 32, maxLength: 32 })
const keyIdArb = fc.integer({ min: 1, max: 0xffff_ffff })
const nonceArb = fc.uint8Array({ minLength: 12, maxLength: 12 })
const bytesArb = fc.uint8Array({ maxLength: 300 })
const storageArb = fc.record({
  dek: dekArb,
  keyId: keyIdArb,
  flag: fc.constantFrom(0, 1),
  nonce: nonceArb,
  location: bytesArb,
  plaintext: bytesArb,
})
const raftArb = fc.record({ dek: dekArb, keyId: keyIdArb, nonce: nonceArb, plaintext: bytesArb })

/** Valid arguments for either seal, each test changing one of them. */
const sealable = {
  dek: new Uint8Array(32),
  keyId: 1,
  flag: 0,
  nonce: new Uint8Array(12),
  location: new Uint8Array(),
  plaintext: new Uint8Array(),
}

const only =
  (keyId: number, dek: Uint8Array): Keyring =>
  (id) =>
    id === keyId ? dek : undefined
const always =
  (dek: Uint8Array): Keyring =>
  () =>
    dek

const tagOf = <A, E extends { _tag: string }>(r: Result.Result<A, E>): string =>
  Result.isFailure(r) ? r.failure._tag : "Success"

// What CONTRACT §7's check order yields when byte `i` of an envelope is XORed
// with `mask`, opened with a keyring that holds only the sealing key.
const expectedAfterFlip = (i: number, env: Uint8Array, mask: number, reservedFlagBits: number): string => {
  if (i === 0) return "UnsupportedVersion"
  if (i === 1) return ((env[1]! ^ mask) & reservedFlagBits) !== 0 ? "UnsupportedVersion" : "IntegrityError"
  if (i < 6) return "UnknownKeyId"
  return "IntegrityError"
}

describe("storage envelope properties", () => {
  it("seal/open round trip", () => {
    fc.assert(
      fc.property(storageArb, (p) => {
        const env = sealStorage(p)
        expect(env.length).toBe(p.plaintext.length + ENVELOPE_OVERHEAD)
        const r = openStorage(env, only(p.keyId, p.dek), p.location)
        expect(Result.isSuccess(r) && r.success).toEqual({
          plaintext: p.plaintext,
          flag: p.flag,
          keyId: p.keyId,
          nonce: p.nonce,
        })
      }),
    )
  })

  it("any single-byte change fails, with the error CONTRACT §7's order gives", () => {
    fc.assert(
      fc.property(storageArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (p, at, mask) => {
        const env = sealStorage(p)
        const i = at % env.length
        const bad = env.slice()
        bad[i]! ^= mask
        expect(tagOf(openStorage(bad, only(p.keyId, p.dek), p.location))).toBe(
          expectedAfterFlip(i, env, mask, 0xfe),
        )
        const withAnyKey = tagOf(openStorage(bad, always(p.dek), p.location))
        expect(withAnyKey).toBe(i >= 2 && i < 6 ? "IntegrityError" : expectedAfterFlip(i, env, mask, 0xfe))
      }),
    )
  })

  it("a value moved to another location fails", () => {
    fc.assert(
      fc.property(storageArb, bytesArb, (p, other) => {
        fc.pre(toHex(other) !== toHex(p.location))
        expect(tagOf(openStorage(sealStorage(p), only(p.keyId, p.dek), other))).toBe("IntegrityError")
      }),
    )
  })

  it("a wrong DEK fails", () => {
    fc.assert(
      fc.property(storageArb, dekArb, (p, other) => {
        fc.pre(toHex(other) !== toHex(p.dek))
        expect(tagOf(openStorage(sealStorage(p), always(other), p.location))).toBe("IntegrityError")
      }),
    )
  })

  it("every shorter prefix fails: Truncated below 34 bytes, IntegrityError from 34", () => {
    fc.assert(
      fc.property(storageArb, fc.nat(), (p, cut) => {
        const env = sealStorage(p)
        const len = cut % env.length
        const r = openStorage(env.subarray(0, len), always(p.dek), p.location)
        expect(tagOf(r)).toBe(len < 34 ? "Truncated" : "IntegrityError")
      }),
    )
  })

  it("does not open as a raft envelope, nor a raft envelope as storage", () => {
    fc.assert(
      fc.property(raftArb, bytesArb, (p, location) => {
        const s = sealStorage({ ...p, flag: 0, location })
        expect(tagOf(openRaft(s, always(p.dek)))).toBe("IntegrityError")
        expect(tagOf(openStorage(sealRaft(p), always(p.dek), location))).toBe("IntegrityError")
      }),
    )
  })

  it("reports an unknown key id before trying to decrypt", () => {
    fc.assert(
      fc.property(storageArb, (p) => {
        const r = openStorage(sealStorage(p), () => undefined, p.location)
        expect(Result.isFailure(r) && r.failure).toMatchObject({ _tag: "UnknownKeyId", keyId: p.keyId })
      }),
    )
  })

  it("refuses to seal what the format cannot carry", () => {
    const p = sealable
    expect(() => sealStorage({ ...p, flag: 2 })).toThrow()
    expect(() => sealStorage({ ...p, keyId: 0 })).toThrow()
    expect(() => sealStorage({ ...p, keyId: 2 ** 32 })).toThrow()
    expect(() => sealStorage({ ...p, dek: new Uint8Array(16) })).toThrow()
    expect(() => sealStorage({ ...p, nonce: new Uint8Array(11) })).toThrow()
    expect(() => sealRaft({ ...p, keyId: -1 })).toThrow()
  })
})

describe("sealing with headroom (the caller's prefix, built in place)", () => {
  it("gives the same envelope after that many zero bytes, for either kind", () => {
    fc.assert(
      fc.property(storageArb, fc.integer({ min: 0, max: MAX_HEADROOM }), (p, headroom) => {
        const plain = sealStorage(p)
        const roomy = sealStorage({ ...p, headroom })
        expect(roomy.length).toBe(headroom + plain.length)
        expect(toHex(roomy.subarray(0, headroom))).toBe("00".repeat(headroom))
        expect(toHex(roomy.subarray(headroom))).toBe(toHex(plain))
        const raftPlain = sealRaft(p)
        const raftRoomy = sealRaft({ ...p, headroom })
        expect(toHex(raftRoomy.subarray(headroom))).toBe(toHex(raftPlain))
        expect(toHex(raftRoomy.subarray(0, headroom))).toBe("00".repeat(headroom))
      }),
    )
  })

  it("refuses a headroom that is not a small non-negative integer", () => {
    const p = { ...sealable, plaintext: new Uint8Array(4) }
    for (const headroom of [-1, 0.5, MAX_HEADROOM + 1, Number.NaN]) {
      expect(() => sealStorage({ ...p, headroom })).toThrow(/headroom/)
      expect(() => sealRaft({ ...p, headroom })).toThrow(/headroom/)
    }
  })
})

describe("raft envelope properties", () => {
  it("seal/open round trip", () => {
    fc.assert(
      fc.property(raftArb, (p) => {
        const r = openRaft(sealRaft(p), only(p.keyId, p.dek))
        expect(Result.isSuccess(r) && r.success).toEqual({
          plaintext: p.plaintext,
          keyId: p.keyId,
          nonce: p.nonce,
        })
      }),
    )
  })

  it("any single-byte change fails, with the error CONTRACT §7's order gives", () => {
    fc.assert(
      fc.property(raftArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (p, at, mask) => {
        const env = sealRaft(p)
        const i = at % env.length
        const bad = env.slice()
        bad[i]! ^= mask
        expect(tagOf(openRaft(bad, only(p.keyId, p.dek)))).toBe(expectedAfterFlip(i, env, mask, 0xff))
      }),
    )
  })
})

describe("check order (CONTRACT §7)", () => {
  const dek = new Uint8Array(32).fill(1)
  const nonce = new Uint8Array(12)
  const storageEnv = sealStorage({
    dek,
    keyId: 77,
    flag: 0,
    nonce,
    location: new Uint8Array(),
    plaintext: new Uint8Array(5),
  })
  const raftEnv = sealRaft({ dek, keyId: 77, nonce, plaintext: new Uint8Array(5) })
  const withFlag = (env: Uint8Array, flag: number): Uint8Array => {
    const e = env.slice()
    e[1] = flag
    return e
  }

  it("reserved flag bits are UnsupportedVersion, before the key lookup", () => {
    for (const flag of [0x02, 0x04, 0x80, 0xff, 0x03]) {
      expect(tagOf(openStorage(withFlag(storageEnv, flag), () => undefined, new Uint8Array()))).toBe(
        "UnsupportedVersion",
      )
    }
    for (const flag of [0x01, 0x02, 0x80]) {
      expect(tagOf(openRaft(withFlag(raftEnv, flag), () => undefined))).toBe("UnsupportedVersion")
    }
    expect(tagOf(openStorage(withFlag(storageEnv, 0x01), () => undefined, new Uint8Array()))).toBe(
      "UnknownKeyId",
    )
  })

  it("Truncated before UnsupportedVersion before UnknownKeyId before IntegrityError", () => {
    const short = storageEnv.slice(0, 33)
    short[0] = 2
    expect(tagOf(openStorage(short, () => undefined, new Uint8Array()))).toBe("Truncated")
    const v2 = storageEnv.slice()
    v2[0] = 2
    expect(tagOf(openStorage(v2, () => undefined, new Uint8Array()))).toBe("UnsupportedVersion")
    expect(tagOf(openStorage(envelopeWithBadTag(storageEnv), () => undefined, new Uint8Array()))).toBe(
      "UnknownKeyId",
    )
    expect(tagOf(openStorage(envelopeWithBadTag(storageEnv), () => dek, new Uint8Array()))).toBe(
      "IntegrityError",
    )
  })

  it("envelopeHeader checks only length and version", () => {
    expect(tagOf(envelopeHeader(new Uint8Array(33)))).toBe("Truncated")
    expect(tagOf(envelopeHeader(new Uint8Array(34)))).toBe("UnsupportedVersion")
    const h = envelopeHeader(withFlag(raftEnv, 0x80))
    expect(Result.isSuccess(h) && h.success.flag).toBe(0x80)
    expect(Result.isSuccess(h) && h.success.keyId).toBe(77)
  })
})

const envelopeWithBadTag = (env: Uint8Array): Uint8Array => {
  const e = env.slice()
  e[e.length - 1]! ^= 1
  return e
}
