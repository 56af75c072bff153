// The benchmark's output: machine facts, one table per target, the ekv/etcd
// and ekv/NATS-KV ratios, each target's durability, and a JSON file.
import { spawnSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, freemem, loadavg, release, totalmem } from "node:os"
import { dirname } from "node:path"
import { CLIENT_BOUND_SHARE, type RunResult } from "./loadgen.ts"
import type { TargetName } from "./targets/target.ts"
import { versionLine } from "./targets/target.ts"

export interface MachineInfo {
  readonly cpuModel: string
  readonly cores: number
  readonly memoryGiB: number
  readonly freeMemoryGiB: number
  readonly kernel: string
  readonly node: string
  readonly etcd: string
  readonly natsServer: string
  readonly gitCommit: string
  /** 1/5/15-minute load averages when the run started: a busy machine skews everything. */
  readonly loadAverage: ReadonlyArray<number>
  readonly tmpFilesystem: string
}

export const machineInfo = (dir: string): MachineInfo => {
  const gib = (b: number) => Math.round((b / 2 ** 30) * 10) / 10
  const fs = spawnSync("df", ["-hT", dir], { encoding: "utf8" }).stdout?.trim().split("\n")[1] ?? "unknown"
  return {
    cpuModel: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGiB: gib(totalmem()),
    freeMemoryGiB: gib(freemem()),
    kernel: release(),
    node: process.version,
    etcd: versionLine("etcd", ["--version"], "not installed"),
    natsServer: versionLine("nats-server", ["--version"], "not installed"),
    gitCommit: versionLine("git", ["rev-parse", "HEAD"]),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
    tmpFilesystem: fs.replace(/\s+/g, " "),
  }
}

export interface TargetResult {
  readonly name: TargetName
  /** "ok", or "unavailable: <reason>" / "failed: <reason>". */
  readonly status: string
  readonly description?: string
  readonly durability?: string
  readonly version?: string
  readonly facts?: Readonly<Record<string, string>>
  readonly runs: ReadonlyArray<PointResult>
}

/** One measured point; over several rounds, the round with the median ops/s. */
export interface PointResult extends RunResult {
  /** With --rounds: every round's ops/s for this point, in round order. */
  readonly roundsOpsPerSec?: ReadonlyArray<number>
}

/** One pass over the targets: the unit a ratio is taken within. */
export interface Round {
  readonly targets: ReadonlyArray<TargetResult>
  readonly ratios: ReadonlyArray<Ratio>
}

export interface BenchResults {
  readonly startedAt: string
  readonly options: Readonly<Record<string, unknown>>
  readonly machine: MachineInfo
  readonly targets: ReadonlyArray<TargetResult>
  readonly ratios: ReadonlyArray<Ratio>
  /** With --rounds above 1: each round as measured; `targets` and `ratios` are their medians. */
  readonly rounds?: ReadonlyArray<Round>
}

/** What an ekv target is compared with: a peer, or the plaintext phase (what encryption costs). */
export type Baseline = "etcd" | "nats-kv" | "ekv-plaintext"

export interface Ratio {
  readonly ekv: TargetName
  readonly peer: Baseline
  readonly op: "put" | "get"
  readonly valueSize: number
  readonly concurrency: number
  /** ekv ops/s ÷ peer ops/s. */
  readonly throughput: number
  /** ekv p99 ÷ peer p99. */
  readonly p99: number
  /** With --rounds: the lowest and highest of the rounds' throughput ratios (`throughput` is their median). */
  readonly throughputRange?: readonly [number, number]
}

const sameRun = (a: RunResult, b: RunResult) =>
  a.op === b.op && a.valueSize === b.valueSize && a.concurrency === b.concurrency

/** The baselines each ekv target is compared with: both peers, and plaintext for an encrypted phase. */
const baselinesOf = (name: TargetName): ReadonlyArray<Baseline> =>
  name === "ekv-plaintext" ? ["etcd", "nats-kv"] : ["etcd", "nats-kv", "ekv-plaintext"]

