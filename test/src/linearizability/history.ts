// Histories of KV operations (CONTRACT.md §2) as Jepsen records them: each
// operation is an `invoke` event followed by exactly one of `ok` (it took
// effect, with this result), `fail` (it definitely did not take effect) or
// `info` (unknown: it may take effect at any time after its invocation).
// Timestamps come from a monotonic clock; only their order matters.
import { readFile, writeFile } from "node:fs/promises"
import { Schema } from "effect"

/** One element of a batch; several on one key apply in order (CONTRACT.md §2). */
export type KvBatchItem =
  | { readonly op: "put"; readonly key: string; readonly value: string }
  | { readonly op: "delete"; readonly key: string }

/**
 * What a client asked for. Values are opaque strings compared for equality:
 * record the base64 wire value, or a digest of it for large values.
 */
export type KvInput =
  | { readonly f: "put"; readonly key: string; readonly value: string }
  | { readonly f: "get"; readonly key: string }
  | { readonly f: "delete"; readonly key: string }
  | { readonly f: "batch"; readonly ops: ReadonlyArray<KvBatchItem> }

/** What an acknowledged operation returned (the fields the model checks). */
export type KvOutput =
  | { readonly f: "put"; readonly index?: number }
  | { readonly f: "get"; readonly found: boolean; readonly value?: string; readonly version?: number }
  | { readonly f: "delete"; readonly deleted: boolean; readonly index?: number }
  | { readonly f: "batch"; readonly index?: number }

export const EventType = { invoke: "invoke", ok: "ok", fail: "fail", info: "info" } as const
export type EventType = (typeof EventType)[keyof typeof EventType]

export type HistoryEvent =
  | {
      readonly type: "invoke"
      readonly id: number
      readonly process: string
      readonly time: number
      readonly input: KvInput
    }
  | { readonly type: "ok"; readonly id: number; readonly time: number; readonly output: KvOutput }
  | { readonly type: "fail"; readonly id: number; readonly time: number; readonly error: string }
  | { readonly type: "info"; readonly id: number; readonly time: number; readonly error?: string }

export interface History {
  readonly version: 1
  readonly events: ReadonlyArray<HistoryEvent>
}

/**
 * One operation as the checker sees it: `output` undefined means unknown
 * (`info`, or never completed) and then `ret` is +Infinity.
 */
export interface Operation {
  readonly id: number
  readonly process: string
  readonly input: KvInput
  readonly output: KvOutput | undefined
  readonly call: number
  readonly ret: number
}

/** A monotonic clock in milliseconds. */
export type Clock = () => number

export const performanceClock: Clock = () => performance.now()
export const hrtimeClock: Clock = () => Number(process.hrtime.bigint()) / 1e6

/**
 * Records events as a client workload runs. One recorder may be shared by
 * many concurrent clients (`process` names the client); the id returned by
 * `invoke` ties the completion to its invocation.
 */
export class HistoryRecorder {
  private readonly clock: Clock
  private readonly log: HistoryEvent[] = []
  private readonly open = new Set<number>()
  private nextId = 0

  constructor(clock: Clock = performanceClock) {
    this.clock = clock
  }

  invoke(process: string, input: KvInput): number {
    const id = this.nextId++
    this.open.add(id)
    this.log.push({ type: "invoke", id, process, time: this.clock(), input })
    return id
  }

  ok(id: number, output: KvOutput): void {
    this.close(id)
    this.log.push({ type: "ok", id, time: this.clock(), output })
  }

  /** Definitely not applied (e.g. InvalidArgument: nothing was proposed). */
  fail(id: number, error: string): void {
    this.close(id)
    this.log.push({ type: "fail", id, time: this.clock(), error })
  }

  /** Unknown outcome (timeout, Unavailable after forwarding, connection loss). */
  info(id: number, error?: string): void {
    this.close(id)
    this.log.push(
      error === undefined
        ? { type: "info", id, time: this.clock() }
        : { type: "info", id, time: this.clock(), error },
    )
  }

  /** Ops invoked and not yet completed. */
  pending(): ReadonlySet<number> {
    return this.open
  }

  history(): History {
    return { version: 1, events: [...this.log] }
  }

  private close(id: number): void {
    if (!this.open.delete(id)) throw new Error(`operation ${id} is not pending`)
  }
}

/**
 * Error codes (CONTRACT.md §1) that prove a KV write was never proposed: the
 * request failed its schema before reaching Raft. Every other error —
 * Unavailable (possibly after the leader appended it), Halted, Internal,
 * timeouts — leaves the outcome unknown.
 */
export const DEFINITE_FAILURE_CODES: ReadonlySet<string> = new Set(["InvalidArgument"])

