// Turns one request message into exactly one reply. The handler's Effect runs
// to completion in its own fiber; whatever happens — decode failure, typed
// ApiError, defect, interruption, reply too large — the requester gets a
// reply (success or CONTRACT §1 error), and the process keeps running.
import { ApiError } from "@ekv/wire"
import { type Msg, type MsgHdrs, headers as natsHeaders } from "@nats-io/transport-node"
import { Cause, Duration, Effect, FiberSet, type Scope, Semaphore } from "effect"
import { type ErrorReply, errorReply, ServiceErrorCodeHeader, ServiceErrorHeader } from "./errorReply.ts"
import { correlationId, internalError, type Outcome } from "./outcome.ts"
import { type ReplyEncoder, type RequestDecoder, toDecodeFn, toEncodeFn } from "./payload.ts"
import { type LaneHandler, PromiseLane } from "./promiseLane.ts"

export { correlationId, internalError, type Outcome }

/** What a handler sees besides its decoded request. */
export interface RequestContext {
  readonly msg: Msg
  readonly subject: string
  readonly headers: MsgHdrs | undefined
}

export type Handler<Req, Rep, R> = (
  request: Req,
  ctx: RequestContext,
) => Effect.Effect<Rep, ApiError.ApiError, R>

/** The typed description of how a subject is answered. */
export interface HandlerSpec<Req, Rep, R> {
  readonly request: RequestDecoder<Req, Msg>
  readonly reply: ReplyEncoder<Rep>
  readonly handler: Handler<Req, Rep, R>
}

/** A handler with its request/reply types closed over: message in, outcome out, never failing. */
export type Process<R> = (msg: Msg) => Effect.Effect<Outcome, never, R>

/**
 * Builds the per-message computation of a spec. `label` names the endpoint in
 * logs. Unexpected causes become Internal with a logged correlation id.
 */
export const makeProcess = <Req, Rep, R>(label: string, spec: HandlerSpec<Req, Rep, R>): Process<R> => {
  const decode = toDecodeFn(spec.request)
  const encode = toEncodeFn(spec.reply)
  return (msg) => {
    const ctx: RequestContext = { msg, subject: msg.subject, headers: msg.headers }
    return Effect.suspend(() => decode(msg.data, msg)).pipe(
      Effect.flatMap((req) => Effect.suspend(() => spec.handler(req, ctx))),
      // An encode failure means the handler broke its own reply type: a defect.
      Effect.flatMap((rep) => Effect.sync(() => encode(rep))),
      Effect.map((data): Outcome => ({ _tag: "Success", data })),
      Effect.catchCause((cause) => outcomeOfCause(label, msg.subject, cause)),
    )
  }
}

/** Maps a failed cause to the reply: typed ApiError as is, anything else Internal (logged). */
export const outcomeOfCause = (
  label: string,
  subject: string,
  cause: Cause.Cause<unknown>,
): Effect.Effect<Outcome> => {
  const failure = Cause.findErrorOption(cause)
  if (failure._tag === "Some" && ApiError.isApiError(failure.value)) {
    return Effect.succeed({ _tag: "Failure", error: failure.value })
  }
  if (Cause.hasInterruptsOnly(cause)) {
    return Effect.succeed({
      _tag: "Failure",
      error: new ApiError.Unavailable({ message: "request interrupted", details: { reason: "Interrupted" } }),
    })
  }
  const id = correlationId()
  return logInternal(id, label, subject, "handler failed unexpectedly", cause).pipe(
    Effect.as<Outcome>({ _tag: "Failure", error: internalError(id) }),
  )
}

export const logInternal = (
  id: string,
  label: string,
  subject: string,
  message: string,
  cause: Cause.Cause<unknown>,
): Effect.Effect<void> =>
  Effect.logError(message).pipe(
    Effect.annotateLogs({ component: "bus", id, endpoint: label, subject, cause: Cause.pretty(cause) }),
  )

/** The headers of an error reply (CONTRACT §1). */
export const errorHeaders = (reply: ErrorReply): MsgHdrs => {
  const h = natsHeaders()
  h.set(ServiceErrorCodeHeader, `${reply.code}`)
  h.set(ServiceErrorHeader, reply.description)
  return h
}

/** Publishes `outcome` to `msg.reply`; a failed publish (e.g. over max_payload) falls back to Internal. */
export const sendOutcome = (label: string, msg: Msg, outcome: Outcome): Effect.Effect<void> =>
  Effect.suspend(() => {
    const failed = sendOutcomeNow(msg, outcome)
    return failed === undefined
      ? Effect.void
      : logInternal(failed.id, label, msg.subject, "reply could not be sent", Cause.die(failed.error))
  })

/**
 * `sendOutcome` without Effect: publishes now; when that fails, sends the
 * Internal fallback and returns its correlation id and the error to log.
 */
