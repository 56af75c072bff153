import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { fullNodeId, fullNodeIdOfBytes, nodeId16 } from "../src/mod.ts"
import { hex, loadVectors, toHex } from "./vectors.ts"

const file = loadVectors("node_ids.json")

interface IdVector {
  readonly id: string
  readonly full_node_id: string
  readonly full_node_id_hex: string
  readonly node_id16: number
}

describe("node_ids.json (CONTRACT §7)", () => {
  it("has vectors", () => {
    expect(file.vectors.length).toBeGreaterThan(0)
  })

  for (const v of file.vectors) {
    it(`hashes ${JSON.stringify(v.id)} (${v.note})`, () => {
      expect(toHex(new TextEncoder().encode(v.id))).toBe(v.utf8_hex)
      const full = fullNodeId(v.id)
      expect(full).toBe(BigInt(v.full_node_id))
      expect(full.toString(16).padStart(16, "0")).toBe(v.full_node_id_hex)
      expect(nodeId16(full)).toBe(v.node_id16)
      expect(fullNodeIdOfBytes(hex(v.utf8_hex))).toBe(full)
    })
  }

  it("maps a hash of exactly 0 to 1 (zero_rule)", () => {
    const z = file.zero_rule
    const full = fullNodeIdOfBytes(hex(z.input_hex))
    expect(full).toBe(BigInt(z.full_node_id))
    expect(full).toBe(1n)
    expect(nodeId16(full)).toBe(z.node_id16)
  })

  const c = file.node_id16_collision
  const pairs: ReadonlyArray<{ node_id16: number; ids: ReadonlyArray<IdVector> }> = [
    c.first_pair,
    ...c.more_pairs,
    ...c.with_cluster_ids,
  ]
  it("has collision pairs", () => {
    expect(pairs.length).toBeGreaterThanOrEqual(1 + 5)
  })
  for (const pair of pairs) {
    it(`collides on node_id16 0x${pair.node_id16.toString(16)}: ${pair.ids.map((i) => i.id).join(" / ")}`, () => {
      const fulls = pair.ids.map((i) => fullNodeId(i.id))
      pair.ids.forEach((i, n) => {
        expect(fulls[n]).toBe(BigInt(i.full_node_id))
        expect(nodeId16(fulls[n]!)).toBe(pair.node_id16)
        expect(i.node_id16).toBe(pair.node_id16)
      })
      expect(new Set(fulls).size).toBe(fulls.length)
    })
  }
})

describe("fullNodeId", () => {
  it("agrees with a naive FNV-1a over UTF-8 for any string", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        let h = 0xcbf29ce484222325n
        for (const b of Buffer.from(s, "utf8")) h = ((h ^ BigInt(b)) * 0x100000001b3n) % 2n ** 64n
        expect(fullNodeId(s)).toBe(h === 0n ? 1n : h)
      }),
    )
  })

  it("is never 0 and node_id16 is its low 16 bits", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        const full = fullNodeIdOfBytes(bytes)
        expect(full).toBeGreaterThan(0n)
        expect(full).toBeLessThan(2n ** 64n)
        expect(nodeId16(full)).toBe(Number(full % 65536n))
      }),
    )
  })

  it("nodeId16 rejects values outside uint64", () => {
    expect(() => nodeId16(-1n)).toThrow()
    expect(() => nodeId16(2n ** 64n)).toThrow()
  })
})
