// The request path of hot endpoints whose handlers are plain promises (the
// key-value API): the same reply discipline as the fiber dispatcher — exactly
// one reply per request, typed errors as CONTRACT §1 replies, anything else
// Internal with a logged correlation id, bounded concurrency, load shedding,
// Unavailable (ShuttingDown) for what is still running when the grace period
// ends — without a fiber, a scope and a dozen Effect steps per request, which
// cost more than the KV handler itself at thousands of requests a second.
import { ApiError } from "@ekv/wire"
import type { Msg } from "@nats-io/transport-node"
import { Cause, type Result } from "effect"
import { correlationId, internalError, type Outcome } from "./outcome.ts"

/** A hot endpoint: synchronous decode and encode, promise handler. */
export interface LaneHandler<Req, Rep> {
  readonly decode: (data: Uint8Array, msg: Msg) => Result.Result<Req, ApiError.ApiError>
  readonly encode: (reply: Rep) => Uint8Array
  readonly handle: (request: Req, msg: Msg) => Promise<Rep>
}

/** What the lane needs from its owner: replying and logging a defect. */
export interface LaneHost {
  readonly send: (label: string, msg: Msg, outcome: Outcome) => void
  readonly logDefect: (
    id: string,
    label: string,
    subject: string,
    message: string,
    cause: Cause.Cause<unknown>,
  ) => void
}

interface Job {
  readonly label: string
  readonly msg: Msg
  readonly run: () => Promise<Outcome>
  replied: boolean
}

const shuttingDown: Outcome = {
  _tag: "Failure",
  error: new ApiError.Unavailable({
    message: "service is shutting down",
    details: { reason: "ShuttingDown" },
  }),
}

const overloaded: Outcome = {
  _tag: "Failure",
  error: new ApiError.Unavailable({ message: "service overloaded", details: { reason: "Overloaded" } }),
}

export class PromiseLane {
  readonly #host: LaneHost
  readonly #maxConcurrent: number
  readonly #maxPending: number
  readonly #running = new Set<Job>()
  readonly #queue: Job[] = []
  #idle: (() => void) | null = null
  #closed = false

  constructor(host: LaneHost, options: { readonly maxConcurrent: number; readonly maxPending: number }) {
    this.#host = host
    this.#maxConcurrent = Math.max(1, options.maxConcurrent)
    this.#maxPending = Math.max(this.#maxConcurrent, options.maxPending)
  }

  /** Requests admitted and not yet answered. */
  get pending(): number {
    return this.#running.size + this.#queue.length
  }

  dispatch<Req, Rep>(label: string, handler: LaneHandler<Req, Rep>, msg: Msg): void {
    if (this.#closed) {
      this.#host.send(label, msg, shuttingDown)
      return
    }
    if (this.pending >= this.#maxPending) {
      this.#host.send(label, msg, overloaded)
      return
    }
    const job: Job = { label, msg, run: () => this.#outcome(label, handler, msg), replied: false }
    if (this.#running.size < this.#maxConcurrent) this.#start(job)
    else this.#queue.push(job)
  }

  /**
   * Stops admitting requests and waits up to `graceMs` for the admitted ones;
   * those still unanswered then get Unavailable (ShuttingDown).
   */
  async settle(graceMs: number): Promise<void> {
    this.#closed = true
    if (this.pending > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined
      await new Promise<void>((resolve) => {
        this.#idle = resolve
        timer = setTimeout(resolve, graceMs)
      })
      clearTimeout(timer)
    }
    for (const job of [...this.#queue, ...this.#running]) this.#reply(job, shuttingDown)
    this.#queue.length = 0
    this.#running.clear()
  }

  #start(job: Job): void {
    this.#running.add(job)
    void job.run().then((outcome) => {
      this.#reply(job, outcome)
      this.#running.delete(job)
      const next = this.#queue.shift()
      if (next !== undefined) this.#start(next)
      else if (this.pending === 0) this.#idle?.()
    })
  }

  #reply(job: Job, outcome: Outcome): void {
    if (job.replied) return
    job.replied = true
    this.#host.send(job.label, job.msg, outcome)
  }

  /** The reply of one request; a defect is logged and answered Internal. */
  async #outcome<Req, Rep>(label: string, h: LaneHandler<Req, Rep>, msg: Msg): Promise<Outcome> {
    const o = await laneOutcome(h, msg)
    if (o._tag !== "Defect") return o
    const id = correlationId()
    this.#host.logDefect(id, label, msg.subject, "handler failed unexpectedly", Cause.die(o.error))
    return { _tag: "Failure", error: internalError(id) }
  }
}

/** Decode → handle → encode; never rejects: anything but an ApiError is a defect. */
export const laneOutcome = async <Req, Rep>(
  h: LaneHandler<Req, Rep>,
  msg: Msg,
): Promise<Outcome | { readonly _tag: "Defect"; readonly error: unknown }> => {
  try {
    const req = h.decode(msg.data, msg)
    if (req._tag === "Failure") return { _tag: "Failure", error: req.failure }
    const rep = await h.handle(req.success, msg)
    return { _tag: "Success", data: h.encode(rep) }
  } catch (e) {
    if (ApiError.isApiError(e)) return { _tag: "Failure", error: e }
    return { _tag: "Defect", error: e }
  }
}
