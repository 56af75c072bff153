// Helpers shared by the encryption lifecycle suites (test/integration/lifecycle):
// random keys and values that no compressor or neighbour can hide, written
// sets with their acknowledged indexes, concurrent writer clients that keep
// acknowledged and unacknowledged writes apart, and read-back checks.
import { randomBytes } from "node:crypto"
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node"
import type { Needle } from "./audit.ts"
import type { Reply } from "./processCluster.ts"
import { type EkvSystem, parseReply, StopPolling, sleep } from "./system.ts"

/** The value of an ok reply, or an Error naming the code, message and details. */
export const ok = <A>(what: string, r: Reply<A>): A => {
  if (!r.ok)
    throw new Error(
      `${what}: ${r.error.code} (${r.status}): ${r.error.message} ${JSON.stringify(r.error.details ?? {})}`,
    )
  return r.value
}

/** A key `<prefix>/<24 random base64url chars>`: its random part is the needle to search for. */
export const randKey = (prefix: string): string => `${prefix}/${randomBytes(18).toString("base64url")}`

/** 48 random bytes: incompressible, so found in any file that holds it in the clear. */
export const randValue = (): Buffer => randomBytes(48)

export interface Written {
  readonly key: string
  readonly value: Buffer
  readonly index: number
}

/** Puts `n` fresh random keys under `prefix` (retrying Unavailable); returns them with their indexes. */
export const writeSet = async (sys: EkvSystem, prefix: string, n: number): Promise<Written[]> => {
  const out: Written[] = []
  for (let i = 0; i < n; i++) {
    const key = randKey(prefix)
    const value = randValue()
    out.push({ key, value, index: await sys.putRetry(key, value) })
  }
  return out
}

/** Reads every written key back (linearizable); returns the mismatches as text. */
export const readBack = async (sys: EkvSystem, written: readonly Written[]): Promise<string[]> => {
  const bad: string[] = []
  for (const w of written) {
    const r = await sys.kv.get(w.key, "linearizable", 15_000).catch((e: unknown) => e as Error)
    if (r instanceof Error) bad.push(`${w.key}: ${r.message}`)
    else if (!r.ok) bad.push(`${w.key}: ${r.error.code}: ${r.error.message}`)
    else if (!r.value.found) bad.push(`${w.key}: not found (written at ${w.index})`)
    else if (!Buffer.from(r.value.value ?? "", "base64").equals(w.value)) bad.push(`${w.key}: other value`)
  }
  return bad
}

/** Needles for the random parts of keys (`key`) and the values (`value`). */
export const keyNeedles = (ws: readonly Written[]): Needle[] =>
  ws.map((w) => ({ label: `key ${w.key}`, bytes: Buffer.from(w.key.slice(w.key.lastIndexOf("/") + 1)) }))
export const valueNeedles = (ws: readonly Written[]): Needle[] =>
  ws.map((w) => ({ label: `value of ${w.key}`, bytes: w.value }))

// ---------------------------------------------------------------------------
// concurrent writers

export interface Attempt {
  readonly client: number
  /** The keys of the attempt (one put, or a batch of several keys). */
  readonly keys: readonly { key: string; value: Buffer }[]
  readonly startedAt: number
  readonly endedAt: number
  /** The acknowledged index, or undefined for an unacknowledged attempt. */
  readonly index?: number
  /** The error of an unacknowledged attempt. */
  readonly error?: string
}

/**
 * `clients` operator connections, each writing fresh keys under
 * `<prefix>/c<i>` as fast as it can (every third attempt a 3-key batch), each
 * attempt recorded as acknowledged (with its index) or not (with the error).
 * Nothing is retried: an unacknowledged attempt stays one.
 */
export class Writers {
  readonly attempts: Attempt[] = []
  private running = true
  private readonly loops: Promise<void>[] = []
  private readonly conns: NatsConnection[] = []

  static async start(sys: EkvSystem, prefix: string, clients = 8, timeoutMs = 8_000): Promise<Writers> {
    const w = new Writers()
    for (let c = 0; c < clients; c++) w.conns.push(await sys.operatorConnection())
    w.conns.forEach((nc, c) => {
      w.loops.push(w.loop(nc, c, `${prefix}/c${c}`, timeoutMs))
    })
    return w
  }

