// The benchmark proper (bench.ts provisions, then imports this). It starts, on loopback and
// one at a time, a 3-member etcd cluster, a 3-server NATS cluster with a
// replicas-3 JetStream KV bucket, and ekv's 3-node cluster in each encryption
// phase; drives each with the same load generator (puts of distinct keys at
// several concurrencies, then linearizable gets); and prints ops/s and
// p50/p99/p999 per target, the ekv/etcd and ekv/NATS-KV ratios, client and
// server CPU per operation, machine facts and each target's durability, and
// writes the results as JSON. See docs/benchmarks.md.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { root } from "../localCluster.ts"
import { CLIENT_BOUND_SHARE, LoadGenerator, type RunResult } from "./loadgen.ts"
import {
  type BenchResults,
  formatDurability,
  formatMachine,
  formatRatios,
  formatTarget,
  machineInfo,
  medianRatios,
  medianTargets,
  type Round,
  ratios,
  type TargetResult,
  writeJson,
} from "./report.ts"
import { type EkvPhase, type EkvRouting, PhaseUnavailable, startEkv } from "./targets/ekv.ts"
import { startEtcd } from "./targets/etcd.ts"
import { startNatsKv } from "./targets/natsKv.ts"
import {
  logToFiles,
  PortAllocator,
  type RunningTarget,
  TARGET_NAMES,
  type TargetContext,
  type TargetName,
} from "./targets/target.ts"

interface Options {
  readonly targets: ReadonlyArray<TargetName>
  readonly durationMs: number
  readonly concurrency: ReadonlyArray<number>
  readonly getConcurrency: ReadonlyArray<number>
  readonly valueSizes: ReadonlyArray<number>
  /** A fixed number of load generator processes, or "auto" (by target and concurrency). */
  readonly workers: number | "auto"
  readonly getKeys: number
  readonly json: string | null
  readonly keep: boolean
  readonly ekvRouting: EkvRouting
  /** Passes over all targets; with more than one, each point and ratio is reported as the median. */
  readonly rounds: number
}

const usage = `usage: npm run bench -- [options]
  --targets LIST        comma-separated, in order (default ${TARGET_NAMES.join(",")})
  --duration D          measured time per point, e.g. 10s, 500ms (default 10s; a warm-up of
                        min(1s, 20%) comes first)
  --concurrency LIST    concurrent requests for puts (default 1,16,64,256)
  --get-concurrency L   concurrent linearizable gets (default 64; "none" skips gets)
  --value-size LIST     value sizes in bytes for puts and gets (default 256,4096)
  --workers N|auto      load generator processes (default auto: up to 4, one per 8 concurrent
                        etcd requests or per 32 NATS requests; a point whose busiest client
                        process used over 85% of a core runs again with twice as many, up to 8,
                        while that raises throughput; the best run is reported)
  --get-keys N          keys written before the gets and read at random (default 1000)
  --json FILE           where the JSON results go (default bench-results/<timestamp>.json)
  --ekv-routing R       how ekv's client picks a node: leader (default; it follows the
                        Ekv-Leader reply hint to <p>.kv.node.<leader>.*, as a long-lived
                        client does) or queue (every request to the queue group, so two in
                        three are relayed by a follower)
  --rounds N            passes over all the targets, one after another (default 1); with more,
                        each point reports the median round (and every round's ops/s) and each
                        ratio the median of the ratios taken within a round, with their range
  --keep                keep the run directory (data and process logs) afterwards
  --no-setup            skip scripts/setup.sh (node_modules, nats-server) at the start`

const fail = (message: string): never => {
  console.error(`bench: ${message}\n${usage}`)
  process.exit(2)
}

const parseDuration = (text: string): number => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text)
  if (m === null) return fail(`bad duration ${text}`)
  const n = Number(m[1])
  const ms = m[2] === "ms" ? n : m[2] === "m" ? n * 60_000 : n * 1000
  if (ms < 100 || ms > 600_000) return fail(`duration ${text} is outside 100ms..10m`)
  return ms
}

const parseList = (text: string, what: string, max: number): number[] => {
  const out = text.split(",").map((s) => Number(s.trim()))
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1 || n > max)) {
    return fail(`bad ${what} ${text} (integers 1..${max})`)
  }
  return out
}

