// `npm run bench:scale` (scale.ts provisions, then imports this): how ekv
// behaves as the store grows. On a fresh 3-node cluster started like the
// bench's ekv target it measures, as ratios within one run:
//   1. puts (256 B, new distinct keys, concurrency 64, the bench's load
//      generator) with the store empty, then after loading N keys with
//      kv.batch (load time, snapshots taken meanwhile, a full-store snapshot's
//      time and size);
//   2. consensus (and every other process's) VmRSS empty vs. N keys;
//   3. a follower's consensus restart (SIGTERM, spawn → ready line → health ok
//      → applied index at the leader's commit index) with the small store,
//      with N keys, and with N keys plus many log entries since the snapshot;
//   4. a wiped follower (consensus and keystore data deleted) catching up
//      through a snapshot transfer with N keys stored.
// It prints markdown tables and writes JSON to bench-results/scale-<time>.json.
// A script, not a test: no thresholds; what breaks at scale is reported.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { loadavg, tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { NODES, root } from "../../localCluster.ts"
import { LoadGenerator, type RunResult } from "../loadgen.ts"
import { formatMachine, machineInfo } from "../report.ts"
import type { EkvPhase } from "../targets/ekv.ts"
import { sleep } from "../targets/target.ts"
import { type LogEvent, ScaleCluster } from "./cluster.ts"
import { type LoadResult, loadKeys } from "./load.ts"

interface Options {
  readonly keys: number
  readonly phase: EkvPhase
  readonly durationMs: number
  readonly concurrency: number
  readonly valueSize: number
  readonly singlePuts: number
  readonly loadedRuns: number
  readonly loadConcurrency: number
  readonly loadTimeLimitMs: number
  readonly stepTimeoutMs: number
  readonly json: string | null
  readonly keep: boolean
}

const usage = `usage: npm run bench:scale -- [options]
  --keys N              keys loaded with kv.batch before the second half (default 1000000)
  --phase P             plaintext | storage | raft (default plaintext; raft = both envelopes on)
  --duration D          measured time per put point, e.g. 10s (default 20s, after a 1s warm-up)
  --concurrency N       concurrent puts (default 64)
  --value-size N        bytes per value, for the puts and the loaded keys (default 256)
  --loaded-runs N       put measurements with N keys stored, back to back (default 2)
  --single-puts N       single puts written after a snapshot before restart (c) (default 9000;
                        EKV_SNAPSHOT_ENTRIES is 10000)
  --load-concurrency N  kv.batch requests in flight while loading (default 4)
  --load-time-limit D   stop loading after this long and go on with what is stored (default 8m)
  --step-timeout D      limit for one restart / catch-up / snapshot (default 5m)
  --json FILE           where the JSON goes (default bench-results/scale-<timestamp>.json)
  --keep                keep the run directory (data and process logs) afterwards
  --no-setup            skip scripts/setup.sh at the start`

const fail = (message: string): never => {
  console.error(`bench:scale: ${message}\n${usage}`)
  process.exit(2)
}

const parseDuration = (text: string): number => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text)
  if (m === null) return fail(`bad duration ${text}`)
  const n = Number(m[1])
  return m[2] === "ms" ? n : m[2] === "m" ? n * 60_000 : n * 1000
}

const parseCount = (text: string, what: string, min: number, max: number): number => {
  const n = Number(text.replace(/_/g, ""))
  if (!Number.isInteger(n) || n < min || n > max) return fail(`bad ${what} ${text} (${min}..${max})`)
  return n
}

const parseOptions = (argv: ReadonlyArray<string>): Options => {
  const o = {
    keys: 1_000_000,
    phase: "plaintext" as EkvPhase,
    durationMs: 20_000,
    concurrency: 64,
    valueSize: 256,
    singlePuts: 9000,
    loadedRuns: 2,
    loadConcurrency: 4,
    loadTimeLimitMs: 8 * 60_000,
    stepTimeoutMs: 5 * 60_000,
    json: null as string | null,
    keep: false,
  }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] ?? ""
    const [name, inline] = flag.includes("=")
      ? [flag.slice(0, flag.indexOf("=")), flag.slice(flag.indexOf("=") + 1)]
      : [flag, undefined]
    const value = (): string => inline ?? argv[++i] ?? fail(`${name} needs a value`)
    switch (name) {
      case "--keys":
        o.keys = parseCount(value(), "key count", 1000, 100_000_000)
        break
      case "--phase": {
        const p = value()
        if (p !== "plaintext" && p !== "storage" && p !== "raft") fail(`unknown phase ${p}`)
        o.phase = p as EkvPhase
        break
      }
      case "--duration":
        o.durationMs = parseDuration(value())
        break
      case "--concurrency":
        o.concurrency = parseCount(value(), "concurrency", 1, 4096)
        break
      case "--value-size":
        o.valueSize = parseCount(value(), "value size", 1, 2048)
        break
      case "--loaded-runs":
        o.loadedRuns = parseCount(value(), "loaded runs", 1, 10)
        break
      case "--single-puts":
        o.singlePuts = parseCount(value(), "single puts", 0, 1_000_000)
        break
      case "--load-concurrency":
        o.loadConcurrency = parseCount(value(), "load concurrency", 1, 64)
        break
      case "--load-time-limit":
        o.loadTimeLimitMs = parseDuration(value())
        break
      case "--step-timeout":
        o.stepTimeoutMs = parseDuration(value())
        break
      case "--json":
        o.json = value()
        break
      case "--keep":
        o.keep = true
        break
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

/** USER_HZ, the unit of /proc/stat. */
const CPU_TICKS = 100

/** Machine-wide CPU ticks from /proc/stat: busy (all but idle and iowait) and iowait. */
const cpuTimes = (): { busy: number; iowait: number } => {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? ""
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    // user nice system idle iowait irq softirq steal
    const [user = 0, nice = 0, system = 0, , iowait = 0, irq = 0, softirq = 0, steal = 0] = v
    return { busy: user + nice + system + irq + softirq + steal, iowait }
  } catch {
    return { busy: Number.NaN, iowait: Number.NaN }
  }
}