  private async loop(nc: NatsConnection, client: number, prefix: string, timeoutMs: number): Promise<void> {
    let n = 0
    while (this.running) {
      n++
      const batch = n % 3 === 0
      const keys = Array.from({ length: batch ? 3 : 1 }, () => ({ key: randKey(prefix), value: randValue() }))
      const [subject, body] = batch
        ? [
            "ekv.kv.batch",
            { ops: keys.map((k) => ({ op: "put", key: k.key, value: k.value.toString("base64") })) },
          ]
        : ["ekv.kv.put", { key: keys[0]?.key, value: keys[0]?.value.toString("base64") }]
      const startedAt = Date.now()
      try {
        const m = await nc.request(subject, JSON.stringify(body), { timeout: timeoutMs })
        const r = parseReply<{ index: number }>(m.headers, m.data)
        if (r.ok) this.attempts.push({ client, keys, startedAt, endedAt: Date.now(), index: r.value.index })
        else {
          this.attempts.push({
            client,
            keys,
            startedAt,
            endedAt: Date.now(),
            error: `${r.error.code}: ${r.error.message}`,
          })
          await sleep(50)
        }
      } catch (e) {
        this.attempts.push({
          client,
          keys,
          startedAt,
          endedAt: Date.now(),
          error: e instanceof Error ? e.message : String(e),
        })
        await sleep(50)
      }
    }
  }

  acknowledged(): Attempt[] {
    return this.attempts.filter((a) => a.index !== undefined)
  }

  unacknowledged(): Attempt[] {
    return this.attempts.filter((a) => a.index === undefined)
  }

  async stop(): Promise<void> {
    this.running = false
    await Promise.all(this.loops)
    await Promise.all(this.conns.map((c) => c.close().catch(() => undefined)))
  }
}

/**
 * Reads back every attempt: an acknowledged one must be fully present with
 * its values; an unacknowledged one fully present or fully absent. Returns
 * the violations as text.
 */
export const checkAttempts = async (sys: EkvSystem, attempts: readonly Attempt[]): Promise<string[]> => {
  const bad: string[] = []
  for (const a of attempts) {
    const seen: boolean[] = []
    for (const k of a.keys) {
      const r = await sys.kv.get(k.key, "linearizable", 15_000)
      if (!r.ok) {
        bad.push(`${k.key}: read failed: ${r.error.code}: ${r.error.message}`)
        continue
      }
      if (r.value.found && !Buffer.from(r.value.value ?? "", "base64").equals(k.value))
        bad.push(`${k.key}: holds another value`)
      seen.push(r.value.found)
    }
    const present = seen.filter(Boolean).length
    if (a.index !== undefined && present !== a.keys.length)
      bad.push(
        `acknowledged at ${a.index}: ${a.keys.length - present} of ${a.keys.length} keys missing (${a.keys[0]?.key})`,
      )
    if (a.index === undefined && present !== 0 && present !== a.keys.length)
      bad.push(`unacknowledged (${a.error}): ${present} of ${a.keys.length} keys present (${a.keys[0]?.key})`)
  }
  return bad
}

/** Every written key of some attempts as Written records (index -1 when unacknowledged). */
export const attemptsAsWritten = (attempts: readonly Attempt[]): Written[] =>
  attempts.flatMap((a) => a.keys.map((k) => ({ key: k.key, value: k.value, index: a.index ?? -1 })))

// ---------------------------------------------------------------------------
// status helpers

/** Polls encryption status until `pred` holds; returns it. */
export const waitForEncryption = <A>(
  sys: EkvSystem,
  what: string,
  pred: (s: import("./system.ts").EncryptionStatusView) => A | undefined,
  timeoutMs = 60_000,
): Promise<A> =>
  sys.until(
    what,
    async () => {
      const s = await sys.encryptionStatus(5_000)
      if (!s.ok) throw new Error(`${s.error.code}: ${s.error.message}`)
      return pred(s.value)
    },
    timeoutMs,
  )

