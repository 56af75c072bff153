// Linearizability checking (Wing & Gong's search with Lowe's memoization, as
// in Porcupine): walk the time-ordered list of call and return entries; at a
// call, try to linearize that op now (step the model, then remove its call
// and return from the list); at a return whose op is still in the list, no
// choice made so far works, so backtrack. A (linearized set, state) pair that
// was already explored is never explored again. Time-bounded: running out of
// time is the verdict `unknown`, never `illegal`.
import { type History, keysOf, type Operation, toOperations } from "./history.ts"
import {
  ABSENT,
  type InternedOp,
  type InternedPartition,
  internPartition,
  type KvPartition,
  kvModel,
  type Model,
  partitionByKey,
} from "./model.ts"

export const Verdict = { ok: "ok", illegal: "illegal", unknown: "unknown" } as const
export type Verdict = (typeof Verdict)[keyof typeof Verdict]

/** A call to search over: `known` false means an `info` op (return at +Infinity, any output). */
export interface SearchOp<I> {
  readonly input: I
  readonly call: number
  readonly ret: number
  readonly known: boolean
  /**
   * Symmetry reduction: linearize this op only once op `after` is. For info
   * ops with the same effect, ordered by call time: any linearization using a
   * later one where an earlier one is still free can swap them.
   */
  readonly after?: number
}

export interface SearchResult {
  readonly verdict: Verdict
  /** Model steps attempted. */
  readonly steps: number
  /**
   * For `illegal`: the deepest partial linearization reached (op indexes in
   * linearization order), the op whose return could not be passed there, and
   * the ops invoked before that return and not linearized.
   */
  readonly partial?: { readonly order: number[]; readonly stuck: number; readonly pending: number[] }
}

// Deterministic per-op random words for an incrementally updated set hash (Zobrist).
const zobrist = (n: number): Uint32Array => {
  const z = new Uint32Array(n)
  let x = 0x9e3779b9
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    z[i] = x >>> 0
  }
  return z
}

