// How the admin service reaches the consensus nodes: it knows some nodes
// (EKV_PEERS seeds, `$SRV.INFO.ekv-node` discovery, and the members of the
// last status it saw), asks them for cluster status over
// `<p>.internal.<n>.admin.cluster.status` to learn the leader, and sends
// requests to one node's internal admin subjects. What it remembers is a
// hint (the last leader and member list), never a source of truth.
import { Nats, request } from "@ekv/bus"
import { ApiError, type ClusterOpName, type ClusterStatus, clusterApi, subjects } from "@ekv/wire"
import { Context, Effect, Layer } from "effect"
import { candidateNodes, chooseView, memberNodes, nodesFromServiceInfo } from "./clusterView.ts"
import type { AdminConfig } from "./config.ts"

/** The codecs of each internal cluster op: the same shapes as `<p>.admin.cluster.*` (CONTRACT.md §3). */
export const clusterOps = {
  status: clusterApi.status,
  "add-learner": clusterApi.addLearner,
  promote: clusterApi.promote,
  remove: clusterApi.remove,
  "transfer-leader": clusterApi.transferLeader,
  snapshot: clusterApi.snapshot,
} as const satisfies Record<ClusterOpName, unknown>

type Ops = typeof clusterOps
export type OpRequest<K extends ClusterOpName> = Ops[K]["request"]["Type"]
export type OpReply<K extends ClusterOpName> = Ops[K]["reply"]["Type"]

/** The leader and its own view of the cluster. */
export interface LeaderView {
  readonly leader: string
  readonly status: ClusterStatus
}

export interface ConsensusNodesShape {
  /** The leader's status, or (no leader) the freshest status any node gives, leader null. */
  readonly status: Effect.Effect<ClusterStatus, ApiError.ApiError>
  /** The leader and its status; Unavailable when there is none. */
  readonly leader: Effect.Effect<LeaderView, ApiError.ApiError>
  /** One request to one node's `<p>.internal.<n>.admin.cluster.<op>`. */
  readonly call: <K extends ClusterOpName>(
    node: string,
    op: K,
    body: OpRequest<K>,
  ) => Effect.Effect<OpReply<K>, ApiError.ApiError>
  /** Forget the remembered leader (after it failed to answer). */
  readonly forgetLeader: Effect.Effect<void>
}

export class ConsensusNodes extends Context.Service<ConsensusNodes, ConsensusNodesShape>()(
  "ekv/admin/ConsensusNodes",
) {}

/** `<p>.internal.<n>.admin.cluster.<op>`. */
export const internalClusterSubject = (prefix: string, node: string, op: ClusterOpName): string =>
  `${subjects(prefix).internal(node).admin.op("cluster")}.${op}`

const decoder = new TextDecoder()

