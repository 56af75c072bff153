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
  // Lazy ops are left out of the set hash: a node that used a subset of the
  // lazy ops another explored node used, with everything else equal, has at
  // least the same futures, so that other node's failure covers it.
  const lazyMask = new Uint32Array(words)
  ops.forEach((op, i) => {
    if (op.lazy) {
      z[i] = 0
      lazyMask[i >>> 5] = (lazyMask[i >>> 5] as number) | (1 << (i & 31))
    }
  })
  const dominates = (seenBits: Uint32Array, cur: Uint32Array): boolean => {
    for (let w = 0; w < words; w++) {
      const a = seenBits[w] as number
      const b = cur[w] as number
      if (((a ^ b) & ~(lazyMask[w] as number)) !== 0 || (a & ~b) !== 0) return false
    }
    return true
  }
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
    for (const b of bucket) if (b.state === sid && dominates(b.bits, bits)) return true
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
          if ((e & 1) === 0 && e >> 1 !== entry >> 1 && !(ops[e >> 1] as SearchOp<I>).lazy)
            pending.push(e >> 1)
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
 * - An info put that is the only writer of a value some get returned can be
 *   moved to just before the first get (in the linearization) that returns
 *   it, so it is lazy and pulled in only there. An info batch in that
 *   position must be linearized before the first such get returns: that
 *   becomes its return.
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
  // An info put that alone wrote a value some get returned is lazy, pulled in by such a get.
  const reader = new Map<string, number[]>()
  p.interned.forEach((op, i) => {
    const w = op.writes[0]
    if (op.kind !== "put" || w === undefined || (p.ops[i] as Operation).output !== undefined) return
    const k = `${w.slot}=${w.value}`
    if (w.value !== unread && writers.get(k) === 1 && firstRead.has(k)) reader.set(k, [i])
  })
  const readerLazy = new Set([...reader.values()].flat())
  const ret = p.ops.map((o, i) => {
    if (o.output !== undefined || readerLazy.has(i)) return o.ret
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
  const lazy = new Set<number>(readerLazy)
  const lastOfClass = new Map<string, number>()
  const after = new Map<number, number>()
  const push = (m: Map<number, number[]>, slot: number, i: number) => {
    const chain = m.get(slot)
    if (chain === undefined) m.set(slot, [i])
    else chain.push(i)
    lazy.add(i)
  }
  for (const i of byCall) {
    if ((p.ops[i] as Operation).output !== undefined || ret[i] !== Number.POSITIVE_INFINITY || lazy.has(i))
      continue
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
    if (op.kind === "get" && op.expect !== undefined && op.expect !== ABSENT && state[op.slot] !== op.expect)
      return reader.get(`${op.slot}=${op.expect}`)
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
 * Ops of `ops` whose result no write in `ops` can explain: a get of a value
 * nobody there wrote, a delete reporting deleted=true of a key nobody there
 * wrote. Shrinking must not create new ones, or the "counterexample" would be
 * a different anomaly (a read from nowhere).
 */
const unexplained = (ops: ReadonlyArray<Operation>): Set<number> => {
  const written = new Set<string>()
  const writtenKeys = new Set<string>()
  for (const op of ops) {
    const inp = op.input
    const puts = inp.f === "put" ? [inp] : inp.f === "batch" ? inp.ops.filter((o) => o.op === "put") : []
    for (const w of puts) {
      written.add(`${w.key}\u0000${(w as { value: string }).value}`)
      writtenKeys.add(w.key)
    }
  }
  const out = new Set<number>()
  for (const op of ops) {
    const inp = op.input
    if (inp.f === "get" && op.output?.f === "get" && op.output.value !== undefined) {
      if (!written.has(`${inp.key}\u0000${op.output.value}`)) out.add(op.id)
    } else if (
      inp.f === "delete" &&
      op.output?.f === "delete" &&
      op.output.deleted &&
      !writtenKeys.has(inp.key)
    )
      out.add(op.id)
  }
  return out
}

/**
 * Delta debugging: drop chunks of ops (halving the chunk size down to one)
 * while the rest stays illegal. Ends 1-minimal unless the budget runs out.
 */
const shrink = (p: KvPartition, budgetMs: number): { ops: Operation[]; minimal: boolean } => {
  const end = performance.now() + budgetMs
  const allowed = unexplained(p.ops)
  const stillIllegal = (candidate: Operation[]): boolean => {
    for (const id of unexplained(candidate)) if (!allowed.has(id)) return false
    const keys = [...new Set(candidate.flatMap((op) => keysOf(op.input)))]
    return (
      checkPartition({ keys, ops: candidate }, Math.min(end, performance.now() + 500)).result.verdict ===
      Verdict.illegal
    )
  }
  let ops = [...p.ops].sort((a, b) => a.call - b.call)
  let chunk = Math.max(1, Math.ceil(ops.length / 2))
  for (;;) {
    let removed = false
    // From the end: anomalies tend to sit late, and earlier indexes stay valid.
    for (let start = ops.length - chunk; start > -chunk; start -= chunk) {
      if (performance.now() > end) return { ops, minimal: false }
      const candidate = [...ops.slice(0, Math.max(0, start)), ...ops.slice(start + chunk)]
      if (candidate.length < ops.length && stillIllegal(candidate)) {
        ops = candidate
        removed = true
      }
    }
    if (!removed) {
      if (chunk === 1) return { ops, minimal: true }
      chunk = Math.max(1, chunk >> 1)
    }
  }
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
  // Pass 1: every single-key partition and every key's projection of a
  // batch-joined one (cheap, and exact per key). Pass 2: the joined
  // partitions as wholes, for batch atomicity (exponential in the keys joined).
  const partitions = partitionByKey(ops)
  const joined = partitions.filter((p) => p.keys.length > 1)
  const pass1: Array<{ p: KvPartition; of?: ReadonlyArray<string> }> = partitions
    .filter((p) => p.keys.length === 1)
    .map((p) => ({ p }))
  for (const j of joined) for (const k of j.keys) pass1.push({ p: projectOnKey(j, k), of: j.keys })
  for (const { p, of } of pass1) {
    const v = run(p, deadline, of)
    if (v === Verdict.illegal) {
      verdict = Verdict.illegal
      break
    }
    if (v === Verdict.unknown) verdict = Verdict.unknown
  }
  if (verdict !== Verdict.illegal)
    for (const p of joined) {
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
