import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  checkHistory,
  injectAnomaly,
  renderResult,
  simulateHistory,
  toOperations,
} from "../../src/linearizability/mod.ts"

// Workload shapes the checker must handle quickly: many keys or few, some
// concurrency, timeouts and failures, batches over small key groups (batches
// join the keys they touch into one partition; see model.ts).
const workload = fc.record({
  seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  ops: fc.integer({ min: 50, max: 1500 }),
  processes: fc.integer({ min: 1, max: 8 }),
  keys: fc.integer({ min: 1, max: 40 }),
  batchRatio: fc.constantFrom(0, 0.05, 0.15),
  batchGroup: fc.integer({ min: 2, max: 3 }),
  infoRatio: fc.constantFrom(0, 0.02, 0.05),
  failRatio: fc.constantFrom(0, 0.02),
})

describe("linearizability checker: generated histories", () => {
  it("a history simulated from a sequential map with random concurrency is linearizable", () => {
    fc.assert(
      fc.property(workload, (w) => {
        const r = checkHistory(simulateHistory(w), { timeoutMs: 10_000 })
        if (r.verdict !== "ok") throw new Error(`${JSON.stringify(w)}\n${renderResult(r)}`)
      }),
      { numRuns: 40, seed: 20261122 },
    )
  })

  it("the same history with one injected anomaly is not linearizable", () => {
    fc.assert(
      fc.property(workload, fc.integer({ min: 0, max: 1000 }), (w, s) => {
        const h = simulateHistory({ ...w, ops: Math.max(w.ops, 100) })
        if (!toOperations(h).some((o) => o.input.f === "get" && o.output !== undefined)) return
        const bad = injectAnomaly(h, s)
        const r = checkHistory(bad.history, { timeoutMs: 10_000, shrinkMs: 1000 })
        if (r.verdict !== "illegal")
          throw new Error(`${JSON.stringify(w)} ${bad.description}\n${renderResult(r)}`)
        expect(r.counterexample).toBeDefined()
        // A stale read needs the write it saw, one overwrite and the read (more only when the budget ran out).
        if (r.counterexample?.minimal) expect(r.counterexample.ops.length).toBeLessThanOrEqual(4)
      }),
      { numRuns: 40, seed: 20261123 },
    )
  })

  it("measures checking speed on 2k-op histories", () => {
    const shapes = [
      { name: "50 keys, 8 clients, batches over 3-key groups", keys: 50, processes: 8, batchGroup: 3 },
      { name: "10 keys all joined by batches, 8 clients", keys: 10, processes: 8 },
      { name: "1 key, 8 clients, no timeouts", keys: 1, processes: 8, batchRatio: 0, infoRatio: 0 },
    ]
    for (const s of shapes) {
      const h = simulateHistory({ ops: 2000, seed: 7, ...s })
      const r = checkHistory(h, { timeoutMs: 60_000 })
      expect(r.verdict).toBe("ok")
      const bad = checkHistory(injectAnomaly(h, 1).history, { timeoutMs: 60_000, shrink: false })
      expect(bad.verdict).toBe("illegal")
      console.log(
        `checker, ${s.name}: linearizable ${r.ops} ops in ${r.elapsedMs.toFixed(0)} ms (${Math.round((r.ops / r.elapsedMs) * 1000)} ops/s, ${r.steps} steps); with a stale read: illegal in ${bad.elapsedMs.toFixed(0)} ms`,
      )
    }
  })
})
