// The client workload of a nemesis run: concurrent operator connections doing
// random puts, gets, deletes and batches on a small key space, every
// operation recorded in a HistoryRecorder (CONTRACT §2 semantics: an error
// reply of a write other than InvalidArgument, a timeout or a lost
// connection is `info`; any failed read is `fail`).
//
// Keys come in groups of three (`g<j>/a|b|c`); a batch touches 2–3 keys of
// one group only, so the checker's batch-joined partitions stay small.
// Every written value is unique (`<client>:<n>`), so a read names its write.
import { LeaderRoute } from "@ekv/bus"
import type { Msg, NatsConnection } from "@nats-io/transport-node"
import {
  type HistoryRecorder,
  type KvBatchItem,
  type KvInput,
  type KvOutput,
  outcomeOfError,
} from "../linearizability/mod.ts"
import { b64 } from "../processCluster.ts"
import { type EkvSystem, parseReply, sleep } from "../system.ts"

export interface WorkloadOptions {
  readonly clients: number
  readonly groups: number
  readonly rng: () => number
  readonly timeoutMs?: number
  /** Pause between a client's operations (ms). */
  readonly thinkMs?: number
}

export const keySpace = (groups: number): string[] =>
  Array.from({ length: groups }, (_, j) => ["a", "b", "c"].map((s) => `g${j}/${s}`)).flat()

const pick = <A>(rng: () => number, xs: readonly A[]): A => xs[Math.floor(rng() * xs.length)] as A

export class Workload {
  readonly counts = { ok: 0, fail: 0, info: 0 }
  private running = true
  private readonly loops: Promise<void>[] = []
  private readonly conns: NatsConnection[] = []
  private readonly rec: HistoryRecorder
  private readonly opts: WorkloadOptions

  private constructor(rec: HistoryRecorder, opts: WorkloadOptions) {
    this.rec = rec
    this.opts = opts
  }

  static async start(sys: EkvSystem, rec: HistoryRecorder, opts: WorkloadOptions): Promise<Workload> {
    const w = new Workload(rec, opts)
    for (let c = 0; c < opts.clients; c++) w.conns.push(await sys.operatorConnection())
    // One seeded stream per client, drawn up front, so a client's choices do not depend on timing.
    w.conns.forEach((nc, c) => {
      const seed = Math.floor(opts.rng() * 2 ** 32)
      w.loops.push(w.loop(nc, c, mulberry(seed)))
    })
    return w
  }

  async stop(): Promise<void> {
    this.running = false
    await Promise.all(this.loops)
    await Promise.all(this.conns.map((c) => c.close().catch(() => undefined)))
  }

  private nextInput(rng: () => number, client: number, n: number): KvInput {
    const g = Math.floor(rng() * this.opts.groups)
    const keys = ["a", "b", "c"].map((s) => `g${g}/${s}`)
    const value = () => b64(`c${client}:${n}:${Math.floor(rng() * 1e6)}`)
    const r = rng()
    if (r < 0.35) return { f: "put", key: pick(rng, keys), value: value() }
    if (r < 0.7) return { f: "get", key: pick(rng, keys) }
    if (r < 0.82) return { f: "delete", key: pick(rng, keys) }
    const size = rng() < 0.5 ? 2 : 3
    const ops: KvBatchItem[] = []
    for (let i = 0; i < size; i++) {
      const key = keys[(i + g) % 3] as string
      ops.push(rng() < 0.8 ? { op: "put", key, value: value() } : { op: "delete", key })
    }
    return { f: "batch", ops }
  }

  private async loop(nc: NatsConnection, client: number, rng: () => number): Promise<void> {
    // Odd clients follow the Ekv-Leader hint (node-addressed subjects), even ones use the
    // queue group: both paths run under every fault.
    const route = client % 2 === 1 ? new LeaderRoute("ekv") : undefined
    let gen = 0
    let n = 0
    while (this.running) {
      n++
      const input = this.nextInput(rng, client, n)
      const proc = `c${client}.${gen}`
      const outcome = await runOp(nc, this.rec, proc, input, this.opts.timeoutMs ?? 5_000, route)
      this.counts[outcome]++
      // A process with an unknown op is "crashed" (Jepsen): it continues under a new name.
      if (outcome === "info") gen++
      if (outcome !== "ok") await sleep(100)
      else if ((this.opts.thinkMs ?? 0) > 0) await sleep(this.opts.thinkMs ?? 0)
    }
  }
}

const mulberry = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const SUBJECT: Record<KvInput["f"], string> = {
  put: "ekv.kv.put",
  get: "ekv.kv.get",
  delete: "ekv.kv.delete",
  batch: "ekv.kv.batch",
}

/** The subject for `input`: the leader's own when `route` follows the hint, else the queue group's. */
const subjectFor = (input: KvInput, route: LeaderRoute | undefined): string =>
  route === undefined ? SUBJECT[input.f] : route.subject(input.f)

const body = (input: KvInput): unknown => {
  switch (input.f) {
    case "put":
      return { key: input.key, value: input.value }
    case "get":
      return { key: input.key }
    case "delete":
      return { key: input.key }
    case "batch":
      return { ops: input.ops }
  }
}

/** Runs one operation and records it; returns how it completed. */
export const runOp = async (
  nc: NatsConnection,
  rec: HistoryRecorder,
  proc: string,
  input: KvInput,
  timeoutMs: number,
  route?: LeaderRoute,
): Promise<"ok" | "fail" | "info"> => {
  const id = rec.invoke(proc, input)
  try {
    let m: Msg
    try {
      m = await nc.request(subjectFor(input, route), JSON.stringify(body(input)), { timeout: timeoutMs })
    } catch (e) {
      route?.onUnanswered()
      throw e
    }
    route?.onReply(m.headers)
    const r = parseReply<Record<string, unknown>>(m.headers, m.data)
    if (!r.ok) {
      if (r.error.code === "Unavailable") route?.onUnanswered()
      const o = outcomeOfError(input, r.error.code)
      if (o === "fail") rec.fail(id, r.error.code)
      else rec.info(id, r.error.code)
      return o
    }
    rec.ok(id, outputOf(input, r.value))
    return "ok"
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e)
    if (input.f === "get") {
      rec.fail(id, msg)
      return "fail"
    }
    rec.info(id, msg)
    return "info"
  }
}

const outputOf = (input: KvInput, v: Record<string, unknown>): KvOutput => {
  const index = typeof v.index === "number" ? { index: v.index } : {}
  switch (input.f) {
    case "put":
      return { f: "put", ...index }
    case "delete":
      return { f: "delete", deleted: v.deleted === true, ...index }
    case "batch":
      return { f: "batch", ...index }
    case "get":
      return {
        f: "get",
        found: v.found === true,
        ...(typeof v.value === "string" ? { value: v.value } : {}),
        ...(typeof v.version === "number" ? { version: v.version } : {}),
      }
  }
}
