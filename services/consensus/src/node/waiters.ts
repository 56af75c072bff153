// Who is waiting for what on this node: proposals by log index (answered
// when that index applies with the same term), linearizable reads (ReadIndex
// rounds, batched: every read queued while a round is in flight joins the
// next one), and waits for the applied index to reach a point.
import { ApiError } from "@ekv/wire"
import type { EntryOutcome } from "../fsm/applier.ts"

export const unavailable = (
  message: string,
  reason: string,
  extra?: Record<string, unknown>,
): ApiError.Unavailable => new ApiError.Unavailable({ message, details: { reason, ...extra } })

interface Deferred<A> {
  readonly resolve: (a: A) => void
  readonly reject: (e: unknown) => void
  readonly timer: ReturnType<typeof setTimeout>
}

const deferred = <A>(
  timeoutMs: number,
  onTimeout: () => unknown,
): { promise: Promise<A>; d: Deferred<A> } => {
  let resolve!: (a: A) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<A>((res, rej) => {
    resolve = res
    reject = rej
  })
  const timer = setTimeout(() => reject(onTimeout()), timeoutMs)
  timer.unref?.()
  const d: Deferred<A> = {
    resolve: (a) => {
      clearTimeout(timer)
      resolve(a)
    },
    reject: (e) => {
      clearTimeout(timer)
      reject(e)
    },
    timer,
  }
  return { promise, d }
}

/** Proposals waiting for their entry to apply. */
export class ProposalWaiters {
  private readonly byIndex = new Map<number, { term: number; d: Deferred<EntryOutcome> }>()
  private readonly timeoutMs: number

  constructor(timeoutMs: number) {
    this.timeoutMs = timeoutMs
  }

  get size(): number {
    return this.byIndex.size
  }

  wait(index: number, term: number): Promise<EntryOutcome> {
    const { promise, d } = deferred<EntryOutcome>(this.timeoutMs, () => {
      this.byIndex.delete(index)
      return unavailable(`entry ${index} did not apply within ${this.timeoutMs} ms`, "Timeout", { index })
    })
    this.byIndex.get(index)?.d.reject(unavailable(`entry ${index} was superseded`, "Superseded"))
    this.byIndex.set(index, { term, d })
    return promise
  }

  /** An entry applied: its waiter succeeds when the term matches (else its proposal was lost). */
  applied(o: EntryOutcome): void {
    const w = this.byIndex.get(o.index)
    if (w === undefined) return
    this.byIndex.delete(o.index)
    if (w.term === o.term) w.d.resolve(o)
    else
      w.d.reject(
        unavailable(`proposal at ${o.index} was replaced by another leader's entry`, "ProposalLost", {
          index: o.index,
        }),
      )
  }

  /** Entries up to `index` applied without outcomes (a snapshot install): their fate is unknown. */
  skippedThrough(index: number): void {
    for (const [i, w] of this.byIndex) {
      if (i <= index) {
        this.byIndex.delete(i)
        w.d.reject(unavailable(`outcome of entry ${i} is unknown (snapshot installed)`, "OutcomeUnknown"))
      }
    }
  }

  failAll(e: unknown): void {
    for (const w of this.byIndex.values()) w.d.reject(e)
    this.byIndex.clear()
  }
}

/** Waits for the applied index to reach a point. */
export class AppliedWaiters {
  private waiting: { index: number; d: Deferred<void> }[] = []
  private readonly timeoutMs: number
  applied: number

  constructor(applied: number, timeoutMs: number) {
    this.applied = applied
    this.timeoutMs = timeoutMs
  }

  wait(index: number): Promise<void> {
    if (this.applied >= index) return Promise.resolve()
    const { promise, d } = deferred<void>(this.timeoutMs, () => {
      this.waiting = this.waiting.filter((w) => w.d !== d)
      return unavailable(`this node did not apply index ${index} within ${this.timeoutMs} ms`, "Timeout")
    })
    this.waiting.push({ index, d })
    return promise
  }

  advance(applied: number): void {
    this.applied = Math.max(this.applied, applied)
    if (this.waiting.length === 0) return
    const keep: typeof this.waiting = []
    for (const w of this.waiting) {
      if (w.index <= this.applied) w.d.resolve()
      else keep.push(w)
    }
    this.waiting = keep
  }

  failAll(e: unknown): void {
    for (const w of this.waiting) w.d.reject(e)
    this.waiting = []
  }
}

/**
 * ReadIndex rounds. `start(ctx)` asks the core for a read index and returns
 * an error to fail the round with, or null when the round is under way.
 */
export class ReadRounds {
  private queued: Deferred<number>[] = []
  private inflight: { ctx: string; waiters: Deferred<number>[] } | null = null
  private seq = 0
  private readonly self: string
  private readonly timeoutMs: number
  private readonly start: (ctx: string) => unknown | null

  constructor(self: string, timeoutMs: number, start: (ctx: string) => unknown | null) {
    this.self = self
    this.timeoutMs = timeoutMs
    this.start = start
  }

  /** A read index: reading once applied ≥ it is linearizable. */
  request(): Promise<number> {
    const { promise, d } = deferred<number>(this.timeoutMs, () =>
      unavailable(`read index not confirmed within ${this.timeoutMs} ms`, "Timeout"),
    )
    this.queued.push(d)
    if (this.inflight === null) this.next()
    return promise
  }

  private next(): void {
    if (this.queued.length === 0) return
    const waiters = this.queued
    this.queued = []
    const ctx = `${this.self}:${Date.now().toString(36)}:${this.seq++}`
    this.inflight = { ctx, waiters }
    const err = this.start(ctx)
    if (err !== null) {
      this.inflight = null
      for (const w of waiters) w.reject(err)
      // Requests queued meanwhile get their own attempt.
      this.next()
      return
    }
    // A round whose heartbeats were lost is abandoned, so later reads are not stuck behind it.
    const timer = setTimeout(() => {
      if (this.inflight?.ctx !== ctx) return
      const ws = this.inflight.waiters
      this.inflight = null
      for (const w of ws) w.reject(unavailable("read index round was not confirmed", "Timeout"))
      this.next()
    }, this.timeoutMs)
    timer.unref?.()
  }

  /** ReadStates from a Ready. */
  confirmed(states: readonly { readonly index: number; readonly ctx: string }[]): void {
    for (const s of states) {
      if (this.inflight !== null && s.ctx === this.inflight.ctx) {
        const ws = this.inflight.waiters
        this.inflight = null
        for (const w of ws) w.resolve(s.index)
        this.next()
      }
    }
  }

  /** Leadership changed: rounds in flight will never be confirmed. */
  failAll(e: unknown): void {
    const ws = [...(this.inflight?.waiters ?? []), ...this.queued]
    this.inflight = null
    this.queued = []
    for (const w of ws) w.reject(e)
  }
}