/** EKV_SNAPSHOT_ENTRIES's default (the cluster is started without it). */
const SNAPSHOT_ENTRIES = 10_000

const say = (m: string) => console.log(`scale: ${m}`)
const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e))
const load = () => loadavg().map((l) => Math.round(l * 100) / 100)
const round = (n: number, d = 1) => (Number.isFinite(n) ? Math.round(n * 10 ** d) / 10 ** d : Number.NaN)
const mib = (bytes: number) => bytes / 2 ** 20

/**
 * One snapshot-work line, with the time since the run started: "snapshot taken" (a file of the
 * whole store), "log compacted" (an automatic checkpoint), "snapshot file written to send",
 * "snapshot installed", and the transfer lines.
 */
interface SnapshotLine {
  readonly process: string
  readonly msg: string
  readonly atS: number
  readonly index?: number
  readonly bytes?: number
  readonly records?: number
  readonly ms?: number
}

interface PutPoint extends RunResult {
  readonly label: string
  readonly keysStored: number
  /** CPU over the measured window, in cores (of `cores`): whole machine, ekv servers, load generator, the rest. */
  readonly cpu: {
    readonly machineBusyCores: number
    readonly iowaitCores: number
    readonly serverCores: number
    readonly clientCores: number
    readonly otherCores: number
  }
  /** The measured window, seconds since the run started. */
  readonly windowS: readonly [number, number]
  /** Snapshots finished during the run. */
  readonly snapshotsDuring: ReadonlyArray<SnapshotLine>
  /** Snapshots being written during any part of the measured window (filled in at the end). */
  snapshotsOverlapping: ReadonlyArray<SnapshotLine>
  readonly loadAverage: ReadonlyArray<number>
}

interface SnapshotAll {
  readonly label: string
  readonly keysStored: number
  readonly commitIndex: number
  /** performance.now() when every node had its snapshot (or the wait ended). */
  readonly doneAt: number
  readonly wallMs: number
  readonly error: string | null
  readonly reply: unknown
  readonly taken: ReadonlyArray<SnapshotLine>
}

interface RestartResult {
  readonly label: string
  readonly node: string
  readonly keysStored: number
  readonly stopMs: number
  readonly stopKilled: boolean
  readonly snapshotsWrittenWhileStopping: ReadonlyArray<SnapshotLine>
  readonly readyMs: number
  readonly healthOkMs: number
  readonly caughtUpMs: number
  readonly ready: Readonly<Record<string, unknown>> | null
  readonly commitIndexAtStop: number
  readonly rssAfterMiB: number
  readonly snapshotsSinceLastAdminSnapshot: ReadonlyArray<SnapshotLine>
  readonly error: string | null
}

interface CatchUpResult {
  readonly node: string
  readonly keysStored: number
  readonly stopMs: number
  readonly keystoreReadyMs: number
  readonly consensusReadyMs: number
  readonly healthOkMs: number
  readonly caughtUpMs: number
  readonly leaderCommitIndex: number
  readonly transfer: ReadonlyArray<SnapshotLine>
  readonly rssAfterMiB: number
  readonly error: string | null
}

/** Lines that say a node spent time on a snapshot or checkpoint (each has `ms`). */
const WORK = new Set([
  "snapshot taken",
  "log compacted",
  "snapshot file written to send",
  "snapshot installed",
])
const isWork = (e: LogEvent): boolean => WORK.has(e.msg)

let t0 = performance.now()
const snapLine = (e: LogEvent): SnapshotLine => {
  const n = (k: string) => (typeof e.fields[k] === "number" ? (e.fields[k] as number) : undefined)
  return {
    process: e.process,
    msg: e.msg,
    atS: round((e.at - t0) / 1000, 2),
    ...(n("index") === undefined ? {} : { index: n("index") }),
    ...(n("bytes") === undefined ? {} : { bytes: n("bytes") }),
    ...(n("records") === undefined ? {} : { records: n("records") }),
    ...(n("ms") === undefined ? {} : { ms: n("ms") }),
  }
}

/** Polls until `node` is healthy (consensus and keystore ok) and its applied index reaches the commit index. */
const waitCaughtUp = async (
  cluster: ScaleCluster,
  node: string,
  since: number,
  timeoutMs: number,
): Promise<{ healthOkMs: number; caughtUpMs: number; commitIndex: number }> => {
  let healthOkMs = Number.NaN
  let caughtUpMs = Number.NaN
  let commitIndex = 0
  let last = ""
  for (;;) {
    const now = performance.now()
    if (now - since > timeoutMs)
      throw new Error(`${node} not caught up within ${timeoutMs / 1000}s (last: ${last.slice(0, 300)})`)
    try {
      const h = await cluster.health(node, 1_000)
      const at = performance.now() - since
      if (Number.isNaN(healthOkMs) && h.consensus === "ok" && h.keystore === "ok") healthOkMs = at
      const s = await cluster.status(5_000)
      commitIndex = s.commit_index
      if (Number.isNaN(caughtUpMs) && (h.applied_index ?? 0) >= s.commit_index) caughtUpMs = at
      last = `health ${JSON.stringify(h)}, commit ${s.commit_index}`
      if (!Number.isNaN(healthOkMs) && !Number.isNaN(caughtUpMs))
        return { healthOkMs, caughtUpMs, commitIndex }
    } catch (e) {
      last = errorText(e)
    }
    await sleep(100)
  }
}

