// @ekv/bus against a real nats-server (process or container, per EKV_TEST_NATS):
// every request gets exactly one reply, errors travel as CONTRACT §1 replies
// and come back as the matching ApiError class.

import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, layer } from "@effect/vitest"
import {
  endpoint,
  ensureStream,
  Nats,
  natsLayer,
  parseErrorReply,
  publishDeduped,
  request,
  requestBytes,
  requestMsg,
  ServiceErrorCodeHeader,
  ServiceErrorHeader,
  serveMicro,
  serveSubject,
} from "@ekv/bus"
import { ApiError } from "@ekv/wire"
import type { Msg } from "@nats-io/transport-node"
import { Context, Deferred, Effect, Layer, Logger, Schema } from "effect"
import fc from "fast-check"
import { startNats } from "../src/mod.ts"

const fixture = await startNats({ jetstream: true })
afterAll(() => fixture.stop())

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)

// --- the service under test -------------------------------------------------

const Put = Schema.Struct({
  key: Schema.String.check(Schema.isMinLength(1)),
  value: Schema.Number,
  tags: Schema.optional(Schema.Array(Schema.String)),
})
const PutReply = Schema.Struct({ index: Schema.Number, key: Schema.String })
const Fail = Schema.Struct({ code: Schema.Literals(Object.values(ApiError.Code) as [ApiError.Code]) })
const Boom = Schema.Struct({ how: Schema.Literals(["throw", "die", "bad-reply", "reject"]) })
const Empty = Schema.Struct({})
const Ok = Schema.Struct({ ok: Schema.Boolean })

/** A service from the caller's layer, to show handlers run with the caller's context. */
class Counter extends Context.Service<Counter, { next: () => number }>()("test/Counter") {}
const counterLayer = Layer.sync(Counter, () => {
  let n = 0
  return { next: () => ++n }
})

/** Log lines, so a test can find the correlation id of an Internal reply. */
const logged: Array<string> = []
const captureLogger = Logger.make((o) => {
  logged.push(JSON.stringify(Logger.formatStructured.log(o)))
})

const slowGate = Effect.runSync(Deferred.make<void>())

const service = serveMicro({
  name: "ekv-test",
  version: "0.1.0",
  description: "bus integration test",
  queue: "ekv-test",
  maxConcurrent: 16,
  shutdownGraceMs: 200,
  endpoints: [
    endpoint({
      name: "put",
      subject: "ekvtest.put",
      request: Put,
      reply: PutReply,
      handler: (req) => Effect.map(Effect.service(Counter), (c) => ({ index: c.next(), key: req.key })),
    }),
    endpoint({
      name: "fail",
      subject: "ekvtest.fail",
      request: Fail,
      reply: Ok,
      handler: (req) =>
        Effect.fail(
          req.code === "FailedPrecondition"
            ? ApiError.failedPrecondition("NotBootstrapped", "cluster is not bootstrapped", { leader: "n1" })
            : ApiError.make(req.code, `failing with ${req.code}`, { code: req.code }),
        ),
    }),
    endpoint({
      name: "boom",
      subject: "ekvtest.boom",
      request: Boom,
      reply: Ok,
      handler: (req) => {
        switch (req.how) {
          case "throw":
            throw new Error("thrown while building the effect")
          case "die":
            return Effect.die(new Error("died"))
          case "bad-reply":
            return Effect.succeed({ ok: "yes" } as unknown as { ok: boolean })
          case "reject":
            return Effect.promise(() => Promise.reject(new Error("rejected promise")))
        }
      },
    }),
    endpoint({
      name: "slow",
      subject: "ekvtest.slow",
      request: Empty,
      reply: Ok,
      handler: () => Effect.as(Deferred.await(slowGate), { ok: true }),
    }),
    endpoint({
      name: "huge",
      subject: "ekvtest.huge",
      request: Empty,
      reply: Schema.Struct({ s: Schema.String }),
      // Over the server's 4 MiB max_payload: the reply cannot be sent as is.
      handler: () => Effect.succeed({ s: "x".repeat(5 * 1024 * 1024) }),
    }),
    endpoint({
      name: "custom",
      subject: "ekvtest.custom",
      // A custom decoder (how the wire package's decoder plugs in).
      request: (data: Uint8Array, msg: Msg) =>
        data.length === 0
          ? Effect.fail(new ApiError.LocalEpochOutOfRange({ message: "empty" }))
          : Effect.succeed({ size: data.length, hdr: msg.headers?.get("X-Test") ?? "" }),
      reply: Schema.Struct({ size: Schema.Number, hdr: Schema.String }),
      handler: (req) => Effect.succeed(req),
    }),
  ],
})