/** `fail` or `info` for an error reply to `input`. Reads have no effect, so any error of theirs is a `fail`. */
export const outcomeOfError = (input: KvInput, code: string): "fail" | "info" =>
  input.f === "get" || DEFINITE_FAILURE_CODES.has(code) ? "fail" : "info"

/**
 * The operations of a history. `fail`ed ops are dropped (they never happened);
 * reads with unknown results are dropped too (they constrain nothing).
 * Throws on a malformed history (completion without invocation, two
 * completions of one op).
 */
export const toOperations = (history: History): Operation[] => {
  const calls = new Map<number, Extract<HistoryEvent, { type: "invoke" }>>()
  const done = new Map<number, Exclude<HistoryEvent, { type: "invoke" }>>()
  for (const e of history.events) {
    if (e.type === "invoke") {
      if (calls.has(e.id)) throw new Error(`operation ${e.id} invoked twice`)
      calls.set(e.id, e)
    } else {
      const call = calls.get(e.id)
      if (call === undefined) throw new Error(`operation ${e.id} completed before it was invoked`)
      if (done.has(e.id)) throw new Error(`operation ${e.id} completed twice`)
      if (e.time < call.time) throw new Error(`operation ${e.id} completed before its invocation time`)
      if (e.type === "ok" && e.output.f !== call.input.f)
        throw new Error(`operation ${e.id}: a ${call.input.f} completed with a ${e.output.f} result`)
      done.set(e.id, e)
    }
  }
  const ops: Operation[] = []
  for (const call of calls.values()) {
    const end = done.get(call.id)
    if (end?.type === "fail") continue
    if (end?.type === "ok") {
      ops.push({
        id: call.id,
        process: call.process,
        input: call.input,
        output: end.output,
        call: call.time,
        ret: end.time,
      })
    } else if (call.input.f !== "get") {
      ops.push({
        id: call.id,
        process: call.process,
        input: call.input,
        output: undefined,
        call: call.time,
        ret: Number.POSITIVE_INFINITY,
      })
    }
  }
  return ops
}

/** The keys an input touches, without duplicates, in first-touch order. */
export const keysOf = (input: KvInput): string[] =>
  input.f === "batch" ? [...new Set(input.ops.map((o) => o.key))] : [input.key]

// --- JSON form, for saving a failing history and replaying it -------------

const BatchItemSchema = Schema.Union([
  Schema.Struct({ op: Schema.Literal("put"), key: Schema.String, value: Schema.String }),
  Schema.Struct({ op: Schema.Literal("delete"), key: Schema.String }),
])
const InputSchema = Schema.Union([
  Schema.Struct({ f: Schema.Literal("put"), key: Schema.String, value: Schema.String }),
  Schema.Struct({ f: Schema.Literal("get"), key: Schema.String }),
  Schema.Struct({ f: Schema.Literal("delete"), key: Schema.String }),
  Schema.Struct({ f: Schema.Literal("batch"), ops: Schema.Array(BatchItemSchema) }),
])
const OutputSchema = Schema.Union([
  Schema.Struct({ f: Schema.Literal("put"), index: Schema.optional(Schema.Number) }),
  Schema.Struct({
    f: Schema.Literal("get"),
    found: Schema.Boolean,
    value: Schema.optional(Schema.String),
    version: Schema.optional(Schema.Number),
  }),
  Schema.Struct({
    f: Schema.Literal("delete"),
    deleted: Schema.Boolean,
    index: Schema.optional(Schema.Number),
  }),
  Schema.Struct({ f: Schema.Literal("batch"), index: Schema.optional(Schema.Number) }),
])
const EventSchema = Schema.Union([
  Schema.Struct({
    type: Schema.Literal("invoke"),
    id: Schema.Number,
    process: Schema.String,
    time: Schema.Number,
    input: InputSchema,
  }),
  Schema.Struct({ type: Schema.Literal("ok"), id: Schema.Number, time: Schema.Number, output: OutputSchema }),
  Schema.Struct({
    type: Schema.Literal("fail"),
    id: Schema.Number,
    time: Schema.Number,
    error: Schema.String,
  }),
  Schema.Struct({
    type: Schema.Literal("info"),
    id: Schema.Number,
    time: Schema.Number,
    error: Schema.optional(Schema.String),
  }),
])
export const HistorySchema = Schema.Struct({ version: Schema.Literal(1), events: Schema.Array(EventSchema) })

const decodeHistory = Schema.decodeUnknownSync(Schema.fromJsonString(HistorySchema))

export const historyToJson = (history: History): string => JSON.stringify(history)
export const historyFromJson = (json: string): History => decodeHistory(json)

export const saveHistory = (path: string, history: History): Promise<void> =>
  writeFile(path, historyToJson(history))

export const loadHistory = async (path: string): Promise<History> =>
  historyFromJson(await readFile(path, "utf8"))
