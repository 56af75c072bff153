import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { decodePayload, encodePayload } from "../src/handover.ts"
import {
  generateDek,
  generateHandoverKeyPair,
  HANDOVER_MIN_LENGTH,
  type HandoverKey,
  LocalEpochOutOfRange,
  openHandover,
  sealHandover,
} from "../src/mod.ts"

const secretArb = fc.uint8Array({ minLength: 32, maxLength: 32 })
const nodeIdArb = fc.stringMatching(/^[a-z0-9-]{1,64}$/)
const sessionArb = fc.stringMatching(/^[0-9a-f]{32}$/)
const keysArb = fc.uniqueArray(
  fc.record({
    keyId: fc.integer({ min: 1, max: 0xffff_ffff }),
    purpose: fc.constantFrom<"storage" | "raft">("storage", "raft"),
    dek: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    localEpoch: fc.integer({ min: 0, max: 0xffff }),
  }),
  { selector: (k) => k.keyId, maxLength: 6 },
)
const tagOf = <A, E extends { _tag: string }>(r: Result.Result<A, E>): string =>
  Result.isFailure(r) ? r.failure._tag : "Success"

// one key pair per run is enough for properties over the sealed bytes; key
// generation dominates the cost otherwise
const pair = generateHandoverKeyPair()

