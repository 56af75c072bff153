// The cluster operations this node serves to the admin service (which fronts
// `<p>.admin.cluster.*`, CONTRACT §3) on `<p>.internal.<n>.admin.cluster.<op>`,
// with the same request/reply schemas: status, add-learner, promote, remove,
// transfer-leader, snapshot. Mutators reaching a follower are forwarded once
// to the leader; `snapshot` snapshots THIS node (or forwards to `node`).
import { serveSubject } from "@ekv/bus"
import {
  ApiError,
  type ClusterMember,
  type ClusterOpName,
  type ClusterStatus,
  clusterApi,
  type NodeId,
  nodeApi,
  type RaftIndex,
} from "@ekv/wire"
import type { NatsConnection } from "@nats-io/transport-node"
import { Effect, Result } from "effect"
import { memberHealthSubject } from "./health.ts"
import { FORWARDED_HEADER, forwardRequest, internalAdminSubject } from "./kv/forward.ts"
import { fromPromise } from "./kv/kvEndpoints.ts"
import { NotLeader, type RaftNode } from "./node/raftNode.ts"

const PEER_HEALTH_TIMEOUT_MS = 400

type Api = typeof clusterApi
type ApiKey = keyof Api
type ReqOf<K extends ApiKey> = Api[K]["request"]["Type"]
type RepOf<K extends ApiKey> = Api[K]["reply"]["Type"]

const OP_NAMES: Readonly<Record<ApiKey, ClusterOpName>> = {
  status: "status",
  addLearner: "add-learner",
  promote: "promote",
  remove: "remove",
  transferLeader: "transfer-leader",
  snapshot: "snapshot",
}

export class ClusterHandlers {
  private readonly node: RaftNode
  private readonly nc: NatsConnection
  private readonly prefix: string

  constructor(node: RaftNode, nc: NatsConnection, prefix: string) {
    this.node = node
    this.nc = nc
    this.prefix = prefix
  }

  private async forward<K extends ApiKey>(k: K, to: string, req: ReqOf<K>): Promise<RepOf<K>> {
    const api = clusterApi[k]
    return forwardRequest(
      this.nc,
      internalAdminSubject(this.prefix, to, "cluster", OP_NAMES[k]),
      (api.encodeRequest as (r: ReqOf<K>) => Uint8Array)(req),
      api.decodeReply as (b: Uint8Array) => Result.Result<RepOf<K>, never>,
    )
  }

  private async onLeader<K extends ApiKey>(
    k: K,
    req: ReqOf<K>,
    forwarded: boolean,
    local: () => Promise<RepOf<K>>,
  ): Promise<RepOf<K>> {
    try {
      return await local()
    } catch (e) {
      if (!(e instanceof NotLeader)) throw e
      if (forwarded || e.leader === null || e.leader === this.node.id)
        throw new ApiError.Unavailable({
          message: "no leader is known; retry",
          details: { reason: "NoLeader" },
        })
      return this.forward(k, e.leader, req)
    }
  }

  private members(): { voters: Set<string>; learners: Set<string> } {
    const st = this.node.status()
    return {
      voters: new Set(st.members.filter((m) => m.role === "voter").map((m) => m.node)),
      learners: new Set(st.members.filter((m) => m.role === "learner").map((m) => m.node)),
    }
  }

  private notFound(node: string): ApiError.NotFound {
    return new ApiError.NotFound({ message: `${node} is not a member of the cluster`, details: { node } })
  }

  async status(): Promise<ClusterStatus> {
    const st = this.node.status()
    const decode = nodeApi.health.decodeReply
    const members = await Promise.all(
      st.members.map(async (m): Promise<ClusterMember> => {
        const base = {
          node: m.node as NodeId,
          role: m.role,
          ...(m.match === undefined ? {} : { match_index: m.match as RaftIndex }),
        }
        if (m.node === this.node.id) {
          const h = this.node.haltInfo
          return {
            ...base,
            applied_index: this.node.appliedIndex as RaftIndex,
            reachable: true,
            ...(h === null ? {} : { halted: { index: h.index as RaftIndex, reason: h.reason } }),
          }
        }
        try {
          const msg = await this.nc.request(
            memberHealthSubject(this.prefix, m.node),
            new TextEncoder().encode("{}"),
            {
              timeout: PEER_HEALTH_TIMEOUT_MS,
            },
          )
          const r = decode(msg.data)
          if (Result.isFailure(r)) throw r.failure
          const h = r.success
          return {
            ...base,
            applied_index: h.applied_index,
            reachable: true,
            ...(h.halted === undefined ? {} : { halted: h.halted }),
          }
        } catch {
          return { ...base, applied_index: 0 as RaftIndex, reachable: m.recentActive === true }
        }
      }),
    )
    return {
      cluster_id: st.clusterId as ClusterStatus["cluster_id"],
      leader: st.leader as NodeId | null,
      term: st.term,
      commit_index: st.commitIndex as RaftIndex,
      members,
    }
  }

