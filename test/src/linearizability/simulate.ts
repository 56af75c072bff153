// Synthetic histories for testing the checker: concurrent clients whose ops
// take effect at a random point inside their [call, ret] interval against a
// sequential map, so the result is linearizable by construction — and a way
// to inject one anomaly that makes it provably not linearizable.
import type { History, HistoryEvent, KvBatchItem, KvInput, KvOutput } from "./history.ts"

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export const seededRandom = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export interface SimulationOptions {
  readonly ops: number
  readonly processes: number
  readonly keys: number
  readonly seed: number
  /** Share of ops that are 2–3 key batches (default 0.1). */
  readonly batchRatio?: number
  /**
   * Batches draw their keys from one group of this many consecutive keys
   * (default: all keys). Batches join the keys they touch into one partition,
   * so small groups keep partitions small.
   */
  readonly batchGroup?: number
  /** Share of writes whose outcome is unknown (info); half of them take effect (default 0.05). */
  readonly infoRatio?: number
  /** Share of writes that definitely fail and take no effect (default 0.02). */
  readonly failRatio?: number
}

interface SimOp {
  readonly id: number
  readonly process: string
  readonly input: KvInput
  readonly call: number
  readonly lin: number
  readonly ret: number
  readonly outcome: "ok" | "info-applied" | "info-lost" | "fail"
  output?: KvOutput
}

/** A linearizable history by construction. */
export const simulateHistory = (o: SimulationOptions): History => {
  const rng = seededRandom(o.seed)
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rng() * xs.length)] as A
  const keys = Array.from({ length: o.keys }, (_, i) => `k${i}`)
  const clocks = new Array<number>(o.processes).fill(0)
  const ops: SimOp[] = []
  for (let id = 0; id < o.ops; id++) {
    const p = Math.floor(rng() * o.processes)
    const call = (clocks[p] as number) + rng() * 2
    const lin = call + rng() * 5
    const ret = lin + rng() * 5
    const r = rng()
    let input: KvInput
    if (r < (o.batchRatio ?? 0.1)) {
      const n = 2 + Math.floor(rng() * 2)
      const items: KvBatchItem[] = []
      const size = Math.min(o.batchGroup ?? keys.length, keys.length)
      const first = Math.floor(Math.floor(rng() * keys.length) / size) * size
      const group = keys.slice(first, first + size)
      for (let j = 0; j < n; j++)
        items.push(
          rng() < 0.8
            ? { op: "put", key: pick(group), value: `v${id}.${j}` }
            : { op: "delete", key: pick(group) },
        )
      input = { f: "batch", ops: items }
    } else if (r < 0.45) input = { f: "get", key: pick(keys) }
    else if (r < 0.85) input = { f: "put", key: pick(keys), value: `v${id}` }
    else input = { f: "delete", key: pick(keys) }
    const w = rng()
    const outcome: SimOp["outcome"] =
      input.f === "get"
        ? "ok"
        : w < (o.failRatio ?? 0.02)
          ? "fail"
          : w < (o.failRatio ?? 0.02) + (o.infoRatio ?? 0.05)
            ? rng() < 0.5
              ? "info-applied"
              : "info-lost"
            : "ok"
    ops.push({ id, process: `p${p}`, input, call, lin, ret, outcome })
    clocks[p] = outcome === "ok" ? ret : call + rng()
  }
  const state = new Map<string, string>()
  for (const op of [...ops].sort((a, b) => a.lin - b.lin)) {
    if (op.outcome === "fail" || op.outcome === "info-lost") continue
    const inp = op.input
    switch (inp.f) {
      case "get": {
        const v = state.get(inp.key)
        op.output = v === undefined ? { f: "get", found: false } : { f: "get", found: true, value: v }
        break
      }
      case "put":
        state.set(inp.key, inp.value)
        op.output = { f: "put" }
        break
      case "delete":
        op.output = { f: "delete", deleted: state.delete(inp.key) }
        break
      case "batch":
        for (const b of inp.ops) b.op === "put" ? state.set(b.key, b.value) : state.delete(b.key)
        op.output = { f: "batch" }
        break
    }
  }
  const events: Array<HistoryEvent & { readonly seq: number }> = []
  for (const op of ops) {
    events.push({ type: "invoke", id: op.id, process: op.process, time: op.call, input: op.input, seq: 0 })
    if (op.outcome === "ok")
      events.push({ type: "ok", id: op.id, time: op.ret, output: op.output as KvOutput, seq: 1 })
    else if (op.outcome === "fail")
      events.push({ type: "fail", id: op.id, time: op.ret, error: "InvalidArgument", seq: 1 })
    else events.push({ type: "info", id: op.id, time: op.ret, error: "timeout", seq: 1 })
  }
  events.sort((a, b) => a.time - b.time || a.seq - b.seq)
  return { version: 1, events: events.map(({ seq: _, ...e }) => e as HistoryEvent) }
}

/**
 * Rewrites one acknowledged get so the history is provably not linearizable:
 * a stale read (the value of a write w that a later write w2 on the key
 * overwrote, where w2 returned before the get was invoked), or, when the
 * history has no such triple, a read of a value nobody wrote.
 */
export const injectAnomaly = (history: History, seed: number): { history: History; description: string } => {
  const rng = seededRandom(seed)
  type Done = { call: number; ret: number; input: KvInput; id: number }
  const calls = new Map<number, { time: number; input: KvInput }>()
  const done: Done[] = []
  for (const e of history.events) {
    if (e.type === "invoke") calls.set(e.id, { time: e.time, input: e.input })
    else if (e.type === "ok") {
      const c = calls.get(e.id)
      if (c !== undefined) done.push({ call: c.time, ret: e.time, input: c.input, id: e.id })
    }
  }
  const writesOf = (d: Done, key: string): Array<string | null> => {
    const i = d.input
    if (i.f === "put" && i.key === key) return [i.value]
    if (i.f === "delete" && i.key === key) return [null]
    if (i.f === "batch")
      return i.ops.filter((o) => o.key === key).map((o) => (o.op === "put" ? o.value : null))
    return []
  }
  const gets = done.filter((d) => d.input.f === "get")
  const start = Math.floor(rng() * Math.max(1, gets.length))
  for (let n = 0; n < gets.length; n++) {
    const g = gets[(start + n) % gets.length] as Done
    const key = (g.input as { key: string }).key
    // A put w (last write of its value on key) and a later write w2 on key, both acknowledged.
    for (const w of done) {
      const wv = writesOf(w, key)
      const value = wv[wv.length - 1]
      if (value === undefined || value === null) continue
      const w2 = done.find((x) => x !== w && x.call > w.ret && x.ret < g.call && writesOf(x, key).length > 0)
      if (w2 === undefined) continue
      const description = `stale read: get #${g.id} of ${key} returns ${value} (written by #${w.id}), overwritten by #${w2.id} before the get began`
      return { history: rewriteGet(history, g.id, value), description }
    }
  }
  const g = gets[start]
  if (g === undefined) throw new Error("no acknowledged get to corrupt")
  return {
    history: rewriteGet(history, g.id, "never-written"),
    description: `get #${g.id} returns a value never written`,
  }
}

const rewriteGet = (history: History, id: number, value: string): History => ({
  version: 1,
  events: history.events.map((e) =>
    e.type === "ok" && e.id === id ? { ...e, output: { f: "get" as const, found: true, value } } : e,
  ),
})