const sameBits = (a: Uint32Array, b: Uint32Array): boolean => {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * Searches for a linearization of `ops` under `model`. `deadline` is a
 * `performance.now()` time.
 */
export const searchLinearization = <I, S>(
  model: Model<I, true, S>,
  ops: ReadonlyArray<SearchOp<I>>,
  deadline: number,
): SearchResult => {
  const n = ops.length
  if (n === 0) return { verdict: Verdict.ok, steps: 0 }
  // Entry e: 2i = call of op i, 2i+1 = its return. HEAD is a sentinel.
  const HEAD = 2 * n
  const order: number[] = []
  for (let i = 0; i < n; i++) order.push(2 * i, 2 * i + 1)
  const time = (e: number): number => {
    const op = ops[e >> 1] as SearchOp<I>
    return e & 1 ? op.ret : op.call
  }
  // By time; at equal times calls first (they are then concurrent), then by op.
  order.sort((a, b) => time(a) - time(b) || (a & 1) - (b & 1) || a - b)
  const next = new Int32Array(2 * n + 1).fill(-1)
  const prev = new Int32Array(2 * n + 1).fill(-1)
  let last = HEAD
  for (const e of order) {
    next[last] = e
    prev[e] = last
    last = e
  }
  const lift = (c: number): void => {
    const r = c + 1
    next[prev[c] as number] = next[c] as number
    if ((next[c] as number) !== -1) prev[next[c] as number] = prev[c] as number
    next[prev[r] as number] = next[r] as number
    if ((next[r] as number) !== -1) prev[next[r] as number] = prev[r] as number
  }
  const unlift = (c: number): void => {
    const r = c + 1
    next[prev[r] as number] = r
    if ((next[r] as number) !== -1) prev[next[r] as number] = r
    next[prev[c] as number] = c
    if ((next[c] as number) !== -1) prev[next[c] as number] = c
  }

  const z = zobrist(n)
  const words = (n + 31) >>> 5
  const bits = new Uint32Array(words)
  let hash = 0
  const cache = new Map<string, Uint32Array[]>()
  const seen = (h: number, state: S): boolean => {
    const key = `${h}|${model.key(state)}`
    const bucket = cache.get(key)
    if (bucket === undefined) {
      cache.set(key, [bits.slice()])
      return false
    }
    for (const b of bucket) if (sameBits(b, bits)) return true
    bucket.push(bits.slice())
    return false
  }

  let knownLeft = 0
  for (const op of ops) if (op.known) knownLeft++
  if (knownLeft === 0) return { verdict: Verdict.ok, steps: 0 }

  const stackOps: number[] = []
  const stackStates: S[] = []
  let state = model.init()
  let entry = next[HEAD] as number
  let steps = 0
  let iterations = 0
  let best: { order: number[]; stuck: number; pending: number[] } | undefined

  while (entry !== -1) {
    if ((++iterations & 1023) === 0 && performance.now() > deadline)
      return { verdict: Verdict.unknown, steps }
    if ((entry & 1) === 0) {
      const i = entry >> 1
      const op = ops[i] as SearchOp<I>
      const after = op.after
      if (after !== undefined && ((bits[after >>> 5] as number) & (1 << (after & 31))) === 0) {
        entry = next[entry] as number
        continue
      }
      steps++
      const r = model.step(state, op.input, op.known ? true : undefined)
      let advanced = false
      if (r.ok) {
        bits[i >>> 5] = (bits[i >>> 5] as number) | (1 << (i & 31))
        const h = (hash ^ (z[i] as number)) >>> 0
        if (!seen(h, r.next)) {
          hash = h
          stackOps.push(i)
          stackStates.push(state)
          state = r.next
          lift(entry)
          if (op.known && --knownLeft === 0) return { verdict: Verdict.ok, steps }
          entry = next[HEAD] as number
          advanced = true
        } else {
          bits[i >>> 5] = (bits[i >>> 5] as number) & ~(1 << (i & 31))
        }
      }
      if (!advanced) entry = next[entry] as number
    } else {
      // A return entry of an op not yet linearized: dead end.
      if (best === undefined || stackOps.length > best.order.length) {
        const pending: number[] = []
        for (let e = next[HEAD] as number; e !== entry && e !== -1; e = next[e] as number)
          if ((e & 1) === 0) pending.push(e >> 1)
        best = { order: [...stackOps], stuck: entry >> 1, pending }
      }
      const i = stackOps.pop()
      if (i === undefined) return { verdict: Verdict.illegal, steps, partial: best }
      state = stackStates.pop() as S
      bits[i >>> 5] = (bits[i >>> 5] as number) & ~(1 << (i & 31))
      hash = (hash ^ (z[i] as number)) >>> 0
      const op = ops[i] as SearchOp<I>
      if (op.known) knownLeft++
      unlift(2 * i)
      entry = next[2 * i] as number
    }
  }
  // Unreachable: the list only empties through knownLeft reaching 0.
  return { verdict: Verdict.ok, steps }
}

// --- KV histories -----------------------------------------------------------

export interface CheckOptions {
  /** Total search budget over all partitions (default 10 s). */
  readonly timeoutMs?: number
  /** Shrink a failing partition to a 1-minimal counterexample (default true). */
  readonly shrink?: boolean
  /** Budget for shrinking (default 3 s); when it runs out the counterexample is only reduced. */
  readonly shrinkMs?: number
}

export interface PartitionReport {
  readonly keys: ReadonlyArray<string>
  readonly ops: number
  readonly verdict: Verdict
  readonly steps: number
  readonly elapsedMs: number
}

/** A register state shown to a human: key → value (null = absent). */
export type StateView = Readonly<Record<string, string | null>>

export interface Counterexample {
  /** The keys of the failing partition (several when batches join them). */
  readonly keys: ReadonlyArray<string>
  /** The (shrunk) operations that together admit no linearization. */
  readonly ops: ReadonlyArray<Operation>
  /** True when removing any one op (that no remaining read depends on) makes it linearizable. */
  readonly minimal: boolean
  /** Operations of the whole partition before shrinking. */
  readonly partitionOps: number
  /** The deepest partial linearization of `ops`, with the state after each op. */
  readonly linearized: ReadonlyArray<{ readonly op: Operation; readonly after: StateView }>
  /** The op that could not be linearized after `linearized`. */
  readonly stuck: Operation
  /** Other ops invoked before `stuck` returned and not in `linearized`. */
  readonly pending: ReadonlyArray<Operation>
}

export interface CheckResult {
  readonly verdict: Verdict
  readonly ops: number
  readonly partitions: ReadonlyArray<PartitionReport>
  readonly elapsedMs: number
  readonly steps: number
  readonly counterexample?: Counterexample
}

const searchOps = (p: InternedPartition): SearchOp<InternedOp>[] => {
  const lastOfClass = new Map<string, number>()
  const byCall = p.ops
    .map((_, i) => i)
    .sort((a, b) => (p.ops[a] as Operation).call - (p.ops[b] as Operation).call)
  const after = new Map<number, number>()
  for (const i of byCall) {
    if ((p.ops[i] as Operation).output !== undefined) continue
    const op = p.interned[i] as InternedOp
    const cls = `${op.kind}|${op.writes.map((w) => `${w.slot}=${w.value}`).join(",")}`
    const prev = lastOfClass.get(cls)
    if (prev !== undefined) after.set(i, prev)
    lastOfClass.set(cls, i)
  }
  return p.ops.map((op, i) => {
    const base = {
      input: p.interned[i] as InternedOp,
      call: op.call,
      ret: op.ret,
      known: op.output !== undefined,
    }
    const a = after.get(i)
    return a === undefined ? base : { ...base, after: a }
  })
}

const checkPartition = (
  p: KvPartition,
  deadline: number,
): { result: SearchResult; interned: InternedPartition } => {
  const interned = internPartition(p)
  return { result: searchLinearization(kvModel(p.keys.length), searchOps(interned), deadline), interned }
}

const view = (p: InternedPartition, state: Int32Array): StateView => {
  const out: Record<string, string | null> = {}
  p.keys.forEach((k, i) => {
    const v = state[i] as number
    out[k] = v === ABSENT ? null : (p.values[v] as string)
  })
  return out
}

/**
 * Removing op `i` must not leave a read with no write that could explain it,
 * or the "counterexample" would be a different anomaly (a read from nowhere).
 */
const removable = (ops: ReadonlyArray<Operation>, i: number): boolean => {
  const victim = ops[i] as Operation
  const writes = (op: Operation): Array<[string, string | null]> => {
    const inp = op.input
    if (inp.f === "put") return [[inp.key, inp.value]]
    if (inp.f === "delete") return [[inp.key, null]]
    if (inp.f === "batch") return inp.ops.map((o) => [o.key, o.op === "put" ? o.value : null])
    return []
  }
  const victimWrites = writes(victim).filter(([, v]) => v !== null)
  if (victimWrites.length === 0) return true
  for (const [key, value] of victimWrites) {
    const otherWriter = ops.some((op, j) => j !== i && writes(op).some(([k, v]) => k === key && v === value))
    if (otherWriter) continue
    const read = ops.some(
      (op, j) =>
        j !== i &&
        op.input.f === "get" &&
        op.input.key === key &&
        op.output?.f === "get" &&
        op.output.value === value,
    )
    if (read) return false
    const anyOtherWrite = ops.some((op, j) => j !== i && writes(op).some(([k, v]) => k === key && v !== null))
    const deleteSawIt = ops.some(
      (op, j) =>
        j !== i &&
        op.input.f === "delete" &&
        op.input.key === key &&
        op.output?.f === "delete" &&
        op.output.deleted,
    )
    if (deleteSawIt && !anyOtherWrite) return false
  }
  return true
}

const shrink = (p: KvPartition, budgetMs: number): { ops: Operation[]; minimal: boolean } => {
  const end = performance.now() + budgetMs
  let ops = [...p.ops]
  let changed = true
  while (changed) {
    changed = false
    // Later ops first: anomalies usually sit near where the search got stuck.
    for (let i = ops.length - 1; i >= 0; i--) {
      if (performance.now() > end) return { ops, minimal: false }
      if (!removable(ops, i)) continue
      const candidate = ops.filter((_, j) => j !== i)
      const keys = [...new Set(candidate.flatMap((op) => keysOf(op.input)))]
      const { result } = checkPartition({ keys, ops: candidate }, Math.min(end, performance.now() + 500))
      if (result.verdict === Verdict.illegal) {
        ops = candidate
        changed = true
      }
    }
  }
  return { ops, minimal: true }
}

const counterexample = (p: KvPartition, opts: CheckOptions): Counterexample | undefined => {
  const shrunk =
    opts.shrink === false ? { ops: [...p.ops], minimal: false } : shrink(p, opts.shrinkMs ?? 3000)
  const keys = [...new Set(shrunk.ops.flatMap((op) => keysOf(op.input)))]
  const { result, interned } = checkPartition({ keys, ops: shrunk.ops }, performance.now() + 5000)
  if (result.verdict !== Verdict.illegal || result.partial === undefined) return undefined
  const model = kvModel(keys.length)
  let state = model.init()
  const linearized = result.partial.order.map((i) => {
    state = model.step(state, interned.interned[i] as InternedOp, undefined).next
    return { op: interned.ops[i] as Operation, after: view(interned, state) }
  })
  return {
    keys: p.keys,
    ops: [...shrunk.ops].sort((a, b) => a.call - b.call),
    minimal: shrunk.minimal,
    partitionOps: p.ops.length,
    linearized,
    stuck: interned.ops[result.partial.stuck] as Operation,
    pending: result.partial.pending.map((i) => interned.ops[i] as Operation),
  }
}

/** Checks operations (see `toOperations`) against the per-key register model. */
export const checkOperations = (ops: ReadonlyArray<Operation>, opts: CheckOptions = {}): CheckResult => {
  const start = performance.now()
  const deadline = start + (opts.timeoutMs ?? 10_000)
  const reports: PartitionReport[] = []
  let verdict: Verdict = Verdict.ok
  let steps = 0
  let failed: KvPartition | undefined
  for (const p of partitionByKey(ops)) {
    const t0 = performance.now()
    const { result } = checkPartition(p, deadline)
    steps += result.steps
    reports.push({
      keys: p.keys,
      ops: p.ops.length,
      verdict: result.verdict,
      steps: result.steps,
      elapsedMs: performance.now() - t0,
    })
    if (result.verdict === Verdict.illegal) {
      verdict = Verdict.illegal
      failed = p
      break
    }
    if (result.verdict === Verdict.unknown) verdict = Verdict.unknown
  }
  const elapsedMs = performance.now() - start
  const base = { verdict, ops: ops.length, partitions: reports, elapsedMs, steps }
  if (failed === undefined) return base
  const cx = counterexample(failed, opts)
  return cx === undefined ? base : { ...base, counterexample: cx }
}

/** Checks a recorded history: `ok` if linearizable, `illegal` if not, `unknown` if the budget ran out. */
export const checkHistory = (history: History, opts: CheckOptions = {}): CheckResult =>
  checkOperations(toOperations(history), opts)
