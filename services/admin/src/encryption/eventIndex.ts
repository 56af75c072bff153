// Looks up applied encryption entries in the events stream (CONTRACT.md §5)
// when the leader's state does not carry an index the API must return.
import { Nats } from "@ekv/bus"
import { ApiError, type EncryptionEventKind } from "@ekv/wire"
import { Context, Effect, Layer } from "effect"
import { readEvents } from "./eventHistory.ts"

export interface EventIndexShape {
  /** The lowest index at which an entry of `kind` applied in cluster `clusterId`, if any event says so. */
  readonly firstApplied: (
    clusterId: string,
    kind: EncryptionEventKind,
  ) => Effect.Effect<number | undefined, ApiError.ApiError>
}

export class EventIndex extends Context.Service<EventIndex, EventIndexShape>()("ekv/admin/EventIndex") {}

export const eventIndexLayer = (prefix: string): Layer.Layer<EventIndex, never, Nats> =>
  Layer.effect(
    EventIndex,
    Effect.map(Effect.service(Nats), (nc) => ({
      firstApplied: (clusterId, kind) =>
        Effect.tryPromise({
          try: () => readEvents(nc, prefix),
          catch: (e) =>
            new ApiError.Unavailable({
              message: `cannot read the events stream: ${e instanceof Error ? e.message : String(e)}`,
              details: { reason: "JetStream" },
            }),
        }).pipe(
          Effect.map((events) => {
            let best: number | undefined
            for (const e of events) {
              if (e.stream !== "encryption") continue
              const ev = e.event
              if (ev.kind !== kind || ev.outcome !== "applied" || ev.cluster_id !== clusterId) continue
              if (best === undefined || ev.index < best) best = ev.index
            }
            return best
          }),
        ),
    })),
  )
