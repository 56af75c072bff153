// The Prometheus endpoint of one process (`EKV_METRICS_PORT`, CONTRACT.md §6):
// GET /metrics on 0.0.0.0:<port>; off when no port is configured.
import { createServer, type Server } from "node:http"
import type { Registry } from "./registry.ts"

export interface MetricsEndpoint {
  readonly port: number
  close(): Promise<void>
}

export const serveMetrics = (registry: Registry, port: number, host = "0.0.0.0"): Promise<MetricsEndpoint> =>
  new Promise((resolve, reject) => {
    const server: Server = createServer((req, res) => {
      if (req.method === "GET" && (req.url === "/metrics" || req.url?.startsWith("/metrics?"))) {
        const body = registry.render()
        res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
        res.end(body)
      } else {
        res.writeHead(404, { "content-type": "text/plain" })
        res.end("not found\n")
      }
    })
    server.once("error", reject)
    server.listen(port, host, () => {
      const addr = server.address()
      const bound = typeof addr === "object" && addr !== null ? addr.port : port
      resolve({
        port: bound,
        close: () => new Promise<void>((done) => server.close(() => done())),
      })
    })
  })

/** Parses `EKV_METRICS_PORT`: undefined/empty → off; otherwise a TCP port (0 = any free port). */
export const metricsPortFromEnv = (value: string | undefined): number | undefined => {
  if (value === undefined || value.trim() === "") return undefined
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new RangeError(`EKV_METRICS_PORT must be a port, got ${value}`)
  return n
}
