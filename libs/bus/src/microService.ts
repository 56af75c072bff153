// NATS micro services (`@nats-io/services`): discoverable through
// `$SRV.PING|INFO|STATS`, each endpoint answered through the responder so
// every request gets exactly one reply (CONTRACT §1).
import { type Service, Svcm } from "@nats-io/services"
import type { Msg } from "@nats-io/transport-node"
import { Cause, Data, Effect, type Scope } from "effect"
import { errorMessage, Nats } from "./connection.ts"
import { type LaneHandler, laneOutcome } from "./promiseLane.ts"
import {
  type DispatchOptions,
  type HandlerSpec,
  makeDispatcher,
  makeProcess,
  outcomeOfCause,
  type Process,
} from "./responder.ts"

// @nats-io/services 3.0.0-25 is typed against its own pre-release copy of
// nats-core; at run time it only calls the connection's subscribe/publish, so
// the transport's connection and messages are passed across as they are.
type SvcmConnection = ConstructorParameters<typeof Svcm>[0]

/** An endpoint with its request/reply types closed over (build it with `endpoint` or `laneEndpoint`). */
export interface Endpoint<R> {
  /** The fiber path; for a lane endpoint, the same handler run as an Effect (not used by serveMicro). */
  readonly process: Process<R>
  /** When set, serveMicro answers through the promise lane instead of `process`. */
  readonly lane?: LaneHandler<never, never> | undefined
  readonly name: string
  readonly subject: string
  /** Overrides the service's queue group; `""` subscribes without a queue. */
  readonly queue?: string | undefined
  readonly metadata?: Record<string, string> | undefined
  /**
   * Looked at before the message is decoded: returns true when it has passed the
   * message on (e.g. republished it to the node that answers it, with the
   * requester's reply subject), so this endpoint sends no reply of its own.
   */
  readonly route?: ((msg: Msg) => boolean) | undefined
}

export interface EndpointSpec<Req, Rep, R> extends HandlerSpec<Req, Rep, R> {
  readonly name: string
  readonly subject: string
  readonly queue?: string | undefined
  readonly metadata?: Record<string, string> | undefined
  readonly route?: ((msg: Msg) => boolean) | undefined
}

export interface LaneEndpointSpec<Req, Rep> extends LaneHandler<Req, Rep> {
  readonly name: string
  readonly subject: string
  readonly queue?: string | undefined
  readonly metadata?: Record<string, string> | undefined
  readonly route?: ((msg: Msg) => boolean) | undefined
}

/** Declares a hot endpoint answered by a promise handler (`promiseLane.ts`), not a fiber. */
export const laneEndpoint = <Req, Rep>(spec: LaneEndpointSpec<Req, Rep>): Endpoint<never> => ({
  name: spec.name,
  subject: spec.subject,
  queue: spec.queue,
  metadata: spec.metadata,
  route: spec.route,
  lane: spec as unknown as LaneHandler<never, never>,
  process: (msg) =>
    Effect.promise(() => laneOutcome(spec, msg)).pipe(
      Effect.flatMap((o) =>
        o._tag === "Defect" ? outcomeOfCause(spec.name, msg.subject, Cause.die(o.error)) : Effect.succeed(o),
      ),
    ),
})

/** Declares an endpoint; `request`/`reply` are schemas (strict JSON) or custom codecs. */
export const endpoint = <Req, Rep, R = never>(spec: EndpointSpec<Req, Rep, R>): Endpoint<R> => ({
  name: spec.name,
  subject: spec.subject,
  queue: spec.queue,
  metadata: spec.metadata,
  process: makeProcess(spec.name, spec),
  route: spec.route,
})

export interface MicroServiceSpec<R> extends DispatchOptions {
  readonly name: string
  readonly version: string
  readonly description: string
  /** Queue group of every endpoint that sets none (CONTRACT: e.g. `ekv-kv`, `ekv-admin`). */
  readonly queue?: string | undefined
  readonly metadata?: Record<string, string> | undefined
  readonly endpoints: ReadonlyArray<Endpoint<R>>
}

/** Whether the endpoint's router passed `msg` on; a router that throws routes nothing. */
const routed = <R>(ep: Endpoint<R>, msg: Msg): boolean => {
  if (ep.route === undefined) return false
  try {
    return ep.route(msg)
  } catch {
    return false
  }
}

/** The service could not be registered (invalid name/subject, closed connection). */
export class ServeError extends Data.TaggedError("ServeError")<{
  readonly message: string
  readonly cause: unknown
}> {}

/**
 * Registers a micro service for the lifetime of the current scope. Handlers run
 * with the caller's context `R`, concurrently up to `maxConcurrent`. Closing
 * the scope stops the service (no new requests), lets in-flight ones finish
 * within the grace period, then interrupts the rest (they get Unavailable).
 */
export const serveMicro = <R = never>(
  spec: MicroServiceSpec<R>,
): Effect.Effect<Service, ServeError, Nats | Scope.Scope | R> =>
  Effect.gen(function* () {
    const nc = yield* Nats
    const dispatcher = yield* makeDispatcher<R>(spec)
    return yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const srv = await new Svcm(nc as unknown as SvcmConnection).add({
            name: spec.name,
            version: spec.version,
            description: spec.description,
            ...(spec.queue === undefined ? {} : { queue: spec.queue }),
            ...(spec.metadata === undefined ? {} : { metadata: spec.metadata }),
          })
          try {
            for (const ep of spec.endpoints) {
              srv.addEndpoint(ep.name, {
                subject: ep.subject,
                ...(ep.queue === undefined ? {} : { queue: ep.queue }),
                ...(ep.metadata === undefined ? {} : { metadata: ep.metadata }),
                handler: (err, msg) => {
                  // `err` only reports the subscription closing; the service stops itself then.
                  if (err !== null) return
                  const m = msg as unknown as Msg
                  if (routed(ep, m)) return
                  if (ep.lane !== undefined) dispatcher.dispatchLane(ep.name, ep.lane, m)
                  else dispatcher.dispatch(ep.name, ep.process, m)
                },
              })
            }
            // Once serveMicro returns, the server knows the subscriptions.
            await nc.flush()
          } catch (e) {
            await srv.stop().catch(() => undefined)
            throw e
          }
          // A subscription that dies (e.g. permission denied) stops the service with
          // an error; say so. Our own stop() resolves with null.
          void srv.stopped.then((err) => {
            if (err !== null) {
              dispatcher.background(
                Effect.logError(`micro service ${spec.name} stopped: ${err.message}`).pipe(
                  Effect.annotateLogs({ component: "bus", service: spec.name }),
                ),
              )
            }
          })
          return srv
        },
        catch: (cause) =>
          new ServeError({ message: `cannot serve ${spec.name}: ${errorMessage(cause)}`, cause }),
      }),
      (srv) => Effect.promise(() => srv.stop().catch(() => null)).pipe(Effect.andThen(dispatcher.settle)),
    )
  })
