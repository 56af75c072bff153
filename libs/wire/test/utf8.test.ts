import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { utf8Bytes } from "../src/utf8.ts"

const reference = new TextEncoder()

describe("utf8Bytes", () => {
  it("gives exactly TextEncoder's bytes for any string, short or long, ASCII or not", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 80 }),
          fc.string({ unit: "binary", maxLength: 80 }),
          fc.string({ unit: fc.constantFrom("a", "\u00e9", "\ud800", "\udc00", "\u{1f600}"), maxLength: 70 }),
        ),
        (s) => {
          expect(utf8Bytes(s)).toEqual(reference.encode(s))
        },
      ),
      { numRuns: 2000 },
    )
  })

  it("handles the boundary lengths and a non-ASCII character at the end", () => {
    for (const n of [0, 1, 63, 64, 65, 200]) {
      const ascii = "k".repeat(n)
      expect(utf8Bytes(ascii)).toEqual(reference.encode(ascii))
      const tail = `${"k".repeat(n)}\u00ff`
      expect(utf8Bytes(tail)).toEqual(reference.encode(tail))
    }
  })
})
