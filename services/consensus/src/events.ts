// Cluster events of this node on `<p>.events.cluster.<n>` (CONTRACT §5),
// published through JetStream with `Nats-Msg-Id` de-duplication when
// JetStream is available (the stream is created if missing); best effort,
// never blocking the Raft loop.
import { ensureStream, Nats, publishDeduped } from "@ekv/bus"
import { type ClusterEventKind, clusterEventMsgId, type EventCode, subjects } from "@ekv/wire"
import type { NatsConnection } from "@nats-io/transport-node"
import { Effect } from "effect"

export interface ClusterEventInput {
  readonly kind: ClusterEventKind
  readonly term?: number
  readonly index?: number
  readonly code?: EventCode
  readonly reason?: string
  /** Distinguishes events with neither index nor term in their Nats-Msg-Id (a refused start: its time). */
  readonly msgKey?: number
}

export interface ClusterEvents {
  publish(e: ClusterEventInput, clusterId: string): void
  /** Resolves once every event published so far was sent (or given up on). */
  flush?(): Promise<void>
}

export const makeClusterEvents = (nc: NatsConnection, prefix: string, node: string): ClusterEvents => {
  const s = subjects(prefix)
  const subject = s.events.cluster(node)
  let streamCreateTried = false
  let chain: Promise<void> = Promise.resolve()
  const run = <A, E>(eff: Effect.Effect<A, E, Nats>) =>
    Effect.runPromise(Effect.provideService(eff, Nats, nc))
  return {
    publish(e, clusterId) {
      const body = JSON.stringify({
        cluster_id: clusterId,
        node,
        kind: e.kind,
        ...(e.term === undefined ? {} : { term: e.term }),
        ...(e.index === undefined ? {} : { index: e.index }),
        ...(e.code === undefined ? {} : { code: e.code }),
        ...(e.reason === undefined ? {} : { reason: e.reason }),
        at: new Date().toISOString(),
      })
      const msgId = clusterEventMsgId(clusterId, node, e.kind, e.index ?? e.term ?? e.msgKey ?? 0)
      chain = chain.then(async () => {
        const publish = () => run(publishDeduped(subject, body, msgId, { timeoutMs: 2_000 }))
        try {
          await publish()
        } catch {
          // The keystores create the stream (CONTRACT §9 gives consensus only the
          // publish API); create it only when it is missing (a cluster without
          // keystores), once. Events are best effort: the state is in health and status.
          if (streamCreateTried) return
          streamCreateTried = true
          try {
            await run(ensureStream({ name: s.events.stream, subjects: [s.events.all], storage: "file" }))
            await publish()
          } catch {
            // JetStream unavailable or not ours to create.
          }
        }
      })
    },
    flush: () => chain,
  }
}
