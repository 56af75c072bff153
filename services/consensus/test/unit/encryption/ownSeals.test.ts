import { makeNonce, openRaft, sealRaft } from "@ekv/crypto"
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import { OwnSeals } from "../../../src/encryption/ownSeals.ts"

const key = (fill: number) => new Uint8Array(32).fill(fill)
const bytes = (s: string) => new TextEncoder().encode(s)
const seal = (dek: Uint8Array, count: bigint, text: string, epoch = 1, node = 0x1234) =>
  sealRaft({ dek, keyId: 7, nonce: makeNonce(node, epoch, count), plaintext: bytes(text) })

describe("OwnSeals", () => {
  it("gives back exactly what opening the envelope gives, once", () => {
    const dek = key(1)
    const seals = new OwnSeals()
    const env = seal(dek, 5n, "put a=1")
    seals.remember(env, bytes("put a=1"), dek)
    // The applier gets the envelope as a view into the entry it decoded, not the sealed array.
    const copy = new Uint8Array(env.length + 3)
    copy.set(env, 3)
    const view = copy.subarray(3)
    const opened = openRaft(view, () => dek)
    expect(Result.isSuccess(opened)).toBe(true)
    expect(seals.take(view, dek)).toEqual(Result.getOrThrow(opened).plaintext)
    expect(seals.take(view, dek)).toBeUndefined()
    expect(seals.size).toBe(0)
  })

  it("opens normally (undefined) unless every byte and the key array are the sealed ones", () => {
    const dek = key(2)
    const seals = new OwnSeals()
    const env = seal(dek, 9n, "v")
    seals.remember(env, bytes("v"), dek)
    for (let i = 0; i < env.length; i++) {
      const flipped = env.slice()
      flipped[i]! ^= 0x01
      expect(seals.take(flipped, dek), `byte ${i}`).toBeUndefined()
    }
    expect(seals.take(env.slice(0, -1), dek)).toBeUndefined()
    expect(seals.take(env, key(2))).toBeUndefined() // same bytes, another array: not the key it holds
    expect(seals.take(env, undefined)).toBeUndefined() // the key is gone
    // Same low write_count under another epoch or node: another envelope.
    expect(seals.take(seal(dek, 9n, "v", 2), dek)).toBeUndefined()
    expect(seals.take(seal(dek, 9n, "v", 1, 0x4321), dek)).toBeUndefined()
    expect(seals.take(seal(dek, 9n + 2n ** 32n, "v"), dek)).toBeUndefined()
    expect(seals.take(env, dek)).toEqual(bytes("v"))
  })

  it("takes the very array it sealed, and not other bytes at another place in the same buffer", () => {
    const dek = key(6)
    const seals = new OwnSeals()
    const env = seal(dek, 11n, "same array")
    seals.remember(env, bytes("same array"), dek)
    expect(seals.take(env, dek)).toEqual(bytes("same array"))
    // Two envelopes with the same write_count side by side in one buffer: the
    // second is not the first just because the buffer is.
    const first = seal(dek, 12n, "one")
    const other = seal(dek, 12n, "two")
    const shared = new Uint8Array(first.length + other.length)
    shared.set(first, 0)
    shared.set(other, first.length)
    seals.remember(shared.subarray(0, first.length), bytes("one"), dek)
    expect(seals.take(shared.subarray(first.length), dek)).toBeUndefined()
    expect(seals.take(shared.subarray(0, first.length), dek)).toEqual(bytes("one"))
  })

  it("keeps at most its capacity, dropping the oldest (proposals that never applied)", () => {
    const dek = key(3)
    const seals = new OwnSeals(4)
    const envs = Array.from({ length: 6 }, (_, i) => seal(dek, BigInt(i), `e${i}`))
    for (const [i, e] of envs.entries()) seals.remember(e, bytes(`e${i}`), dek)
    expect(seals.size).toBe(4)
    expect(seals.take(envs[0]!, dek)).toBeUndefined()
    expect(seals.take(envs[1]!, dek)).toBeUndefined()
    expect(seals.take(envs[5]!, dek)).toEqual(bytes("e5"))
    expect(seals.take(envs[2]!, dek)).toEqual(bytes("e2"))
  })

  it("keeps envelopes apart by write count, the low word's top bit set or not", () => {
    const dek = key(5)
    const seals = new OwnSeals()
    const counts = [0x7fff_ffffn, 0x8000_0000n, 0xffff_ffffn, 0x1_0000_0000n]
    for (const c of counts) seals.remember(seal(dek, c, `c${c}`), bytes(`c${c}`), dek)
    for (const c of counts) expect(seals.take(seal(dek, c, `c${c}`), dek)).toEqual(bytes(`c${c}`))
    expect(seals.size).toBe(0)
  })

  it("ignores what is too short to be an envelope", () => {
    const seals = new OwnSeals()
    seals.remember(new Uint8Array(10), bytes("x"), key(4))
    expect(seals.size).toBe(0)
    expect(seals.take(new Uint8Array(10), key(4))).toBeUndefined()
  })
})
