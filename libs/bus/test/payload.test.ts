import { describe, expect, it } from "@effect/vitest"
import type { ApiError } from "@ekv/wire"
import { Effect, Exit, Schema } from "effect"
import fc from "fast-check"
import { decodeJson, encodeJson, MAX_REQUEST_BYTES, parseJsonPayload, toDecodeFn } from "../src/payload.ts"

const bytes = (s: string) => new TextEncoder().encode(s)
const Req = Schema.Struct({ key: Schema.String, opts: Schema.optional(Schema.Struct({ n: Schema.Number })) })
const decode = decodeJson(Req)

const failure = <A>(eff: Effect.Effect<A, ApiError.ApiError>) => Effect.runSync(Effect.flip(eff))

describe("decodeJson", () => {
  it.effect("decodes a valid body", () =>
    Effect.gen(function* () {
      expect(yield* decode(bytes('{"key":"a","opts":{"n":1}}'), undefined)).toEqual({
        key: "a",
        opts: { n: 1 },
      })
    }),
  )

  it("rejects malformed JSON, bad UTF-8 and empty bodies as InvalidArgument", () => {
    for (const b of [bytes("{"), new Uint8Array([0x7b, 0xff, 0x7d]), new Uint8Array(0)]) {
      expect(failure(decode(b, undefined))._tag).toBe("InvalidArgument")
    }
  })

  it("rejects unknown fields, naming the path", () => {
    const top = failure(decode(bytes('{"key":"a","extra":1}'), undefined))
    expect(top._tag).toBe("InvalidArgument")
    expect(top.message).toContain('["extra"]')
    const nested = failure(decode(bytes('{"key":"a","opts":{"n":1,"m":2}}'), undefined))
    expect(nested.message).toContain('["opts"]["m"]')
  })

  it("names the path of a wrong type", () => {
    const e = failure(decode(bytes('{"key":1}'), undefined))
    expect(e._tag).toBe("InvalidArgument")
    expect(e.message).toContain('["key"]')
    expect(e.message).not.toContain("\n")
  })

  it("rejects a body over 3 MiB before parsing it", () => {
    const big = new Uint8Array(MAX_REQUEST_BYTES + 1).fill(0x20)
    const e = failure(parseJsonPayload(big))
    expect(e._tag).toBe("InvalidArgument")
    expect(e.details).toEqual({ size: MAX_REQUEST_BYTES + 1, limit: MAX_REQUEST_BYTES })
  })

  it("only ever fails with InvalidArgument on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array(), fc.json().map(bytes)), (b) => {
        const exit = Effect.runSyncExit(decode(b, undefined))
        if (Exit.isFailure(exit)) {
          const e = Effect.runSync(Effect.flip(decode(b, undefined)))
          expect(e._tag).toBe("InvalidArgument")
        }
      }),
    )
  })
})

describe("toDecodeFn", () => {
  it.effect("passes a custom decoder through, with the message", () =>
    Effect.gen(function* () {
      const custom = toDecodeFn((data: Uint8Array, msg: string) => Effect.succeed(`${msg}:${data.length}`))
      expect(yield* custom(new Uint8Array(3), "m")).toBe("m:3")
    }),
  )

  it.effect("treats a Schema.Class as a schema, not a function", () =>
    Effect.gen(function* () {
      class K extends Schema.Class<K>("K")({ a: Schema.Number }) {}
      const d = toDecodeFn(K)
      const k = yield* d(bytes('{"a":1}'), undefined)
      expect(k).toBeInstanceOf(K)
    }),
  )
})

describe("encodeJson", () => {
  it("encodes through the schema's encoded form", () => {
    const S = Schema.Struct({ n: Schema.NumberFromString })
    expect(new TextDecoder().decode(encodeJson(S)({ n: 5 }))).toBe('{"n":"5"}')
  })

  it("throws (a defect for the responder) on a value outside the schema", () => {
    const S = Schema.Struct({ n: Schema.Number.check(Schema.isInt()) })
    expect(() => encodeJson(S)({ n: 1.5 })).toThrow()
  })
})
