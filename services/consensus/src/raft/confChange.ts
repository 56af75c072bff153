// Single-step membership changes (SPEC §2 "Membership"): add a learner,
// promote a learner, remove a member; the first entry of a new cluster's log
// is a Bootstrap naming its voters. A change returns a new config or an error
// after checking the invariants below; it never mutates its input.
//
// Invariants of every config a change returns:
//   voters ∩ learners = ∅;  |voters| ≥ 1 (the last voter is never removed).

import type { ConfState, NodeId } from "./types.ts"

export interface Config {
  readonly voters: ReadonlySet<NodeId>
  readonly learners: ReadonlySet<NodeId>
}

export type ConfChange =
  | { readonly type: "Bootstrap"; readonly voters: readonly NodeId[] }
  | { readonly type: "AddLearner"; readonly node: NodeId }
  | { readonly type: "PromoteLearner"; readonly node: NodeId }
  | { readonly type: "RemoveNode"; readonly node: NodeId }

export type ConfChangeResult =
  | { readonly ok: true; readonly config: Config }
  | { readonly ok: false; readonly error: string }

export const emptyConfig: Config = { voters: new Set(), learners: new Set() }

export const configFromState = (cs: ConfState): Config => ({
  voters: new Set(cs.voters),
  learners: new Set(cs.learners),
})

export const configToState = (c: Config): ConfState => ({
  voters: [...c.voters].sort(),
  learners: [...c.learners].sort(),
})

export const isMember = (c: Config, id: NodeId): boolean => c.voters.has(id) || c.learners.has(id)

const fail = (error: string): ConfChangeResult => ({ ok: false, error })

const validId = (id: unknown): id is NodeId => typeof id === "string" && id.length > 0 && id.length <= 256

/** Applies one change to `c`, checking every invariant; pure. */
export const applyConfChange = (c: Config, cc: ConfChange): ConfChangeResult => {
  switch (cc.type) {
    case "Bootstrap": {
      if (c.voters.size > 0 || c.learners.size > 0) return fail("bootstrap of a non-empty configuration")
      const voters = new Set(cc.voters)
      if (voters.size === 0) return fail("bootstrap without voters")
      if (voters.size !== cc.voters.length) return fail("bootstrap lists a voter twice")
      return { ok: true, config: { voters, learners: new Set() } }
    }
    case "AddLearner": {
      if (isMember(c, cc.node)) return fail(`${cc.node} is already a member`)
      return { ok: true, config: { voters: c.voters, learners: new Set([...c.learners, cc.node]) } }
    }
    case "PromoteLearner": {
      if (!c.learners.has(cc.node)) return fail(`${cc.node} is not a learner`)
      const learners = new Set(c.learners)
      learners.delete(cc.node)
      return { ok: true, config: { voters: new Set([...c.voters, cc.node]), learners } }
    }
    case "RemoveNode": {
      if (c.learners.has(cc.node)) {
        const learners = new Set(c.learners)
        learners.delete(cc.node)
        return { ok: true, config: { voters: c.voters, learners } }
      }
      if (!c.voters.has(cc.node)) return fail(`${cc.node} is not a member`)
      if (c.voters.size === 1) return fail("cannot remove the last voter")
      const voters = new Set(c.voters)
      voters.delete(cc.node)
      return { ok: true, config: { voters, learners: c.learners } }
    }
  }
}

/** Applies a change to a ConfState (for drivers that keep the config in their state machine). */
export const applyConfChangeToState = (
  cs: ConfState,
  cc: ConfChange,
): { ok: true; confState: ConfState } | { ok: false; error: string } => {
  const r = applyConfChange(configFromState(cs), cc)
  return r.ok ? { ok: true, confState: configToState(r.config) } : r
}

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })

export const encodeConfChange = (cc: ConfChange): Uint8Array => encoder.encode(JSON.stringify(cc))

/** Decodes and validates; an undecodable body yields null (every replica treats it as a no-op). */
export const decodeConfChange = (data: Uint8Array): ConfChange | null => {
  let v: unknown
  try {
    v = JSON.parse(decoder.decode(data))
  } catch {
    return null
  }
  if (typeof v !== "object" || v === null) return null
  const o = v as Record<string, unknown>
  switch (o.type) {
    case "Bootstrap":
      return Array.isArray(o.voters) && o.voters.every(validId)
        ? { type: "Bootstrap", voters: o.voters }
        : null
    case "AddLearner":
    case "PromoteLearner":
    case "RemoveNode":
      return validId(o.node) ? { type: o.type, node: o.node } : null
    default:
      return null
  }
}