// An internal binary subject: reverses its payload; an empty one is NotFound.
const binary = serveSubject({
  subject: "ekvtest.internal.reverse",
  queue: "ekv-test-internal",
  request: (data: Uint8Array) => Effect.succeed(data),
  reply: (b: Uint8Array) => b,
  handler: (data) =>
    data.length === 0
      ? Effect.fail(new ApiError.NotFound({ message: "nothing" }))
      : Effect.succeed(data.toReversed()),
})

const TestLayer = Layer.mergeAll(Layer.effectDiscard(service), Layer.effectDiscard(binary)).pipe(
  Layer.provideMerge(counterLayer),
  Layer.provideMerge(natsLayer({ servers: fixture.servers, name: "bus-test" })),
  Layer.provideMerge(Logger.layer([captureLogger])),
)

const raw = (subject: string, body: string | Uint8Array, timeoutMs = 2_000) =>
  requestMsg(subject, typeof body === "string" ? bytes(body) : body, { timeoutMs })

const errorOf = (m: Msg) => {
  const code = m.headers?.get(ServiceErrorCodeHeader)
  return {
    code: code === undefined || code === "" ? undefined : Number(code),
    description: m.headers?.get(ServiceErrorHeader),
    body: JSON.parse(text(m.data)) as {
      error: { code: string; message: string; details?: Record<string, unknown> }
    },
  }
}

