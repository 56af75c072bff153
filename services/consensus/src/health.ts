// `<p>.node.<n>.health` (CONTRACT §4), an instance of micro service `ekv-node`.
// `keystore` pings this node's keystore liveness subject with a short timeout.
import { endpoint, serveMicro, serveSubject } from "@ekv/bus"
import { ApiError, type NodeHealthReply, type NodeId, nodeApi, type RaftIndex, subjects } from "@ekv/wire"
import type { NatsConnection } from "@nats-io/transport-node"
import { Effect, Result } from "effect"
import { internalAdminSubject } from "./kv/forward.ts"
import type { RaftNode } from "./node/raftNode.ts"

const KEYSTORE_PING_MS = 250

export const pingKeystore = async (
  nc: NatsConnection,
  prefix: string,
  node: string,
): Promise<"ok" | "down"> => {
  try {
    await nc.request(subjects(prefix).internal(node).keystore.liveness, new TextEncoder().encode("{}"), {
      timeout: KEYSTORE_PING_MS,
    })
    return "ok"
  } catch {
    return "down"
  }
}

export const healthOf = async (
  node: RaftNode,
  nc: NatsConnection,
  prefix: string,
): Promise<NodeHealthReply> => {
  const h = node.haltInfo
  const keystore = await pingKeystore(nc, prefix, node.id)
  return {
    node: node.id as NodeId,
    consensus: h === null ? "ok" : "halted",
    keystore,
    applied_index: node.appliedIndex as RaftIndex,
    ...(h === null ? {} : { halted: { index: h.index as RaftIndex, reason: h.reason } }),
  }
}

/**
 * The same health body on `<p>.internal.<n>.admin.node.health`, for the other
 * consensus nodes' cluster status: CONTRACT §9 lets consensus-<m> publish to
 * `ekv.internal.*.admin.>` but not to `ekv.node.*`.
 */
export const memberHealthSubject = (prefix: string, node: string): string =>
  internalAdminSubject(prefix, node, "node", "health")

export const serveMemberHealth = (node: RaftNode, nc: NatsConnection, prefix: string) =>
  serveSubject({
    subject: memberHealthSubject(prefix, node.id),
    label: "internal member health",
    request: (data: Uint8Array) => {
      const r = nodeApi.health.decodeRequest(data)
      return Result.isSuccess(r) ? Effect.succeed(r.success) : Effect.fail<ApiError.ApiError>(r.failure)
    },
    reply: nodeApi.health.encodeReply,
    handler: () => Effect.promise(() => healthOf(node, nc, prefix)),
  })

export const serveHealth = (
  node: RaftNode,
  nc: NatsConnection,
  prefix: string,
  ready: () => boolean = () => true,
) => {
  const s = subjects(prefix)
  return serveMicro({
    name: s.service.node,
    version: "0.1.0",
    description: `ekv node endpoints of ${node.id} (consensus)`,
    queue: s.service.node,
    endpoints: [
      endpoint({
        name: "health",
        subject: s.node(node.id).health,
        request: (data: Uint8Array) => {
          const r = nodeApi.health.decodeRequest(data)
          return Result.isSuccess(r) ? Effect.succeed(r.success) : Effect.fail<ApiError.ApiError>(r.failure)
        },
        reply: nodeApi.health.encodeReply,
        // CONTRACT §4: `ok` only after the start-up registration (and a requested rotation) committed.
        handler: () =>
          node.haltInfo === null && !ready()
            ? Effect.fail<ApiError.ApiError>(
                new ApiError.Unavailable({
                  message: `${node.id} is registering its writer session; retry`,
                  details: { reason: "Registering" },
                }),
              )
            : Effect.promise(() => healthOf(node, nc, prefix)),
      }),
    ],
  })
}