export const sendOutcomeNow = (msg: Msg, outcome: Outcome): { id: string; error: unknown } | undefined => {
  if (msg.reply === undefined || msg.reply === "") return undefined
  try {
    sendRaw(msg, outcome)
    return undefined
  } catch (e) {
    const id = correlationId()
    const fallback: Outcome = { _tag: "Failure", error: internalError(id, "reply could not be sent") }
    try {
      sendRaw(msg, fallback)
    } catch {
      // The connection itself is gone; nothing more can reach the requester.
    }
    return { id, error: e }
  }
}

const sendRaw = (msg: Msg, outcome: Outcome): void => {
  if (outcome._tag === "Success") {
    msg.respond(outcome.data)
    return
  }
  const reply = errorReply(outcome.error)
  msg.respond(reply.body, { headers: errorHeaders(reply) })
}

export interface DispatchOptions {
  /** Handlers running at once (default 64). */
  readonly maxConcurrent?: number | undefined
  /** Messages admitted (running or waiting for a slot) before new ones get Unavailable (default 4096). */
  readonly maxPending?: number | undefined
  /** On shutdown, how long in-flight handlers may finish before being interrupted (default 5 s). */
  readonly shutdownGraceMs?: number | undefined
}

/** Accepts messages from a NATS callback and runs them as bounded concurrent fibers. */
export interface Dispatcher<R> {
  readonly dispatch: (label: string, process: Process<R>, msg: Msg) => void
  /** Runs a promise handler (`promiseLane.ts`) under the same limits and shutdown. */
  readonly dispatchLane: <Req, Rep>(label: string, handler: LaneHandler<Req, Rep>, msg: Msg) => void
  /** Runs a side task (e.g. logging from a NATS callback) with the same context and lifetime. */
  readonly background: (effect: Effect.Effect<void, never, R>) => void
  /** Waits (bounded by the grace period) for in-flight requests. */
  readonly settle: Effect.Effect<void>
}

/**
 * A dispatcher whose fibers run with the caller's context `R` and live in the
 * current scope: closing it interrupts what is still running (each such
 * requester gets Unavailable).
 */
export const makeDispatcher = <R>(
  options?: DispatchOptions,
): Effect.Effect<Dispatcher<R>, never, Scope.Scope | R> =>
  Effect.gen(function* () {
    const maxConcurrent = Math.max(1, options?.maxConcurrent ?? 64)
    const maxPending = Math.max(maxConcurrent, options?.maxPending ?? 4096)
    const grace = Duration.millis(options?.shutdownGraceMs ?? 5_000)
    const set = yield* FiberSet.make<void, never>()
    const run = yield* FiberSet.runtime(set)<R>()
    const permits = yield* Semaphore.make(maxConcurrent)
    let pending = 0

    const dispatch = (label: string, process: Process<R>, msg: Msg): void => {
      if (pending >= maxPending) {
        shedLoad(label, msg)
        return
      }
      pending++
      let replied = false
      const handled = process(msg).pipe(
        permits.withPermits(1),
        Effect.flatMap((outcome) => {
          replied = true
          return sendOutcome(label, msg, outcome)
        }),
        Effect.onInterrupt(() =>
          replied
            ? Effect.void
            : sendOutcome(label, msg, {
                _tag: "Failure",
                error: new ApiError.Unavailable({
                  message: "service is shutting down",
                  details: { reason: "ShuttingDown" },
                }),
              }),
        ),
        Effect.ensuring(
          Effect.sync(() => {
            pending--
          }),
        ),
      )
      run(handled)
    }

    const background = (effect: Effect.Effect<void, never, R>): void => {
      run(effect)
    }
    const logDefect = (
      id: string,
      label: string,
      subject: string,
      message: string,
      cause: Cause.Cause<unknown>,
    ) => background(logInternal(id, label, subject, message, cause))
    const lane = new PromiseLane(
      {
        send: (label, msg, outcome) => {
          const failed = sendOutcomeNow(msg, outcome)
          if (failed !== undefined)
            logDefect(failed.id, label, msg.subject, "reply could not be sent", Cause.die(failed.error))
        },
        logDefect,
      },
      { maxConcurrent, maxPending },
    )
    const dispatchLane = <Req, Rep>(label: string, handler: LaneHandler<Req, Rep>, msg: Msg): void =>
      lane.dispatch(label, handler, msg)
    const settle = Effect.all(
      [
        FiberSet.awaitEmpty(set).pipe(Effect.timeoutOption(grace), Effect.asVoid),
        Effect.promise(() => lane.settle(Duration.toMillis(grace))),
      ],
      { concurrency: "unbounded", discard: true },
    )
    return { dispatch, dispatchLane, background, settle }
  })

const shedLoad = (label: string, msg: Msg): void => {
  Effect.runFork(
    sendOutcome(label, msg, {
      _tag: "Failure",
      error: new ApiError.Unavailable({ message: "service overloaded", details: { reason: "Overloaded" } }),
    }),
  )
}
