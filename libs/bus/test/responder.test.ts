import { describe, expect, it } from "@effect/vitest"
import { ApiError } from "@ekv/wire"
import type { Msg, MsgHdrs, PublishOptions } from "@nats-io/transport-node"
import { Cause, Deferred, Effect, Fiber, Logger, Schema } from "effect"
import { parseErrorReply } from "../src/errorReply.ts"
import { makeDispatcher, makeProcess, type Outcome, outcomeOfCause, sendOutcome } from "../src/responder.ts"

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)

interface Sent {
  readonly data: Uint8Array
  readonly headers: MsgHdrs | undefined
}

/** A request message whose replies are recorded (or whose first `failures` replies throw). */
const fakeMsg = (data: Uint8Array, options?: { reply?: string; failures?: number }) => {
  const sent: Array<Sent> = []
  let failures = options?.failures ?? 0
  const msg = {
    subject: "t.sub",
    sid: 1,
    reply: options?.reply ?? "_INBOX.x",
    data,
    headers: undefined,
    respond: (payload?: Uint8Array | string, opts?: PublishOptions) => {
      if (failures > 0) {
        failures--
        throw new Error("MAX_PAYLOAD_EXCEEDED")
      }
      sent.push({
        data: typeof payload === "string" ? bytes(payload) : (payload ?? new Uint8Array()),
        headers: opts?.headers,
      })
      return true
    },
  } as unknown as Msg
  return { msg, sent }
}

const Req = Schema.Struct({ n: Schema.Number })
const Rep = Schema.Struct({ m: Schema.Number })

const process = makeProcess("t", {
  request: Req,
  reply: Rep,
  handler: (req) => {
    if (req.n === 1) return Effect.fail(ApiError.failedPrecondition("NotBootstrapped", "nope"))
    if (req.n === 2) return Effect.die(new Error("boom"))
    if (req.n === 3) return Effect.sync(() => ({ m: "not a number" }) as unknown as { m: number })
    if (req.n === 4) throw new Error("sync throw")
    if (req.n === 5) return Effect.interrupt
    return Effect.succeed({ m: req.n * 2 })
  },
})

const run = (data: string) => Effect.runPromise(process(fakeMsg(bytes(data)).msg))

describe("makeProcess", () => {
  it("answers a valid request", async () => {
    const o = await run('{"n":21}')
    expect(o._tag).toBe("Success")
    if (o._tag === "Success") expect(JSON.parse(text(o.data))).toEqual({ m: 42 })
  })

  it("turns decode failures into InvalidArgument", async () => {
    for (const body of ["{", '{"n":"x"}', '{"n":1,"x":2}', "[]", "null"]) {
      const o = await run(body)
      expect(o._tag === "Failure" && o.error._tag).toBe("InvalidArgument")
    }
  })

  it("passes a typed ApiError through", async () => {
    const o = await run('{"n":1}')
    expect(o._tag === "Failure" && o.error).toMatchObject({
      _tag: "FailedPrecondition",
      details: { reason: "NotBootstrapped" },
    })
  })

  it("turns a defect, a sync throw and a reply encode failure into Internal with a correlation id", async () => {
    const ids = new Set<string>()
    for (const n of [2, 3, 4]) {
      const o = await Effect.runPromise(
        process(fakeMsg(bytes(`{"n":${n}}`)).msg).pipe(Effect.provide(Logger.layer([]))),
      )
      expect(o._tag).toBe("Failure")
      if (o._tag === "Failure") {
        expect(o.error._tag).toBe("Internal")
        const id = o.error.details?.id
        expect(typeof id).toBe("string")
        ids.add(id as string)
      }
    }
    expect(ids.size).toBe(3)
  })

  it("answers Unavailable when the handler interrupts itself", async () => {
    const o = await run('{"n":5}')
    expect(o._tag === "Failure" && o.error._tag).toBe("Unavailable")
  })
})

