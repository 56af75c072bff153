import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import {
  CryptoArgumentError,
  fullNodeId,
  LocalEpochOutOfRange,
  MAX_WRITE_COUNT,
  makeNonce,
  makeNonceSequence,
  NonceExhausted,
  nodeId16,
  nonceFields,
  WriteCounter,
} from "../src/mod.ts"
import { loadVectors, toHex } from "./vectors.ts"

const file = loadVectors("nonces.json")

const thrown = (f: () => unknown): unknown => {
  try {
    f()
  } catch (e) {
    return e
  }
  return undefined
}

describe("nonces.json (CONTRACT §7)", () => {
  for (const v of file.vectors) {
    it(`builds ${v.nonce_hex} (${v.note})`, () => {
      const count = BigInt(v.write_count)
      expect(count.toString(16).padStart(16, "0")).toBe(v.write_count_hex)
      if (v.node_id !== undefined) expect(nodeId16(fullNodeId(v.node_id))).toBe(v.node_id16)
      const nonce = makeNonce(v.node_id16, v.local_epoch, count)
      expect(toHex(nonce)).toBe(v.nonce_hex)
      expect(nonceFields(nonce)).toEqual({
        nodeId16: v.node_id16,
        localEpoch: v.local_epoch,
        writeCount: count,
      })
    })
  }

  for (const v of file.invalid) {
    it(`rejects node_id16=${v.node_id16} local_epoch=${v.local_epoch} write_count=${v.write_count}`, () => {
      const e = thrown(() => makeNonce(v.node_id16, v.local_epoch, BigInt(v.write_count)))
      expect(e).toBeInstanceOf(Error)
      if (v.error_code !== undefined) {
        expect((e as { _tag: string })._tag).toBe(v.error_code)
        expect(e).toBeInstanceOf(LocalEpochOutOfRange)
      }
    })
  }

  it("maps each invalid[] case to its typed error", () => {
    const [epoch, count, node] = file.invalid
    expect(
      thrown(() => makeNonce(epoch.node_id16, epoch.local_epoch, BigInt(epoch.write_count))),
    ).toBeInstanceOf(LocalEpochOutOfRange)
    expect(
      thrown(() => makeNonce(count.node_id16, count.local_epoch, BigInt(count.write_count))),
    ).toBeInstanceOf(NonceExhausted)
    expect(
      thrown(() => makeNonce(node.node_id16, node.local_epoch, BigInt(node.write_count))),
    ).toBeInstanceOf(CryptoArgumentError)
  })
})

describe("makeNonce", () => {
  it("round-trips every in-range field", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.bigInt({ min: 0n, max: MAX_WRITE_COUNT }),
        (n, e, c) => {
          expect(nonceFields(makeNonce(n, e, c))).toEqual({ nodeId16: n, localEpoch: e, writeCount: c })
        },
      ),
    )
  })

  it("never wraps or truncates an out-of-range field", () => {
    for (const e of [-1, 0x10000, 1.5, Number.NaN, 2 ** 32]) {
      expect(thrown(() => makeNonce(1, e, 0n))).toBeInstanceOf(LocalEpochOutOfRange)
    }
    for (const n of [-1, 0x10000, 0.5, Number.NaN]) {
      expect(thrown(() => makeNonce(n, 0, 0n))).toBeInstanceOf(CryptoArgumentError)
    }
    expect(thrown(() => makeNonce(1, 0, -1n))).toBeInstanceOf(CryptoArgumentError)
    expect(thrown(() => makeNonce(1, 0, 2n ** 64n))).toBeInstanceOf(NonceExhausted)
    expect(thrown(() => makeNonce(1, 0, 2n ** 70n))).toBeInstanceOf(NonceExhausted)
  })
})

describe("nonce sequence (SPEC §2.4: write_count starts at 0, never resets)", () => {
  it("starts at write_count 0 and counts up", () => {
    const seq = makeNonceSequence({ nodeId16: 0xd4c0, localEpoch: 3 })
    expect(seq.writeCount).toBe(0n)
    expect(toHex(seq.next())).toBe("d4c00003" + "0000000000000000")
    expect(toHex(seq.next())).toBe("d4c00003" + "0000000000000001")
    expect(seq.writeCount).toBe(2n)
  })

  it("refuses past 2^64-1 with NonceExhausted, and keeps refusing", () => {
    const seq = new WriteCounter({ nodeId16: 7, localEpoch: 0xffff, start: MAX_WRITE_COUNT - 1n })
    expect(toHex(seq.next())).toBe("0007ffff" + "fffffffffffffffe")
    expect(toHex(seq.next())).toBe("0007ffff" + "ffffffffffffffff")
    expect(seq.writeCount).toBe(2n ** 64n)
    for (let i = 0; i < 3; i++) {
      const e = thrown(() => seq.next())
      expect(e).toBeInstanceOf(NonceExhausted)
      expect(e).toMatchObject({ _tag: "NonceExhausted", nodeId16: 7, localEpoch: 0xffff })
      const r = seq.tryNext()
      expect(Result.isFailure(r) && r.failure._tag === "NonceExhausted").toBe(true)
    }
  })

  it("a counter started at 2^64 is exhausted at once; beyond that is refused at construction", () => {
    const seq = makeNonceSequence({ nodeId16: 1, localEpoch: 1, start: 2n ** 64n })
    expect(thrown(() => seq.next())).toBeInstanceOf(NonceExhausted)
    expect(
      thrown(() => makeNonceSequence({ nodeId16: 1, localEpoch: 1, start: 2n ** 64n + 1n })),
    ).toBeInstanceOf(CryptoArgumentError)
    expect(thrown(() => makeNonceSequence({ nodeId16: 1, localEpoch: 1, start: -1n }))).toBeInstanceOf(
      CryptoArgumentError,
    )
  })

  it("rejects an out-of-range epoch or node_id16 at construction", () => {
    expect(thrown(() => makeNonceSequence({ nodeId16: 1, localEpoch: 0x10000 }))).toBeInstanceOf(
      LocalEpochOutOfRange,
    )
    expect(thrown(() => makeNonceSequence({ nodeId16: 0x10000, localEpoch: 1 }))).toBeInstanceOf(
      CryptoArgumentError,
    )
  })

  it("hands out distinct consecutive nonces from any start near the edge", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 40n }), fc.integer({ min: 1, max: 50 }), (back, n) => {
        const start = MAX_WRITE_COUNT + 1n - back
        const seq = makeNonceSequence({ nodeId16: 9, localEpoch: 2, start })
        const seen = new Set<string>()
        let issued = 0n
        for (let i = 0; i < n; i++) {
          const r = seq.tryNext()
          if (Result.isFailure(r)) break
          expect(nonceFields(r.success).writeCount).toBe(start + issued)
          seen.add(toHex(r.success))
          issued++
        }
        expect(issued).toBe(back < BigInt(n) ? back : BigInt(n))
        expect(seen.size).toBe(Number(issued))
      }),
    )
  })
})
