// CI-sized nemesis runs (docs/reliability.md): three fixed seeds against a real
// three-node system on a three-server NATS cluster, each with its own fault
// mix, every fault of the mix at least once. Each run checks linearizability
// (with a final read of every key), no halted node after healing, identical
// state machines at the same applied index, every envelope opening, no
// (key_id, nonce) reuse, identical registry rows and sidecars. A failing run
// prints its seed, the saved history and the kept system directory.
//
// Longer runs: scripts/nemesis.ts --seed S --duration 10m --faults ...
import { describe, expect, it } from "vitest"
import { type FaultName, renderReport, runNemesis } from "../../src/nemesis/mod.ts"

const DURATION_MS = Number(process.env.EKV_NEMESIS_CI_MS ?? 30_000)

const RUNS: { seed: number; faults: FaultName[] }[] = [
  { seed: 1001, faults: ["kill", "pause", "partition", "keystore"] },
  { seed: 2002, faults: ["rotate", "corrupt", "member", "transfer"] },
  { seed: 3003, faults: ["partition", "keystore", "rotate", "corrupt", "kill"] },
]

describe("nemesis (CI-sized)", () => {
  for (const run of RUNS)
    it(`seed ${run.seed}: ${run.faults.join(",")}`, { timeout: 240_000 }, async () => {
      const r = await runNemesis({ seed: run.seed, durationMs: DURATION_MS, faults: run.faults })
      const text = renderReport(r)
      if (r.failures.length > 0) console.error(`nemesis FAILED, seed ${r.seed}\n${text}`)
      else console.log(text)
      expect(r.failures, `seed ${r.seed}; history ${r.historyFile}`).toEqual([])
      expect(r.ops.ok).toBeGreaterThan(100)
      expect(r.verdict).not.toBe("illegal")
    })
})
