// The admin service's calls for the encryption API: the leader's and each
// node's internal encryption subjects (`<p>.internal.<n>.admin.encryption.<op>`,
// @ekv/wire/consensus-admin-protocol), each node's keystore capability
// (`<p>.node.<n>.capability`) and its resync (`<p>.internal.<n>.keystore.resync`).
import { Nats, request } from "@ekv/bus"
import { type ApiError, CapabilityReport, EmptyRequest, SidecarStateReport, subjects } from "@ekv/wire"
import {
  EncryptionOp,
  GenerateDekReply,
  GenerateDekRequest,
  NodeStatusReply,
  NodeStatusRequest,
  ProposeReply,
  ProposeRequest,
  RewrapDeksReply,
  RewrapDeksRequest,
  RewriteReply,
  RewriteRequest,
  StateRequest,
} from "@ekv/wire/consensus-admin-protocol"
import { ResyncReply, ResyncRequest, SidecarStateRequest } from "@ekv/wire/keystore-protocol"
import { Context, Effect, Layer, type Schema } from "effect"
import type { AdminConfig } from "../config.ts"
import { LeaderState } from "./encryptionState.ts"

export interface EncryptionBusShape {
  readonly state: (leader: string) => Effect.Effect<LeaderState, ApiError.ApiError>
  readonly propose: (leader: string, entry: Uint8Array) => Effect.Effect<ProposeReply, ApiError.ApiError>
  readonly generateDek: (
    leader: string,
    purposes: ReadonlyArray<"storage" | "raft">,
  ) => Effect.Effect<typeof GenerateDekReply.Type, ApiError.ApiError>
  readonly rewrapWraps: (
    leader: string,
    nextKekId: string,
  ) => Effect.Effect<RewrapDeksReply, ApiError.ApiError>
  readonly sidecarState: (
    leader: string,
    caller: bigint | undefined,
  ) => Effect.Effect<SidecarStateReport, ApiError.ApiError>
  readonly nodeStatus: (node: string) => Effect.Effect<NodeStatusReply, ApiError.ApiError>
  /** `asOfIndex`: the leader's commit index the node applies up to before it scans. */
  readonly rewrite: (
    node: string,
    rateMibS: number | undefined,
    asOfIndex: number,
  ) => Effect.Effect<typeof RewriteReply.Type, ApiError.ApiError>
  /** `timeoutMs` defaults to the status timeout; the member poll passes one election timeout. */
  readonly capability: (
    node: string,
    timeoutMs?: number,
  ) => Effect.Effect<CapabilityReport, ApiError.ApiError>
  readonly resync: (node: string, leader: string) => Effect.Effect<typeof ResyncReply.Type, ApiError.ApiError>
}

export class EncryptionBus extends Context.Service<EncryptionBus, EncryptionBusShape>()(
  "ekv/admin/EncryptionBus",
) {}

export const makeEncryptionBus = (config: AdminConfig): Effect.Effect<EncryptionBusShape, never, Nats> =>
  Effect.gen(function* () {
    const nc = yield* Nats
    const s = subjects(config.prefix)
    const call = <Req, Rep>(
      subject: string,
      req: Schema.Codec<Req, unknown>,
      rep: Schema.Decoder<Rep>,
      body: Req,
      timeoutMs: number,
    ): Effect.Effect<Rep, ApiError.ApiError> =>
      request(subject, req, rep, body, { timeoutMs }).pipe(Effect.provideService(Nats, nc))
    const enc = (node: string, op: string) => `${s.internal(node).admin.op("encryption")}.${op}`
    const read = config.statusTimeoutMs
    const write = config.mutateTimeoutMs
    return {
      state: (leader) => call(enc(leader, EncryptionOp.state), StateRequest, LeaderState, {}, read),
      propose: (leader, entry) =>
        call(enc(leader, EncryptionOp.propose), ProposeRequest, ProposeReply, { entry }, write),
      generateDek: (leader, purposes) =>
        call(
          enc(leader, EncryptionOp.generateDek),
          GenerateDekRequest,
          GenerateDekReply,
          { purposes },
          write,
        ),
      rewrapWraps: (leader, nextKekId) =>
        call(
          enc(leader, EncryptionOp.rewrapDeks),
          RewrapDeksRequest,
          RewrapDeksReply,
          { next_kek_id: nextKekId },
          write,
        ),
      sidecarState: (leader, caller) =>
        call(
          enc(leader, EncryptionOp.sidecarState),
          SidecarStateRequest,
          SidecarStateReport,
          caller === undefined ? {} : { caller_full_node_id: caller },
          read,
        ),
      nodeStatus: (node) =>
        call(enc(node, EncryptionOp.nodeStatus), NodeStatusRequest, NodeStatusReply, {}, read),
      rewrite: (node, rate, asOfIndex) =>
        call(
          enc(node, EncryptionOp.rewrite),
          RewriteRequest,
          RewriteReply,
          { ...(rate === undefined ? {} : { rate_mib_s: rate }), as_of_index: asOfIndex },
          write,
        ),
      capability: (node, timeoutMs) =>
        call(s.node(node).capability, EmptyRequest, CapabilityReport, {}, timeoutMs ?? read),
      resync: (node, leader) =>
        call(
          s.internal(node).keystore.resync,
          ResyncRequest,
          ResyncReply,
          { leader },
          config.resyncTimeoutMs,
        ),
    }
  })

export const encryptionBusLayer = (config: AdminConfig): Layer.Layer<EncryptionBus, never, Nats> =>
  Layer.effect(EncryptionBus, makeEncryptionBus(config))
