import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { committedIndex, hasQuorum, majority, VoteResult, voteResult } from "../../../src/raft/quorum.ts"

const ids = ["a", "b", "c", "d", "e", "f", "g"]
const votersArb = fc.subarray(ids, { minLength: 1 })

/** The definition: the largest i such that more than half of the voters have match ≥ i. */
const naiveCommitted = (voters: string[], match: Record<string, number>): number => {
  let best = 0
  for (const v of voters) {
    const i = match[v] ?? 0
    const holders = voters.filter((w) => (match[w] ?? 0) >= i).length
    if (holders * 2 > voters.length && i > best) best = i
  }
  return best
}

const naiveVote = (voters: string[], votes: Map<string, boolean>): VoteResult => {
  const yes = voters.filter((v) => votes.get(v) === true).length
  const no = voters.filter((v) => votes.get(v) === false).length
  if (yes * 2 > voters.length) return VoteResult.Won
  if ((voters.length - no) * 2 <= voters.length) return VoteResult.Lost
  return VoteResult.Pending
}

describe("quorum arithmetic (against naive definitions, random inputs)", () => {
  it("majority", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map(majority)).toEqual([1, 2, 2, 3, 3, 4, 4])
  })

  it("committedIndex", () => {
    fc.assert(
      fc.property(votersArb, fc.dictionary(fc.constantFrom(...ids), fc.nat(50)), (voters, match) => {
        expect(committedIndex(voters, (id) => match[id] ?? 0)).toBe(naiveCommitted(voters, match))
      }),
      { numRuns: 2000 },
    )
  })

  it("voteResult (non-voters' votes never count)", () => {
    fc.assert(
      fc.property(votersArb, fc.dictionary(fc.constantFrom(...ids, "x", "y"), fc.boolean()), (voters, v) => {
        const votes = new Map(Object.entries(v))
        expect(voteResult(voters, votes)).toBe(naiveVote(voters, votes))
      }),
      { numRuns: 2000 },
    )
  })

  it("hasQuorum", () => {
    fc.assert(
      fc.property(votersArb, fc.subarray(ids), (voters, active) => {
        const n = voters.filter((v) => active.includes(v)).length
        expect(hasQuorum(voters, (id) => active.includes(id))).toBe(n * 2 > voters.length)
      }),
      { numRuns: 2000 },
    )
  })
})
