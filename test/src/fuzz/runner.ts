// Sends fuzz payloads one at a time as NATS requests and classifies every
// answer (classify.ts). With a status subject it also reads the commit index
// and term before and after each request, so a caller can check that no
// rejected request proposed anything (CONTRACT.md §1: an idle cluster appends
// no entries, so in a quiet cluster an unchanged commit_index proves it).
import { ClusterStatusReply } from "@ekv/wire"
import type { NatsConnection } from "@nats-io/transport-node"
import { Result, Schema } from "effect"
import { type Classified, isFinding, Outcome, replyChecker } from "./classify.ts"
import { type Endpoint, endpointCatalog } from "./endpoints.ts"
import { type Payload, type PayloadMix, payloadArbitrary, samplePayloads } from "./payloads.ts"

/** NATS subject matching: `*` one token, `>` one or more trailing tokens. */
export const subjectMatches = (pattern: string, subject: string): boolean => {
  const p = pattern.split(".")
  const s = subject.split(".")
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false
  }
  return p.length === s.length
}

export interface FuzzOptions {
  readonly nc: NatsConnection
  /** Subject patterns to fuzz (e.g. `ekv.kv.*`, `ekv.node.*.health`); every endpoint of the catalog matching one. */
  readonly subjects: ReadonlyArray<string>
  /** Member node ids (node subjects, valid `node` fields). */
  readonly nodes: ReadonlyArray<string>
  readonly count: number
  readonly seed: number
  /** Per-request timeout (default: each endpoint's own, 5–15 s). */
  readonly timeoutMs?: number
  readonly prefix?: string
  readonly mix?: PayloadMix
  /** Read `<p>.admin.cluster.status` around every request (default true). */
  readonly trackCommitIndex?: boolean
  /** A successful admin mutator makes the next this-many ms not quiet (background entries; default 5000). */
  readonly settleMs?: number
  readonly onResult?: (r: FuzzResult) => void
}

export interface FuzzResult extends Classified {
  readonly i: number
  readonly endpoint: string
  readonly subject: string
  readonly kind: Payload["kind"]
  readonly mutation?: string
  readonly note?: string
  readonly bytes: number
  readonly ms: number
  readonly commitBefore?: number
  readonly commitAfter?: number
  /** Term unchanged and no successful admin mutator recently: a commit change would be this request's. */
  readonly quiet?: boolean
}

export interface FuzzReport {
  readonly count: number
  readonly seed: number
  readonly elapsedMs: number
  readonly byOutcome: Readonly<Record<string, number>>
  readonly byCode: Readonly<Record<string, number>>
  /** `kind/outcome` counts per endpoint. */
  readonly byEndpoint: Readonly<Record<string, Readonly<Record<string, number>>>>
  /** Timeouts, missing responders, untyped errors, undecodable replies. */
  readonly findings: ReadonlyArray<FuzzResult>
  /** Error replies after which the commit index had moved, in a quiet cluster. */
  readonly rejectedCommitChanges: ReadonlyArray<FuzzResult>
  /** The same, but not quiet (an election or a recent admin mutation): not attributable. */
  readonly unattributedCommitChanges: ReadonlyArray<FuzzResult>
  /** Error replies whose commit index before and after were both read. */
  readonly rejectedChecked: number
  /** Typed `Internal` errors: acceptable on the wire, but each is a bug (CONTRACT §1). */
  readonly internal: ReadonlyArray<FuzzResult>
}

const decodeStatus = Schema.decodeUnknownResult(Schema.fromJsonString(ClusterStatusReply))
const dec = new TextDecoder()

const errorName = (e: unknown): string => {
  const parts: string[] = []
  for (let c: unknown = e; c instanceof Error && parts.length < 4; c = c.cause)
    parts.push(`${c.name}: ${c.message}`)
  return parts.join(" <- ") || String(e)
}

/** Sends one payload and classifies the answer. */
export const sendPayload = async (
  nc: NatsConnection,
  p: Payload,
  check: ReturnType<typeof replyChecker>,
  timeoutMs: number,
): Promise<Classified> => {
  try {
    const m = await nc.request(p.subject, p.body, { timeout: timeoutMs })
    return check({ header: (name) => (m.headers?.has(name) ? m.headers.get(name) : undefined), data: m.data })
  } catch (e) {
    const text = errorName(e)
    if (/no responders|NoResponders|503/i.test(text)) return { outcome: Outcome.noResponders, problem: text }
    if (/timeout/i.test(text)) return { outcome: Outcome.timeout, problem: text }
    if (/max_payload/i.test(text)) return { outcome: Outcome.notSent, problem: text }
    throw e
  }
}

