// The keystore on the bus: its internal endpoints under
// `<p>.internal.<node>.keystore.*`, the `<p>.node.<node>.capability` micro
// endpoint (service `<p>-node`), and the encryption events of CONTRACT.md §5
// published after each durable apply, only above the last published index.
import {
  endpoint,
  ensureStream,
  Nats,
  publishDeduped,
  request,
  type ServeError,
  serveMicro,
  serveSubject,
} from "@ekv/bus"
import {
  ApiError,
  decodeEntry,
  type EncryptionPayload,
  encryptionEventMsgId,
  NodeCapabilityReply,
  NodeCapabilityRequest,
  SidecarStateReport,
  type Subjects,
} from "@ekv/wire"
import {
  DispatchReply,
  DispatchRequest,
  ExportReply,
  ExportRequest,
  GenerateDekReply,
  GenerateDekRequest,
  LivenessReply,
  LivenessRequest,
  LogEntriesReply,
  LogEntriesRequest,
  LogStateReply,
  LogStateRequest,
  RestoreReply,
  RestoreRequest,
  ResyncReply,
  ResyncRequest,
  RewrapReply,
  RewrapRequest,
  SessionReply,
  SessionRequest,
  SidecarStateRequest,
} from "@ekv/wire/keystore-protocol"
import { Effect, Result, Schedule, Schema, type Scope, Semaphore } from "effect"
import type { DispatchOutcome } from "./applier.ts"
import {
  capabilityReport,
  epochsBelowRegistry,
  exportState,
  generateDeks,
  restoreState,
  sidecarState,
} from "./encryptionState.ts"
import { rewrapDeks } from "./kekRewrap.ts"
import type { KeystoreMetrics } from "./keystoreMetrics.ts"
import { appliedIndex } from "./keystoreState.ts"
import { ResyncFailed, type ResyncSource, resync } from "./resync.ts"
import { openSession } from "./session.ts"
import type { Keystore } from "./startup.ts"

export interface ServeOptions {
  readonly subjects: Subjects
  readonly buildSha: string
  readonly version: string
  readonly metrics?: KeystoreMetrics | undefined
}

/** Our encoded reply fields through the contract schema (a mismatch is a bug → Internal). */
const asReply = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, encoded: unknown) =>
  Schema.decodeUnknownEffect(schema)(encoded).pipe(
    Effect.mapError((e) => new ApiError.Internal({ message: `reply does not fit its schema: ${e.message}` })),
  )

/** A node-local failure as the bus error: Halted with the halt code (CONTRACT.md §1). */
const halted = (e: { readonly code: string; readonly message: string }, index?: number): ApiError.ApiError =>
  new ApiError.Halted({
    message: e.message,
    details: { reason: e.code, ...(index === undefined ? {} : { index }) },
  })

const toReply = (o: DispatchOutcome): DispatchReply =>
  o.status === "rejected"
    ? {
        status: "rejected",
        index: o.index,
        kind: o.kind,
        key_ids: [...o.keyIds],
        code: o.code,
        reason: o.reason,
        replay: o.replay,
      }
    : {
        status: "applied",
        index: o.index,
        kind: o.kind,
        outcome: o.outcome,
        key_ids: [...o.keyIds],
        replay: o.replay,
        ...(o.handover === undefined
          ? {}
          : {
              handover: {
                sealed: o.handover.sealed,
                key_ids: [...o.handover.keyIds],
                unregistered_key_ids: [...o.handover.unregisteredKeyIds],
              },
            }),
        exhausted_key_ids: [...o.exhaustedKeyIds],
      }

/** Publishes recorded outcomes above the last published index, in order, once durably applied. */
export const makeEventPublisher = (ks: Keystore, subjects: Subjects) => {
  const lock = Semaphore.makeUnsafe(1)
  const { store } = ks.state
  const node = ks.state.config.nodeId
  return lock.withPermit(
    Effect.gen(function* () {
      const applied = yield* appliedIndex(ks.state)
      const clusterId = (yield* store.clusterId) ?? ""
      let last = yield* store.lastPublishedIndex
      for (;;) {
        const batch = yield* store.outcomesAfter(last, 100)
        // An outcome recorded ahead of an interrupted sidecar commit is not applied yet.
        const ready = batch.filter((o) => o.index <= applied)
        if (ready.length === 0) return
        for (const o of ready) {
          const body = {
            cluster_id: clusterId,
            node,
            index: o.index,
            kind: o.kind,
            key_ids: o.key_ids,
            outcome: o.outcome,
            ...(o.code === undefined ? {} : { code: o.code }),
            at: new Date().toISOString(),
          }
          yield* publishDeduped(
            subjects.events.encryption(node),
            JSON.stringify(body),
            encryptionEventMsgId(clusterId, node, o.index),
            { timeoutMs: 5_000 },
          )
          yield* store.putLastPublishedIndex(o.index)
          last = o.index
        }
        if (ready.length < batch.length) return
      }
    }),
  )
}