const parseOptions = (argv: ReadonlyArray<string>): Options => {
  const o: {
    targets: TargetName[]
    durationMs: number
    concurrency: number[]
    getConcurrency: number[]
    valueSizes: number[]
    workers: number | "auto"
    getKeys: number
    json: string | null
    keep: boolean
    ekvRouting: EkvRouting
    rounds: number
  } = {
    targets: [...TARGET_NAMES],
    durationMs: 10_000,
    concurrency: [1, 16, 64, 256],
    getConcurrency: [64],
    valueSizes: [256, 4096],
    workers: "auto",
    getKeys: 1000,
    json: null,
    keep: false,
    ekvRouting: "leader",
    rounds: 1,
  }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? ""
    const [name, inline] = flag.includes("=")
      ? [flag.slice(0, flag.indexOf("=")), flag.slice(flag.indexOf("=") + 1)]
      : [flag, undefined]
    const value = (): string => inline ?? argv[++i] ?? fail(`${name} needs a value`)
    switch (name) {
      case "--targets": {
        const names = value()
          .split(",")
          .map((s) => s.trim())
        for (const n of names)
          if (!(TARGET_NAMES as ReadonlyArray<string>).includes(n)) fail(`unknown target ${n}`)
        o.targets = names as TargetName[]
        break
      }
      case "--duration":
        o.durationMs = parseDuration(value())
        break
      case "--concurrency":
        o.concurrency = parseList(value(), "concurrency", 4096)
        break
      case "--get-concurrency": {
        const v = value()
        o.getConcurrency = v === "none" ? [] : parseList(v, "get concurrency", 4096)
        break
      }
      case "--value-size":
        o.valueSizes = parseList(value(), "value size", 1024 * 1024)
        break
      case "--workers": {
        const v = value()
        o.workers = v === "auto" ? "auto" : (parseList(v, "workers", 64)[0] ?? 1)
        break
      }
      case "--get-keys":
        o.getKeys = parseList(value(), "get keys", 1_000_000)[0] ?? 1000
        break
      case "--json":
        o.json = value()
        break
      case "--keep":
        o.keep = true
        break
      case "--rounds":
        o.rounds = parseList(value(), "rounds", 20)[0] ?? 1
        break
      case "--ekv-routing": {
        const v = value()
        if (v !== "leader" && v !== "queue") fail(`--ekv-routing is leader or queue, not ${v}`)
        o.ekvRouting = v as EkvRouting
        break
      }
      case "--no-setup":
        break
      case "--help":
      case "-h":
        console.log(usage)
        process.exit(0)
        break
      default:
        fail(`unknown argument ${flag}`)
    }
  }
  return o
}

const MAX_AUTO_WORKERS = 8

/** Load generator processes for one point: the etcd client costs several times more CPU per request. */
const workersFor = (options: Options, target: TargetName, concurrency: number): number => {
  if (options.workers !== "auto") return Math.min(options.workers, concurrency)
  const perWorker = target === "etcd" ? 8 : 32
  return Math.max(1, Math.min(4, Math.ceil(concurrency / perWorker)))
}

const startTarget = (name: TargetName, ctx: TargetContext, options: Options): Promise<RunningTarget> => {
  switch (name) {
    case "etcd":
      return startEtcd(ctx)
    case "nats-kv":
      return startNatsKv(ctx)
    default:
      return startEkv(
        ctx,
        { "ekv-plaintext": "plaintext", "ekv-storage": "storage", "ekv-raft": "raft" }[name] as EkvPhase,
        options.ekvRouting,
      )
  }
}

const say = (m: string) => console.log(`bench: ${m}`)
const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))

/** What to stop when the run is interrupted. */
const live = new Set<{ stop(): Promise<void> | void }>()
let interrupted = false

