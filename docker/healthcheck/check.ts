// The image's HEALTHCHECK (exec form: the image may have no shell):
//
//   node /app/docker/healthcheck/check.ts [consensus|keystore|admin]
//
// Healthy (exit 0) when the service answers GET /metrics on EKV_METRICS_PORT
// within 3 s; a consensus process is unhealthy while its apply is halted
// (ekv_apply_halted 1, the `halted` of its ekv.node.<n>.health reply). The
// service defaults to the one PID 1 runs (docker/run.ts <service>). The bus
// health endpoints are not used: per CONTRACT §9 a service's own credentials
// may not call them.
import { readFileSync } from "node:fs"
import { request } from "node:http"

const fail = (why: string): never => {
  process.stdout.write(`unhealthy: ${why}\n`)
  process.exit(1)
}

const serviceOfPid1 = (): string | undefined => {
  try {
    const argv = readFileSync("/proc/1/cmdline", "utf8").split("\0")
    const i = argv.findIndex((a) => a.endsWith("/docker/run.ts"))
    return i === -1 ? undefined : argv[i + 1]
  } catch {
    return undefined
  }
}

const service = process.argv[2] ?? serviceOfPid1() ?? "unknown"
const port = Number(process.env.EKV_METRICS_PORT ?? "")
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stdout.write(`healthy: ${service}: metrics are off (EKV_METRICS_PORT unset), nothing to check\n`)
  process.exit(0)
}

const body = await new Promise<string>((resolve) => {
  const req = request({ host: "127.0.0.1", port, path: "/metrics", timeout: 3_000 }, (res) => {
    if (res.statusCode !== 200) fail(`${service}: GET /metrics answered ${res.statusCode}`)
    let text = ""
    res.setEncoding("utf8")
    res.on("data", (chunk: string) => {
      text += chunk
    })
    res.on("end", () => resolve(text))
  })
  req.on("timeout", () => req.destroy(new Error("timed out")))
  req.on("error", (e) => fail(`${service}: GET :${port}/metrics: ${e.message}`))
  req.end()
})

if (service === "consensus" && /^ekv_apply_halted(\{[^}]*\})? 1\b/m.test(body))
  fail("consensus: apply is halted")
process.stdout.write(`healthy: ${service}\n`)