describe(`bus over nats-server (${fixture.mode})`, () => {
  layer(TestLayer, { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("answers typed requests with the caller's context", () =>
      Effect.gen(function* () {
        const a = yield* request("ekvtest.put", Put, PutReply, { key: "a", value: 1 }, { timeoutMs: 2_000 })
        const b = yield* request("ekvtest.put", Put, PutReply, { key: "b", value: 2 }, { timeoutMs: 2_000 })
        expect(a.key).toBe("a")
        expect(b.index).toBe(a.index + 1)
      }),
    )

    it.effect("malformed JSON is InvalidArgument with the service error headers and body", () =>
      Effect.gen(function* () {
        const m = yield* raw("ekvtest.put", '{"key": "a", ')
        const e = errorOf(m)
        expect(e.code).toBe(400)
        expect(e.description).toMatch(/not valid JSON/)
        expect(e.body.error.code).toBe("InvalidArgument")
        expect(e.body.error.message).toBe(e.description)
      }),
    )

    it.effect("an unknown field is InvalidArgument naming it", () =>
      Effect.gen(function* () {
        const m = yield* raw("ekvtest.put", '{"key":"a","value":1,"valeu":2}')
        const e = errorOf(m)
        expect(e.code).toBe(400)
        expect(e.body.error.code).toBe("InvalidArgument")
        expect(e.body.error.message).toContain('["valeu"]')
        const nested = errorOf(yield* raw("ekvtest.put", '{"key":"a","value":"1"}'))
        expect(nested.body.error.message).toContain('["value"]')
      }),
    )

    it.effect("a handler's FailedPrecondition is 412 with its details", () =>
      Effect.gen(function* () {
        const e = errorOf(yield* raw("ekvtest.fail", '{"code":"FailedPrecondition"}'))
        expect(e.code).toBe(412)
        expect(e.description).toBe("cluster is not bootstrapped")
        expect(e.body).toEqual({
          error: {
            code: "FailedPrecondition",
            message: "cluster is not bootstrapped",
            details: { leader: "n1", reason: "NotBootstrapped" },
          },
        })
      }),
    )

    it.effect("the client maps every error code back to its class", () =>
      Effect.gen(function* () {
        for (const code of Object.values(ApiError.Code)) {
          const e = yield* Effect.flip(request("ekvtest.fail", Fail, Ok, { code }, { timeoutMs: 2_000 }))
          expect(e._tag).toBe(code)
          expect(ApiError.isApiError(e)).toBe(true)
          const cls = {
            InvalidArgument: ApiError.InvalidArgument,
            NotFound: ApiError.NotFound,
            FailedPrecondition: ApiError.FailedPrecondition,
            CapabilityCheckFailed: ApiError.CapabilityCheckFailed,
            LocalEpochOutOfRange: ApiError.LocalEpochOutOfRange,
            NodeIDCollision: ApiError.NodeIDCollision,
            LocalEpochRollback: ApiError.LocalEpochRollback,
            Unavailable: ApiError.Unavailable,
            Halted: ApiError.Halted,
            IntegrityError: ApiError.IntegrityError,
            Internal: ApiError.Internal,
          }[code]
          expect(e).toBeInstanceOf(cls)
          if (code !== "FailedPrecondition") expect(e.details).toEqual({ code })
        }
      }),
    )

    it.effect("a defect is Internal with a logged correlation id, and the service lives on", () =>
      Effect.gen(function* () {
        for (const how of ["throw", "die", "bad-reply", "reject"] as const) {
          const m = yield* raw("ekvtest.boom", JSON.stringify({ how }))
          const e = errorOf(m)
          expect(e.code).toBe(500)
          expect(e.body.error.code).toBe("Internal")
          const id = e.body.error.details?.id
          expect(id).toMatch(/^[0-9a-f-]{36}$/)
          expect(logged.some((line) => line.includes(id as string))).toBe(true)
          const typed = yield* Effect.flip(request("ekvtest.boom", Boom, Ok, { how }, { timeoutMs: 2_000 }))
          expect(typed).toBeInstanceOf(ApiError.Internal)
        }
        const after = yield* request(
          "ekvtest.put",
          Put,
          PutReply,
          { key: "alive", value: 0 },
          { timeoutMs: 2_000 },
        )
        expect(after.key).toBe("alive")
      }),
    )

    it.effect("a custom decoder sees the bytes and headers, and its errors are replies", () =>
      Effect.gen(function* () {
        const { headers } = yield* Effect.promise(() => import("@nats-io/transport-node"))
        const h = headers()
        h.set("X-Test", "yes")
        const ok = yield* requestMsg("ekvtest.custom", bytes("abc"), { timeoutMs: 2_000, headers: h })
        expect(JSON.parse(text(ok.data))).toEqual({ size: 3, hdr: "yes" })
        const e = yield* Effect.flip(requestBytes("ekvtest.custom", new Uint8Array(), { timeoutMs: 2_000 }))
        expect(e).toBeInstanceOf(ApiError.LocalEpochOutOfRange)
      }),
    )

    it.effect("$SRV.PING / INFO / STATS discover the service and its endpoints", () =>
      Effect.gen(function* () {
        const ping = JSON.parse(text((yield* raw("$SRV.PING.ekv-test", "")).data))
        expect(ping).toMatchObject({
          type: "io.nats.micro.v1.ping_response",
          name: "ekv-test",
          version: "0.1.0",
        })
        const info = JSON.parse(text((yield* raw("$SRV.INFO.ekv-test", "")).data))
        expect(info.description).toBe("bus integration test")
        const endpoints = info.endpoints as Array<{ name: string; subject: string; queue_group: string }>
        expect(endpoints.map((e) => e.name).sort()).toEqual(["boom", "custom", "fail", "huge", "put", "slow"])
        expect(endpoints.find((e) => e.name === "put")).toMatchObject({
          subject: "ekvtest.put",
          queue_group: "ekv-test",
        })
        const stats = JSON.parse(text((yield* raw("$SRV.STATS.ekv-test", "")).data))
        expect(stats.type).toBe("io.nats.micro.v1.stats_response")
      }),
    )

    it.effect("no responders and timeouts are Unavailable", () =>
      Effect.gen(function* () {
        const none = yield* Effect.flip(request("ekvtest.nobody", Empty, Ok, {}, { timeoutMs: 2_000 }))
        expect(none).toBeInstanceOf(ApiError.Unavailable)
        expect(none.details).toMatchObject({ reason: "NoResponders" })
        const slow = yield* Effect.flip(request("ekvtest.slow", Empty, Ok, {}, { timeoutMs: 150 }))
        expect(slow).toBeInstanceOf(ApiError.Unavailable)
        expect(slow.details).toMatchObject({ reason: "Timeout" })
      }),
    )

    it.effect("a slow handler does not hold up the others", () =>
      Effect.gen(function* () {
        const pending = yield* Effect.forkChild(request("ekvtest.slow", Empty, Ok, {}, { timeoutMs: 10_000 }))
        for (let i = 0; i < 20; i++) {
          yield* request("ekvtest.put", Put, PutReply, { key: `k${i}`, value: i }, { timeoutMs: 1_000 })
        }
        yield* Deferred.succeed(slowGate, undefined)
        const { Fiber } = yield* Effect.promise(() => import("effect"))
        expect(yield* Fiber.join(pending)).toEqual({ ok: true })
      }),
    )

    it.effect("a reply over max_payload becomes Internal instead of silence", () =>
      Effect.gen(function* () {
        const e = yield* Effect.flip(request("ekvtest.huge", Empty, Ok, {}, { timeoutMs: 2_000 }))
        expect(e).toBeInstanceOf(ApiError.Internal)
        expect(e.details?.id).toBeTypeOf("string")
      }),
    )

    it.effect("a request over max_payload is InvalidArgument", () =>
      Effect.gen(function* () {
        const e = yield* Effect.flip(
          requestBytes("ekvtest.put", new Uint8Array(5 * 1024 * 1024), { timeoutMs: 2_000 }),
        )
        expect(e).toBeInstanceOf(ApiError.InvalidArgument)
      }),
    )

    it.effect("an encode failure on the client is InvalidArgument and sends nothing", () =>
      Effect.gen(function* () {
        const Strict = Schema.Struct({ n: Schema.Number.check(Schema.isInt()) })
        const e = yield* Effect.flip(request("ekvtest.nobody", Strict, Ok, { n: 1.5 }, { timeoutMs: 500 }))
        expect(e).toBeInstanceOf(ApiError.InvalidArgument)
      }),
    )

    it.effect("an undecodable success reply is Internal", () =>
      Effect.gen(function* () {
        const Wrong = Schema.Struct({ index: Schema.String })
        const e = yield* Effect.flip(
          request("ekvtest.put", Put, Wrong, { key: "w", value: 1 }, { timeoutMs: 2_000 }),
        )
        expect(e).toBeInstanceOf(ApiError.Internal)
      }),
    )

    it.effect("a plain internal subject answers bytes and maps its errors", () =>
      Effect.gen(function* () {
        const r = yield* requestBytes("ekvtest.internal.reverse", new Uint8Array([1, 2, 3]), {
          timeoutMs: 2_000,
        })
        expect([...r]).toEqual([3, 2, 1])
        const e = yield* Effect.flip(
          requestBytes("ekvtest.internal.reverse", new Uint8Array(), { timeoutMs: 2_000 }),
        )
        expect(e).toBeInstanceOf(ApiError.NotFound)
      }),
    )

    it.effect("survives 1,000 fuzzed payloads, answering each with a success or a typed error", () =>
      Effect.gen(function* () {
        const nearValid = fc
          .record(
            {
              key: fc.oneof(fc.string(), fc.constant(""), fc.integer(), fc.constant(null)),
              value: fc.oneof(fc.double(), fc.string(), fc.constant(null), fc.boolean()),
              tags: fc.oneof(fc.array(fc.string()), fc.string(), fc.array(fc.integer())),
              extra: fc.jsonValue(),
            },
            { requiredKeys: [] },
          )
          .map((o) => bytes(JSON.stringify(o)))
        const payload = fc.oneof(
          fc.uint8Array({ maxLength: 512 }),
          fc.jsonValue().map((j) => bytes(JSON.stringify(j))),
          nearValid,
          fc.string().map(bytes),
        )
        const subject = fc.constantFrom("ekvtest.put", "ekvtest.fail", "ekvtest.boom", "ekvtest.custom")
        const cases = fc.sample(fc.tuple(subject, payload), { numRuns: 1_000, seed: 20261122 })
        const replies = yield* Effect.forEach(cases, ([s, p]) => raw(s, p, 5_000), { concurrency: 32 })
        expect(replies).toHaveLength(1_000)
        let errors = 0
        for (const m of replies) {
          const err = parseErrorReply(m.headers, m.data)
          if (err === undefined) {
            expect(() => JSON.parse(text(m.data))).not.toThrow()
          } else {
            errors++
            expect(ApiError.isApiError(err)).toBe(true)
            // The body is a well-formed CONTRACT §1 error, not a header-only fallback.
            expect(JSON.parse(text(m.data)).error.code).toBe(err._tag)
          }
        }
        expect(errors).toBeGreaterThan(0)
        const after = yield* request(
          "ekvtest.put",
          Put,
          PutReply,
          { key: "still", value: 1 },
          { timeoutMs: 2_000 },
        )
        expect(after.key).toBe("still")
      }),
    )

    it.effect("ensureStream is idempotent and publishDeduped drops a replayed message id", () =>
      Effect.gen(function* () {
        const spec = { name: "EKVTEST_EVENTS", subjects: ["ekvtest.events.>"], storage: "file" as const }
        const first = yield* ensureStream(spec)
        const again = yield* ensureStream(spec)
        expect(first.config.name).toBe("EKVTEST_EVENTS")
        expect(again.config.subjects).toEqual(["ekvtest.events.>"])
        const a = yield* publishDeduped("ekvtest.events.encryption.n1", '{"index":7}', "c1:n1:7")
        const b = yield* publishDeduped("ekvtest.events.encryption.n1", '{"index":7}', "c1:n1:7")
        const c = yield* publishDeduped("ekvtest.events.encryption.n1", '{"index":8}', "c1:n1:8")
        expect(a.duplicate).toBe(false)
        expect(b.duplicate).toBe(true)
        expect(b.seq).toBe(a.seq)
        expect(c.seq).toBe(a.seq + 1)
        const info = yield* ensureStream(spec)
        expect(info.state.messages).toBe(2)
        const missing = yield* Effect.flip(publishDeduped("ekvtest.nostream", "x", "id", { timeoutMs: 500 }))
        expect(missing).toBeInstanceOf(ApiError.Unavailable)
      }),
    )

    it.effect("a custom inbox prefix is used for replies", () =>
      Effect.gen(function* () {
        const reply = yield* Effect.scoped(
          Effect.gen(function* () {
            const nc = yield* Nats
            const seen: Array<string> = []
            const sub = nc.subscribe("ekvtest.echo-reply", {
              callback: (_err, m) => {
                seen.push(m.reply ?? "")
                m.respond(m.reply ?? "")
              },
            })
            yield* Effect.addFinalizer(() => Effect.sync(() => sub.unsubscribe()))
            const other = yield* Layer.build(
              natsLayer({ servers: fixture.servers, inboxPrefix: "_INBOX.tester" }),
            )
            return yield* requestMsg("ekvtest.echo-reply", bytes(""), { timeoutMs: 2_000 }).pipe(
              Effect.provide(other),
            )
          }),
        )
        expect(text(reply.data)).toMatch(/^_INBOX\.tester\./)
      }),
    )
  })
})