describe("outcomeOfCause", () => {
  it.effect("logs the correlation id of an Internal reply", () =>
    Effect.gen(function* () {
      const logged: Array<string> = []
      const logger = Logger.make((o) => {
        logged.push(JSON.stringify(Logger.formatStructured.log(o)))
      })
      const o = yield* outcomeOfCause("ep", "s", Cause.die("kaput")).pipe(
        Effect.provide(Logger.layer([logger])),
      )
      expect(o._tag).toBe("Failure")
      const id = o._tag === "Failure" ? (o.error.details?.id as string) : ""
      expect(logged).toHaveLength(1)
      expect(logged[0]).toContain(id)
      expect(logged[0]).toContain("kaput")
    }),
  )

  it.effect("treats a non-ApiError failure as a bug", () =>
    Effect.gen(function* () {
      const o = yield* outcomeOfCause("ep", "s", Cause.fail(new Error("untyped"))).pipe(
        Effect.provide(Logger.layer([])),
      )
      expect(o._tag === "Failure" && o.error._tag).toBe("Internal")
    }),
  )
})

describe("sendOutcome", () => {
  it.effect("sends a success body without error headers", () =>
    Effect.gen(function* () {
      const { msg, sent } = fakeMsg(bytes(""))
      yield* sendOutcome("t", msg, { _tag: "Success", data: bytes("{}") })
      expect(sent).toHaveLength(1)
      expect(sent[0]?.headers).toBeUndefined()
    }),
  )

  it.effect("sends an error with the service error headers", () =>
    Effect.gen(function* () {
      const { msg, sent } = fakeMsg(bytes(""))
      yield* sendOutcome("t", msg, { _tag: "Failure", error: new ApiError.NotFound({ message: "gone" }) })
      const h = sent[0]?.headers
      expect(h?.get("Nats-Service-Error-Code")).toBe("404")
      expect(h?.get("Nats-Service-Error")).toBe("gone")
      expect(parseErrorReply(h, sent[0]!.data)?._tag).toBe("NotFound")
    }),
  )

  it.effect("falls back to Internal when the reply cannot be published", () =>
    Effect.gen(function* () {
      const { msg, sent } = fakeMsg(bytes(""), { failures: 1 })
      yield* sendOutcome("t", msg, { _tag: "Success", data: bytes("{}") }).pipe(
        Effect.provide(Logger.layer([])),
      )
      expect(sent).toHaveLength(1)
      expect(parseErrorReply(sent[0]?.headers, sent[0]!.data)?._tag).toBe("Internal")
    }),
  )

  it.effect("does nothing for a message without a reply subject", () =>
    Effect.gen(function* () {
      const { msg, sent } = fakeMsg(bytes(""), { reply: "" })
      yield* sendOutcome("t", msg, { _tag: "Success", data: bytes("{}") })
      expect(sent).toHaveLength(0)
    }),
  )
})

describe("makeDispatcher", () => {
  it.live("runs handlers concurrently up to the bound, sheds load past maxPending", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      let running = 0
      let peak = 0
      const slow = (_: Msg): Effect.Effect<Outcome> =>
        Effect.gen(function* () {
          running++
          peak = Math.max(peak, running)
          yield* Deferred.await(gate)
          running--
          return { _tag: "Success", data: bytes("ok") } as const
        })
      const d = yield* makeDispatcher<never>({ maxConcurrent: 3, maxPending: 5 })
      const msgs = Array.from({ length: 7 }, () => fakeMsg(bytes("")))
      for (const m of msgs) d.dispatch("slow", slow, m.msg)
      yield* Effect.sleep("50 millis")
      expect(peak).toBe(3)
      // the 6th and 7th were refused at once
      for (const m of msgs.slice(5)) {
        expect(parseErrorReply(m.sent[0]?.headers, m.sent[0]!.data)?._tag).toBe("Unavailable")
      }
      yield* Deferred.succeed(gate, undefined)
      yield* d.settle
      for (const m of msgs.slice(0, 5)) expect(text(m.sent[0]!.data)).toBe("ok")
    }),
  )

  it.live("answers Unavailable to requests still running when its scope closes", () =>
    Effect.gen(function* () {
      const m = fakeMsg(bytes(""))
      const fiber = yield* Effect.forkChild(
        Effect.scoped(
          Effect.gen(function* () {
            const d = yield* makeDispatcher<never>({ shutdownGraceMs: 10 })
            d.dispatch("never", () => Effect.never, m.msg)
            yield* Effect.sleep("20 millis")
          }),
        ),
      )
      yield* Fiber.join(fiber)
      expect(parseErrorReply(m.sent[0]?.headers, m.sent[0]!.data)?._tag).toBe("Unavailable")
    }),
  )
})
