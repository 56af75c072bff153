// The load generator's coordinator: it forks worker processes (worker.ts),
// splits a run's concurrency across them, and merges their histograms, counts
// and CPU times. More than one process is used because one Node client
// process saturates a core long before a server does for some clients (the
// etcd gRPC client costs several times more CPU per request than a NATS
// request); each worker's CPU share is reported so a client bottleneck shows.
import { type ChildProcess, fork } from "node:child_process"
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { ClientConfig } from "./clients.ts"
import { Histogram } from "./histogram.ts"
import type { RunReport, WorkerJob, WorkerReply, WorkerRequest } from "./worker.ts"

const WORKER = join(dirname(fileURLToPath(import.meta.url)), "worker.ts")
const INIT_TIMEOUT_MS = 30_000
/** A run may take its duration plus this much (the last requests, slow timeouts). */
const RUN_GRACE_MS = 30_000
const MAX_OPS_PER_WORKER = 5_000_000
/** A client process busier than this share of a core is the bottleneck, not the server. */
export const CLIENT_BOUND_SHARE = 0.85

export interface RunSpec {
  readonly op: "put" | "get"
  readonly concurrency: number
  readonly warmupMs: number
  readonly durationMs: number
  readonly valueSize: number
  readonly keyPrefix: string
  readonly keyCount?: number
  /** How many worker processes share the concurrency (at most the number started). */
  readonly workers: number
}

export interface RunResult {
  readonly op: "put" | "get"
  readonly concurrency: number
  readonly valueSize: number
  readonly workers: number
  readonly ops: number
  readonly errors: number
  readonly firstError: string | null
  readonly seconds: number
  readonly opsPerSec: number
  /** Latencies in milliseconds. */
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  /** Client (all workers) CPU time per operation, µs. */
  readonly clientCpuUsPerOp: number
  /** The busiest worker's CPU time as a share of the wall time (1 = a full core). */
  readonly clientCpuMaxShare: number
  /** Server processes' CPU time per operation, µs (NaN when not measured). */
  readonly serverCpuUsPerOp: number
  /** The same per server process (name → µs per operation): where the server time goes. */
  readonly serverCpuUsPerOpByProcess: Readonly<Record<string, number>>
}

/** USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux build Node supports. */
const CLOCK_TICKS = 100

/** utime + stime of a process in µs, from /proc (0 when it is gone). */
export const processCpuMicros = (pid: number): number => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    const ticks = Number(fields[11]) + Number(fields[12])
    return (ticks * 1_000_000) / CLOCK_TICKS
  } catch {
    return 0
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

class WorkerProcess {
  readonly child: ChildProcess
  private waiting: { resolve: (r: WorkerReply) => void; reject: (e: Error) => void } | null = null

  constructor(name: string) {
    this.child = fork(WORKER, [], { stdio: ["ignore", "inherit", "inherit", "ipc"], env: process.env })
    this.child.on("message", (reply: WorkerReply) => {
      const w = this.waiting
      this.waiting = null
      w?.resolve(reply)
    })
    this.child.once("exit", (code, signal) => {
      const w = this.waiting
      this.waiting = null
      w?.reject(new Error(`load generator ${name} exited (${signal ?? `code ${code}`})`))
    })
  }

  ask(request: WorkerRequest, timeoutMs: number): Promise<WorkerReply> {
    return new Promise<WorkerReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null
        reject(new Error(`load generator worker did not answer ${request.type} within ${timeoutMs / 1000}s`))
      }, timeoutMs)
      this.waiting = {
        resolve: (r) => {
          clearTimeout(timer)
          if (r.type === "error") reject(new Error(r.message))
          else resolve(r)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      this.child.send(request)
    })
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL")
  }
}

/** Splits `total` into `parts` near-equal positive shares (fewer parts when total < parts). */
export const split = (total: number, parts: number): number[] => {
  const n = Math.max(1, Math.min(parts, total))
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0))
}

export class LoadGenerator {
  private readonly workers: WorkerProcess[] = []
  private readonly client: ClientConfig

  private constructor(client: ClientConfig) {
    this.client = client
  }

  /** Forks `count` workers, each connected to the target. */
  static async start(client: ClientConfig, count: number): Promise<LoadGenerator> {
    const g = new LoadGenerator(client)
    await g.ensure(count)
    return g
  }

  get size(): number {
    return this.workers.length
  }

  /** Forks more workers until there are `count`. */
  async ensure(count: number): Promise<void> {
    const added: WorkerProcess[] = []
    while (this.workers.length < count) {
      const w = new WorkerProcess(`worker ${this.workers.length + 1}`)
      this.workers.push(w)
      added.push(w)
    }
    try {
      await Promise.all(added.map((w) => w.ask({ type: "init", client: this.client }, INIT_TIMEOUT_MS)))
    } catch (e) {
      this.kill()
      throw e
    }
  }

