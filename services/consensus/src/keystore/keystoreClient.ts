// Typed calls to THIS node's own keystore on `<p>.internal.<n>.keystore.*`
// (@ekv/wire/keystore-protocol). Every call resolves to the decoded reply or
// rejects with a CONTRACT §1 ApiError (no responders / timeout → Unavailable;
// a node-local keystore failure → Halted with details.reason = halt code).
import { Nats, request } from "@ekv/bus"
import { ApiError, SidecarStateReport, subjects } from "@ekv/wire"
import {
  DispatchReply,
  DispatchRequest,
  type EncryptionStateExport,
  ExportReply,
  ExportRequest,
  GenerateDekReply,
  GenerateDekRequest,
  LivenessReply,
  LivenessRequest,
  RestoreReply,
  RestoreRequest,
  RewrapReply,
  RewrapRequest,
  SessionReply,
  SessionRequest,
  SidecarStateRequest,
} from "@ekv/wire/keystore-protocol"
import type { NatsConnection } from "@nats-io/transport-node"
import { Effect, Result, type Schema } from "effect"

export type Liveness = typeof LivenessReply.Type
export type SessionReplyBody = typeof SessionReply.Type
export type DispatchReplyBody = typeof DispatchReply.Type
export type GenerateDekReplyBody = typeof GenerateDekReply.Type
export type SidecarStateReportBody = typeof SidecarStateReport.Type
export type DispatchRequestBody = typeof DispatchRequest.Type

export const LIVENESS_TIMEOUT_MS = 500
const CALL_TIMEOUT_MS = 5_000
/** Dispatch waits for a durable apply (sidecar fsync, registry batch). */
const DISPATCH_TIMEOUT_MS = 3_000

/** The halt code a keystore's `Halted` reply names, if the error is one. */
export const haltReasonOf = (e: unknown): string | undefined => {
  if (!ApiError.isApiError(e) || e._tag !== "Halted") return undefined
  const reason = (e.details as { reason?: unknown } | undefined)?.reason
  return typeof reason === "string" ? reason : undefined
}

/** Nobody answered (in time): the keystore is down or slow — retryable. */
export const isUnreachable = (e: unknown): boolean => ApiError.isApiError(e) && e._tag === "Unavailable"

export class KeystoreClient {
  private readonly nc: NatsConnection
  private readonly s: ReturnType<ReturnType<typeof subjects>["internal"]>["keystore"]

  constructor(nc: NatsConnection, prefix: string, node: string) {
    this.nc = nc
    this.s = subjects(prefix).internal(node).keystore
  }

  private call<Req, Rep>(
    subject: string,
    req: Schema.Codec<Req, unknown>,
    rep: Schema.Decoder<Rep>,
    body: Req,
    timeoutMs: number,
  ): Promise<Rep> {
    return Effect.runPromise(
      Effect.result(Effect.provideService(request(subject, req, rep, body, { timeoutMs }), Nats, this.nc)),
    ).then((r) => {
      if (Result.isFailure(r)) throw r.failure
      return r.success
    })
  }

  liveness(timeoutMs = LIVENESS_TIMEOUT_MS): Promise<Liveness> {
    return this.call(this.s.liveness, LivenessRequest, LivenessReply, {}, timeoutMs)
  }

  session(body: typeof SessionRequest.Type): Promise<SessionReplyBody> {
    return this.call(this.s.session, SessionRequest, SessionReply, body, CALL_TIMEOUT_MS)
  }

  dispatch(body: DispatchRequestBody, timeoutMs = DISPATCH_TIMEOUT_MS): Promise<DispatchReplyBody> {
    return this.call(this.s.dispatch, DispatchRequest, DispatchReply, body, timeoutMs)
  }

  exportState(): Promise<EncryptionStateExport> {
    return this.call(this.s.export, ExportRequest, ExportReply, {}, CALL_TIMEOUT_MS)
  }

  restore(state: EncryptionStateExport): Promise<{ readonly applied_index: number }> {
    return this.call(this.s.restore, RestoreRequest, RestoreReply, state, 30_000)
  }

  generateDek(purposes: readonly ("storage" | "raft")[]): Promise<GenerateDekReplyBody> {
    return this.call(this.s.generateDek, GenerateDekRequest, GenerateDekReply, { purposes }, CALL_TIMEOUT_MS)
  }

  /** Every unretired DEK wrapped under the next KEK `nextKekId` (FailedPrecondition KekNextMismatch if not loaded). */
  rewrap(nextKekId: string): Promise<typeof RewrapReply.Type> {
    return this.call(this.s.rewrap, RewrapRequest, RewrapReply, { next_kek_id: nextKekId }, CALL_TIMEOUT_MS)
  }

  sidecarState(callerFullNodeId?: bigint): Promise<SidecarStateReportBody> {
    return this.call(
      this.s.sidecarState,
      SidecarStateRequest,
      SidecarStateReport,
      callerFullNodeId === undefined ? {} : { caller_full_node_id: callerFullNodeId },
      CALL_TIMEOUT_MS,
    )
  }
}