const snapshotAll = async (
  cluster: ScaleCluster,
  label: string,
  keysStored: number,
  timeoutMs: number,
): Promise<SnapshotAll> => {
  const since = performance.now()
  const commitIndex = (await cluster.status().catch(() => null))?.commit_index ?? 0
  say(`snapshot (${label}): ekv.admin.cluster.snapshot on every node (commit index ${commitIndex})`)
  let reply: unknown = null
  let error: string | null = null
  try {
    reply = await cluster.request("admin.cluster.snapshot", {}, timeoutMs)
  } catch (e) {
    error = errorText(e)
    say(`snapshot (${label}): ${error.slice(0, 300)}; waiting for the nodes' "snapshot taken" lines`)
    // The nodes go on snapshotting (a request that finds one running gets another one at the
    // applied index it saw once that one is written): wait for each node's line at or above the
    // commit index of the request, or its success in the partial reply, up to the step limit.
    const succeeded = new Set([...error.matchAll(/"node":"([a-z0-9-]+)","index":\d+/g)].map((m) => m[1]))
    while (performance.now() - since < timeoutMs) {
      const done = new Set(
        cluster
          .eventsSince(since, "snapshot taken")
          .filter((e) => ((e.fields.index as number | undefined) ?? 0) >= commitIndex)
          .map((e) => e.process.replace("consensus-", "")),
      )
      if (NODES.every((n) => done.has(n) || succeeded.has(n))) break
      await sleep(250)
    }
  }
  const wallMs = Math.max(
    error === null ? performance.now() - since : 0,
    ...cluster.eventsSince(since, "snapshot taken").map((e) => e.at - since),
  )
  const taken = cluster.eventsSince(since, "snapshot taken").map(snapLine)
  for (const t of taken)
    say(`snapshot (${label}): ${t.process} index ${t.index}, ${round(mib(t.bytes ?? 0))} MiB, ${t.ms} ms`)
  return { label, keysStored, commitIndex, wallMs, doneAt: performance.now(), error, reply, taken }
}

const restartFollower = async (
  cluster: ScaleCluster,
  label: string,
  keysStored: number,
  lastAdminSnapshotAt: number,
  timeoutMs: number,
): Promise<RestartResult> => {
  const { follower: node } = await cluster.roles()
  const name = `consensus-${node}`
  const before = await cluster.status()
  say(`restart (${label}): SIGTERM ${name} (commit index ${before.commit_index})`)
  const stopAt = performance.now()
  const snapshotsSince = cluster
    .eventsSince(lastAdminSnapshotAt)
    .filter((e) => (e.msg === "snapshot taken" || e.msg === "log compacted") && e.process === name)
  const stop = await cluster.stopProcess(name)
  const duringStop = cluster.eventsSince(stopAt).filter((e) => isWork(e) && e.process === name)
  if (duringStop.length > 0)
    say(
      `restart (${label}): ${name} finished writing a snapshot after SIGTERM (${duringStop.map((e) => `index ${e.fields.index}, ${e.fields.ms} ms`).join("; ")}) before it exited`,
    )
  const base = {
    label,
    node,
    keysStored,
    stopMs: stop.ms,
    stopKilled: stop.killed,
    snapshotsWrittenWhileStopping: duringStop.map(snapLine),
    commitIndexAtStop: before.commit_index,
    snapshotsSinceLastAdminSnapshot: snapshotsSince.filter((e) => e.at < stopAt).map(snapLine),
  }
  const { spawnedAt, ready } = cluster.spawnProcess(name, timeoutMs)
  try {
    const readyMs = await ready
    const up = await waitCaughtUp(cluster, node, spawnedAt, timeoutMs)
    const readyLine = cluster.eventsSince(spawnedAt, "consensus ready").find((e) => e.process === name)
    const r: RestartResult = {
      ...base,
      readyMs,
      healthOkMs: up.healthOkMs,
      caughtUpMs: up.caughtUpMs,
      ready: readyLine?.fields ?? null,
      rssAfterMiB: cluster.rss()[name] ?? Number.NaN,
      error: null,
    }
    say(
      `restart (${label}): ${name} stopped in ${Math.round(stop.ms)} ms; ready ${Math.round(readyMs)} ms (loadMs ${r.ready?.loadMs}, loadedEntries ${r.ready?.loadedEntries}, replayEntries ${r.ready?.replayEntries}), health ok ${Math.round(up.healthOkMs)} ms, caught up ${Math.round(up.caughtUpMs)} ms`,
    )
    return r
  } catch (e) {
    say(`restart (${label}): ${errorText(e)}`)
    return {
      ...base,
      readyMs: Number.NaN,
      healthOkMs: Number.NaN,
      caughtUpMs: Number.NaN,
      ready: null,
      rssAfterMiB: Number.NaN,
      error: errorText(e),
    }
  }
}