// --- with CONTRACT §9-style permissions ----------------------------------------

const authDir = await mkdtemp(join(tmpdir(), "ekv-bus-auth-"))
const authConfig = join(authDir, "nats.conf")
await writeFile(
  authConfig,
  `max_payload: 4MB
authorization {
  users = [
    { user: "svc", password: "svc-pw", permissions: {
        subscribe: { allow: ["ekvauth.>", "$SRV.>", "_INBOX.svc.>"] },
        publish: { allow: ["$SRV.>", "_INBOX.svc.>"] },
        allow_responses: true } }
    { user: "operator", password: "op-pw", permissions: {
        publish: { allow: ["ekvauth.>", "$SRV.>"] },
        subscribe: { allow: ["_INBOX.operator.>"] } } }
  ]
}
`,
)
const authFixture = await startNats({ configFile: authConfig })
afterAll(async () => {
  await authFixture.stop()
  await rm(authDir, { recursive: true, force: true })
})

const authLogged: Array<string> = []
const authLogger = Logger.make((o) => {
  authLogged.push(JSON.stringify(Logger.formatStructured.log(o)))
})

const echo = (subject: string) =>
  serveMicro({
    name: "ekv-auth-test",
    version: "0.1.0",
    description: "permissions",
    queue: "ekv-auth-test",
    endpoints: [endpoint({ name: "echo", subject, request: Ok, reply: Ok, handler: Effect.succeed })],
  })

