// The KV fast path must agree with the schemas: whatever it accepts the schema
// accepts with the same value, and its reply bytes are the schema encoder's.

import { Result, Schema } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { kvApi } from "../src/api.ts"
import { KvDeleteRequest, KvGetReply, KvGetRequest, KvPutReply, KvPutRequest } from "../src/kv.ts"
import {
  fastDeleteRequest,
  fastGetReply,
  fastGetRequest,
  fastIndexReply,
  fastPutRequest,
} from "../src/kvFastCodec.ts"

const strict = { onExcessProperty: "error" } as const
const schemaDecode = <S extends Schema.Top>(s: S) => Schema.decodeUnknownResult(s as never, strict)

const cases = [
  { name: "put", fields: ["value"], fast: fastPutRequest, schema: schemaDecode(KvPutRequest) },
  { name: "get", fields: ["consistency"], fast: fastGetRequest, schema: schemaDecode(KvGetRequest) },
  { name: "delete", fields: [], fast: fastDeleteRequest, schema: schemaDecode(KvDeleteRequest) },
] as const

const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64")

// Keys near every boundary: empty, reserved, lone surrogates, multi-byte, 4096 bytes.
const keyish = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: "grapheme", maxLength: 10 }),
  fc.string({ unit: "binary", maxLength: 10 }),
  fc.constantFrom(
    "",
    "!",
    "!x",
    "a",
    "\uD800",
    "x\uDC00",
    "é".repeat(2048),
    "é".repeat(2049),
    "a".repeat(4096),
  ),
  fc.constantFrom("a".repeat(4097), "😀".repeat(1024), "😀".repeat(1025)),
)
// Base64-ish strings: valid, unpadded, padded wrongly, odd characters, non-zero pad bits.
const valueish = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map(b64),
  fc.uint8Array({ maxLength: 64 }).map((b) => b64(b).replace(/=+$/, "")),
  fc.string({ unit: fc.constantFrom(..."AQZaz09+/=-_ \n"), maxLength: 16 }),
  fc.constantFrom("QR==", "QUI=", "QUJ=", "====", "=", "A===", "QQ", "Q", "QQ==QQ==", "QQ==\n"),
)
const anyJson = fc.oneof(fc.constant(undefined), fc.constant(null), fc.integer(), fc.boolean(), fc.string())
const consistency = fc.oneof(
  fc.constantFrom("linearizable", "serializable", "LINEARIZABLE", "", undefined),
  anyJson,
)

const loose = fc.record(
  { key: fc.oneof(keyish, anyJson), value: fc.oneof(valueish, anyJson), consistency, extra: anyJson },
  { requiredKeys: [] },
)
// Mostly the right fields with mostly plausible contents, sometimes one too many.
const shaped = (fields: readonly ("value" | "consistency")[]) =>
  fc
    .record({
      key: fc.oneof({ weight: 4, arbitrary: keyish }, { weight: 1, arbitrary: anyJson }),
      value: fc.oneof({ weight: 4, arbitrary: valueish }, { weight: 1, arbitrary: anyJson }),
      consistency,
      extra: fc.option(anyJson, { freq: 8 }),
    })
    .map(({ key, value, consistency: cons, extra }) => ({
      key,
      ...(fields.includes("value") ? { value } : {}),
      ...(fields.includes("consistency") && cons !== undefined ? { consistency: cons } : {}),
      ...(extra === null ? {} : { extra }),
    }))

describe("kv fast codec agrees with the schemas", () => {
  for (const c of cases) {
    it(`${c.name}: accepts only what the schema accepts, with the same value`, () => {
      let accepted = 0
      fc.assert(
        fc.property(
          fc.oneof(shaped(c.fields), shaped(c.fields), loose, anyJson, fc.array(anyJson)),
          (json) => {
            // JSON.parse output: what the node sees.
            const parsed: unknown = json === undefined ? undefined : JSON.parse(JSON.stringify(json))
            const fast = c.fast(parsed)
            if (fast === undefined) return
            accepted++
            const r = c.schema(parsed)
            expect(Result.isSuccess(r)).toBe(true)
            if (Result.isSuccess(r)) expect(fast).toEqual(r.success)
          },
        ),
        { numRuns: 20_000 },
      )
      // The generator reaches the accepting shapes often enough to mean something.
      expect(accepted).toBeGreaterThan(500)
    })
  }

  it("accepts the common valid shapes (the fast path is taken)", () => {
    const value = b64(new Uint8Array(256).fill(7))
    expect(fastPutRequest({ key: "k", value })?.value.length).toBe(256)
    expect(fastGetRequest({ key: "k", consistency: "linearizable" })).toEqual({
      key: "k",
      consistency: "linearizable",
    })
    expect(fastGetRequest({ key: "k" })).toEqual({ key: "k" })
    expect(fastDeleteRequest({ key: "k" })).toEqual({ key: "k" })
  })

  it("refuses what the schema refuses: unknown fields, reserved keys, bad base64, prototype keys", () => {
    const value = b64(new Uint8Array([1, 2, 3]))
    expect(fastPutRequest({ key: "k", value, x: 1 })).toBeUndefined()
    expect(fastPutRequest({ key: "!k", value })).toBeUndefined()
    expect(fastPutRequest({ key: "k", value: "AQI" })).toBeUndefined()
    expect(fastPutRequest(JSON.parse(`{"key":"k","value":"${value}","__proto__":{}}`))).toBeUndefined()
    expect(fastGetRequest({ key: "k", consistency: "strong" })).toBeUndefined()
  })

  it("reply bytes are the schema encoder's", () => {
    const putEncode = Schema.encodeSync(KvPutReply, strict) as unknown as (v: unknown) => unknown
    const getEncode = Schema.encodeSync(KvGetReply, strict) as unknown as (v: unknown) => unknown
    fc.assert(
      fc.property(
        fc.nat({ max: Number.MAX_SAFE_INTEGER }),
        fc.uint8Array({ maxLength: 300 }),
        (index, value) => {
          expect(fastIndexReply({ index })).toBe(JSON.stringify(putEncode({ index })))
          const found = { found: true, value, version: index }
          expect(fastGetReply(found)).toBe(JSON.stringify(getEncode(found)))
        },
      ),
      { numRuns: 2_000 },
    )
    expect(fastGetReply({ found: false })).toBe(JSON.stringify(getEncode({ found: false })))
  })

  it("the endpoints decode through the fast path to the same values as before", () => {
    const value = new Uint8Array(300).map((_, i) => i)
    const put = kvApi.put.decodeRequest(
      new TextEncoder().encode(JSON.stringify({ key: "k", value: b64(value) })),
    )
    expect(Result.isSuccess(put) && put.success.value).toEqual(value)
    const bad = kvApi.put.decodeRequest(new TextEncoder().encode(JSON.stringify({ key: "!k", value: "" })))
    expect(Result.isFailure(bad) && bad.failure._tag).toBe("InvalidArgument")
    expect(new TextDecoder().decode(kvApi.put.encodeReply({ index: 42 as never }))).toBe(`{"index":42}`)
  })
})
