// The benchmark's arithmetic over targets and rounds (scripts/bench/report.ts):
// which ratios a round yields, and how several rounds become one report.
import { describe, expect, it } from "vitest"
import type { RunResult } from "../../../scripts/bench/loadgen.ts"
import {
  lowerMedian,
  medianRatios,
  medianTargets,
  type Round,
  ratios,
  type TargetResult,
} from "../../../scripts/bench/report.ts"
import type { TargetName } from "../../../scripts/bench/targets/target.ts"

const run = (concurrency: number, opsPerSec: number, p99: number): RunResult => ({
  op: "put",
  concurrency,
  valueSize: 256,
  workers: 1,
  ops: opsPerSec * 8,
  errors: 0,
  firstError: null,
  seconds: 8,
  opsPerSec,
  p50: p99 / 4,
  p99,
  p999: p99 * 2,
  max: p99 * 3,
  clientCpuUsPerOp: 30,
  clientCpuMaxShare: 0.2,
  serverCpuUsPerOp: 1_000_000 / opsPerSec,
  serverCpuUsPerOpByProcess: {},
})

const target = (name: TargetName, runs: ReadonlyArray<RunResult>, status = "ok"): TargetResult => ({
  name,
  status,
  runs,
})

const round = (targets: ReadonlyArray<TargetResult>): Round => ({ targets, ratios: ratios(targets) })

const find = (rs: ReturnType<typeof ratios>, ekv: string, peer: string, concurrency: number) =>
  rs.find((r) => r.ekv === ekv && r.peer === peer && r.concurrency === concurrency)

describe("ratios within one round", () => {
  const targets = [
    target("etcd", [run(64, 2000, 100)]),
    target("ekv-plaintext", [run(64, 10_000, 30), run(256, 14_000, 80)]),
    target("ekv-raft", [run(64, 9000, 33), run(256, 12_600, 90)]),
  ]
  const rs = ratios(targets)

  it("compares an encrypted phase with the plaintext phase measured beside it", () => {
    expect(find(rs, "ekv-raft", "ekv-plaintext", 64)?.throughput).toBeCloseTo(0.9, 10)
    expect(find(rs, "ekv-raft", "ekv-plaintext", 256)?.throughput).toBeCloseTo(0.9, 10)
    expect(find(rs, "ekv-raft", "ekv-plaintext", 256)?.p99).toBeCloseTo(90 / 80, 10)
  })

  it("compares every ekv phase with each peer, only at the points both measured", () => {
    expect(find(rs, "ekv-plaintext", "etcd", 64)?.throughput).toBeCloseTo(5, 10)
    expect(find(rs, "ekv-raft", "etcd", 64)?.throughput).toBeCloseTo(4.5, 10)
    expect(find(rs, "ekv-raft", "etcd", 256)).toBeUndefined()
    expect(rs.some((r) => r.peer === "nats-kv")).toBe(false)
  })

  it("does not compare plaintext with itself", () => {
    expect(rs.filter((r) => r.ekv === "ekv-plaintext").map((r) => r.peer)).toEqual(["etcd"])
  })
})

describe("lowerMedian", () => {
  it("is a measured value: the middle one, or the lower of the middle two", () => {
    expect(lowerMedian([3, 1, 2])).toBe(2)
    expect(lowerMedian([4, 1, 3, 2])).toBe(2)
    expect(lowerMedian([7])).toBe(7)
    expect(lowerMedian([])).toBeNaN()
  })
})

describe("several rounds", () => {
  const rounds = [
    round([target("ekv-plaintext", [run(64, 10_000, 30)]), target("ekv-raft", [run(64, 8_000, 40)])]),
    round([target("ekv-plaintext", [run(64, 8_000, 35)]), target("ekv-raft", [run(64, 7_600, 41)])]),
    round([target("ekv-plaintext", [run(64, 12_000, 25)]), target("ekv-raft", [run(64, 11_000, 28)])]),
  ]

  it("reports each point as the median round, whole, with every round's ops/s", () => {
    const [plaintext, raft] = medianTargets(rounds)
    expect(plaintext?.runs[0]?.opsPerSec).toBe(10_000)
    // the same round's latency, not a median of latencies from different rounds
    expect(plaintext?.runs[0]?.p99).toBe(30)
    expect(plaintext?.runs[0]?.roundsOpsPerSec).toEqual([10_000, 8_000, 12_000])
    expect(raft?.runs[0]?.opsPerSec).toBe(8_000)
    expect(raft?.runs[0]?.p99).toBe(40)
  })

  it("takes the median of the ratios measured within each round, not the ratio of the medians", () => {
    const raft = find(medianRatios(rounds), "ekv-raft", "ekv-plaintext", 64)
    // per round 0.80, 0.95, 0.9166…; the ratio of the medians would be 0.80
    expect(raft?.throughput).toBeCloseTo(11_000 / 12_000, 10)
    expect(raft?.throughputRange?.[0]).toBeCloseTo(0.8, 10)
    expect(raft?.throughputRange?.[1]).toBeCloseTo(0.95, 10)
  })

  it("keeps a round's failure visible in the target's status", () => {
    const failed = [
      ...rounds.slice(0, 2),
      round([target("ekv-plaintext", [run(64, 9_000, 30)]), target("ekv-raft", [], "failed: boom")]),
    ]
    const [plaintext, raft] = medianTargets(failed)
    expect(plaintext?.status).toBe("ok")
    expect(raft?.status).toBe("failed: boom")
    expect(raft?.runs[0]?.roundsOpsPerSec).toEqual([8_000, 7_600])
  })
})
