// Human-readable checker output: a verdict line, and for a failure the key(s),
// the operations that admit no linearization (with their real-time
// intervals), the deepest partial linearization and the op it got stuck on.
import type { CheckResult, Counterexample, StateView } from "./checker.ts"
import type { KvInput, KvOutput, Operation } from "./history.ts"
import { UNREAD_VALUE } from "./model.ts"

const MAX_VALUE_CHARS = 24

const short = (v: string): string =>
  v.length > MAX_VALUE_CHARS
    ? `${JSON.stringify(v.slice(0, MAX_VALUE_CHARS))}…(${v.length})`
    : JSON.stringify(v)

export const renderInput = (input: KvInput): string => {
  switch (input.f) {
    case "put":
      return `put(${JSON.stringify(input.key)}, ${short(input.value)})`
    case "get":
      return `get(${JSON.stringify(input.key)})`
    case "delete":
      return `delete(${JSON.stringify(input.key)})`
    case "batch":
      return `batch[${input.ops
        .map((o) =>
          o.op === "put"
            ? `put(${JSON.stringify(o.key)}, ${short(o.value)})`
            : `delete(${JSON.stringify(o.key)})`,
        )
        .join(", ")}]`
  }
}

export const renderOutput = (output: KvOutput | undefined): string => {
  if (output === undefined) return "?"
  switch (output.f) {
    case "get":
      return output.found ? (output.value === undefined ? "found (no value)" : short(output.value)) : "absent"
    case "delete":
      return `deleted=${output.deleted}`
    default:
      return "ok"
  }
}

const ms = (t: number): string => (Number.isFinite(t) ? t.toFixed(3) : "∞")

export const renderOperation = (op: Operation): string =>
  `#${op.id} [${ms(op.call)} .. ${ms(op.ret)}] ${op.process}: ${renderInput(op.input)} -> ${renderOutput(op.output)}${
    op.output === undefined ? " (info: outcome unknown)" : ""
  }`

const renderState = (s: StateView): string =>
  `{ ${Object.entries(s)
    .map(
      ([k, v]) =>
        `${JSON.stringify(k)}: ${v === null ? "absent" : v === UNREAD_VALUE ? "<a value no read returned>" : short(v)}`,
    )
    .join(", ")} }`

export const renderCounterexample = (cx: Counterexample): string => {
  const keys = cx.keys.map((k) => JSON.stringify(k)).join(", ")
  const lines = [
    cx.projectionOf !== undefined
      ? `key: ${keys} (its own history, batches cut down to it, inside the partition ${cx.projectionOf.map((k) => JSON.stringify(k)).join(", ")} joined by batches)`
      : `key${cx.keys.length > 1 ? "s (joined by batches)" : ""}: ${keys}`,
    `${cx.minimal ? "minimal" : "reduced"} counterexample: ${cx.ops.length} of the partition's ${cx.partitionOps} ops`,
    ...cx.ops.map((op) => `  ${renderOperation(op)}`),
    "deepest partial linearization:",
    ...(cx.linearized.length === 0
      ? ["  (none: not even a first op fits)"]
      : cx.linearized.map((l, i) => `  ${i + 1}. ${renderOperation(l.op)}  => ${renderState(l.after)}`)),
    `cannot linearize next: ${renderOperation(cx.stuck)}`,
  ]
  if (cx.pending.length > 0)
    lines.push("other candidates at that point:", ...cx.pending.map((op) => `  ${renderOperation(op)}`))
  return lines.join("\n")
}

export const renderResult = (r: CheckResult): string => {
  const head = `linearizability: ${r.verdict} (${r.ops} ops, ${r.partitions.length} partitions checked, ${r.steps} steps, ${r.elapsedMs.toFixed(1)} ms)`
  if (r.verdict === "unknown") {
    const open = r.partitions.filter((p) => p.verdict === "unknown").map((p) => p.keys.join("+"))
    return `${head}\nsearch budget exhausted on: ${open.join(", ")} — neither proven linearizable nor refuted`
  }
  return r.counterexample === undefined ? head : `${head}\n${renderCounterexample(r.counterexample)}`
}