const wipedCatchUp = async (
  cluster: ScaleCluster,
  keysStored: number,
  timeoutMs: number,
): Promise<CatchUpResult> => {
  const { follower: node } = await cluster.roles()
  say(`catch-up: stopping consensus-${node} and keystore-${node}, deleting ${cluster.dataDir(node)}`)
  const a = await cluster.stopProcess(`consensus-${node}`)
  const b = await cluster.stopProcess(`keystore-${node}`)
  cluster.wipe(node)
  const since = performance.now()
  const ks = cluster.spawnProcess(`keystore-${node}`, timeoutMs)
  let keystoreReadyMs = Number.NaN
  let consensusReadyMs = Number.NaN
  const transfer = () =>
    cluster
      .eventsSince(since)
      .filter((e) => /snapshot/.test(e.msg))
      .map((e) => ({ ...snapLine(e), msg: e.msg }))
  try {
    keystoreReadyMs = await ks.ready
    const cs = cluster.spawnProcess(`consensus-${node}`, timeoutMs)
    consensusReadyMs = (await cs.ready) + (cs.spawnedAt - since)
    const up = await waitCaughtUp(cluster, node, since, timeoutMs)
    // The applied index moves before the install's log line is written: wait a moment for it.
    for (let i = 0; i < 50; i++) {
      if (cluster.eventsSince(since, "snapshot installed").some((e) => e.process === `consensus-${node}`))
        break
      await sleep(100)
    }
    const r: CatchUpResult = {
      node,
      keysStored,
      stopMs: a.ms + b.ms,
      keystoreReadyMs,
      consensusReadyMs,
      healthOkMs: up.healthOkMs,
      caughtUpMs: up.caughtUpMs,
      leaderCommitIndex: up.commitIndex,
      transfer: transfer(),
      rssAfterMiB: cluster.rss()[`consensus-${node}`] ?? Number.NaN,
      error: null,
    }
    say(
      `catch-up: ${node} ready ${Math.round(consensusReadyMs)} ms, health ok ${Math.round(up.healthOkMs)} ms, caught up ${Math.round(up.caughtUpMs)} ms`,
    )
    for (const t of r.transfer) say(`catch-up:   ${t.process} ${t.msg} ${JSON.stringify(t)}`)
    return r
  } catch (e) {
    say(`catch-up: ${errorText(e)}`)
    return {
      node,
      keysStored,
      stopMs: a.ms + b.ms,
      keystoreReadyMs,
      consensusReadyMs,
      healthOkMs: Number.NaN,
      caughtUpMs: Number.NaN,
      leaderCommitIndex: 0,
      transfer: transfer(),
      rssAfterMiB: Number.NaN,
      error: errorText(e),
    }
  }
}

// ---- report ----

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(" | ")} |`
  const rule = `| ${widths.map((w, i) => (i === 0 ? "-".repeat(w) : `${"-".repeat(Math.max(1, w - 1))}:`)).join(" | ")} |`
  return [line(header), rule, ...rows.map(line)].join("\n")
}

const f = (n: number | undefined, d = 1): string =>
  n === undefined || !Number.isFinite(n) ? "—" : n.toLocaleString("en-US", { maximumFractionDigits: d })
const ratio = (a: number, b: number): number => (b > 0 && Number.isFinite(a) ? a / b : Number.NaN)
const x = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(2)}×` : "—")

interface ScaleResults {
  startedAt: string
  options: Options
  machine: ReturnType<typeof machineInfo>
  loadAverageStart: ReadonlyArray<number>
  loadAverageEnd?: ReadonlyArray<number>
  runDir: string
  facts?: Readonly<Record<string, string>>
  keysStored: number
  puts: PutPoint[]
  load?: LoadResult & {
    snapshotsDuring: ReadonlyArray<SnapshotLine>
    peakRssMiB: Record<string, number>
    loadAverageEnd: ReadonlyArray<number>
  }
  rss: Record<string, Record<string, number>>
  rssLoadedLabel?: string
  snapshots: SnapshotAll[]
  restarts: RestartResult[]
  catchUp?: CatchUpResult
  singlePuts?: { count: number; seconds: number; error: string | null }
  snapshotLines: SnapshotLine[]
  problems: Array<{ process: string; level: unknown; msg: string; count: number; first: string }>
  findings: string[]
  totalSeconds?: number
}

/** "2 snapshot files (max 17 s), 5 checkpoints (max 120 ms)". */
const workSummary = (lines: ReadonlyArray<SnapshotLine>): string => {
  const part = (msg: string, what: string) => {
    const ls = lines.filter((l) => l.msg === msg)
    return ls.length === 0
      ? null
      : `${ls.length} ${what} (max ${f(Math.max(...ls.map((l) => l.ms ?? 0)), 0)} ms)`
  }
  const parts = [
    part("snapshot taken", "snapshot files"),
    part("snapshot file written to send", "files written to send"),
    part("log compacted", "checkpoints"),
  ].filter((p) => p !== null)
  return parts.length === 0 ? "none" : parts.join(", ")
}

