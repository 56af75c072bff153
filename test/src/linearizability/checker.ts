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
  type KvState,
  kvModel,
  type Model,
  partitionByKey,
  UNREAD_VALUE,
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
  /**
   * Never linearized on its own: only pulled in by `assist` right before an
   * op that needs it (see `searchOps` for why that loses no linearization).
   */
  readonly lazy?: boolean
}

/**
 * For op `op` that does not fit `state`: lazy ops that may be linearized
 * immediately before it, as one chain in call order (only the first one not
 * yet linearized is tried: they are interchangeable).
 */
export type Assist<S> = (op: number, state: S) => ReadonlyArray<number> | undefined

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
  assist?: Assist<S>,
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
  // Memo of explored (linearized set, state) pairs: states are interned to
  // ids, the set is hashed incrementally, and buckets hold exact copies.
  const stateIds = new Map<string | number, number>()
  const cache = new Map<number, Array<{ readonly state: number; readonly bits: Uint32Array }>>()
  const seen = (h: number, state: S): boolean => {
    const k = model.key(state)
    let sid = stateIds.get(k)
    if (sid === undefined) {
      sid = stateIds.size
      stateIds.set(k, sid)
    }
    const key = (h ^ Math.imul(sid + 1, 0x9e3779b1)) >>> 0
    const bucket = cache.get(key)
    if (bucket === undefined) {
      cache.set(key, [{ state: sid, bits: bits.slice() }])
      return false
    }
    for (const b of bucket) if (b.state === sid && sameBits(b.bits, bits)) return true
    bucket.push({ state: sid, bits: bits.slice() })
    return false
  }

  let knownLeft = 0
  for (const op of ops) if (op.known) knownLeft++
  if (knownLeft === 0) return { verdict: Verdict.ok, steps: 0 }

  // The stack of linearized ops: op, the lazy op pulled in right before it (or -1), the state before.
  const stackOps: number[] = []
  const stackHelpers: number[] = []
  const stackStates: S[] = []
  let state = model.init()
  let entry = next[HEAD] as number
  let steps = 0
  let iterations = 0
  let best: { order: number[]; stuck: number; pending: number[] } | undefined
  let bestDepth = -1
  const has = (i: number): boolean => ((bits[i >>> 5] as number) & (1 << (i & 31))) !== 0
  const flip = (i: number): void => {
    bits[i >>> 5] = (bits[i >>> 5] as number) ^ (1 << (i & 31))
    hash = (hash ^ (z[i] as number)) >>> 0
  }
  const input = (i: number): I => (ops[i] as SearchOp<I>).input
  const output = (i: number): true | undefined => ((ops[i] as SearchOp<I>).known ? true : undefined)
  // The first lazy op of `chain` not yet linearized, if invoked before the first return still in the list.
  const helperFor = (chain: ReadonlyArray<number>, from: number): number => {
    let firstReturn = from
    while (firstReturn !== -1 && (firstReturn & 1) === 0) firstReturn = next[firstReturn] as number
    const limit = firstReturn === -1 ? Number.POSITIVE_INFINITY : time(firstReturn)
    for (const h of chain) if (!has(h)) return (ops[h] as SearchOp<I>).call <= limit ? h : -1
    return -1
  }

  while (entry !== -1) {
    if ((++iterations & 1023) === 0 && performance.now() > deadline)
      return { verdict: Verdict.unknown, steps }
    if ((entry & 1) === 0) {
      const i = entry >> 1
      const op = ops[i] as SearchOp<I>
      const after = op.after
      if (op.lazy || (after !== undefined && !has(after))) {
        entry = next[entry] as number
        continue
      }
      steps++
      let helper = -1
      let before = state
      let r = model.step(state, op.input, output(i))
      if (!r.ok && assist !== undefined) {
        const chain = assist(i, state)
        helper = chain === undefined ? -1 : helperFor(chain, entry)
        if (helper !== -1) {
          steps++
          before = model.step(state, input(helper), output(helper)).next
          r = model.step(before, op.input, output(i))
        }
      }
      let advanced = false
      if (r.ok) {
        if (helper !== -1) flip(helper)
        flip(i)
        if (!seen(hash, r.next)) {
          stackOps.push(i)
          stackHelpers.push(helper)
          stackStates.push(state)
          state = r.next
          if (helper !== -1) lift(2 * helper)
          lift(entry)
          if (op.known && --knownLeft === 0) return { verdict: Verdict.ok, steps }
          entry = next[HEAD] as number
          advanced = true
        } else {
          flip(i)
          if (helper !== -1) flip(helper)
        }
      }
      if (!advanced) entry = next[entry] as number
    } else {
      // A return entry of an op not yet linearized: dead end.
      if (stackOps.length > bestDepth) {
        bestDepth = stackOps.length
        const pending: number[] = []
        for (let e = next[HEAD] as number; e !== entry && e !== -1; e = next[e] as number)
          if ((e & 1) === 0 && !(ops[e >> 1] as SearchOp<I>).lazy) pending.push(e >> 1)
        const order: number[] = []
        stackOps.forEach((o, k) => {
          const h = stackHelpers[k] as number
          if (h !== -1) order.push(h)
          order.push(o)
        })
        best = { order, stuck: entry >> 1, pending }
      }
      const i = stackOps.pop()
      if (i === undefined) return { verdict: Verdict.illegal, steps, partial: best }
      const helper = stackHelpers.pop() as number
      state = stackStates.pop() as S
      flip(i)
      if ((ops[i] as SearchOp<I>).known) knownLeft++
      unlift(2 * i)
      if (helper !== -1) {
        flip(helper)
        unlift(2 * helper)
      }
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
  /** Set for a one-key projection of a partition joined by batches: that partition's keys. */
  readonly projectionOf?: ReadonlyArray<string>
}

/** A register state shown to a human: key → value (null = absent). */
export type StateView = Readonly<Record<string, string | null>>

export interface Counterexample {
  /** The keys of the failing partition (several when batches join them). */
  readonly keys: ReadonlyArray<string>
  /** Set when the failure was found on the one-key projection (`keys`) of this batch-joined partition. */
  readonly projectionOf?: ReadonlyArray<string>
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

/**
 * Search ops of a partition, with reductions for info ops (whose return is
 * +Infinity, so they stay candidates to the end and multiply the explored
 * sets):
 * - An info op that is the only writer of a value some get returned must be
 *   linearized before the first such get returns: that becomes its return.
 * - An info put of a value no get returned (state "unread") can only matter to
 *   a delete reporting `deleted: true` on an absent key; moving it to just
 *   before that delete (or to the end) keeps any linearization valid, so it
 *   is lazy and pulled in only there. Likewise an info delete only matters to
 *   a get seeing absent or a delete reporting `deleted: false` on a present
 *   key. Such lazy ops of one key are interchangeable: the earliest invoked
 *   one not yet used is taken.
 * - Other info ops with equal effects are linearized only in call order.
 */
const searchPlan = (p: InternedPartition): { ops: SearchOp<InternedOp>[]; assist: Assist<KvState> } => {
  const finalWrites = (op: InternedOp): Map<number, number> =>
    new Map(op.writes.map((w) => [w.slot, w.value]))
  const unread = p.values.indexOf(UNREAD_VALUE)
  const writers = new Map<string, number>()
  const firstRead = new Map<string, number>()
  p.interned.forEach((op, i) => {
    for (const [slot, value] of finalWrites(op))
      writers.set(`${slot}=${value}`, (writers.get(`${slot}=${value}`) ?? 0) + 1)
    const o = p.ops[i] as Operation
    if (op.kind === "get" && op.expect !== undefined && op.expect !== ABSENT && o.output !== undefined) {
      const k = `${op.slot}=${op.expect}`
      firstRead.set(k, Math.min(firstRead.get(k) ?? Number.POSITIVE_INFINITY, o.ret))
    }
  })
  const ret = p.ops.map((o, i) => {
    if (o.output !== undefined) return o.ret
    let bound = Number.POSITIVE_INFINITY
    for (const [slot, value] of finalWrites(p.interned[i] as InternedOp)) {
      const k = `${slot}=${value}`
      if (value !== ABSENT && writers.get(k) === 1) bound = Math.min(bound, firstRead.get(k) ?? bound)
    }
    return Math.max(o.call, bound)
  })
  const byCall = p.ops
    .map((_, i) => i)
    .sort((a, b) => (p.ops[a] as Operation).call - (p.ops[b] as Operation).call)
  const presence = new Map<number, number[]>()
  const absence = new Map<number, number[]>()
  const lazy = new Set<number>()
  const lastOfClass = new Map<string, number>()
  const after = new Map<number, number>()
  const push = (m: Map<number, number[]>, slot: number, i: number) => {
    const chain = m.get(slot)
    if (chain === undefined) m.set(slot, [i])
    else chain.push(i)
    lazy.add(i)
  }
  for (const i of byCall) {
    if ((p.ops[i] as Operation).output !== undefined || ret[i] !== Number.POSITIVE_INFINITY) continue
    const op = p.interned[i] as InternedOp
    if (op.kind === "put" && op.writes[0]?.value === unread) push(presence, op.slot, i)
    else if (op.kind === "delete") push(absence, op.slot, i)
    else {
      const cls = `${op.kind}|${op.writes.map((w) => `${w.slot}=${w.value}`).join(",")}`
      const prev = lastOfClass.get(cls)
      if (prev !== undefined) after.set(i, prev)
      lastOfClass.set(cls, i)
    }
  }
  const ops = p.ops.map((op, i): SearchOp<InternedOp> => {
    const base = {
      input: p.interned[i] as InternedOp,
      call: op.call,
      ret: ret[i] as number,
      known: op.output !== undefined,
    }
    const a = after.get(i)
    return lazy.has(i) ? { ...base, lazy: true } : a === undefined ? base : { ...base, after: a }
  })
  const assist: Assist<KvState> = (i, state) => {
    const op = p.interned[i] as InternedOp
    const present = state[op.slot] !== ABSENT
    if (op.kind === "delete" && op.expect === 1 && !present) return presence.get(op.slot)
    if (((op.kind === "get" && op.expect === ABSENT) || (op.kind === "delete" && op.expect === 0)) && present)
      return absence.get(op.slot)
    return undefined
  }
  return { ops, assist }
}

const checkPartition = (
  p: KvPartition,
  deadline: number,
): { result: SearchResult; interned: InternedPartition } => {
  const interned = internPartition(p)
  const plan = searchPlan(interned)
  return { result: searchLinearization(kvModel(p.keys.length), plan.ops, deadline, plan.assist), interned }
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
/**
 * The sub-history of one key of a batch-joined partition, batches cut down to
 * their ops on that key. Linearizable partition ⇒ linearizable projection, so
 * an illegal projection proves the whole history illegal (and is far cheaper
 * to search); the joint check is still needed for batch atomicity.
 */
export const projectOnKey = (p: KvPartition, key: string): KvPartition => ({
  keys: [key],
  ops: p.ops
    .filter((op) => keysOf(op.input).includes(key))
    .map((op) =>
      op.input.f === "batch"
        ? { ...op, input: { f: "batch", ops: op.input.ops.filter((o) => o.key === key) } }
        : op,
    ),
})

/** Checks operations (see `toOperations`) against the per-key register model. */
export const checkOperations = (ops: ReadonlyArray<Operation>, opts: CheckOptions = {}): CheckResult => {
  const start = performance.now()
  const deadline = start + (opts.timeoutMs ?? 10_000)
  const reports: PartitionReport[] = []
  let verdict: Verdict = Verdict.ok
  let steps = 0
  let failed: { partition: KvPartition; projectionOf?: ReadonlyArray<string> } | undefined
  const run = (p: KvPartition, until: number, projectionOf?: ReadonlyArray<string>): Verdict => {
    const t0 = performance.now()
    const { result } = checkPartition(p, until)
    steps += result.steps
    const report = {
      keys: p.keys,
      ops: p.ops.length,
      verdict: result.verdict,
      steps: result.steps,
      elapsedMs: performance.now() - t0,
    }
    reports.push(projectionOf === undefined ? report : { ...report, projectionOf })
    if (result.verdict === Verdict.illegal)
      failed = projectionOf === undefined ? { partition: p } : { partition: p, projectionOf }
    return result.verdict
  }
  outer: for (const p of partitionByKey(ops)) {
    if (p.keys.length > 1)
      for (const k of p.keys) {
        const share = (deadline - performance.now()) / (p.keys.length + 1)
        if (run(projectOnKey(p, k), performance.now() + share, p.keys) === Verdict.illegal) {
          verdict = Verdict.illegal
          break outer
        }
      }
    const v = run(p, deadline)
    if (v === Verdict.illegal) {
      verdict = Verdict.illegal
      break
    }
    if (v === Verdict.unknown) verdict = Verdict.unknown
  }
  const elapsedMs = performance.now() - start
  const base = { verdict, ops: ops.length, partitions: reports, elapsedMs, steps }
  if (failed === undefined) return base
  const cx = counterexample(failed.partition, opts)
  if (cx === undefined) return base
  return {
    ...base,
    counterexample: failed.projectionOf === undefined ? cx : { ...cx, projectionOf: failed.projectionOf },
  }
}

/** Checks a recorded history: `ok` if linearizable, `illegal` if not, `unknown` if the budget ran out. */
export const checkHistory = (history: History, opts: CheckOptions = {}): CheckResult =>
  checkOperations(toOperations(history), opts)
