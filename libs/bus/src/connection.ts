// The NATS connection as a scoped service: opened when its layer is built,
// drained (then closed) when the layer's scope closes.
import { readFile } from "node:fs/promises"
import { connect, credsAuthenticator, type NatsConnection, type Status } from "@nats-io/transport-node"
import { Context, Data, Effect, Layer, type Scope } from "effect"

export class Nats extends Context.Service<Nats, NatsConnection>()("ekv/Nats") {}

export interface NatsOptions {
  readonly servers: ReadonlyArray<string>
  readonly user?: string | undefined
  readonly pass?: string | undefined
  /** Path of a `.creds` file (JWT + nkey seed); exclusive with user/pass. */
  readonly credsFile?: string | undefined
  /** Client name shown by the server's monitoring endpoints. */
  readonly name?: string | undefined
  /** Defaults to `_INBOX.<user>` when a user is set (CONTRACT §9). */
  readonly inboxPrefix?: string | undefined
  /** Connect timeout in milliseconds (nats.js default when unset). */
  readonly timeoutMs?: number | undefined
}

/** The connection could not be opened (bad URL, auth, unreachable server). */
export class NatsConnectError extends Data.TaggedError("NatsConnectError")<{
  readonly servers: ReadonlyArray<string>
  readonly message: string
  readonly cause: unknown
}> {}

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

/** CONTRACT §6: `NATS_URL` (comma-separated), `NATS_USER` + `NATS_PASSWORD`, `NATS_CREDS`. */
export const natsOptionsFromEnv = (
  env: Readonly<Record<string, string | undefined>>,
  extra?: { readonly name?: string },
): NatsOptions => {
  const servers = (env.NATS_URL ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
  const user = nonEmpty(env.NATS_USER)
  const pass = nonEmpty(env.NATS_PASSWORD)
  const credsFile = nonEmpty(env.NATS_CREDS)
  return {
    servers: servers.length > 0 ? servers : [DEFAULT_NATS_URL],
    ...(user === undefined ? {} : { user }),
    ...(pass === undefined ? {} : { pass }),
    ...(credsFile === undefined ? {} : { credsFile }),
    ...(extra?.name === undefined ? {} : { name: extra.name }),
  }
}

const nonEmpty = (s: string | undefined): string | undefined =>
  s === undefined || s.trim() === "" ? undefined : s.trim()

/** The inbox prefix a client must use: `_INBOX.<user>` under the §9 permissions. */
export const inboxPrefixFor = (options: NatsOptions): string | undefined =>
  options.inboxPrefix ?? (options.user === undefined ? undefined : `_INBOX.${options.user}`)

/**
 * Opens a connection; released by draining it (bounded), then closing. While
 * open, its status events (disconnects, reconnects, async server errors such
 * as permission violations, slow consumers) are logged.
 */
export const acquireNats = (
  options: NatsOptions,
): Effect.Effect<NatsConnection, NatsConnectError, Scope.Scope> =>
  Effect.acquireRelease(open(options), (nc) => release(nc)).pipe(
    Effect.tap((nc) => Effect.forkScoped(watchStatus(nc))),
  )

const watchStatus = (nc: NatsConnection): Effect.Effect<void> =>
  Effect.gen(function* () {
    const events = nc.status()[Symbol.asyncIterator]()
    while (true) {
      const next = yield* Effect.promise(() => events.next())
      if (next.done === true) return
      yield* logStatus(next.value)
    }
  })

const logStatus = (s: Status): Effect.Effect<void> => {
  switch (s.type) {
    case "ping":
      return Effect.void
    case "disconnect":
    case "staleConnection":
      return Effect.logWarning(`nats ${s.type}`).pipe(
        Effect.annotateLogs({ component: "bus", ...serverOf(s) }),
      )
    case "error":
      return Effect.logWarning(`nats error: ${s.error.message}`).pipe(
        Effect.annotateLogs({ component: "bus" }),
      )
    case "slowConsumer":
      return Effect.logWarning("nats slow consumer").pipe(
        Effect.annotateLogs({ component: "bus", subject: s.sub.getSubject(), pending: s.pending }),
      )
    default:
      return Effect.logInfo(`nats ${s.type}`).pipe(Effect.annotateLogs({ component: "bus", ...serverOf(s) }))
  }
}

const serverOf = (s: Status): { server?: string } =>
  "server" in s && typeof s.server === "string" ? { server: s.server } : {}

const open = (options: NatsOptions): Effect.Effect<NatsConnection, NatsConnectError> =>
  Effect.tryPromise({
    try: async () => {
      const inboxPrefix = inboxPrefixFor(options)
      const authenticator =
        options.credsFile === undefined ? undefined : credsAuthenticator(await readFile(options.credsFile))
      return await connect({
        servers: [...options.servers],
        ...(options.user === undefined ? {} : { user: options.user }),
        ...(options.pass === undefined ? {} : { pass: options.pass }),
        ...(authenticator === undefined ? {} : { authenticator }),
        ...(options.name === undefined ? {} : { name: options.name }),
        ...(inboxPrefix === undefined ? {} : { inboxPrefix }),
        ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
      })
    },
    catch: (cause) =>
      new NatsConnectError({
        servers: options.servers,
        message: `cannot connect to NATS at ${options.servers.join(",")}: ${errorMessage(cause)}`,
        cause,
      }),
  })

const DRAIN_TIMEOUT_MS = 5_000

const release = (nc: NatsConnection): Effect.Effect<void> =>
  Effect.promise(async () => {
    if (nc.isClosed()) return
    // Drain lets in-flight replies go out; a wedged server must not hold shutdown forever.
    let timer: ReturnType<typeof setTimeout> | undefined
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, DRAIN_TIMEOUT_MS)
    })
    await Promise.race([nc.drain().catch(() => undefined), timeout])
    clearTimeout(timer)
    if (!nc.isClosed()) await nc.close().catch(() => undefined)
  })

/** A layer providing `Nats`, connected for the lifetime of the layer. */
export const natsLayer = (options: NatsOptions): Layer.Layer<Nats, NatsConnectError> =>
  Layer.effect(Nats, acquireNats(options))

/** `natsLayer(natsOptionsFromEnv(process.env))`. */
export const natsLayerFromEnv = (extra?: { readonly name?: string }): Layer.Layer<Nats, NatsConnectError> =>
  natsLayer(natsOptionsFromEnv(process.env, extra))

export const errorMessage = (u: unknown): string => (u instanceof Error ? u.message : String(u))
