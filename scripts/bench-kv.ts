// KV write benchmark (not a test): starts NATS + a 3-node consensus cluster,
// writes 256-byte values at concurrency 1/16/64/256 for a few seconds each,
// and prints ops/s, p50 and p99 latency. No thresholds.
//
//   node scripts/bench-kv.ts [--seconds 5] [--concurrency 1,16,64,256]
import { startProcessCluster } from "../test/src/processCluster.ts"

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? dflt : (process.argv[i + 1] ?? dflt)
}
const seconds = Number(arg("seconds", "5"))
const levels = arg("concurrency", "1,16,64,256").split(",").map(Number)

const enc = new TextEncoder()
const value = Buffer.alloc(256, 0x61).toString("base64")

const c = await startProcessCluster({ env: { EKV_ELECTION_TIMEOUT_MS: "1000" } })
try {
  const leader = await c.waitForLeader(30_000)
  await c.kv.put("warmup", "x")
  const nc = await c.client()
  console.log(`cluster up: leader=${leader} nats=${c.servers.join(",")}`)
  console.log("concurrency  ops/s     p50 ms  p99 ms  errors")
  for (const conc of levels) {
    const lat: number[] = []
    let errors = 0
    const deadline = performance.now() + seconds * 1000
    const worker = async (w: number) => {
      let seq = 0
      while (performance.now() < deadline) {
        const body = enc.encode(JSON.stringify({ key: `bench-${conc}-${w}-${seq++}`, value }))
        const t0 = performance.now()
        try {
          const m = await nc.request(`${c.prefix}.kv.put`, body, { timeout: 10_000 })
          if (m.headers?.has("Nats-Service-Error-Code") === true) errors++
          else lat.push(performance.now() - t0)
        } catch {
          errors++
        }
      }
    }
    const t0 = performance.now()
    await Promise.all(Array.from({ length: conc }, (_, w) => worker(w)))
    const elapsed = (performance.now() - t0) / 1000
    lat.sort((a, b) => a - b)
    const q = (p: number) =>
      lat.length === 0 ? Number.NaN : lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!
    console.log(
      `${String(conc).padStart(11)}  ${(lat.length / elapsed).toFixed(0).padStart(7)}  ${q(0.5).toFixed(1).padStart(7)}  ${q(0.99).toFixed(1).padStart(6)}  ${errors}`,
    )
  }
} finally {
  await c.stopAll()
}