const format = (r: ScaleResults): string => {
  const out: string[] = []
  const keys = r.keysStored
  out.push(
    `ekv scale, phase ${r.options.phase}, ${f(r.load?.loaded ?? 0, 0)} keys of ${r.options.valueSize} B loaded with kv.batch (requested ${f(r.options.keys, 0)}), ${f(keys, 0)} stored at the end; load average ${r.loadAverageStart.join(" ")} at start, ${r.loadAverageEnd?.join(" ") ?? "?"} at end; ${f(r.totalSeconds, 0)} s in all`,
  )
  if (r.puts.length > 0) {
    out.push(
      "",
      `### Puts (${r.options.valueSize} B, new keys, concurrency ${r.options.concurrency}, ${r.options.durationMs / 1000} s)`,
      "",
    )
    out.push(
      table(
        [
          "store",
          "ops/s",
          "p50 ms",
          "p99 ms",
          "p999 ms",
          "max ms",
          "errors",
          "server µs/op",
          "CPU cores: machine / ekv / client / other (iowait)",
          "snapshot work overlapping (node-s busy)",
        ],
        r.puts.map((p) => {
          // Node-seconds of the measured window during which some node was writing a snapshot.
          const busy = p.snapshotsOverlapping.reduce(
            (sum, t) =>
              sum +
              Math.max(0, Math.min(t.atS, p.windowS[1]) - Math.max(t.atS - (t.ms ?? 0) / 1000, p.windowS[0])),
            0,
          )
          return [
            p.label,
            f(p.opsPerSec, 0),
            f(p.p50, 2),
            f(p.p99, 2),
            f(p.p999, 2),
            f(p.max, 0),
            String(p.errors),
            f(p.serverCpuUsPerOp, 0),
            `${f(p.cpu.machineBusyCores, 2)} / ${f(p.cpu.serverCores, 2)} / ${f(p.cpu.clientCores, 2)} / ${f(p.cpu.otherCores, 2)} (${f(p.cpu.iowaitCores, 2)})`,
            `${workSummary(p.snapshotsOverlapping)} (${f(busy, 1)})`,
          ]
        }),
      ),
    )
    const e = r.puts[0]
    for (const l of r.puts.slice(1))
      if (e !== undefined)
        out.push(
          "",
          `${l.label} ÷ empty: ops/s ${x(ratio(l.opsPerSec, e.opsPerSec))}, p50 ${x(ratio(l.p50, e.p50))}, p99 ${x(ratio(l.p99, e.p99))}, p999 ${x(ratio(l.p999, e.p999))}, server µs/op ${x(ratio(l.serverCpuUsPerOp, e.serverCpuUsPerOp))}`,
        )
  }
  if (r.load !== undefined) {
    const l = r.load
    out.push("", "### Loading with kv.batch", "")
    out.push(
      table(
        [
          "keys stored",
          "batches",
          "seconds",
          "keys/s",
          "MiB/s",
          "batch p50 ms",
          "batch p99 ms",
          "batch max ms",
          "retries",
        ],
        [
          [
            f(l.loaded, 0),
            f(l.batches, 0),
            f(l.seconds, 1),
            f(l.keysPerSec, 0),
            f(l.mibPerSec, 2),
            f(l.batchP50, 0),
            f(l.batchP99, 0),
            f(l.batchMax, 0),
            String(l.retries),
          ],
        ],
      ),
    )
    if (l.stoppedEarly !== null) out.push("", `stopped early: ${l.stoppedEarly}`)
    out.push("", `snapshot work while loading: ${workSummary(l.snapshotsDuring)}`)
    if (l.snapshotsDuring.length > 0) {
      out.push(
        "",
        table(
          ["process", "line", "at s", "index", "MiB", "records", "ms"],
          l.snapshotsDuring.map((s) => [
            s.process,
            s.msg,
            f(s.atS, 1),
            f(s.index, 0),
            f(mib(s.bytes ?? Number.NaN), 1),
            f(s.records, 0),
            f(s.ms, 0),
          ]),
        ),
      )
    }
  }
  if (r.snapshots.length > 0) {
    out.push("", "### Explicit snapshots (ekv.admin.cluster.snapshot, every node)", "")
    out.push(
      table(
        ["when", "keys stored", "wall ms", "node", "index", "MiB", "records", "ms"],
        r.snapshots.flatMap((s) =>
          s.taken.length === 0
            ? [
                [
                  s.label,
                  f(s.keysStored, 0),
                  f(s.wallMs, 0),
                  s.error ?? "none (nothing applied since the last)",
                  "",
                  "",
                  "",
                  "",
                ],
              ]
            : s.taken.map((t) => [
                s.label,
                f(s.keysStored, 0),
                f(s.wallMs, 0),
                t.process.replace("consensus-", ""),
                f(t.index, 0),
                f(mib(t.bytes ?? Number.NaN), 1),
                f(t.records, 0),
                f(t.ms, 0),
              ]),
        ),
      ),
    )
    for (const s of r.snapshots) if (s.error !== null) out.push("", `${s.label}: ${s.error}`)
  }
  const rssKeys = Object.keys(r.rss)
  if (rssKeys.length > 0) {
    const procs = [...new Set(rssKeys.flatMap((k) => Object.keys(r.rss[k] ?? {})))].sort()
    out.push("", "### VmRSS (MiB)", "")
    const empty = r.rss["empty (started)"] ?? {}
    const loaded = r.rss[r.rssLoadedLabel ?? ""] ?? {}
    out.push(
      table(
        ["process", ...rssKeys, "loaded ÷ empty"],
        procs.map((p) => [
          p,
          ...rssKeys.map((k) => f(r.rss[k]?.[p], 0)),
          x(ratio(loaded[p] ?? Number.NaN, empty[p] ?? Number.NaN)),
        ]),
      ),
    )
  }
  if (r.restarts.length > 0) {
    out.push("", "### Follower consensus restart (SIGTERM, then spawn)", "")
    out.push(
      table(
        [
          "case",
          "node",
          "keys stored",
          "stop ms",
          "loadMs",
          "loadedEntries",
          "replayEntries",
          "ready ms",
          "health ok ms",
          "caught up ms",
          "RSS after MiB",
        ],
        r.restarts.map((s) => [
          s.label,
          s.node,
          f(s.keysStored, 0),
          f(s.stopMs, 0),
          f(s.ready?.loadMs as number | undefined, 0),
          f(s.ready?.loadedEntries as number | undefined, 0),
          f(s.ready?.replayEntries as number | undefined, 0),
          f(s.readyMs, 0),
          f(s.healthOkMs, 0),
          f(s.caughtUpMs, 0),
          f(s.rssAfterMiB, 0),
        ]),
      ),
    )
    const a = r.restarts[0]
    for (const s of r.restarts.slice(1))
      if (a !== undefined)
        out.push(
          "",
          `${s.label} ÷ ${a.label}: ready ${x(ratio(s.readyMs, a.readyMs))}, health ok ${x(ratio(s.healthOkMs, a.healthOkMs))}, caught up ${x(ratio(s.caughtUpMs, a.caughtUpMs))}`,
        )
    for (const s of r.restarts) if (s.error !== null) out.push("", `${s.label}: ${s.error}`)
  }
  if (r.catchUp !== undefined) {
    const c = r.catchUp
    out.push("", "### Wiped follower catching up through a snapshot", "")
    out.push(
      table(
        [
          "node",
          "keys stored",
          "keystore ready ms",
          "consensus ready ms",
          "health ok ms",
          "caught up ms",
          "RSS after MiB",
        ],
        [
          [
            c.node,
            f(c.keysStored, 0),
            f(c.keystoreReadyMs, 0),
            f(c.consensusReadyMs, 0),
            f(c.healthOkMs, 0),
            f(c.caughtUpMs, 0),
            f(c.rssAfterMiB, 0),
          ],
        ],
      ),
    )
    if (c.transfer.length > 0)
      out.push(
        "",
        table(
          ["process", "line", "at s", "index", "MiB", "ms"],
          c.transfer.map((t) => [
            t.process,
            t.msg,
            f(t.atS, 1),
            f(t.index, 0),
            f(mib(t.bytes ?? Number.NaN), 1),
            f(t.ms, 0),
          ]),
        ),
      )
    if (c.error !== null) out.push("", `catch-up: ${c.error}`)
  }
  if (r.problems.length > 0) {
    out.push("", "### warn/error log lines", "")
    out.push(
      table(
        ["process", "level", "count", "message (first 120 characters)"],
        r.problems.map((p) => [p.process, String(p.level), String(p.count), p.msg.slice(0, 120)]),
      ),
    )
  }
  if (r.findings.length > 0) out.push("", "### Findings", "", ...r.findings.map((s) => `- ${s}`))
  return out.join("\n")
}