describe("sealed DEK hand-over (SPEC §4.3)", () => {
  it("publishes a 32-byte raw X25519 public key", () => {
    expect(pair.publicKey).toBeInstanceOf(Uint8Array)
    expect(pair.publicKey.length).toBe(32)
    expect(pair.privateKey.asymmetricKeyType).toBe("x25519")
  })

  it("round trip", () => {
    fc.assert(
      fc.property(secretArb, nodeIdArb, sessionArb, keysArb, (nodeSecret, nodeId, sessionId, keys) => {
        const sealed = sealHandover({
          recipientPublicKey: pair.publicKey,
          nodeSecret,
          nodeId,
          sessionId,
          keys,
        })
        expect(sealed.length).toBe(HANDOVER_MIN_LENGTH + keys.length * 39)
        const r = openHandover({ privateKey: pair.privateKey, nodeSecret, nodeId, sessionId, sealed })
        expect(Result.isSuccess(r) && r.success).toEqual(keys)
      }),
      { numRuns: 60 },
    )
  })

  it("any single-byte change fails (UnsupportedVersion at byte 0, else IntegrityError)", () => {
    fc.assert(
      fc.property(
        secretArb,
        nodeIdArb,
        sessionArb,
        keysArb,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (nodeSecret, nodeId, sessionId, keys, at, mask) => {
          const sealed = sealHandover({
            recipientPublicKey: pair.publicKey,
            nodeSecret,
            nodeId,
            sessionId,
            keys,
          })
          const i = at % sealed.length
          const bad = sealed.slice()
          bad[i]! ^= mask
          const r = openHandover({ privateKey: pair.privateKey, nodeSecret, nodeId, sessionId, sealed: bad })
          expect(tagOf(r)).toBe(i === 0 ? "UnsupportedVersion" : "IntegrityError")
        },
      ),
      { numRuns: 200 },
    )
  })

  it("flipping the ignored top bit of the ephemeral public key still fails", () => {
    const nodeSecret = generateDek()
    const p = { nodeSecret, nodeId: "n1", sessionId: "0123456789abcdef0123456789abcdef" }
    const sealed = sealHandover({ ...p, recipientPublicKey: pair.publicKey, keys: [] })
    const bad = sealed.slice()
    bad[32]! ^= 0x80 // last byte of the ephemeral key: X25519 masks this bit
    expect(tagOf(openHandover({ ...p, privateKey: pair.privateKey, sealed: bad }))).toBe("IntegrityError")
  })

  it("a wrong node secret, session id, node id or key pair fails as IntegrityError", () => {
    const other = generateHandoverKeyPair()
    fc.assert(
      fc.property(
        secretArb,
        secretArb,
        nodeIdArb,
        nodeIdArb,
        sessionArb,
        sessionArb,
        keysArb,
        (secret, otherSecret, nodeId, otherNode, sessionId, otherSession, keys) => {
          const sealed = sealHandover({
            recipientPublicKey: pair.publicKey,
            nodeSecret: secret,
            nodeId,
            sessionId,
            keys,
          })
          const base = { privateKey: pair.privateKey, nodeSecret: secret, nodeId, sessionId, sealed }
          if (otherSecret.some((b, i) => b !== secret[i])) {
            expect(tagOf(openHandover({ ...base, nodeSecret: otherSecret }))).toBe("IntegrityError")
          }
          if (otherNode !== nodeId)
            expect(tagOf(openHandover({ ...base, nodeId: otherNode }))).toBe("IntegrityError")
          if (otherSession !== sessionId) {
            expect(tagOf(openHandover({ ...base, sessionId: otherSession }))).toBe("IntegrityError")
          }
          expect(tagOf(openHandover({ ...base, privateKey: other.privateKey }))).toBe("IntegrityError")
          expect(tagOf(openHandover(base))).toBe("Success")
        },
      ),
      { numRuns: 60 },
    )
  })

  it("node id and session id are not confusable across their boundary", () => {
    const nodeSecret = generateDek()
    const sessionId = "a".repeat(32)
    const sealed = sealHandover({
      recipientPublicKey: pair.publicKey,
      nodeSecret,
      nodeId: "n1",
      sessionId,
      keys: [],
    })
    // "n1" ‖ "aaa…" vs "n1a" ‖ "aa…a" (31): the second is not a valid session id and is refused outright
    expect(() =>
      openHandover({
        privateKey: pair.privateKey,
        nodeSecret,
        nodeId: "n1a",
        sessionId: "a".repeat(31),
        sealed,
      }),
    ).toThrow()
  })

  it("every shorter prefix fails: Truncated below the minimum, IntegrityError above", () => {
    const nodeSecret = generateDek()
    const p = { nodeSecret, nodeId: "n2", sessionId: "ffffffffffffffffffffffffffffffff" }
    const keys: ReadonlyArray<HandoverKey> = [
      { keyId: 1, purpose: "storage", dek: generateDek(), localEpoch: 1 },
    ]
    const sealed = sealHandover({ ...p, recipientPublicKey: pair.publicKey, keys })
    for (let len = 0; len < sealed.length; len++) {
      const r = openHandover({ ...p, privateKey: pair.privateKey, sealed: sealed.subarray(0, len) })
      expect(tagOf(r)).toBe(len < HANDOVER_MIN_LENGTH ? "Truncated" : "IntegrityError")
    }
  })

  it("each seal uses a fresh ephemeral key and nonce", () => {
    const p = {
      recipientPublicKey: pair.publicKey,
      nodeSecret: generateDek(),
      nodeId: "n3",
      sessionId: "0".repeat(32),
      keys: [],
    }
    const a = sealHandover(p)
    const b = sealHandover(p)
    expect(Buffer.from(a.subarray(1, 45)).equals(Buffer.from(b.subarray(1, 45)))).toBe(false)
  })

  it("refuses to seal what it cannot carry", () => {
    const p = {
      recipientPublicKey: pair.publicKey,
      nodeSecret: generateDek(),
      nodeId: "n1",
      sessionId: "0".repeat(32),
    }
    const dek = generateDek()
    expect(() =>
      sealHandover({ ...p, keys: [{ keyId: 1, purpose: "raft", dek, localEpoch: 0x10000 }] }),
    ).toThrow(LocalEpochOutOfRange)
    expect(() =>
      sealHandover({
        ...p,
        keys: [
          { keyId: 1, purpose: "raft", dek, localEpoch: 0 },
          { keyId: 1, purpose: "storage", dek, localEpoch: 0 },
        ],
      }),
    ).toThrow()
    expect(() => sealHandover({ ...p, keys: [{ keyId: 0, purpose: "raft", dek, localEpoch: 0 }] })).toThrow()
    expect(() => sealHandover({ ...p, nodeSecret: new Uint8Array(16), keys: [] })).toThrow()
    expect(() => sealHandover({ ...p, sessionId: "ABC", keys: [] })).toThrow()
    expect(() => sealHandover({ ...p, recipientPublicKey: new Uint8Array(31), keys: [] })).toThrow()
    // a low-order point (all zeros) gives an all-zero shared secret, which X25519 refuses
    expect(() => sealHandover({ ...p, recipientPublicKey: new Uint8Array(32), keys: [] })).toThrow()
  })

  it("an all-zero (low-order) ephemeral key in a received hand-over is an IntegrityError", () => {
    const p = { nodeSecret: generateDek(), nodeId: "n1", sessionId: "0".repeat(32) }
    const sealed = sealHandover({ ...p, recipientPublicKey: pair.publicKey, keys: [] })
    const bad = sealed.slice()
    bad.fill(0, 1, 33)
    expect(tagOf(openHandover({ ...p, privateKey: pair.privateKey, sealed: bad }))).toBe("IntegrityError")
  })

  it("an authenticated payload that does not parse is refused", () => {
    const dek = new Uint8Array(32).fill(9)
    const good = encodePayload([
      { keyId: 1, purpose: "storage", dek, localEpoch: 2 },
      { keyId: 2, purpose: "raft", dek, localEpoch: 3 },
    ])
    expect(decodePayload(good)).toEqual([
      { keyId: 1, purpose: "storage", dek, localEpoch: 2 },
      { keyId: 2, purpose: "raft", dek, localEpoch: 3 },
    ])
    const dup = good.slice()
    dup.set([0, 0, 0, 1], 2 + 39) // second key id = first
    expect(decodePayload(dup)).toBeUndefined()
    const zero = good.slice()
    zero.set([0, 0, 0, 0], 2)
    expect(decodePayload(zero)).toBeUndefined()
    const purpose = good.slice()
    purpose[2 + 4] = 0x58
    expect(decodePayload(purpose)).toBeUndefined()
    expect(decodePayload(good.subarray(0, good.length - 1))).toBeUndefined()
    const count = good.slice()
    count[1] = 3
    expect(decodePayload(count)).toBeUndefined()
    expect(decodePayload(new Uint8Array(1))).toBeUndefined()
    expect(decodePayload(new Uint8Array(2))).toEqual([])
  })
})
