// The keystore process. Startup guards (SPEC.md §7) run before anything is
// served; a refusal logs one line naming the guard, publishes a refused-start
// cluster event when the bus is reachable, and exits non-zero.
import { acquireNats, Nats, natsOptionsFromEnv, publishDeduped } from "@ekv/bus"
import { metricsPortFromEnv, Registry, serveMetrics } from "@ekv/metrics"
import { clusterEventMsgId, parsePrefix, subjects as subjectsFor } from "@ekv/wire"
import { Effect, Exit, Logger, Result, Scope } from "effect"
import { keystoreMetrics } from "./keystoreMetrics.ts"
import { serveKeystore } from "./server.ts"
import { envConfig, keystoreOptionsFromEnv, openKeystore } from "./startup.ts"

const VERSION = "0.1.0"

interface Refusal {
  readonly code: string
  readonly message: string
}

const refusalOf = (e: unknown): Refusal | undefined => {
  if (typeof e === "object" && e !== null && "code" in e && "message" in e) {
    const { code, message } = e as { code: unknown; message: unknown }
    if (typeof code === "string" && typeof message === "string") return { code, message }
  }
  return undefined
}

/** Best effort: a refused-start event on `<p>.events.cluster.<node>`, bounded in time. */
const publishRefusal = (prefix: string, node: string, r: Refusal) =>
  Effect.scoped(
    Effect.gen(function* () {
      const nc = yield* acquireNats({
        ...natsOptionsFromEnv(process.env, { name: `keystore-${node}` }),
        timeoutMs: 2_000,
      })
      const s = subjectsFor(prefix)
      const body = JSON.stringify({
        cluster_id: "",
        node,
        kind: "refused-start",
        code: r.code,
        reason: r.message,
        at: new Date().toISOString(),
      })
      yield* publishDeduped(
        s.events.cluster(node),
        body,
        clusterEventMsgId("", node, "refused-start", Date.now()),
        {
          timeoutMs: 2_000,
        },
      ).pipe(Effect.provideService(Nats, nc))
    }),
  ).pipe(Effect.timeout("4 seconds"), Effect.ignore)

const refuse = (prefix: string, node: string, r: Refusal) =>
  Effect.gen(function* () {
    // One clear line naming the guard; never key bytes (errors carry none).
    process.stderr.write(
      `${JSON.stringify({ level: "error", component: "keystore", node, event: "refused-start", guard: r.code, message: r.message })}\n`,
    )
    yield* publishRefusal(prefix, node, r)
    process.exitCode = 2
  })

// Registered before anything else so a signal during startup still shuts down in order.
let stopRequested = false
let onStop: (() => void) | undefined
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    stopRequested = true
    onStop?.()
  })
}

const main = Effect.gen(function* () {
  const env = process.env
  const prefixR = parsePrefix(env.EKV_PREFIX)
  const prefix = Result.isSuccess(prefixR) ? prefixR.success : "ekv"
  const cfg = envConfig(env)
  const node = typeof cfg === "string" ? (env.EKV_NODE_ID ?? "unknown") : cfg.nodeId
  if (Result.isFailure(prefixR))
    return yield* refuse(prefix, node, { code: "InvalidConfig", message: prefixR.failure.message })
  if (typeof cfg === "string") return yield* refuse(prefix, node, { code: "InvalidConfig", message: cfg })

  const scope = yield* Scope.make()
  const started = yield* Effect.exit(
    Effect.gen(function* () {
      const opts = yield* keystoreOptionsFromEnv(cfg, env)
      return yield* openKeystore(opts)
    }).pipe(Scope.provide(scope)),
  )
  if (Exit.isFailure(started)) {
    yield* Scope.close(scope, Exit.void)
    const f = started.cause.reasons.find((r) => r._tag === "Fail")
    const r = f?._tag === "Fail" ? refusalOf(f.error) : undefined
    return yield* refuse(prefix, node, r ?? { code: "Internal", message: String(started.cause) })
  }
  const ks = started.value
  yield* Effect.logInfo(
    `keystore ${node} open: sidecar ${cfg.sidecarPath} (raft_applied_index ${ks.state.sidecar.raft_applied_index}), kek ${ks.state.keks.current?.kekId ?? "none"}`,
  ).pipe(Effect.annotateLogs({ component: "keystore", node }))

  const served = yield* Effect.exit(
    Effect.gen(function* () {
      const port = yield* Effect.try(() => metricsPortFromEnv(env.EKV_METRICS_PORT))
      const registry = new Registry()
      const metrics = keystoreMetrics(registry)
      metrics.refresh(ks.state)
      if (port !== undefined) {
        yield* Effect.acquireRelease(
          Effect.promise(() => serveMetrics(registry, port)),
          (m) => Effect.promise(() => m.close()),
        )
      }
      const nc = yield* acquireNats(natsOptionsFromEnv(env, { name: `keystore-${node}` }))
      yield* serveKeystore(ks, {
        subjects: subjectsFor(prefix),
        buildSha: env.EKV_BUILD_SHA ?? "dev",
        version: VERSION,
        metrics,
      }).pipe(Effect.provideService(Nats, nc))
      yield* Effect.logInfo(`keystore ${node} serving on ${prefix}.internal.${node}.keystore.>`).pipe(
        Effect.annotateLogs({ component: "keystore", node }),
      )
    }).pipe(Scope.provide(scope)),
  )
  if (Exit.isFailure(served)) {
    yield* Effect.logError(`keystore ${node} cannot serve: ${String(served.cause)}`)
    yield* Scope.close(scope, Exit.void)
    process.exitCode = 1
    return
  }
  // Run until SIGINT/SIGTERM, then close everything in order (bus, then LevelDB lock).
  if (!stopRequested) {
    yield* Effect.callback<void>((resume) => {
      onStop = () => resume(Effect.void)
    })
  }
  yield* Scope.close(scope, Exit.void)
})

Effect.runPromise(main.pipe(Effect.provide(Logger.layer([Logger.consoleJson])))).then(
  () => process.exit(process.exitCode ?? 0),
  (e) => {
    process.stderr.write(`${JSON.stringify({ level: "fatal", component: "keystore", message: String(e) })}\n`)
    process.exit(1)
  },
)