const writeJson = (path: string, value: unknown): void => {
  mkdirSync(dirname(path), { recursive: true })
  writeFileSync(
    path,
    `${JSON.stringify(value, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2)}\n`,
  )
}

// ---- main ----

let cluster: ScaleCluster | null = null
let generator: LoadGenerator | null = null

const main = async (): Promise<void> => {
  const options = parseOptions(process.argv.slice(2))
  const startedAt = new Date()
  t0 = performance.now()
  const runDir = mkdtempSync(join(tmpdir(), "ekv-scale-"))
  const machine = machineInfo(runDir)
  console.log(formatMachine(machine))
  say(`run directory ${runDir}`)
  const r: ScaleResults = {
    startedAt: startedAt.toISOString(),
    options,
    machine,
    loadAverageStart: load(),
    runDir,
    keysStored: 0,
    puts: [],
    rss: {},
    snapshots: [],
    restarts: [],
    snapshotLines: [],
    problems: [],
    findings: [],
  }
  const jsonPath =
    options.json ?? join(root, "bench-results", `scale-${startedAt.toISOString().replace(/[:.]/g, "-")}.json`)
  let failed = false
  try {
    say(`starting ekv (phase ${options.phase})`)
    cluster = await ScaleCluster.start(join(runDir, "ekv"), options.phase, (m) => say(m))
    const c = cluster
    r.facts = c.target.facts
    say(`cluster up, leader ${c.target.facts.leader}`)
    await sleep(2000)
    r.rss["empty (started)"] = c.rss()
    generator = await LoadGenerator.start(
      c.target.client,
      Math.max(1, Math.min(4, Math.ceil(options.concurrency / 32))),
    )
    const g = generator

    const measurePuts = async (label: string): Promise<void> => {
      const since = performance.now()
      // Machine-wide CPU over the measured window (after the 1 s warm-up): what else ran.
      let cpuBefore = cpuTimes()
      let cpuAt = since + 1000
      const cpuTimer = setTimeout(() => {
        cpuBefore = cpuTimes()
        cpuAt = performance.now()
      }, 1000)
      const run = await g.run(
        {
          op: "put",
          concurrency: options.concurrency,
          warmupMs: 1000,
          durationMs: options.durationMs,
          valueSize: options.valueSize,
          keyPrefix: `scale.put.${r.puts.length}`,
          workers: g.size,
        },
        () => c.pids(),
      )
      clearTimeout(cpuTimer)
      const cpuAfter = cpuTimes()
      const wallS = (performance.now() - cpuAt) / 1000
      const cores = (ticks: number) => ticks / CPU_TICKS / wallS
      const machineCores = cores(cpuAfter.busy - cpuBefore.busy)
      const serverCores = (run.serverCpuUsPerOp * run.ops) / 1e6 / run.seconds
      const clientCores = (run.clientCpuUsPerOp * run.ops) / 1e6 / run.seconds
      const point: PutPoint = {
        ...run,
        cpu: {
          machineBusyCores: round(machineCores, 2),
          iowaitCores: round(cores(cpuAfter.iowait - cpuBefore.iowait), 2),
          serverCores: round(serverCores, 2),
          clientCores: round(clientCores, 2),
          otherCores: round(machineCores - serverCores - clientCores, 2),
        },
        label,
        keysStored: r.keysStored,
        windowS: [round((since + 1000 - t0) / 1000, 2), round((performance.now() - t0) / 1000, 2)],
        snapshotsDuring: c.eventsSince(since).filter(isWork).map(snapLine),
        snapshotsOverlapping: [],
        loadAverage: load(),
      }
      r.puts.push(point)
      // The put runs write new keys too (measured ones; the 1 s warm-up adds a few more).
      r.keysStored += run.ops
      say(
        `puts (${label}): ${f(run.opsPerSec, 0)} ops/s, p50 ${f(run.p50, 2)} ms, p99 ${f(run.p99, 2)} ms, p999 ${f(run.p999, 2)} ms, ${run.errors} errors${run.firstError === null ? "" : ` (${run.firstError})`}, snapshot work meanwhile: ${workSummary(point.snapshotsDuring)}`,
      )
      if (run.errors > 0) r.findings.push(`puts (${label}): ${run.errors} errors, first: ${run.firstError}`)
    }

    // 1a. puts on the empty store
    await measurePuts("empty")
    r.rss["after empty puts"] = c.rss()

    // 3a. restart with the small store, right after a snapshot
    let snap = await snapshotAll(c, "small store", r.keysStored, options.stepTimeoutMs)
    r.snapshots.push(snap)
    let snapAt = snap.doneAt
    r.restarts.push(await restartFollower(c, "(a) small store", r.keysStored, snapAt, options.stepTimeoutMs))

    // 1b. load N keys with kv.batch
    const peak: Record<string, number> = {}
    const sampler = setInterval(() => {
      for (const [p, v] of Object.entries(c.rss())) if (!(v <= (peak[p] ?? 0))) peak[p] = v
    }, 1000)
    const loadSince = performance.now()
    say(
      `loading ${f(options.keys, 0)} keys with kv.batch (1000 per request, ${options.loadConcurrency} in flight)`,
    )
    let loadResult: LoadResult
    try {
      loadResult = await loadKeys(c, {
        keys: options.keys,
        valueSize: options.valueSize,
        batchSize: 1000,
        concurrency: options.loadConcurrency,
        timeLimitMs: options.loadTimeLimitMs,
        keyPrefix: "scale.load",
        progressMs: 10_000,
        onProgress: (loaded, ms) => {
          const rss = c.rss()
          say(
            `load: ${f(loaded, 0)} keys in ${f(ms / 1000, 0)} s (${f(loaded / (ms / 1000), 0)} keys/s); snapshot work so far: ${workSummary(c.eventsSince(loadSince).filter(isWork).map(snapLine))}; consensus RSS ${NODES.map((n) => f(rss[`consensus-${n}`], 0)).join("/")} MiB; load ${load().join(" ")}`,
          )
        },
      })
    } finally {
      clearInterval(sampler)
    }
    r.keysStored += loadResult.loaded
    r.load = {
      ...loadResult,
      snapshotsDuring: c.eventsSince(loadSince).filter(isWork).map(snapLine),
      peakRssMiB: peak,
      loadAverageEnd: load(),
    }
    say(
      `loaded ${f(loadResult.loaded, 0)} keys in ${f(loadResult.seconds, 1)} s (${f(loadResult.keysPerSec, 0)} keys/s, batch p99 ${f(loadResult.batchP99, 0)} ms), snapshot work meanwhile: ${workSummary(r.load.snapshotsDuring)}`,
    )
    if (loadResult.stoppedEarly !== null)
      r.findings.push(
        `loading stopped early at ${f(loadResult.loaded, 0)} of ${f(options.keys, 0)} keys: ${loadResult.stoppedEarly}; the remaining figures are for ${f(r.keysStored, 0)} keys`,
      )
    for (const e of loadResult.errors) r.findings.push(`load error: ${e}`)
    await sleep(2000)
    const loadedLabel = `${f(r.keysStored, 0)} keys stored`
    r.rssLoadedLabel = loadedLabel
    r.rss[loadedLabel] = c.rss()
    r.rss["peak while loading"] = peak

    // The full store's snapshot on an idle cluster (it also ends any the load left running)
    r.snapshots.push(await snapshotAll(c, "after loading", r.keysStored, options.stepTimeoutMs))

    // 1c. puts with N keys stored (again right after, to tell a passing cost from a lasting one)
    await measurePuts(`${f(r.keysStored, 0)} keys`)
    for (let i = 2; i <= options.loadedRuns; i++) await measurePuts(`${f(r.keysStored, 0)} keys (run ${i})`)
    r.rss[`after puts on ${f(r.keysStored, 0)} keys`] = c.rss()

    // Snapshot of the full store, then 3b: restart with N keys (little log since the snapshot)
    snap = await snapshotAll(c, `${f(r.keysStored, 0)} keys`, r.keysStored, options.stepTimeoutMs)
    r.snapshots.push(snap)
    snapAt = snap.doneAt
    r.restarts.push(await restartFollower(c, "(b) N keys", r.keysStored, snapAt, options.stepTimeoutMs))

    // 3c: N keys and many entries since the last snapshot
    if (options.singlePuts > 0) {
      snap = await snapshotAll(c, "before single puts", r.keysStored, options.stepTimeoutMs)
      r.snapshots.push(snap)
      snapAt = snap.doneAt
      say(`writing ${f(options.singlePuts, 0)} single puts (kv.put, concurrency ${options.concurrency})`)
      const p0 = performance.now()
      let error: string | null = null
      try {
        await g.preload("scale.single", options.singlePuts, options.valueSize, options.concurrency)
      } catch (e) {
        error = errorText(e)
        r.findings.push(`single puts: ${error}`)
      }
      r.singlePuts = { count: options.singlePuts, seconds: (performance.now() - p0) / 1000, error }
      r.keysStored += options.singlePuts
      const { follower } = await c.roles()
      await waitCaughtUp(c, follower, performance.now(), options.stepTimeoutMs).catch(() => undefined)
      const restart = await restartFollower(
        c,
        "(c) N keys + log since snapshot",
        r.keysStored,
        snapAt,
        options.stepTimeoutMs,
      )
      r.restarts.push(restart)
      if (restart.snapshotsSinceLastAdminSnapshot.length > 0)
        r.findings.push(
          `restart (c): ${restart.node} took ${restart.snapshotsSinceLastAdminSnapshot.length} snapshot(s)/checkpoint(s) of its own while the single puts were written, so fewer entries were left to load`,
        )
    }

    // 4. a wiped follower catching up through a snapshot. First enough puts that the leader's
    // automatic checkpoint compacts its log past the last snapshot file (as in a cluster that has
    // been taking writes): it then has to write a fresh file of the whole store for the follower.
    const topUp = Math.max(1000, SNAPSHOT_ENTRIES + 1000 - options.singlePuts)
    const { leader } = await c.roles()
    const topUpSince = performance.now()
    say(`writing ${f(topUp, 0)} more single puts so that the leader's log is compacted past the last file`)
    await g.preload("scale.topup", topUp, options.valueSize, options.concurrency).catch((e: unknown) => {
      r.findings.push(`top-up puts before the wipe: ${errorText(e)}`)
    })
    r.keysStored += topUp
    while (
      !c.eventsSince(topUpSince, "log compacted").some((e) => e.process === `consensus-${leader}`) &&
      performance.now() - topUpSince < 60_000
    )
      await sleep(250)
    r.catchUp = await wipedCatchUp(c, r.keysStored, options.stepTimeoutMs)
    r.rss.end = c.rss()
    for (const s of r.restarts) if (s.error !== null) r.findings.push(`restart ${s.label}: ${s.error}`)
    if (r.catchUp.error !== null) r.findings.push(`catch-up: ${r.catchUp.error}`)
    for (const s of r.snapshots)
      if (s.error !== null) r.findings.push(`snapshot (${s.label}): ${s.error.slice(0, 400)}`)
    for (const s of r.restarts)
      if (s.snapshotsWrittenWhileStopping.length > 0)
        r.findings.push(
          `restart ${s.label}: SIGTERM took ${f(s.stopMs, 0)} ms: ${s.node} was writing a snapshot (${s.snapshotsWrittenWhileStopping.map((t) => `index ${t.index}, ${t.ms} ms`).join("; ")}) and exited only after it`,
        )
    const cu = r.catchUp
    if (cu.error === null && cu.caughtUpMs - cu.healthOkMs > 1000)
      r.findings.push(
        `catch-up: ${cu.node}'s health said ok ${f(cu.healthOkMs, 0)} ms after the spawn, ${f(cu.caughtUpMs - cu.healthOkMs, 0)} ms before its applied index reached the commit index: health ok does not mean caught up`,
      )
  } catch (e) {
    failed = true
    r.findings.push(`run failed: ${errorText(e)}`)
    say(`failed: ${errorText(e)}`)
  } finally {
    await generator?.close().catch(() => undefined)
    if (cluster !== null) {
      r.snapshotLines = cluster.events
        .filter((e) => /snapshot|compacted/.test(e.msg))
        .map((e) => ({ ...snapLine(e), msg: e.msg }))
      // A snapshot is being written from (finish - ms) to its "snapshot taken" line.
      for (const p of r.puts)
        p.snapshotsOverlapping = r.snapshotLines.filter(
          (t) => WORK.has(t.msg) && t.atS >= p.windowS[0] && t.atS - (t.ms ?? 0) / 1000 <= p.windowS[1],
        )
      const byKey = new Map<
        string,
        { process: string; level: unknown; msg: string; count: number; first: string }
      >()
      for (const p of cluster.problems) {
        const key = `${p.process}\u0000${p.msg}`
        const seen = byKey.get(key)
        if (seen !== undefined) seen.count++
        else
          byKey.set(key, {
            process: p.process,
            level: p.fields.level,
            msg: p.msg,
            count: 1,
            first: JSON.stringify(p.fields),
          })
      }
      r.problems = [...byKey.values()]
      say("stopping ekv")
      await cluster.stop().catch((e) => say(`stop: ${errorText(e)}`))
    }
  }
  r.loadAverageEnd = load()
  r.totalSeconds = (performance.now() - t0) / 1000
  console.log("")
  console.log(format(r))
  writeJson(jsonPath, r)
  console.log(`\nscale: results written to ${jsonPath}`)
  // A step that failed (restart, catch-up, snapshot) keeps the logs for its evidence too.
  const stepFailed =
    r.restarts.some((x) => x.error !== null) ||
    (r.catchUp?.error ?? null) !== null ||
    (r.load?.stoppedEarly ?? null) !== null
  if (options.keep || failed || stepFailed)
    say(`kept ${runDir} (data and logs in ${join(runDir, "ekv", "logs")})`)
  else rmSync(runDir, { recursive: true, force: true })
}

process.once("exit", () => {
  generator?.kill()
  cluster?.killAll()
})
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    say(`${signal}: stopping`)
    void (async () => {
      generator?.kill()
      await cluster?.stop().catch(() => undefined)
      process.exit(130)
    })()
  })
}

await main()
