// Forwarding a request to the leader over `<p>.internal.<leader>.admin.<group>.<op>`
// with the same JSON body as the public subject; the reply (success or
// CONTRACT §1 error) comes back as is.
import { errorHeaders, errorReply, parseErrorReply, requestFailure } from "@ekv/bus"
import { ApiError, LEADER_HINT_HEADER, type RequestError, subjects } from "@ekv/wire"
import {
  createInbox,
  headers,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type Subscription,
} from "@nats-io/transport-node"
import { Result } from "effect"

export const FORWARD_TIMEOUT_MS = 12_000

/** Set on a request one node forwards to another, so the receiver never forwards it again. */
export const FORWARDED_HEADER = "Ekv-Forwarded"

/** `<p>.internal.<node>.admin.<group>.<op>` (group: "kv" or "cluster"). */
export const internalAdminSubject = (
  prefix: string,
  node: string,
  group: "kv" | "cluster" | "node",
  op: string,
): string => `${subjects(prefix).internal(node).admin.op(group)}.${op}`

export const forwardRequest = async <A>(
  nc: NatsConnection,
  subject: string,
  body: Uint8Array,
  decodeReply: (bytes: Uint8Array) => Result.Result<A, RequestError>,
  timeoutMs = FORWARD_TIMEOUT_MS,
): Promise<A> => {
  let msg: Awaited<ReturnType<NatsConnection["request"]>>
  try {
    const h = headers()
    h.set(FORWARDED_HEADER, "1")
    msg = await nc.request(subject, body, { timeout: timeoutMs, headers: h })
  } catch (e) {
    throw requestFailure(subject, e)
  }
  const err: ApiError.ApiError | undefined = parseErrorReply(msg.headers, msg.data)
  if (err !== undefined) throw err
  const r = decodeReply(msg.data)
  if (Result.isFailure(r))
    throw new ApiError.Internal({ message: `undecodable reply on ${subject}: ${r.failure.message}` })
  return r.success
}

/** What a relay answers when the leader does not: typed, never NATS's bare 503. */
const relayFailure = (subject: string, reason: "NoResponders" | "Timeout" | "ShuttingDown") =>
  new ApiError.Unavailable({
    message:
      reason === "NoResponders"
        ? `the leader does not answer on ${subject}; retry`
        : reason === "Timeout"
          ? `no reply from the leader on ${subject} in time; the outcome is unknown`
          : "node is shutting down",
    details: { subject, reason },
  })

const respondError = (msg: Msg, e: ApiError.ApiError): void => {
  const reply = errorReply(e)
  try {
    msg.respond(reply.body, { headers: errorHeaders(reply) })
  } catch {
    // The connection is gone; nothing more can reach the requester.
  }
}

/** The connection's inbox prefix (CONTRACT §9: `_INBOX.<user>`), which its permissions allow. */
const inboxPrefixOf = (nc: NatsConnection): string | undefined =>
  (nc as unknown as { readonly options?: { readonly inboxPrefix?: string } }).options?.inboxPrefix

interface Pending {
  readonly msg: Msg
  readonly subject: string
  readonly at: number
  /** The node relayed to, named in the reply's `Ekv-Leader` header. */
  readonly leader: string
}

/**
 * The reply's headers plus `Ekv-Leader: <leader>`. A success reply has no
 * headers of its own, so one header set per leader serves them all.
 */
class LeaderHints {
  readonly #plain = new Map<string, MsgHdrs>()

  of(leader: string, reply: MsgHdrs | undefined): MsgHdrs {
    if (reply === undefined) {
      let h = this.#plain.get(leader)
      if (h === undefined) {
        h = headers()
        h.set(LEADER_HINT_HEADER, leader)
        this.#plain.set(leader, h)
      }
      return h
    }
    const h = headers(reply.code, reply.description)
    for (const k of reply.keys()) for (const v of reply.values(k)) h.append(k, v)
    h.set(LEADER_HINT_HEADER, leader)
    return h
  }
}

/**
 * A follower's relay of public requests to the leader, as bytes: the request
 * goes out with a reply subject of this node's own inbox, the leader's reply
 * (success or CONTRACT §1 error, headers included) goes back to the requester
 * unchanged but for one added header, `Ekv-Leader` (the node relayed to), so a
 * client can address the leader directly next time. Nothing is decoded here. The follower answers every request it
 * received (NATS `allow_responses` expects it), and a leader that is gone or
 * silent becomes a typed Unavailable. One subscription for all requests, one
 * timer for all deadlines: no per-request allocation beyond the map entry.
 */
export class RequestRelay {
  readonly #nc: NatsConnection
  readonly #timeoutMs: number
  readonly #prefix: string
  readonly #sub: Subscription
  readonly #pending = new Map<string, Pending>()
  readonly #hints = new LeaderHints()
  readonly #sweep: ReturnType<typeof setInterval>
  #seq = 0

  constructor(nc: NatsConnection, timeoutMs = FORWARD_TIMEOUT_MS) {
    this.#nc = nc
    this.#timeoutMs = timeoutMs
    const inbox = createInbox(inboxPrefixOf(nc))
    this.#prefix = `${inbox}.`
    this.#sub = nc.subscribe(`${inbox}.*`, {
      callback: (err, m) => {
        if (err === null) this.#onReply(m)
      },
    })
    this.#sweep = setInterval(() => this.#expire(), Math.min(1_000, timeoutMs)).unref()
  }

  /** Requests in flight (for tests and metrics). */
  get pending(): number {
    return this.#pending.size
  }

  /** Sends `msg` to `subject`, served by node `leader`; the reply goes back to `msg`'s requester. */
  relay(subject: string, msg: Msg, leader: string): void {
    const token = (this.#seq++).toString(36)
    this.#pending.set(token, { msg, subject, at: performance.now(), leader })
    try {
      this.#nc.publish(subject, msg.data, {
        reply: this.#prefix + token,
        ...(msg.headers === undefined ? {} : { headers: msg.headers }),
      })
    } catch {
      this.#pending.delete(token)
      respondError(msg, relayFailure(subject, "NoResponders"))
    }
  }

  #onReply(m: Msg): void {
    const token = m.subject.slice(this.#prefix.length)
    const p = this.#pending.get(token)
    if (p === undefined) return // answered already (timed out)
    this.#pending.delete(token)
    // NATS's own "no responders" status: the leader's subscription is gone (process died).
    if (m.headers?.code === 503 && m.data.length === 0) {
      respondError(p.msg, relayFailure(p.subject, "NoResponders"))
      return
    }
    try {
      p.msg.respond(m.data, { headers: this.#hints.of(p.leader, m.headers) })
    } catch {
      // The connection is gone; nothing more can reach the requester.
    }
  }

  #expire(): void {
    const deadline = performance.now() - this.#timeoutMs
    for (const [token, p] of this.#pending) {
      if (p.at > deadline) break // insertion order is time order
      this.#pending.delete(token)
      respondError(p.msg, relayFailure(p.subject, "Timeout"))
    }
  }

  /** Stops relaying; requests still in flight get Unavailable (ShuttingDown). */
  close(): void {
    clearInterval(this.#sweep)
    this.#sub.unsubscribe()
    for (const p of this.#pending.values()) respondError(p.msg, relayFailure(p.subject, "ShuttingDown"))
    this.#pending.clear()
  }
}