  /** Writes keys `<keyPrefix>.0 .. <keyPrefix>.<count-1>` (for gets), spread over the workers. */
  async preload(keyPrefix: string, count: number, valueSize: number, concurrency: number): Promise<void> {
    const shares = split(count, this.workers.length)
    const perWorker = split(concurrency, shares.length)
    let from = 0
    const replies = await Promise.all(
      shares.map((share, i) => {
        const job: WorkerJob = {
          type: "preload",
          keyPrefix,
          from,
          to: from + share,
          valueSize,
          concurrency: perWorker[i] ?? 1,
        }
        from += share
        return this.workers[i]!.ask(job, 120_000)
      }),
    )
    const failed = replies.find((r) => r.type === "preloaded" && r.errors > 0)
    if (failed?.type === "preloaded")
      throw new Error(`preload: ${failed.errors} errors, first: ${failed.firstError}`)
  }

  async run(
    spec: RunSpec,
    serverProcesses: () => ReadonlyArray<{ readonly name: string; readonly pid: number }>,
  ): Promise<RunResult> {
    const shares = split(spec.concurrency, Math.min(spec.workers, this.workers.length))
    const asked = Promise.all(
      shares.map((concurrency, i) =>
        this.workers[i]!.ask(
          {
            type: "run",
            op: spec.op,
            concurrency,
            warmupMs: spec.warmupMs,
            durationMs: spec.durationMs,
            valueSize: spec.valueSize,
            // Puts write distinct keys per worker; gets read the preloaded keys.
            keyPrefix: spec.op === "put" ? `${spec.keyPrefix}.w${i}` : spec.keyPrefix,
            ...(spec.keyCount === undefined ? {} : { keyCount: spec.keyCount }),
            maxOps: MAX_OPS_PER_WORKER,
          },
          spec.warmupMs + spec.durationMs + RUN_GRACE_MS,
        ),
      ),
    )
    // Server CPU over (about) the measured window: from the end of the warm-up to the last reply.
    await sleep(spec.warmupMs)
    const procs = serverProcesses()
    const before = procs.map((p) => processCpuMicros(p.pid))
    const replies = await asked
    const used = procs.map((p, i) => processCpuMicros(p.pid) - (before[i] ?? 0))
    const serverCpu = used.reduce((s, v) => s + v, 0)
    const reports = replies.flatMap((r): RunReport[] => (r.type === "run" ? [r.report] : []))
    const h = new Histogram()
    for (const r of reports) h.merge(r.histogram, r.maxMicros)
    const ops = reports.reduce((s, r) => s + r.ops, 0)
    const seconds = Math.max(...reports.map((r) => r.elapsedMs)) / 1000
    const ms = (us: number) => us / 1000
    return {
      op: spec.op,
      concurrency: spec.concurrency,
      valueSize: spec.valueSize,
      workers: reports.length,
      ops,
      errors: reports.reduce((s, r) => s + r.errors, 0),
      firstError: reports.find((r) => r.firstError !== null)?.firstError ?? null,
      seconds,
      opsPerSec: seconds > 0 ? ops / seconds : 0,
      p50: ms(h.quantile(0.5)),
      p99: ms(h.quantile(0.99)),
      p999: ms(h.quantile(0.999)),
      max: ms(h.max),
      clientCpuUsPerOp: ops > 0 ? reports.reduce((s, r) => s + r.cpuMicros, 0) / ops : Number.NaN,
      clientCpuMaxShare: Math.max(
        ...reports.map((r) => (r.elapsedMs > 0 ? r.cpuMicros / 1000 / r.elapsedMs : 0)),
      ),
      serverCpuUsPerOp: procs.length > 0 && ops > 0 ? serverCpu / ops : Number.NaN,
      serverCpuUsPerOpByProcess: Object.fromEntries(
        procs.map((p, i) => [p.name, ops > 0 ? Math.round((used[i] ?? 0) / ops) : Number.NaN]),
      ),
    }
  }

  async close(): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        const exited = new Promise<void>((r) => {
          if (w.child.exitCode !== null || w.child.signalCode !== null) r()
          else w.child.once("exit", () => r())
        })
        try {
          w.child.send({ type: "close" } satisfies WorkerRequest)
        } catch {
          // already gone
        }
        const timer = setTimeout(() => w.kill(), 5_000)
        await exited
        clearTimeout(timer)
      }),
    )
  }

  kill(): void {
    for (const w of this.workers) w.kill()
  }
}
