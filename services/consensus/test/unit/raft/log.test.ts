import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { RaftLog } from "../../../src/raft/log.ts"
import { Inflights } from "../../../src/raft/progress.ts"
import type { Entry } from "../../../src/raft/types.ts"

const mk = (terms: number[], first = 1): Entry[] =>
  terms.map((term, k) => ({ term, index: first + k, type: "Normal", data: new Uint8Array(0) }))

const meta = (index: number, term: number) => ({ index, term, confState: { voters: ["a"], learners: [] } })

/** Non-decreasing terms, as every Raft log has. */
const termsArb = fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 30 }).map((xs) => {
  let t = 1
  return xs.map((d) => (t += d % 2))
})

describe("RaftLog", () => {
  it("findConflictByTerm matches a linear scan (property)", () => {
    fc.assert(
      fc.property(termsArb, fc.nat(3), fc.nat(40), fc.nat(20), (terms, snapAt, index, term) => {
        const off = Math.min(snapAt, terms.length)
        const snapTerm = off === 0 ? 0 : terms[off - 1]!
        const log = new RaftLog(meta(off, snapTerm), mk(terms.slice(off), off + 1), off, off)
        const got = log.findConflictByTerm(index, term)
        // Linear reference.
        let i = Math.min(index, log.lastIndex())
        let want = { index: i, term: 0 }
        for (; i >= off; i--) {
          const t = log.term(i)!
          if (t <= term) {
            want = { index: i, term: t }
            break
          }
        }
        if (i < off) want = { index: off, term: 0 }
        if (Math.min(index, log.lastIndex()) < off)
          want = { index: Math.min(index, log.lastIndex()), term: 0 }
        expect(got).toEqual(want)
      }),
      { numRuns: 3000 },
    )
  })

  it("maybeAppend truncates a conflicting suffix, never a committed entry, and tracks the unstable tail", () => {
    const log = new RaftLog(meta(0, 0), mk([1, 1, 2, 2]), 2, 0)
    expect(log.stable).toBe(4)
    // Leader of term 3 says entry 3 has term 3.
    expect(log.maybeAppend(2, 1, mk([3, 3], 3))).toBe(4)
    expect(log.entries.map((e) => e.term)).toEqual([1, 1, 3, 3])
    expect(log.stable).toBe(2)
    expect(log.unstableEntries().map((e) => e.index)).toEqual([3, 4])
    // A mismatching prevTerm is refused.
    expect(log.maybeAppend(4, 2, mk([3], 5))).toBeNull()
    // A duplicate or stale append changes nothing.
    expect(log.maybeAppend(2, 1, mk([3], 3))).toBe(3)
    expect(log.lastIndex()).toBe(4)
    expect(() => log.append(mk([4], 2))).toThrow(/committed/)
  })

  it("compaction drops the prefix and keeps term lookups at the snapshot", () => {
    const log = new RaftLog(meta(0, 0), mk([1, 1, 2, 2, 3]), 5, 4)
    log.compact(meta(3, 2))
    expect(log.firstIndex()).toBe(4)
    expect(log.term(3)).toBe(2)
    expect(log.term(2)).toBeUndefined()
    expect(() => log.compact(meta(5, 3))).toThrow(/applied/)
  })
})

describe("Inflights", () => {
  it("is a bounded window freed in order", () => {
    const w = new Inflights(3, 0)
    w.add(5, 10)
    w.add(7, 10)
    w.add(9, 10)
    expect(w.full()).toBe(true)
    w.freeLE(7)
    expect(w.count).toBe(1)
    w.add(11, 1)
    w.add(12, 1)
    expect(w.full()).toBe(true)
    w.freeFirstOne()
    expect(w.count).toBe(2)
    w.freeLE(100)
    expect(w.count).toBe(0)
    expect(w.bytes).toBe(0)
  })

  it("also bounds bytes", () => {
    const w = new Inflights(10, 100)
    w.add(1, 60)
    expect(w.full()).toBe(false)
    w.add(2, 60)
    expect(w.full()).toBe(true)
  })
})
