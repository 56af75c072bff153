// Deterministic simulation of the Raft core under faults (test/sim/cluster.ts):
// every seed runs a randomized fault schedule and checks every safety property
// after every scheduler decision, then heals everything and requires progress.
// A failure prints the seed, the violated invariant, the last decisions and the
// command that replays the seed with its full trace.

import { describe, expect, it } from "vitest"
import { optionsForSeed, runSeed } from "../../sim/cluster.ts"

const SEEDS = Number(process.env.EKV_SIM_SEEDS ?? 5000)
const START = Number(process.env.EKV_SIM_START ?? 0)
const CHUNK = 500

describe(`raft simulation: ${SEEDS} seeds from ${START}, safety after every step, liveness after healing`, () => {
  for (let from = START; from < START + SEEDS; from += CHUNK) {
    const to = Math.min(from + CHUNK, START + SEEDS)
    it(`seeds ${from}..${to - 1}`, { timeout: 600_000 }, () => {
      const failures: string[] = []
      const t0 = performance.now()
      for (let seed = from; seed < to; seed++) {
        const r = runSeed(optionsForSeed(seed))
        if (r.ok) continue
        const f = r.failure
        failures.push(
          [
            `seed ${f.seed}: ${f.invariant.split("\n")[0]}`,
            `  replay: node scripts/sim.ts --seed ${f.seed} --trace`,
            ...f.trace.slice(-40).map((l) => `    ${l}`),
          ].join("\n"),
        )
        if (failures.length >= 3) break
      }
      const secs = (performance.now() - t0) / 1000
      console.log(`raft simulation: seeds ${from}..${to - 1} in ${secs.toFixed(1)}s`)
      expect(failures, failures.join("\n\n")).toEqual([])
    })
  }
})
