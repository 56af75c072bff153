// ReadIndex bookkeeping on the leader (etcd's readOnly): each request records
// the commit index at the time it arrived; it becomes a ReadState once a
// quorum has answered a heartbeat carrying its key (which also confirms every
// request queued before it).

import type { NodeId } from "./types.ts"

export interface ReadRequest {
  /** Unique within the leader's term: requester id + the requester's ctx. */
  readonly key: string
  /** The node that asked (the leader itself for local reads). */
  readonly from: NodeId
  readonly ctx: string
  /** Commit index when the request arrived: the read is linearizable once applied ≥ index. */
  readonly index: number
  readonly acks: Set<NodeId>
}

export class ReadOnly {
  private readonly pending = new Map<string, ReadRequest>()
  private queue: string[] = []

  get size(): number {
    return this.queue.length
  }

  /** Registers a request; returns false if one with the same key is already pending. */
  add(from: NodeId, ctx: string, index: number): ReadRequest | null {
    const key = `${from.length}:${from}:${ctx}`
    if (this.pending.has(key)) return null
    const req: ReadRequest = { key, from, ctx, index, acks: new Set() }
    this.pending.set(key, req)
    this.queue.push(key)
    return req
  }

  /** Records `from`'s answer to the heartbeat for `key`; returns the request's ack set, if pending. */
  recvAck(from: NodeId, key: string): ReadonlySet<NodeId> | null {
    const req = this.pending.get(key)
    if (req === undefined) return null
    req.acks.add(from)
    return req.acks
  }

  /** Releases the request `key` and every request queued before it, in order. */
  advance(key: string): ReadRequest[] {
    const at = this.queue.indexOf(key)
    if (at < 0) return []
    const keys = this.queue.slice(0, at + 1)
    this.queue = this.queue.slice(at + 1)
    const out: ReadRequest[] = []
    for (const k of keys) {
      const r = this.pending.get(k)
      if (r !== undefined) out.push(r)
      this.pending.delete(k)
    }
    return out
  }

  /** The most recent pending request's key, sent with heartbeats. */
  lastPendingKey(): string | null {
    return this.queue.length === 0 ? null : this.queue[this.queue.length - 1]!
  }

  clear(): void {
    this.pending.clear()
    this.queue = []
  }
}
