// A plain (non-micro) responder for internal subjects (`ekv.internal.>`):
// same reply discipline as micro endpoints, JSON or binary payloads.
import type { Msg, Subscription } from "@nats-io/transport-node"
import { Effect, type Scope } from "effect"
import { errorMessage, Nats } from "./connection.ts"
import { ServeError } from "./microService.ts"
import type { LaneHandler } from "./promiseLane.ts"
import {
  type Dispatcher,
  type DispatchOptions,
  type HandlerSpec,
  makeDispatcher,
  makeProcess,
} from "./responder.ts"

export interface SubjectSpec<Req, Rep, R> extends HandlerSpec<Req, Rep, R>, DispatchOptions {
  readonly subject: string
  readonly queue?: string | undefined
  /** Names the subscription in logs (default: the subject). */
  readonly label?: string | undefined
}

/** Subscribes for the lifetime of the current scope; released by draining the subscription. */
export const serveSubject = <Req, Rep, R = never>(
  spec: SubjectSpec<Req, Rep, R>,
): Effect.Effect<Subscription, ServeError, Nats | Scope.Scope | R> => {
  const label = spec.label ?? spec.subject
  const process = makeProcess(label, spec)
  return subscribeDispatching<R>(spec, (dispatcher, msg) => dispatcher.dispatch(label, process, msg))
}

export interface LaneSubjectSpec<Req, Rep> extends LaneHandler<Req, Rep>, DispatchOptions {
  readonly subject: string
  readonly queue?: string | undefined
  readonly label?: string | undefined
}

/** `serveSubject` for a hot subject answered by a promise handler (`promiseLane.ts`). */
export const serveSubjectLane = <Req, Rep>(
  spec: LaneSubjectSpec<Req, Rep>,
): Effect.Effect<Subscription, ServeError, Nats | Scope.Scope> => {
  const label = spec.label ?? spec.subject
  return subscribeDispatching<never>(spec, (dispatcher, msg) => dispatcher.dispatchLane(label, spec, msg))
}

const subscribeDispatching = <R>(
  spec: { readonly subject: string; readonly queue?: string | undefined } & DispatchOptions,
  onMessage: (dispatcher: Dispatcher<R>, msg: Msg) => void,
): Effect.Effect<Subscription, ServeError, Nats | Scope.Scope | R> =>
  Effect.gen(function* () {
    const nc = yield* Nats
    const dispatcher = yield* makeDispatcher<R>(spec)
    return yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const sub = nc.subscribe(spec.subject, {
            ...(spec.queue === undefined ? {} : { queue: spec.queue }),
            callback: (err, msg) => {
              if (err === null) onMessage(dispatcher, msg)
              else
                dispatcher.background(
                  Effect.logError(`subscription ${spec.subject} failed: ${err.message}`).pipe(
                    Effect.annotateLogs({ component: "bus", subject: spec.subject }),
                  ),
                )
            },
          })
          // Once serveSubject returns, the server knows the subscription.
          await nc.flush()
          return sub
        },
        catch: (cause) =>
          new ServeError({ message: `cannot subscribe to ${spec.subject}: ${errorMessage(cause)}`, cause }),
      }),
      (sub) =>
        Effect.promise(() => sub.drain().catch(() => undefined)).pipe(Effect.andThen(dispatcher.settle)),
    )
  })