const benchTarget = async (
  name: TargetName,
  options: Options,
  roundDir: string,
  ports: PortAllocator,
): Promise<TargetResult> => {
  const dir = join(roundDir, name)
  const logs = logToFiles(dir, (m) => say(`${name}: ${m}`))
  const ctx: TargetContext = { dir, ports, supervisor: logs, say: (m) => say(`${name}: ${m}`) }
  const runs: RunResult[] = []
  say(`${name}: starting`)
  let target: RunningTarget
  try {
    target = await startTarget(name, ctx, options)
  } catch (e) {
    logs.close()
    // "<process> exited before it was ready (...)": say why, from that process's output.
    const culprit = /^(\S+) (exited|was not ready|failed)/.exec(errorText(e))?.[1]
    const why = culprit === undefined ? undefined : logs.lastError(culprit)
    const reason = `${errorText(e)}${why === undefined ? "" : ` — ${why}`}`
    const status = e instanceof PhaseUnavailable ? `unavailable: ${reason}` : `failed: ${reason}`
    say(`${name}: ${status} (logs in ${join(dir, "logs")})`)
    return { name, status, runs }
  }
  live.add(target)
  const base = {
    name,
    description: target.description,
    durability: target.durability,
    version: target.version,
    facts: target.facts,
  }
  let generator: LoadGenerator | null = null
  try {
    const maxWorkers = Math.max(
      ...[...options.concurrency, ...options.getConcurrency].map((c) => workersFor(options, name, c)),
    )
    generator = await LoadGenerator.start(target.client, maxWorkers)
    live.add({ stop: () => generator?.kill() })
    const warmupMs = Math.min(1000, options.durationMs * 0.2)
    const measure = async (
      spec: Omit<Parameters<LoadGenerator["run"]>[0], "workers" | "warmupMs" | "durationMs">,
    ) => {
      let workers = workersFor(options, name, spec.concurrency)
      let best: RunResult | null = null
      for (;;) {
        if (interrupted || generator === null) break
        await generator.ensure(workers)
        const r = await generator.run(
          { ...spec, warmupMs, durationMs: options.durationMs, workers },
          target.serverProcesses,
        )
        say(
          `${name}: ${r.op} ${r.valueSize} B c=${r.concurrency} (${r.workers} procs): ${r.opsPerSec.toFixed(0)} ops/s, p99 ${r.p99.toFixed(2)} ms, ${r.errors} errors, busiest client process ${(r.clientCpuMaxShare * 100).toFixed(0)}% of a core`,
        )
        say(
          `${name}:   server µs/op by process: ${Object.entries(r.serverCpuUsPerOpByProcess)
            .map(([p, us]) => `${p} ${us}`)
            .join(", ")}`,
        )
        const improved = best === null || r.opsPerSec > best.opsPerSec * 1.05
        if (best === null || r.opsPerSec > best.opsPerSec) best = r
        // A client process near a full core measures the client: with --workers auto the point
        // runs again (fresh keys) with twice the processes while that helps; the best run counts.
        const more = Math.min(MAX_AUTO_WORKERS, spec.concurrency, workers * 2)
        if (
          options.workers !== "auto" ||
          !improved ||
          r.clientCpuMaxShare <= CLIENT_BOUND_SHARE ||
          more <= workers
        ) {
          break
        }
        say(`${name}: client-bound; again with ${more} processes`)
        workers = more
        if (spec.op === "put") spec = { ...spec, keyPrefix: `${spec.keyPrefix}.p${more}` }
      }
      if (best !== null) runs.push(best)
    }
    for (const valueSize of options.valueSizes) {
      for (const concurrency of options.concurrency) {
        await measure({
          op: "put",
          concurrency,
          valueSize,
          keyPrefix: `bench.put.${valueSize}.c${concurrency}`,
        })
      }
      if (options.getConcurrency.length > 0 && !interrupted) {
        const keyPrefix = `bench.get.${valueSize}`
        await generator.preload(keyPrefix, options.getKeys, valueSize, 64)
        for (const concurrency of options.getConcurrency) {
          await measure({ op: "get", concurrency, valueSize, keyPrefix, keyCount: options.getKeys })
        }
      }
    }
    return { ...base, status: interrupted ? "interrupted" : "ok", runs }
  } catch (e) {
    say(`${name}: failed: ${errorText(e)} (logs in ${join(dir, "logs")})`)
    return { ...base, status: `failed: ${errorText(e)}`, runs }
  } finally {
    await generator?.close()
    await target.stop()
    live.delete(target)
    logs.close()
  }
}

const main = async (): Promise<void> => {
  const options = parseOptions(process.argv.slice(2))
  const startedAt = new Date()
  const runDir = mkdtempSync(join(tmpdir(), "ekv-bench-"))
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      if (interrupted) return
      interrupted = true
      say(`${signal}: stopping after the current point`)
      // A second signal, or 30 s, ends everything at once.
      setTimeout(() => process.exit(130), 30_000).unref()
      process.once(signal, () => process.exit(130))
    })
  }
  const machine = machineInfo(runDir)
  console.log(formatMachine(machine))
  say(`run directory ${runDir}`)
  const ports = new PortAllocator()
  const rounds: Round[] = []
  for (let round = 1; round <= options.rounds && !interrupted; round++) {
    // Every round starts each target afresh, in a directory of its own.
    const roundDir = options.rounds === 1 ? runDir : join(runDir, `round-${round}`)
    if (options.rounds > 1) say(`round ${round} of ${options.rounds}`)
    const targets: TargetResult[] = []
    for (const name of options.targets) {
      if (interrupted) break
      targets.push(await benchTarget(name, options, roundDir, ports))
    }
    const measured: Round = { targets, ratios: ratios(targets) }
    rounds.push(measured)
    if (options.rounds > 1)
      console.log(`\n== round ${round} of ${options.rounds}\n${formatRatios(measured.ratios)}\n`)
  }
  const single = rounds.length === 1 ? rounds[0] : undefined
  const targets = single?.targets ?? medianTargets(rounds)
  const results: BenchResults = {
    startedAt: startedAt.toISOString(),
    options: { ...options },
    machine,
    targets,
    ratios: single?.ratios ?? medianRatios(rounds),
    ...(single === undefined ? { rounds } : {}),
  }
  console.log("")
  console.log(formatMachine(machine))
  for (const t of targets) console.log(`\n${formatTarget(t)}`)
  console.log(`\n${formatRatios(results.ratios)}`)
  console.log(`\n${formatDurability(targets)}`)
  const jsonPath =
    options.json ?? join(root, "bench-results", `${startedAt.toISOString().replace(/[:.]/g, "-")}.json`)
  writeJson(jsonPath, results)
  console.log(`\nbench: results written to ${jsonPath}`)
  const failed = targets.some((t) => t.status.startsWith("failed"))
  if (options.keep || failed) say(`kept ${runDir} (data and logs)`)
  else rmSync(runDir, { recursive: true, force: true })
}

process.once("exit", () => {
  for (const l of live) void l.stop()
})

await main()
