// Sequential specifications for the checker. A model is a pure step function
// over immutable states plus a canonical state key (for memoizing visited
// (linearized set, state) pairs, as Porcupine does).
//
// The KV model is a set of registers, one per key. The checker partitions a
// history into groups of keys that are connected by batches (union-find over
// the keys each operation touches): by the locality of linearizability
// (Herlihy & Wing), a history is linearizable iff each group's sub-history is,
// when every group is treated as one object — and no operation spans two
// groups. A batch touching keys a and b is therefore checked as one atomic
// step over the joint register (a, b), together with every other op on a or b.
import { type KvInput, type KvOutput, keysOf, type Operation } from "./history.ts"

export interface StepResult<S> {
  readonly ok: boolean
  readonly next: S
}

export interface Model<I, O, S> {
  readonly init: () => S
  /** `output` undefined = unknown (an `info` op): any output is accepted. */
  readonly step: (state: S, input: I, output: O | undefined) => StepResult<S>
  /** Equal keys iff equal states. */
  readonly key: (state: S) => string | number
  readonly describeState: (state: S) => string
}

/** Absent key (never written, or deleted). */
export const ABSENT = -1

/**
 * A group of keys and the values seen in its operations, interned to small
 * integers so a state is an Int32Array of value ids (ABSENT when absent).
 */
export interface KvPartition {
  readonly keys: ReadonlyArray<string>
  readonly ops: ReadonlyArray<Operation>
}

export interface InternedOp {
  readonly kind: "put" | "get" | "delete" | "batch"
  /** Slot (index in `keys`) per touched key, in input order. */
  readonly writes: ReadonlyArray<{ readonly slot: number; readonly value: number }>
  readonly slot: number
  /** For get: the expected value id (ABSENT for not found); for delete: 1 if deleted else 0. Undefined = unknown. */
  readonly expect: number | undefined
}

export type KvState = Int32Array

/**
 * The register model for one partition. Inputs are pre-interned
 * (`internPartition`) so a step costs no string compares.
 */
export const kvModel = (slots: number): Model<InternedOp, true, KvState> => ({
  init: () => new Int32Array(slots).fill(ABSENT),
  step: (state, op) => {
    switch (op.kind) {
      case "get":
        return { ok: op.expect === undefined || state[op.slot] === op.expect, next: state }
      case "put":
      case "batch": {
        const next = state.slice()
        for (const w of op.writes) next[w.slot] = w.value
        return { ok: true, next }
      }
      case "delete": {
        const existed = state[op.slot] !== ABSENT ? 1 : 0
        if (op.expect !== undefined && op.expect !== existed) return { ok: false, next: state }
        if (!existed) return { ok: true, next: state }
        const next = state.slice()
        next[op.slot] = ABSENT
        return { ok: true, next }
      }
    }
  },
  key: (state) => (state.length === 1 ? (state[0] as number) : state.join(",")),
  describeState: (state) => state.join(","),
})

/** Value ids per partition; `values[id]` is the original string. */
export interface InternedPartition {
  readonly keys: ReadonlyArray<string>
  readonly values: ReadonlyArray<string>
  readonly ops: ReadonlyArray<Operation>
  readonly interned: ReadonlyArray<InternedOp>
}

/** Shown for a value no read returned (all such values of a key are one state). */
export const UNREAD_VALUE = "\u0000<a value no read returned>"

/**
 * Values no get returns are indistinguishable to the model (deletes only see
 * presence), so every such value of a key interns to one id: fewer distinct
 * states, and timed-out writes of unread values become interchangeable.
 */
export const internPartition = (p: KvPartition): InternedPartition => {
  const slotOf = new Map(p.keys.map((k, i) => [k, i] as const))
  const values: string[] = []
  const ids = new Map<string, number>()
  const read = new Set<string>()
  for (const op of p.ops)
    if (op.input.f === "get" && op.output?.f === "get" && op.output.value !== undefined)
      read.add(`${op.input.key}\u0000${op.output.value}`)
  const internWrite = (key: string, v: string): number =>
    intern(read.has(`${key}\u0000${v}`) ? v : UNREAD_VALUE)
  const intern = (v: string): number => {
    let id = ids.get(v)
    if (id === undefined) {
      id = values.length
      values.push(v)
      ids.set(v, id)
    }
    return id
  }
  const slot = (k: string): number => {
    const s = slotOf.get(k)
    if (s === undefined) throw new Error(`key ${JSON.stringify(k)} is not in this partition`)
    return s
  }
  const interned = p.ops.map((op): InternedOp => internOp(op.input, op.output, slot, intern, internWrite))
  return { keys: p.keys, values, ops: p.ops, interned }
}

const internOp = (
  input: KvInput,
  output: KvOutput | undefined,
  slot: (k: string) => number,
  intern: (v: string) => number,
  internWrite: (key: string, v: string) => number,
): InternedOp => {
  switch (input.f) {
    case "put":
      return {
        kind: "put",
        writes: [{ slot: slot(input.key), value: internWrite(input.key, input.value) }],
        slot: slot(input.key),
        expect: undefined,
      }
    case "get": {
      // `found: true` without a value can match no state: a marker no write produces.
      const expect =
        output?.f !== "get"
          ? undefined
          : !output.found
            ? ABSENT
            : intern(output.value ?? "\u0000<found without a value>")
      return { kind: "get", writes: [], slot: slot(input.key), expect }
    }
    case "delete":
      return {
        kind: "delete",
        writes: [{ slot: slot(input.key), value: ABSENT }],
        slot: slot(input.key),
        expect: output?.f === "delete" ? (output.deleted ? 1 : 0) : undefined,
      }
    case "batch":
      return {
        kind: "batch",
        writes: input.ops.map((o) => ({
          slot: slot(o.key),
          value: o.op === "put" ? internWrite(o.key, o.value) : ABSENT,
        })),
        slot: -1,
        expect: undefined,
      }
  }
}

/**
 * Groups operations by connected key sets (union-find over the keys each op
 * touches). Partitions come back in order of their first operation.
 */
export const partitionByKey = (ops: ReadonlyArray<Operation>): KvPartition[] => {
  const parent = new Map<string, string>()
  const find = (k: string): string => {
    let r = k
    for (;;) {
      const p = parent.get(r)
      if (p === undefined || p === r) break
      r = p
    }
    // Path compression.
    let c = k
    while (c !== r) {
      const p = parent.get(c) as string
      parent.set(c, r)
      c = p
    }
    return r
  }
  for (const op of ops) {
    const keys = keysOf(op.input)
    for (const k of keys) if (!parent.has(k)) parent.set(k, k)
    const first = keys[0]
    if (first === undefined) continue
    const root = find(first)
    for (const k of keys.slice(1)) {
      const r = find(k)
      if (r !== root) parent.set(r, root)
    }
  }
  const groups = new Map<string, { keys: string[]; ops: Operation[] }>()
  for (const k of parent.keys()) {
    const r = find(k)
    let g = groups.get(r)
    if (g === undefined) {
      g = { keys: [], ops: [] }
      groups.set(r, g)
    }
    g.keys.push(k)
  }
  for (const op of ops) {
    const first = keysOf(op.input)[0]
    if (first === undefined) continue
    groups.get(find(first))?.ops.push(op)
  }
  return [...groups.values()].filter((g) => g.ops.length > 0)
}