export const makeConsensusNodes = (config: AdminConfig): Effect.Effect<ConsensusNodesShape, never, Nats> =>
  Effect.gen(function* () {
    const nc = yield* Nats
    const s = subjects(config.prefix)
    // Hints only: where to look first.
    let lastLeader: string | undefined
    let lastMembers: ReadonlyArray<string> = []
    let discovered: ReadonlyArray<string> = []

    const call = <K extends ClusterOpName>(node: string, op: K, body: OpRequest<K>) => {
      const ep = clusterOps[op]
      return request(
        internalClusterSubject(config.prefix, node, op),
        ep.request as never,
        ep.reply as never,
        body as never,
        {
          timeoutMs:
            op === "status"
              ? config.statusTimeoutMs
              : op === "snapshot"
                ? config.snapshotTimeoutMs
                : config.mutateTimeoutMs,
        },
      ).pipe(Effect.provideService(Nats, nc)) as Effect.Effect<OpReply<K>, ApiError.ApiError>
    }

    /** `$SRV.INFO.<p>-node`: every node whose consensus or keystore is up. */
    const discover = Effect.tryPromise({
      try: async () => {
        const replies: unknown[] = []
        const it = await nc.requestMany(`$SRV.INFO.${s.service.node}`, "", {
          strategy: "timer",
          maxWait: config.discoveryWaitMs,
        })
        for await (const m of it) {
          try {
            replies.push(JSON.parse(decoder.decode(m.data)))
          } catch {
            // not a service info reply; ignore
          }
        }
        return nodesFromServiceInfo(config.prefix, replies)
      },
      catch: (e) => e,
    }).pipe(
      Effect.tap((nodes) =>
        Effect.sync(() => {
          discovered = nodes
        }),
      ),
      Effect.catch((e) => {
        const message = e instanceof Error ? e.message : String(e)
        // No ekv-node instance at all is an answer, not a failure.
        const log = /no responders/i.test(message) ? Effect.logDebug : Effect.logWarning
        return log(`node discovery: ${message}`).pipe(Effect.as<ReadonlyArray<string>>([]))
      }),
    )

    const askAll = (nodes: ReadonlyArray<string>) =>
      Effect.forEach(
        nodes,
        (node) =>
          call(node, "status", {}).pipe(
            Effect.map((status) => ({ node, status })),
            Effect.option,
          ),
        { concurrency: "unbounded" },
      ).pipe(Effect.map((rs) => rs.flatMap((r) => (r._tag === "Some" ? [r.value] : []))))

    const remember = (status: ClusterStatus) =>
      Effect.sync(() => {
        lastLeader = status.leader ?? undefined
        if (status.members.length > 0) lastMembers = memberNodes(status)
      })

    type Found =
      | { readonly _tag: "Leader"; readonly view: LeaderView }
      | { readonly _tag: "NoLeader"; readonly status: ClusterStatus }

    const unavailable = (message: string, details?: Record<string, unknown>) =>
      new ApiError.Unavailable({ message, details: { reason: "NoLeader", ...details } })

    const find: Effect.Effect<Found, ApiError.ApiError> = Effect.gen(function* () {
      // The remembered leader, if it still says it leads, answers alone.
      if (lastLeader !== undefined) {
        const known = lastLeader
        const own = yield* Effect.option(call(known, "status", {}))
        if (own._tag === "Some" && own.value.leader === known) {
          yield* remember(own.value)
          return { _tag: "Leader", view: { leader: known, status: own.value } } as const
        }
      }
      let nodes = candidateNodes(undefined, config.peers, lastMembers, discovered)
      if (nodes.length === 0) nodes = yield* discover
      let answers = yield* askAll(nodes)
      if (answers.length === 0) {
        // Seeds may all be gone; look for whoever is out there now.
        const more = (yield* discover).filter((n) => !nodes.includes(n))
        answers = yield* askAll(more)
        nodes = [...nodes, ...more]
      }
      const view = chooseView(answers)
      switch (view._tag) {
        case "Silent":
          return yield* Effect.fail(
            unavailable(
              nodes.length === 0
                ? "no consensus node is known (set EKV_PEERS or start the nodes)"
                : `no consensus node answered (asked ${nodes.join(", ")})`,
              { asked: nodes },
            ),
          )
        case "NoLeader":
          yield* remember(view.status)
          return { _tag: "NoLeader", status: view.status } as const
        case "Leader": {
          let status = view.status
          if (status === undefined) {
            // The leader was not among those asked (e.g. a newly promoted node).
            const own = yield* Effect.option(call(view.leader, "status", {}))
            status = own._tag === "Some" ? own.value : undefined
          }
          if (status === undefined) {
            lastLeader = undefined
            return yield* Effect.fail(
              unavailable(`leader ${view.leader} does not answer`, { leader: view.leader }),
            )
          }
          yield* remember(status)
          return { _tag: "Leader", view: { leader: view.leader, status } } as const
        }
      }
    })

    const status = find.pipe(Effect.map((f) => (f._tag === "Leader" ? f.view.status : f.status)))
    const leader = find.pipe(
      Effect.flatMap((f) =>
        f._tag === "Leader"
          ? Effect.succeed(f.view)
          : Effect.fail(unavailable("the cluster has no leader", { term: f.status.term })),
      ),
    )
    const forgetLeader = Effect.sync(() => {
      lastLeader = undefined
    })
    return { status, leader, call, forgetLeader }
  })

export const consensusNodesLayer = (config: AdminConfig): Layer.Layer<ConsensusNodes, never, Nats> =>
  Layer.effect(ConsensusNodes, makeConsensusNodes(config))
