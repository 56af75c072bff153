// `<p>.admin.cluster.*` (CONTRACT.md §3): decoded through wire's clusterApi
// (unknown fields → InvalidArgument), then the named node must be a member
// (NotFound; not for add-learner, whose node is new), then the request goes
// to the leader's internal admin subjects — once more, with a fresh leader,
// when the first try is Unavailable. Membership changes are not gated by the
// encryption gate; once DEKs exist, add-learner / promote first admit the
// candidate (capable, registered under every unretired DEK: SPEC.md §5).
import { endpoint } from "@ekv/bus"
import {
  ApiError,
  type ClusterOpName,
  type ClusterStatus,
  type NodeId,
  type RequestError,
  type SnapshotReply,
  subjects,
} from "@ekv/wire"
import { Effect, type Result } from "effect"
import type { AdminModule } from "./adminModule.ts"
import { isMember } from "./clusterView.ts"
import type { AdminConfig } from "./config.ts"
import { ConsensusNodes, clusterOps, type OpReply, type OpRequest } from "./consensusNodes.ts"
import type { Services } from "./encryption/encryptionFlows.ts"
import { admitCandidate } from "./encryption/membership.ts"
import { PendingCandidates } from "./encryption/pendingCandidates.ts"

const notFound = (node: string, status: ClusterStatus) =>
  new ApiError.NotFound({
    message: `node ${node} is not a member of the cluster`,
    details: { node, members: status.members.map((m) => m.node) },
  })

/**
 * Sends a mutator to the leader; a first Unavailable (leader gone, timeout,
 * no responders) is retried once against a freshly found leader. `member`:
 * the node the request names must be in the leader's member list.
 */
export const forwardToLeader = <K extends ClusterOpName>(
  op: K,
  body: OpRequest<K>,
  member?: string,
): Effect.Effect<OpReply<K>, ApiError.ApiError, ConsensusNodes> =>
  Effect.gen(function* () {
    const nodes = yield* ConsensusNodes
    const attempt = Effect.gen(function* () {
      const { leader, status } = yield* nodes.leader
      if (member !== undefined && !isMember(status, member))
        return yield* Effect.fail(notFound(member, status))
      return yield* nodes.call(leader, op, body)
    })
    return yield* attempt.pipe(
      Effect.catchTag("Unavailable", (first) =>
        Effect.logInfo(`retrying ${op} with a fresh leader: ${first.message}`).pipe(
          Effect.andThen(nodes.forgetLeader),
          Effect.andThen(attempt),
        ),
      ),
    )
  })

/** Snapshots on one member, or on every member (aggregated in member order). */
export const snapshot = (
  node: NodeId | undefined,
): Effect.Effect<SnapshotReply, ApiError.ApiError, ConsensusNodes> =>
  Effect.gen(function* () {
    const nodes = yield* ConsensusNodes
    const status = yield* nodes.status
    const members = node === undefined ? status.members.map((m) => m.node) : [node]
    if (node !== undefined && !isMember(status, node)) return yield* Effect.fail(notFound(node, status))
    const results = yield* Effect.forEach(
      members,
      (n) =>
        nodes.call(n, "snapshot", { node: n }).pipe(
          Effect.result,
          Effect.map((r) => ({ node: n, r })),
        ),
      { concurrency: "unbounded" },
    )
    const failed = results.flatMap(({ node, r }) =>
      r._tag === "Failure" ? [{ node, error: r.failure }] : [],
    )
    if (failed.length > 0) {
      // One node asked for: its own error. Several: which ones failed, and why.
      if (node !== undefined && failed[0] !== undefined) return yield* Effect.fail(failed[0].error)
      return yield* Effect.fail(
        new ApiError.Unavailable({
          message: `snapshot failed on ${failed.map((f) => `${f.node} (${f.error._tag}: ${f.error.message})`).join(", ")}`,
          details: {
            reason: "PartialFanOut",
            nodes: failed.map((f) => ({ node: f.node, code: f.error._tag, message: f.error.message })),
            succeeded: results.flatMap(({ r }) => (r._tag === "Success" ? r.success.snapshots : [])),
          },
        }),
      )
    }
    return { snapshots: results.flatMap(({ r }) => (r._tag === "Success" ? r.success.snapshots : [])) }
  })

const decodeWith =
  <A>(decode: (bytes: Uint8Array) => Result.Result<A, RequestError>) =>
  (data: Uint8Array): Effect.Effect<A, ApiError.ApiError> =>
    Effect.fromResult(decode(data))

/** One endpoint of `<p>.admin.cluster.<op>`, its codecs taken from wire's clusterApi. */
const clusterEndpoint = <K extends ClusterOpName>(
  prefix: string,
  op: K,
  handler: (request: OpRequest<K>) => Effect.Effect<OpReply<K>, ApiError.ApiError, Services>,
) => {
  const ep = clusterOps[op]
  return endpoint<OpRequest<K>, OpReply<K>, Services>({
    name: `cluster-${op}`,
    subject: subjects(prefix).admin.cluster.op(op),
    request: decodeWith(ep.decodeRequest as (bytes: Uint8Array) => Result.Result<OpRequest<K>, RequestError>),
    reply: ep.encodeReply as (value: OpReply<K>) => Uint8Array,
    handler,
  })
}

/**
 * add-learner / promote: the candidate is pending (register-writer accepts
 * it) while it is admitted and the change is forwarded.
 */
const admitThenForward = <K extends "add-learner" | "promote">(
  op: K,
  req: OpRequest<K>,
  config: AdminConfig,
): Effect.Effect<OpReply<K>, ApiError.ApiError, Services> =>
  Effect.flatMap(Effect.service(PendingCandidates), (pending) =>
    pending.during(
      req.node,
      Effect.gen(function* () {
        if (op === "promote") {
          const status = yield* Effect.flatMap(Effect.service(ConsensusNodes), (n) => n.status)
          if (!isMember(status, req.node)) return yield* Effect.fail(notFound(req.node, status))
        }
        yield* admitCandidate(req.node, config)
        return yield* forwardToLeader(op, req, op === "promote" ? req.node : undefined)
      }),
    ),
  )

/** The six cluster endpoints, for the `ekv-admin` micro service. */
export const clusterModule = (config: AdminConfig): AdminModule<Services> => {
  const prefix = config.prefix
  return {
    name: "cluster",
    endpoints: [
      clusterEndpoint(prefix, "status", () =>
        Effect.flatMap(Effect.service(ConsensusNodes), (n) => n.status),
      ),
      clusterEndpoint(prefix, "add-learner", (req) => admitThenForward("add-learner", req, config)),
      clusterEndpoint(prefix, "promote", (req) => admitThenForward("promote", req, config)),
      clusterEndpoint(prefix, "remove", (req) => forwardToLeader("remove", req, req.node)),
      clusterEndpoint(prefix, "transfer-leader", (req) => forwardToLeader("transfer-leader", req, req.node)),
      clusterEndpoint(prefix, "snapshot", (req) => snapshot(req.node)),
    ],
  }
}