/** Every ratio the targets of one round allow: each ekv target against each baseline measured beside it. */
export const ratios = (targets: ReadonlyArray<TargetResult>): Ratio[] => {
  const out: Ratio[] = []
  for (const t of targets) {
    if (!t.name.startsWith("ekv")) continue
    for (const peerName of baselinesOf(t.name)) {
      const peer = targets.find((p) => p.name === peerName)
      if (peer === undefined) continue
      for (const r of t.runs) {
        const p = peer.runs.find((x) => sameRun(x, r))
        if (p === undefined) continue
        out.push({
          ekv: t.name,
          peer: peerName,
          op: r.op,
          valueSize: r.valueSize,
          concurrency: r.concurrency,
          throughput: p.opsPerSec > 0 ? r.opsPerSec / p.opsPerSec : Number.NaN,
          p99: p.p99 > 0 ? r.p99 / p.p99 : Number.NaN,
        })
      }
    }
  }
  return out
}

/** The lower median: a value that was measured (the lower of the middle two for an even count). */
export const lowerMedian = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)] ?? Number.NaN
}

/** Groups values by a string key, keeping the order in which keys first appear. */
const groupBy = <A>(items: ReadonlyArray<A>, key: (a: A) => string): A[][] => {
  const groups = new Map<string, A[]>()
  for (const a of items) {
    const k = key(a)
    const group = groups.get(k)
    if (group === undefined) groups.set(k, [a])
    else group.push(a)
  }
  return [...groups.values()]
}

const pointKey = (r: Pick<RunResult, "op" | "valueSize" | "concurrency">): string =>
  `${r.op}/${r.valueSize}/${r.concurrency}`

/**
 * Each target over several rounds: per point, the round whose ops/s is the
 * median (so its latencies and CPU are one consistent measurement), with every
 * round's ops/s beside it. A target's status is its first round's that was not ok.
 */
export const medianTargets = (rounds: ReadonlyArray<Round>): TargetResult[] =>
  groupBy(
    rounds.flatMap((r) => r.targets),
    (t) => t.name,
  ).map((perRound) => {
    const first = perRound[0] as TargetResult
    const runs = groupBy(
      perRound.flatMap((t) => t.runs),
      pointKey,
    ).map((point): PointResult => {
      const median = lowerMedian(point.map((r) => r.opsPerSec))
      const chosen = point.find((r) => r.opsPerSec === median) ?? (point[0] as RunResult)
      return { ...chosen, roundsOpsPerSec: point.map((r) => r.opsPerSec) }
    })
    return { ...first, status: perRound.find((t) => t.status !== "ok")?.status ?? first.status, runs }
  })

/** Each ratio over several rounds: the median of the rounds' ratios (each taken within one round), with their range. */
export const medianRatios = (rounds: ReadonlyArray<Round>): Ratio[] =>
  groupBy(
    rounds.flatMap((r) => r.ratios),
    (r) => `${r.ekv}/${r.peer}/${pointKey(r)}`,
  ).map((perRound) => {
    const throughputs = perRound.map((r) => r.throughput).filter(Number.isFinite)
    return {
      ...(perRound[0] as Ratio),
      throughput: lowerMedian(throughputs),
      p99: lowerMedian(perRound.map((r) => r.p99).filter(Number.isFinite)),
      throughputRange: [Math.min(...throughputs), Math.max(...throughputs)] as const,
    }
  })

const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : "-")

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ")
  return [line(header), ...rows.map(line)].join("\n")
}

export const runHeader = [
  "op",
  "value",
  "conc",
  "procs",
  "ops/s",
  "p50 ms",
  "p99 ms",
  "p999 ms",
  "errors",
  "client µs/op",
  "client max core",
  "server µs/op",
]