/** Rewrite progress of every node reported done (status `nodes[].rewrite.done`); a stopped one fails. */
export const waitForRewriteDone = (sys: EkvSystem, nodes: readonly string[], timeoutMs = 120_000) =>
  waitForEncryption(
    sys,
    "rewrite done on every node",
    (s) => {
      const progress = nodes.map((n) => {
        const v = s.nodes.find((x) => x.node === n) as
          | { rewrite?: { done: boolean; error?: string } }
          | undefined
        if (v?.rewrite?.error !== undefined)
          throw new StopPolling(`rewrite stopped on ${n}: ${v.rewrite.error}`)
        return v?.rewrite?.done === true
      })
      return progress.every((d) => d) ? s : undefined
    },
    timeoutMs,
  )

/** Moves leadership to `node` through the admin API and waits until it leads. */
export const leadOn = async (sys: EkvSystem, node: string): Promise<void> => {
  ok("transfer-leader", await sys.cluster("transfer-leader", { node }, 30_000))
  await sys.until(
    `${node} leads`,
    async () => {
      const s = await sys.status()
      return s.ok && s.value.leader === node ? true : undefined
    },
    30_000,
  )
}

/** The halts any member reports in cluster status, plus those in every running node's health. */
export const halts = async (sys: EkvSystem): Promise<string[]> => {
  const out: string[] = []
  const s = await sys.status(5_000)
  if (s.ok)
    for (const m of s.value.members)
      if (m.halted !== undefined)
        out.push(`${m.node} (status): halted at ${m.halted.index}: ${m.halted.reason}`)
  for (const n of sys.runningNodes()) {
    const h = await sys.health(n, 2_000).catch(() => undefined)
    if (h?.ok && h.value.halted !== undefined)
      out.push(`${n} (health): halted at ${h.value.halted.index}: ${h.value.halted.reason}`)
  }
  return out
}

/** Cluster events (CONTRACT §5) of some kinds, as bodies. */
export const clusterEvents = async (
  sys: EkvSystem,
  kinds: readonly string[],
): Promise<Record<string, unknown>[]> =>
  (await sys.events("ekv.events.cluster.>")).map((e) => e.body).filter((b) => kinds.includes(String(b.kind)))

/**
 * The first encryption mutator after a start: retried while the leader's gate
 * answers ApplierNotReady (its writer session is still opening), up to
 * `timeoutMs`. Every member reporting health `ok` should already imply a ready
 * applier (CONTRACT §4); a retry that was needed is printed as a finding.
 */
export const firstMutator = async <A = Record<string, unknown>>(
  sys: EkvSystem,
  op: string,
  body: unknown = {},
  timeoutMs = 30_000,
): Promise<Reply<A>> => {
  const t0 = Date.now()
  let tries = 0
  for (;;) {
    const r = await sys.encryption<A>(op, body, 60_000)
    tries++
    const notReady =
      !r.ok && r.error.code === "FailedPrecondition" && r.error.details?.reason === "ApplierNotReady"
    if (!notReady || Date.now() - t0 > timeoutMs) {
      if (tries > 1)
        console.warn(
          `FINDING: ${op} answered ApplierNotReady ${tries - 1} time(s) for ${Date.now() - t0} ms although every member reported health ok and capability encryption_capable`,
        )
      return r
    }
    await sleep(250)
  }
}

/**
 * A connection as one of the services' own bus users, to watch copies of its
 * internal requests (a harness orders an interleaving by them). The caller closes it.
 */
export const spyAs = (sys: EkvSystem, user: string): Promise<NatsConnection> =>
  connect({ servers: sys.nats.servers, user, pass: sys.passwords[user] ?? "" })

/** Waits for the next message on `sub` whose JSON body satisfies `pred`, within `ms`. */
export const nextOn = async (
  sub: Subscription,
  what: string,
  ms: number,
  pred: (body: Record<string, unknown>) => boolean = () => true,
): Promise<void> => {
  const it = sub[Symbol.asyncIterator]()
  const deadline = Date.now() + ms
  for (;;) {
    const left = deadline - Date.now()
    if (left <= 0) throw new Error(`harness: no ${what} within ${ms} ms`)
    const m = await Promise.race([it.next(), sleep(left).then(() => null)])
    if (m === null) continue
    if (m.done === true) throw new Error(`harness: subscription closed before ${what}`)
    if (pred(JSON.parse(new TextDecoder().decode(m.value.data)) as Record<string, unknown>)) return
  }
}
