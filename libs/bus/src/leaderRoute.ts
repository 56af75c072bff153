// Where a long-lived KV client sends each request (CONTRACT.md §2). Every node
// serves the KV API in one queue group, and a follower relays what needs the
// leader, naming it in an `Ekv-Leader` reply header. A client that follows
// that hint sends to `<p>.kv.node.<leader>.<op>` and skips the relay — one
// NATS round trip and a follower's work less per request. The hint is only
// an optimisation: a stale one costs a relay (and brings a fresh hint), and a
// node that stopped answering sends the client back to the queue group.
import { type KvOpName, LEADER_HINT_HEADER, subjects } from "@ekv/wire"
import type { MsgHdrs } from "@nats-io/transport-node"

export class LeaderRoute {
  readonly #s: ReturnType<typeof subjects>
  #leader: string | null = null
  #bySubject = new Map<KvOpName, string>()

  constructor(prefix: string) {
    this.#s = subjects(prefix)
  }

  /** The node the client currently sends to, or null for the queue group. */
  get leader(): string | null {
    return this.#leader
  }

  /** The subject for `op`: the hinted leader's own, else the queue group's. */
  subject(op: KvOpName): string {
    if (this.#leader === null) return this.#s.kv.op(op)
    let s = this.#bySubject.get(op)
    if (s === undefined) {
      s = this.#s.kv.node(this.#leader).op(op)
      this.#bySubject.set(op, s)
    }
    return s
  }

  /** After any reply: follow its leader hint, when it names another node (a malformed one is ignored). */
  onReply(headers: MsgHdrs | undefined): void {
    const hint = headers?.get(LEADER_HINT_HEADER)
    if (hint === undefined || hint === "" || hint === this.#leader) return
    try {
      this.#s.kv.node(hint)
    } catch {
      return
    }
    this.#leader = hint
    this.#bySubject.clear()
  }

  /**
   * After a request that got no answer from the node (no responders, a
   * timeout, or Unavailable): the next requests go to the queue group until a
   * reply names the leader again.
   */
  onUnanswered(): void {
    this.#leader = null
    this.#bySubject.clear()
  }
}
