import { describe, expect, it } from "@effect/vitest"
import { drawKeyId, generateDek } from "../src/mod.ts"

describe("key material from the CSPRNG", () => {
  it("generates distinct 32-byte DEKs as plain Uint8Arrays", () => {
    const a = generateDek()
    const b = generateDek()
    expect(a.length).toBe(32)
    expect(Object.getPrototypeOf(a)).toBe(Uint8Array.prototype)
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false)
  })

  it("draws key ids that are uint32, never 0, never already used", () => {
    const used = new Set<number>()
    for (let i = 0; i < 2000; i++) {
      const id = drawKeyId(used)
      expect(Number.isInteger(id)).toBe(true)
      expect(id).toBeGreaterThan(0)
      expect(id).toBeLessThanOrEqual(0xffff_ffff)
      expect(used.has(id)).toBe(false)
      used.add(id)
    }
  })

  it("skips 0 and used ids from the random source", () => {
    const draws = [0, 5, 0, 5, 7]
    expect(drawKeyId(new Set([5]), () => draws.shift()!)).toBe(7)
    expect(() => drawKeyId(new Set([5]), () => 5)).toThrow()
  })
})
