// Prometheus series of the admin service (SPEC.md §9), on EKV_METRICS_PORT:
// requests per endpoint and outcome code, and their latency.
import type { Endpoint } from "@ekv/bus"
import { Registry } from "@ekv/metrics"
import { Effect } from "effect"
import type { AdminModule } from "./adminModule.ts"

export interface AdminMetrics {
  readonly registry: Registry
  readonly instrument: <R>(module: AdminModule<R>) => AdminModule<R>
}

export const makeAdminMetrics = (): AdminMetrics => {
  const registry = new Registry()
  const requests = registry.counter(
    "ekv_admin_requests_total",
    "Admin API requests by endpoint and outcome code",
  )
  const seconds = registry.histogram("ekv_admin_request_seconds", "Admin API request latency by endpoint")
  const up = registry.gauge("ekv_admin_up", "1 while the admin service serves")
  up.set(1)
  const wrap = <R>(ep: Endpoint<R>): Endpoint<R> => ({
    ...ep,
    process: (msg) => {
      const start = performance.now()
      return ep.process(msg).pipe(
        Effect.tap((outcome) =>
          Effect.sync(() => {
            const code = outcome._tag === "Success" ? "ok" : outcome.error._tag
            requests.inc({ endpoint: ep.name, code })
            seconds.observe((performance.now() - start) / 1000, { endpoint: ep.name })
          }),
        ),
      )
    },
  })
  return { registry, instrument: (m) => ({ ...m, endpoints: m.endpoints.map(wrap) }) }
}
