// Nodes named by an add-learner / promote this admin process is carrying out
// (SPEC.md §5: register-writer accepts a pending candidate). A hint held in
// memory for the duration of the change, never a source of truth.
import { Context, Effect, Layer } from "effect"

export interface PendingCandidatesShape {
  readonly list: Effect.Effect<ReadonlyArray<string>>
  /** Runs `effect` with `node` pending; it stops being pending when `effect` ends, however it ends. */
  readonly during: <A, E, R>(node: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

export class PendingCandidates extends Context.Service<PendingCandidates, PendingCandidatesShape>()(
  "ekv/admin/PendingCandidates",
) {}

export const makePendingCandidates = (): PendingCandidatesShape => {
  const counts = new Map<string, number>()
  const add = (node: string) =>
    Effect.sync(() => {
      counts.set(node, (counts.get(node) ?? 0) + 1)
    })
  const remove = (node: string) =>
    Effect.sync(() => {
      const n = (counts.get(node) ?? 1) - 1
      if (n <= 0) counts.delete(node)
      else counts.set(node, n)
    })
  return {
    list: Effect.sync(() => [...counts.keys()]),
    during: (node, effect) =>
      Effect.acquireUseRelease(
        add(node),
        () => effect,
        () => remove(node),
      ),
  }
}

export const pendingCandidatesLayer: Layer.Layer<PendingCandidates> = Layer.sync(
  PendingCandidates,
  makePendingCandidates,
)
