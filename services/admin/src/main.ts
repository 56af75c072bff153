// `node services/admin/src/main.ts`: the stateless `ekv-admin` micro service.
// Environment (CONTRACT.md §6): NATS_URL, NATS_USER/NATS_PASSWORD (or
// NATS_CREDS), EKV_PREFIX, EKV_PEERS (seed nodes), EKV_METRICS_PORT.
// SIGTERM / SIGINT stop it cleanly: the service stops taking requests,
// in-flight ones finish (bounded), the connection drains, exit 0.
import { natsLayer, natsOptionsFromEnv } from "@ekv/bus"
import { serveMetrics } from "@ekv/metrics"
import { Cause, Effect, Exit, Layer, Logger } from "effect"
import { makeAdminMetrics } from "./adminMetrics.ts"
import { serveAdmin } from "./adminModule.ts"
import { clusterModule } from "./clusterEndpoints.ts"
import { type AdminConfig, adminConfigFromEnv, ConfigError } from "./config.ts"
import { consensusNodesLayer } from "./consensusNodes.ts"
import { encryptionBusLayer } from "./encryption/encryptionBus.ts"
import { encryptionModule } from "./encryption/encryptionEndpoints.ts"
import { eventIndexLayer } from "./encryption/eventIndex.ts"
import { pendingCandidatesLayer } from "./encryption/pendingCandidates.ts"

const program = (config: AdminConfig) =>
  Effect.gen(function* () {
    const metrics = makeAdminMetrics()
    if (config.metricsPort !== undefined) {
      const port = config.metricsPort
      const served = yield* Effect.acquireRelease(
        Effect.promise(() => serveMetrics(metrics.registry, port)),
        (m) => Effect.promise(() => m.close()),
      )
      yield* Effect.logInfo(`metrics on :${served.port}/metrics`)
    }
    yield* serveAdmin(config.prefix, [
      metrics.instrument(clusterModule(config)),
      metrics.instrument(encryptionModule(config)),
    ])
    yield* Effect.logInfo(
      `ekv-admin ready (prefix ${config.prefix}, seeds ${config.peers.length === 0 ? "none: discovery" : config.peers.join(",")})`,
    )
    return yield* Effect.never
  }).pipe(
    Effect.scoped,
    Effect.provide(
      Layer.mergeAll(
        consensusNodesLayer(config),
        encryptionBusLayer(config),
        eventIndexLayer(config.prefix),
        pendingCandidatesLayer,
      ).pipe(Layer.provideMerge(natsLayer(natsOptionsFromEnv(process.env, { name: "ekv-admin" })))),
    ),
    Effect.annotateLogs({ component: "admin" }),
    Effect.provide(Logger.layer([Logger.consoleJson])),
  )

const main = async (): Promise<void> => {
  let config: AdminConfig
  try {
    config = adminConfigFromEnv(process.env)
  } catch (e) {
    console.error(`ekv-admin: ${e instanceof ConfigError ? e.message : String(e)}`)
    process.exit(2)
  }
  const stop = new AbortController()
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => stop.abort())
  const exit = await Effect.runPromiseExit(program(config), { signal: stop.signal })
  if (Exit.isSuccess(exit) || (stop.signal.aborted && Cause.hasInterruptsOnly(exit.cause))) {
    console.error("ekv-admin: stopped")
    process.exit(0)
  }
  console.error(`ekv-admin: failed: ${Cause.pretty(exit.cause)}`)
  process.exit(1)
}

await main()
