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
  readonly runs: ReadonlyArray<RunResult>
}

export interface BenchResults {
  readonly startedAt: string
  readonly options: Readonly<Record<string, unknown>>
  readonly machine: MachineInfo
  readonly targets: ReadonlyArray<TargetResult>
  readonly ratios: ReadonlyArray<Ratio>
}

export interface Ratio {
  readonly ekv: TargetName
  readonly peer: "etcd" | "nats-kv"
  readonly op: "put" | "get"
  readonly valueSize: number
  readonly concurrency: number
  /** ekv ops/s ÷ peer ops/s. */
  readonly throughput: number
  /** ekv p99 ÷ peer p99. */
  readonly p99: number
}

const sameRun = (a: RunResult, b: RunResult) =>
  a.op === b.op && a.valueSize === b.valueSize && a.concurrency === b.concurrency

export const ratios = (targets: ReadonlyArray<TargetResult>): Ratio[] => {
  const out: Ratio[] = []
  for (const t of targets) {
    if (!t.name.startsWith("ekv")) continue
    for (const peerName of ["etcd", "nats-kv"] as const) {
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

export const runRow = (r: RunResult): string[] => [
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
  if (t.runs.length > 0) head.push(table(runHeader, t.runs.map(runRow)))
  for (const r of t.runs) {
    if (r.firstError !== null) head.push(`   first error (${r.op} c=${r.concurrency}): ${r.firstError}`)
  }
  return head.join("\n")
}

export const formatRatios = (rs: ReadonlyArray<Ratio>): string => {
  if (rs.length === 0) return "ratios: none (needs an ekv target and etcd or nats-kv in the same run)"
  return [
    "== ratios (ekv ÷ peer; throughput > 1 means ekv is faster, p99 < 1 means ekv's tail is shorter)",
    table(
      ["ekv", "peer", "op", "value", "conc", "ops/s ratio", "p99 ratio"],
      rs.map((r) => [
        r.ekv,
        r.peer,
        r.op,
        `${r.valueSize} B`,
        String(r.concurrency),
        fmt(r.throughput, 2),
        fmt(r.p99, 2),
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