  addLearner(req: ReqOf<"addLearner">, forwarded: boolean): Promise<RepOf<"addLearner">> {
    return this.onLeader("addLearner", req, forwarded, async () => {
      if (!this.node.isLeader) throw new NotLeader(this.node.leader)
      const m = this.members()
      if (m.voters.has(req.node) || m.learners.has(req.node))
        throw new ApiError.InvalidArgument({
          message: `${req.node} is already a member`,
          details: { node: req.node },
        })
      const index = await this.node.proposeConfChange({ type: "AddLearner", node: req.node })
      return { index: index as RaftIndex }
    })
  }

  promote(req: ReqOf<"promote">, forwarded: boolean): Promise<RepOf<"promote">> {
    return this.onLeader("promote", req, forwarded, async () => {
      if (!this.node.isLeader) throw new NotLeader(this.node.leader)
      const m = this.members()
      if (m.voters.has(req.node))
        throw new ApiError.InvalidArgument({
          message: `${req.node} is already a voter`,
          details: { node: req.node },
        })
      if (!m.learners.has(req.node)) throw this.notFound(req.node)
      const index = await this.node.proposeConfChange({ type: "PromoteLearner", node: req.node })
      return { index: index as RaftIndex }
    })
  }

  remove(req: ReqOf<"remove">, forwarded: boolean): Promise<RepOf<"remove">> {
    return this.onLeader("remove", req, forwarded, async () => {
      if (!this.node.isLeader) throw new NotLeader(this.node.leader)
      const m = this.members()
      if (!m.voters.has(req.node) && !m.learners.has(req.node)) throw this.notFound(req.node)
      const index = await this.node.proposeConfChange({ type: "RemoveNode", node: req.node })
      return { index: index as RaftIndex }
    })
  }

  transferLeader(req: ReqOf<"transferLeader">, forwarded: boolean): Promise<RepOf<"transferLeader">> {
    return this.onLeader("transferLeader", req, forwarded, async () => {
      if (!this.node.isLeader) throw new NotLeader(this.node.leader)
      const m = this.members()
      if (m.learners.has(req.node))
        throw new ApiError.InvalidArgument({
          message: `${req.node} is a learner, not a voter`,
          details: { node: req.node },
        })
      if (!m.voters.has(req.node)) throw this.notFound(req.node)
      const leader = await this.node.transferLeader(req.node)
      return { leader: leader as NodeId }
    })
  }

  async snapshot(req: ReqOf<"snapshot">, forwarded: boolean): Promise<RepOf<"snapshot">> {
    if (req.node !== undefined && req.node !== this.node.id) {
      if (forwarded) throw this.notFound(req.node)
      return this.forward("snapshot", req.node, req)
    }
    const index = await this.node.snapshotNow()
    return { snapshots: [{ node: this.node.id as NodeId, index: index as RaftIndex }] }
  }
}

/** Serves `<p>.internal.<self>.admin.cluster.<op>` for the lifetime of the scope. */
export const serveCluster = (node: RaftNode, nc: NatsConnection, prefix: string) =>
  Effect.gen(function* () {
    const h = new ClusterHandlers(node, nc, prefix)
    for (const k of Object.keys(OP_NAMES) as ApiKey[]) {
      const api = clusterApi[k]
      yield* serveSubject({
        subject: internalAdminSubject(prefix, node.id, "cluster", OP_NAMES[k]),
        label: `internal cluster ${OP_NAMES[k]}`,
        request: (data: Uint8Array) => {
          const r = (api.decodeRequest as (b: Uint8Array) => Result.Result<unknown, ApiError.ApiError>)(data)
          return Result.isSuccess(r) ? Effect.succeed(r.success) : Effect.fail(r.failure)
        },
        reply: api.encodeReply as (v: unknown) => Uint8Array,
        handler: (req: unknown, ctx) =>
          fromPromise(() =>
            (h[k] as (r: unknown, f: boolean) => Promise<unknown>).call(
              h,
              req,
              ctx.headers?.has(FORWARDED_HEADER) === true,
            ),
          ),
      })
    }
  })