export const runRow = (r: PointResult): string[] => [
  r.op,
  `${r.valueSize} B`,
  String(r.concurrency),
  String(r.workers),
  fmt(r.opsPerSec, 0),
  fmt(r.p50, 2),
  fmt(r.p99, 2),
  fmt(r.p999, 2),
  String(r.errors),
  fmt(r.clientCpuUsPerOp, 0),
  `${fmt(r.clientCpuMaxShare * 100, 0)}%${r.clientCpuMaxShare > CLIENT_BOUND_SHARE ? " (client-bound?)" : ""}`,
  fmt(r.serverCpuUsPerOp, 0),
  ...(r.roundsOpsPerSec === undefined ? [] : [r.roundsOpsPerSec.map((n) => fmt(n, 0)).join(" / ")]),
]

export const formatMachine = (m: MachineInfo): string =>
  [
    `machine  ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB (${m.freeMemoryGiB} free), Linux ${m.kernel}`,
    `         node ${m.node}; ${m.etcd}; ${m.natsServer}; ekv ${m.gitCommit.slice(0, 12)}`,
    `         load average ${m.loadAverage.join(" ")} at start; run directory on ${m.tmpFilesystem}`,
  ].join("\n")

export const formatTarget = (t: TargetResult): string => {
  const head = [`== ${t.name}: ${t.status}`]
  if (t.description !== undefined) head.push(`   ${t.description}`)
  if (t.version !== undefined) head.push(`   version: ${t.version}`)
  if (t.durability !== undefined) head.push(`   durability: ${t.durability}`)
  for (const [k, v] of Object.entries(t.facts ?? {})) head.push(`   ${k}: ${v}`)
  const header = t.runs.some((r) => r.roundsOpsPerSec !== undefined)
    ? [...runHeader, "ops/s by round"]
    : runHeader
  if (t.runs.length > 0) head.push(table(header, t.runs.map(runRow)))
  for (const r of t.runs) {
    if (r.firstError !== null) head.push(`   first error (${r.op} c=${r.concurrency}): ${r.firstError}`)
  }
  return head.join("\n")
}

const formatRange = (r: Ratio): string =>
  r.throughputRange === undefined ? "" : `${fmt(r.throughputRange[0], 2)}–${fmt(r.throughputRange[1], 2)}`

export const formatRatios = (rs: ReadonlyArray<Ratio>): string => {
  if (rs.length === 0)
    return "ratios: none (needs an ekv target and etcd, nats-kv or ekv-plaintext in the same run)"
  const rounds = rs.some((r) => r.throughputRange !== undefined)
  return [
    "== ratios (ekv ÷ baseline; throughput > 1 means ekv is faster, p99 < 1 means ekv's tail is shorter;",
    "   against ekv-plaintext: what that encryption phase costs)",
    ...(rounds
      ? ["   over rounds: the median of the rounds' ratios, each taken within one round, and their range"]
      : []),
    table(
      [
        "ekv",
        "baseline",
        "op",
        "value",
        "conc",
        "ops/s ratio",
        "p99 ratio",
        ...(rounds ? ["ops/s range"] : []),
      ],
      rs.map((r) => [
        r.ekv,
        r.peer,
        r.op,
        `${r.valueSize} B`,
        String(r.concurrency),
        fmt(r.throughput, 2),
        fmt(r.p99, 2),
        ...(rounds ? [formatRange(r)] : []),
      ]),
    ),
  ].join("\n")
}

export const formatDurability = (targets: ReadonlyArray<TargetResult>): string =>
  [
    "== durability of an acknowledged write",
    ...targets.filter((t) => t.durability !== undefined).map((t) => `${t.name.padEnd(14)} ${t.durability}`),
  ].join("\n")

export const writeJson = (path: string, results: BenchResults): void => {
  mkdirSync(dirname(path), { recursive: true })
  // NaN is not JSON: it becomes null.
  writeFileSync(
    path,
    `${JSON.stringify(results, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2)}\n`,
  )
}
