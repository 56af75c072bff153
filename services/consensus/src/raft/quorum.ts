// Majority arithmetic over one configuration's voters (single-step changes, so
// no joint quorums). Property-tested against a naive count in quorum.test.ts.

import type { NodeId } from "./types.ts"

/** Smallest number of voters that forms a majority of `n`. */
export const majority = (n: number): number => Math.floor(n / 2) + 1

/**
 * The largest index acknowledged by a majority of `voters`, where `matchOf`
 * gives each voter's acknowledged index (0 when unknown). With no voters the
 * result is +Infinity so that an empty config never constrains (and is never
 * used: a config always keeps one voter).
 */
export const committedIndex = (voters: Iterable<NodeId>, matchOf: (id: NodeId) => number): number => {
  const matches: number[] = []
  for (const id of voters) matches.push(matchOf(id))
  if (matches.length === 0) return Number.POSITIVE_INFINITY
  matches.sort((a, b) => b - a)
  // The majority-th highest match is held by at least a majority.
  return matches[majority(matches.length) - 1]!
}

export const VoteResult = { Won: "Won", Lost: "Lost", Pending: "Pending" } as const
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult]

/** Outcome of an election given the votes recorded so far (true = granted). Non-voters' votes are ignored. */
export const voteResult = (voters: Iterable<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult => {
  let granted = 0
  let rejected = 0
  let n = 0
  for (const id of voters) {
    n++
    const v = votes.get(id)
    if (v === true) granted++
    else if (v === false) rejected++
  }
  if (n === 0) return VoteResult.Won
  const q = majority(n)
  if (granted >= q) return VoteResult.Won
  if (n - rejected < q) return VoteResult.Lost
  return VoteResult.Pending
}

/** True when `active` holds a majority of `voters`. */
export const hasQuorum = (voters: Iterable<NodeId>, active: (id: NodeId) => boolean): boolean => {
  let n = 0
  let yes = 0
  for (const id of voters) {
    n++
    if (active(id)) yes++
  }
  return n === 0 || yes >= majority(n)
}
