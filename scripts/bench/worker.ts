// A load generator worker process (forked by loadgen.ts): it opens one client
// for its target, then runs the jobs the coordinator sends over IPC — each a
// fixed number of concurrent request loops bounded in time and count — and
// replies with its latency histogram, counts and its own CPU time.
import { randomBytes } from "node:crypto"
import { type Client, type ClientConfig, makeClient } from "./clients.ts"
import { Histogram, type HistogramData } from "./histogram.ts"

export type WorkerJob =
  | {
      readonly type: "run"
      readonly op: "put" | "get"
      readonly concurrency: number
      readonly warmupMs: number
      readonly durationMs: number
      readonly valueSize: number
      /** put: keys `<keyPrefix>.<loop>.<seq>`; get: keys `<keyPrefix>.<i>`, i uniform in [0, keyCount). */
      readonly keyPrefix: string
      readonly keyCount?: number
      readonly maxOps: number
    }
  | {
      readonly type: "preload"
      readonly keyPrefix: string
      readonly from: number
      readonly to: number
      readonly valueSize: number
      readonly concurrency: number
    }

export type WorkerRequest =
  | { readonly type: "init"; readonly client: ClientConfig }
  | WorkerJob
  | { readonly type: "close" }

export interface RunReport {
  readonly ops: number
  readonly errors: number
  readonly firstError: string | null
  /** From the end of the warm-up to the last measured completion. */
  readonly elapsedMs: number
  readonly histogram: HistogramData
  readonly maxMicros: number
  /** This process's user + system CPU time over the measured window. */
  readonly cpuMicros: number
}

export type WorkerReply =
  | { readonly type: "ready" }
  | { readonly type: "run"; readonly report: RunReport }
  | { readonly type: "preloaded"; readonly errors: number; readonly firstError: string | null }
  | { readonly type: "error"; readonly message: string }

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const send = (reply: WorkerReply): void => {
  process.send?.(reply)
}

const run = async (client: Client, job: Extract<WorkerJob, { type: "run" }>): Promise<RunReport> => {
  const value = randomBytes(job.valueSize)
  const histogram = new Histogram()
  let errors = 0
  let firstError: string | null = null
  let started = 0
  const t0 = performance.now()
  const warmEnd = t0 + job.warmupMs
  const end = warmEnd + job.durationMs
  let cpuAtWarmEnd = process.cpuUsage()
  let lastDone = warmEnd
  const warmTimer = setTimeout(() => {
    cpuAtWarmEnd = process.cpuUsage()
  }, job.warmupMs)
  const keyCount = job.keyCount ?? 1
  const loop = async (id: number): Promise<void> => {
    let seq = 0
    while (performance.now() < end && started < job.maxOps) {
      started++
      const key =
        job.op === "put"
          ? `${job.keyPrefix}.${id}.${seq++}`
          : `${job.keyPrefix}.${Math.floor(Math.random() * keyCount)}`
      const begin = performance.now()
      try {
        if (job.op === "put") await client.put(key, value)
        else await client.get(key)
        const done = performance.now()
        if (begin >= warmEnd) {
          histogram.record((done - begin) * 1000)
          lastDone = Math.max(lastDone, done)
        }
      } catch (e) {
        if (begin >= warmEnd) errors++
        firstError ??= message(e)
      }
    }
  }
  await Promise.all(Array.from({ length: job.concurrency }, (_, i) => loop(i)))
  clearTimeout(warmTimer)
  const cpu = process.cpuUsage(cpuAtWarmEnd)
  return {
    ops: histogram.total,
    errors,
    firstError,
    elapsedMs: lastDone - warmEnd,
    histogram: histogram.data(),
    maxMicros: histogram.max,
    cpuMicros: cpu.user + cpu.system,
  }
}

const preload = async (client: Client, job: Extract<WorkerJob, { type: "preload" }>) => {
  const value = randomBytes(job.valueSize)
  let next = job.from
  let errors = 0
  let firstError: string | null = null
  const loop = async () => {
    while (next < job.to) {
      const i = next++
      try {
        await client.put(`${job.keyPrefix}.${i}`, value)
      } catch (e) {
        errors++
        firstError ??= message(e)
      }
    }
  }
  await Promise.all(Array.from({ length: job.concurrency }, loop))
  return { errors, firstError }
}

let client: Client | null = null

process.on("message", (request: WorkerRequest) => {
  void (async () => {
    try {
      switch (request.type) {
        case "init":
          client = await makeClient(request.client)
          send({ type: "ready" })
          return
        case "run":
          if (client === null) throw new Error("worker: run before init")
          send({ type: "run", report: await run(client, request) })
          return
        case "preload": {
          if (client === null) throw new Error("worker: preload before init")
          const r = await preload(client, request)
          send({ type: "preloaded", ...r })
          return
        }
        case "close":
          await client?.close().catch(() => undefined)
          process.exit(0)
      }
    } catch (e) {
      send({ type: "error", message: message(e) })
    }
  })()
})

// The coordinator going away ends this worker too. A terminal's Ctrl-C reaches
// the whole process group: the coordinator decides when workers stop.
process.on("disconnect", () => process.exit(0))
process.on("SIGINT", () => undefined)