// Connections that live as long as the test's scope (Effect.provide(layer) would close them at once).
const connectAs = (user: string, pass: string) =>
  Layer.build(natsLayer({ servers: authFixture.servers, user, pass }))

describe(`bus with per-user permissions (${authFixture.mode})`, () => {
  layer(Logger.layer([authLogger]), { timeout: "60 seconds", excludeTestServices: true })((it) => {
    it.effect("a user's requests come back through its own _INBOX.<user> prefix", () =>
      Effect.scoped(
        Effect.gen(function* () {
          const svc = yield* connectAs("svc", "svc-pw")
          const operator = yield* connectAs("operator", "op-pw")
          yield* echo("ekvauth.echo").pipe(Effect.provide(svc))
          const reply = yield* request("ekvauth.echo", Ok, Ok, { ok: true }, { timeoutMs: 2_000 }).pipe(
            Effect.provide(operator),
          )
          expect(reply).toEqual({ ok: true })
        }),
      ),
    )

    it.effect("a service whose subscription is denied stops and logs why", () =>
      Effect.scoped(
        Effect.gen(function* () {
          const svc = yield* connectAs("svc", "svc-pw")
          yield* echo("ekvdenied.echo").pipe(Effect.provide(svc))
          let found = false
          for (let i = 0; i < 40 && !found; i++) {
            yield* Effect.sleep("50 millis")
            found = authLogged.some((l) => l.includes("micro service ekv-auth-test stopped"))
          }
          expect(found).toBe(true)
        }),
      ),
    )
  })
})