export const serveKeystore = (
  ks: Keystore,
  opts: ServeOptions,
): Effect.Effect<void, ServeError, Nats | Scope.Scope> =>
  Effect.gen(function* () {
    const { state, applier } = ks
    const node = state.config.nodeId
    const sub = opts.subjects.internal(node).keystore
    const capability = () =>
      capabilityReport(state, {
        node,
        buildSha: opts.buildSha,
        encryptionEnabled: ks.encryptionEnabled,
        probePassed: ks.probePassed,
        applierReady: true,
      })

    const publish = makeEventPublisher(ks, opts.subjects).pipe(
      Effect.catch((e) =>
        Effect.logWarning(`encryption events not published yet: ${e.message}`).pipe(
          Effect.annotateLogs({ component: "keystore" }),
        ),
      ),
    )
    yield* ensureStream({
      name: opts.subjects.events.stream,
      subjects: [opts.subjects.events.all],
      storage: "file",
    }).pipe(
      Effect.catch((e) =>
        Effect.logWarning(`cannot ensure stream ${opts.subjects.events.stream}: ${e.message}`).pipe(
          Effect.annotateLogs({ component: "keystore" }),
        ),
      ),
    )
    // Catch up at start and retry periodically (a bus outage must not lose events).
    yield* Effect.forkScoped(publish.pipe(Effect.repeat(Schedule.spaced("5 seconds"))))

    yield* serveSubject({
      subject: sub.session,
      request: SessionRequest,
      reply: SessionReply,
      maxConcurrent: 1,
      handler: (req) =>
        openSession(state, {
          sessionId: req.session_id,
          publicKey: req.public_key,
          floors: req.floors,
          floorsAsOfIndex: req.floors_as_of_index,
        }).pipe(
          Effect.tap(() => Effect.sync(() => opts.metrics?.refresh(state))),
          Effect.map((r) => ({
            sealed: r.sealed,
            key_ids: [...r.keyIds],
            exhausted_key_ids: [...r.exhaustedKeyIds],
          })),
          Effect.mapError((e) =>
            e._tag === "InvalidSessionKey" ? new ApiError.InvalidArgument({ message: e.message }) : halted(e),
          ),
        ),
    })

    yield* serveSubject({
      subject: sub.dispatch,
      request: DispatchRequest,
      reply: DispatchReply,
      handler: (req) =>
        Effect.gen(function* () {
          const decoded = decodeEntry(req.entry)
          if (Result.isFailure(decoded)) {
            return yield* new ApiError.InvalidArgument({
              message: `entry ${req.index}: ${decoded.failure.message}`,
            })
          }
          const payload = decoded.success
          if (payload.tag !== 0x03 && payload.tag !== 0x04 && payload.tag !== 0x05) {
            return yield* new ApiError.InvalidArgument({
              message: `entry ${req.index} has tag 0x0${payload.tag}; only encryption entries (0x03–0x05) are dispatched`,
            })
          }
          if (
            req.cluster_id !== undefined &&
            (yield* state.store.clusterId.pipe(Effect.orElseSucceed(() => undefined))) !== req.cluster_id
          ) {
            yield* state.store.putClusterId(req.cluster_id).pipe(Effect.ignore)
          }
          const started = performance.now()
          const outcome = yield* applier
            .dispatch({
              index: req.index,
              prevEncryptionIndex: req.prev_encryption_index,
              payload: payload as EncryptionPayload,
              session:
                req.session === undefined
                  ? undefined
                  : { sessionId: req.session.session_id, publicKey: req.session.public_key },
            })
            .pipe(Effect.mapError((e) => halted(e, req.index)))
          opts.metrics?.observeDispatch(outcome, (performance.now() - started) / 1000)
          opts.metrics?.refresh(state)
          yield* Effect.forkDetach(publish)
          return toReply(outcome)
        }),
    })

    yield* serveSubject({
      subject: sub.liveness,
      request: LivenessRequest,
      reply: LivenessReply,
      handler: () =>
        Effect.all([appliedIndex(state), epochsBelowRegistry(state)]).pipe(
          Effect.map(([applied, below]) => ({
            ready: true,
            encryption_capable: capability().encryption_capable,
            applied_index: applied,
            raft_applied_index: state.sidecar.raft_applied_index,
            raft_envelope_cutover_index: state.sidecar.raft_envelope_cutover_index,
            epoch_below_registry_key_ids: below,
          })),
          Effect.mapError((e) => halted(e)),
        ),
    })

    yield* serveSubject({
      subject: sub.export,
      request: ExportRequest,
      reply: ExportReply,
      handler: () => exportState(state).pipe(Effect.mapError((e) => halted(e))),
    })

    yield* serveSubject({
      subject: sub.restore,
      request: RestoreRequest,
      reply: RestoreReply,
      maxConcurrent: 1,
      handler: (snap) =>
        restoreState(state, snap).pipe(
          Effect.tap(() => Effect.sync(() => opts.metrics?.refresh(state))),
          Effect.andThen(appliedIndex(state)),
          Effect.map((applied) => ({ applied_index: applied })),
          Effect.mapError((e) => halted(e)),
        ),
    })

    yield* serveSubject({
      subject: sub.generateDek,
      request: GenerateDekRequest,
      reply: GenerateDekReply,
      handler: (req) =>
        generateDeks(state, req.purposes).pipe(
          Effect.map((deks) => ({
            deks: deks.map((d) => ({ purpose: d.purpose, key_id: d.keyId, wrapped: d.wrapped })),
          })),
          Effect.mapError(
            (e) =>
              new ApiError.FailedPrecondition({
                message: e.message,
                details: { reason: ApiError.PreconditionReason.KekNotConfigured },
              }),
          ),
        ),
    })

    // KEK rotation's wraps (SPEC.md §4.4): only the next KEK's wraps are sent.
    yield* serveSubject({
      subject: sub.rewrap,
      request: RewrapRequest,
      reply: RewrapReply,
      handler: (req) =>
        rewrapDeks(state, req.next_kek_id).pipe(
          Effect.map((wraps) => ({
            next_kek_id: req.next_kek_id,
            wraps: wraps.map((w) => ({ key_id: w.keyId, wrapped: w.wrapped })),
          })),
          Effect.mapError((e) =>
            e._tag === "RewrapRefused"
              ? new ApiError.FailedPrecondition({
                  message: e.message,
                  details: {
                    reason: e.reason,
                    ...(e.reason === "KekNextMismatch"
                      ? { next_kek_id: req.next_kek_id, loaded_next_kek_id: e.loadedNextKekId ?? null }
                      : {}),
                  },
                })
              : halted(e),
          ),
        ),
    })

    yield* serveSubject({
      subject: sub.sidecarState,
      request: SidecarStateRequest,
      reply: SidecarStateReport,
      handler: (req) =>
        sidecarState(state, req.caller_full_node_id).pipe(
          Effect.mapError((e) => halted(e)),
          Effect.flatMap((fields) => asReply(SidecarStateReport, fields)),
        ),
    })

    yield* serveSubject({
      subject: sub.resync,
      request: ResyncRequest,
      reply: ResyncReply,
      maxConcurrent: 1,
      handler: (req) =>
        Effect.gen(function* () {
          const nc = yield* Nats
          const log = opts.subjects.internal(req.leader).admin.log
          const timeoutMs = 30_000
          const source: ResyncSource = {
            entriesAfter: (after) =>
              request(log.op("entries"), LogEntriesRequest, LogEntriesReply, { after }, { timeoutMs }).pipe(
                Effect.provideService(Nats, nc),
                Effect.map((r) =>
                  r.compacted
                    ? ("compacted" as const)
                    : r.entries.map((e) => ({
                        index: e.index,
                        prevEncryptionIndex: e.prev_encryption_index,
                        entry: e.entry,
                      })),
                ),
                Effect.mapError((e) => new ResyncFailed({ message: `leader ${req.leader}: ${e.message}` })),
              ),
            fullState: request(log.op("state"), LogStateRequest, LogStateReply, {}, { timeoutMs }).pipe(
              Effect.provideService(Nats, nc),
              Effect.mapError((e) => new ResyncFailed({ message: `leader ${req.leader}: ${e.message}` })),
            ),
          }
          const r = yield* resync(ks, source).pipe(
            Effect.mapError((e) =>
              e._tag === "ResyncFailed" ? new ApiError.Unavailable({ message: e.message }) : halted(e),
            ),
          )
          opts.metrics?.refresh(state)
          return { node, mode: r.mode, raft_applied_index: r.raftAppliedIndex }
        }),
    })

    yield* serveMicro({
      name: opts.subjects.service.node,
      version: opts.version,
      description: "ekv node endpoints (keystore: capability)",
      endpoints: [
        endpoint({
          name: "capability",
          subject: opts.subjects.node(node).capability,
          request: NodeCapabilityRequest,
          reply: NodeCapabilityReply,
          handler: () => asReply(NodeCapabilityReply, capability()),
        }),
      ],
    })
  })