export const runFuzz = async (o: FuzzOptions): Promise<FuzzReport> => {
  const t0 = performance.now()
  const prefix = o.prefix ?? "ekv"
  const endpoints = endpointCatalog({ prefix, nodes: o.nodes }).filter((e) =>
    o.subjects.some((pat) => subjectMatches(pat, e.subject)),
  )
  if (endpoints.length === 0) throw new Error(`no endpoint matches ${o.subjects.join(", ")}`)
  const byName = new Map<string, { e: Endpoint; check: ReturnType<typeof replyChecker> }>(
    endpoints.map((e) => [e.name, { e, check: replyChecker(e.reply) }]),
  )
  const statusSubject = `${prefix}.admin.cluster.status`
  const track = o.trackCommitIndex ?? true
  const status = async (): Promise<{ commit: number; term: number } | undefined> => {
    try {
      const m = await o.nc.request(statusSubject, new TextEncoder().encode("{}"), { timeout: 5_000 })
      if (m.headers?.has("Nats-Service-Error-Code")) return undefined
      const r = decodeStatus(dec.decode(m.data))
      return Result.isSuccess(r) ? { commit: r.success.commit_index, term: r.success.term } : undefined
    } catch {
      return undefined
    }
  }

  const byOutcome: Record<string, number> = {}
  const byCode: Record<string, number> = {}
  const byEndpoint: Record<string, Record<string, number>> = {}
  const findings: FuzzResult[] = []
  const rejectedCommitChanges: FuzzResult[] = []
  const unattributedCommitChanges: FuzzResult[] = []
  let rejectedChecked = 0
  const internal: FuzzResult[] = []
  let lastMutation = Number.NEGATIVE_INFINITY
  let before = track ? await status() : undefined
  let i = 0
  for (const p of samplePayloads(payloadArbitrary(endpoints, o.mix), o.count, o.seed)) {
    const { e, check } = byName.get(p.endpoint) as { e: Endpoint; check: ReturnType<typeof replyChecker> }
    const start = performance.now()
    const c = await sendPayload(o.nc, p, check, o.timeoutMs ?? e.timeoutMs)
    const ms = performance.now() - start
    const after = track ? await status() : undefined
    if (c.outcome === Outcome.ok && e.mutating && e.name.startsWith("admin."))
      lastMutation = performance.now()
    const quiet =
      before !== undefined &&
      after !== undefined &&
      before.term === after.term &&
      start - lastMutation > (o.settleMs ?? 5_000)
    const r: FuzzResult = {
      i,
      endpoint: e.name,
      subject: p.subject,
      kind: p.kind,
      ...(p.mutation === undefined ? {} : { mutation: p.mutation }),
      ...(p.note === undefined ? {} : { note: p.note }),
      bytes: p.body.length,
      ms,
      ...c,
      ...(before === undefined ? {} : { commitBefore: before.commit }),
      ...(after === undefined ? {} : { commitAfter: after.commit }),
      ...(track ? { quiet } : {}),
    }
    byOutcome[c.outcome] = (byOutcome[c.outcome] ?? 0) + 1
    if (c.code !== undefined) byCode[c.code] = (byCode[c.code] ?? 0) + 1
    const ep = byEndpoint[e.name] ?? {}
    byEndpoint[e.name] = ep
    const k = `${p.kind}/${c.outcome}${c.code === undefined ? "" : `/${c.code}`}`
    ep[k] = (ep[k] ?? 0) + 1
    if (isFinding(c.outcome)) findings.push(r)
    if (c.code === "Internal") internal.push(r)
    if (c.outcome === Outcome.error && before !== undefined && after !== undefined) {
      rejectedChecked++
      if (after.commit !== before.commit) (quiet ? rejectedCommitChanges : unattributedCommitChanges).push(r)
    }
    o.onResult?.(r)
    before = after
    i++
  }
  return {
    count: i,
    seed: o.seed,
    elapsedMs: performance.now() - t0,
    byOutcome,
    byCode,
    byEndpoint,
    findings,
    rejectedCommitChanges,
    unattributedCommitChanges,
    rejectedChecked,
    internal,
  }
}

/** A short text summary of a report. */
export const renderFuzzReport = (r: FuzzReport): string => {
  const lines = [
    `fuzz: ${r.count} payloads (seed ${r.seed}) in ${(r.elapsedMs / 1000).toFixed(1)} s`,
    `outcomes: ${JSON.stringify(r.byOutcome)}`,
    `error codes: ${JSON.stringify(r.byCode)}`,
    `rejected requests with commit index checked: ${r.rejectedChecked}; moved in a quiet cluster: ${r.rejectedCommitChanges.length}; moved, not attributable: ${r.unattributedCommitChanges.length}`,
  ]
  for (const f of r.findings.slice(0, 20))
    lines.push(
      `FINDING #${f.i} ${f.endpoint} ${f.kind}/${f.mutation ?? ""} (${f.note ?? ""}): ${f.outcome} ${f.problem ?? ""}`,
    )
  const internalKinds = new Map<string, number>()
  for (const f of r.internal) {
    const k = `${f.endpoint} ${f.kind}/${f.mutation ?? ""}`
    internalKinds.set(k, (internalKinds.get(k) ?? 0) + 1)
  }
  for (const [k, n] of internalKinds) lines.push(`INTERNAL ×${n}: ${k}`)
  for (const f of r.rejectedCommitChanges.slice(0, 20))
    lines.push(
      `COMMIT MOVED #${f.i} ${f.endpoint} ${f.kind}/${f.mutation ?? ""} (${f.note ?? ""}) -> ${f.code}: ${f.commitBefore} -> ${f.commitAfter}`,
    )
  return lines.join("\n")
}
