import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { kvApi, MAX_REQUEST_BYTES, MAX_VALUE_BYTES } from "../src/mod.ts"

const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v))
const b64 = (n: number) => Buffer.alloc(n, 7).toString("base64")

type Decoder = (
  bytes: Uint8Array,
) => Result.Result<unknown, { readonly _tag: string; readonly message: string }>
const ok = (d: Decoder, body: unknown) => {
  const r = d(enc(body))
  if (Result.isFailure(r)) throw new Error(`expected success, got ${r.failure._tag}: ${r.failure.message}`)
  return r.success
}
const fail = (d: Decoder, body: unknown, tag = "InvalidArgument") => {
  const r = d(enc(body))
  if (Result.isSuccess(r)) throw new Error(`expected ${tag} for ${JSON.stringify(body).slice(0, 200)}`)
  expect(r.failure._tag).toBe(tag)
  return r.failure.message
}

describe("kv.put", () => {
  const d = kvApi.put.decodeRequest
  it("decodes a valid request, value as bytes", () => {
    expect(ok(d, { key: "a/b", value: "AAEC" })).toEqual({ key: "a/b", value: Uint8Array.of(0, 1, 2) })
    expect(ok(d, { key: "k", value: "" })).toEqual({ key: "k", value: new Uint8Array(0) })
  })
  it("rejects unknown fields, naming them", () => {
    expect(fail(d, { key: "a", value: "", extra: 1 })).toContain("extra")
    fail(d, '{"key":"a","value":"","__proto__":{"x":1}}')
  })
  it("rejects wrong types and missing fields", () => {
    fail(d, { key: 1, value: "" })
    fail(d, { key: "a", value: 5 })
    fail(d, { key: "a" })
    fail(d, { value: "" })
    fail(d, [])
    fail(d, null)
    fail(d, '"a"')
  })
  it("rejects keys starting with '!' and empty keys", () => {
    expect(fail(d, { key: "!encryption|writers", value: "" })).toContain("key")
    fail(d, { key: "", value: "" })
  })
  it("allows keys of exactly 4096 UTF-8 bytes and rejects 4097", () => {
    ok(d, { key: `${"€".repeat(1365)}a`, value: "" }) // 1365·3 + 1
    fail(d, { key: `${"€".repeat(1365)}ab`, value: "" })
    ok(d, { key: "😀".repeat(1024), value: "" }) // 4 bytes each
    fail(d, { key: "😀".repeat(1024) + "a", value: "" })
  })
  it("rejects keys with lone surrogates", () => {
    fail(d, '{"key":"a\\ud800","value":""}')
  })
  it("allows a 1 MiB value and rejects one byte more", () => {
    ok(d, { key: "k", value: b64(MAX_VALUE_BYTES) })
    expect(fail(d, { key: "k", value: b64(MAX_VALUE_BYTES + 1) })).toContain("value")
  })
  it("rejects non-standard base64", () => {
    fail(d, { key: "k", value: "AAE" })
    fail(d, { key: "k", value: "-_8=" })
    fail(d, { key: "k", value: "AA E=" })
  })
  it("rejects invalid JSON and invalid UTF-8", () => {
    fail(d, "{not json")
    expect(Result.isFailure(d(Uint8Array.of(0x7b, 0xff, 0x7d)))).toBe(true)
  })
  it("rejects a body over 3 MiB before parsing; accepts exactly 3 MiB", () => {
    const base = JSON.stringify({ key: "k", value: "" })
    const exact = base + " ".repeat(MAX_REQUEST_BYTES - base.length)
    ok(d, exact)
    expect(fail(d, `${exact} `)).toContain("exceeds")
  })
  it("never throws on arbitrary JSON", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const r = d(enc(v))
        if (Result.isFailure(r)) expect(r.failure._tag).toBe("InvalidArgument")
      }),
    )
  })
  it("rejects any extra field added to a valid request", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }).filter((k) => k !== "key" && k !== "value"),
        fc.jsonValue(),
        (k, v) => {
          fail(d, { key: "a", value: "", [k]: v })
        },
      ),
    )
  })
})

describe("kv.get / delete", () => {
  it("get: consistency is optional and one of two literals", () => {
    expect(ok(kvApi.get.decodeRequest, { key: "a" })).toEqual({ key: "a" })
    ok(kvApi.get.decodeRequest, { key: "a", consistency: "serializable" })
    fail(kvApi.get.decodeRequest, { key: "a", consistency: "eventual" })
  })
  it("delete", () => {
    ok(kvApi.delete.decodeRequest, { key: "a" })
    fail(kvApi.delete.decodeRequest, { key: "!a" })
    fail(kvApi.delete.decodeRequest, { key: "a", value: "" })
  })
  it("get reply round-trips", () => {
    const reply = { found: true, value: Uint8Array.of(9), version: 12 } as never
    const bytes = kvApi.get.encodeReply(reply)
    expect(JSON.parse(new TextDecoder().decode(bytes))).toEqual({ found: true, value: "CQ==", version: 12 })
    expect(ok(kvApi.get.decodeReply, JSON.parse(new TextDecoder().decode(bytes)))).toEqual(reply)
  })
})

describe("kv.batch", () => {
  const d = kvApi.batch.decodeRequest
  it("decodes puts and deletes in order", () => {
    expect(
      ok(d, {
        ops: [
          { op: "put", key: "a", value: "AQ==" },
          { op: "delete", key: "a" },
        ],
      }),
    ).toEqual({
      ops: [
        { op: "put", key: "a", value: Uint8Array.of(1) },
        { op: "delete", key: "a" },
      ],
    })
  })
  it("requires 1..1000 ops", () => {
    fail(d, { ops: [] })
    ok(d, { ops: Array.from({ length: 1000 }, () => ({ op: "delete", key: "k" })) })
    fail(d, { ops: Array.from({ length: 1001 }, () => ({ op: "delete", key: "k" })) })
  })
  it("rejects values above 2 MiB in total", () => {
    const big = { op: "put", key: "k", value: b64(MAX_VALUE_BYTES) }
    ok(d, { ops: [big, big] })
    expect(fail(d, { ops: [big, big, { op: "put", key: "k", value: "AA==" }] })).toContain("total")
  })
  it("rejects unknown ops, unknown fields in an op, a value on a delete", () => {
    fail(d, { ops: [{ op: "get", key: "a" }] })
    expect(fail(d, { ops: [{ op: "put", key: "a", value: "", ttl: 3 }] })).toContain("ops[0]")
    fail(d, { ops: [{ op: "delete", key: "a", value: "" }] })
    fail(d, { ops: [{ op: "put", key: "!a", value: "" }] })
  })
})

describe("kv.scan", () => {
  const d = kvApi.scan.decodeRequest
  it("everything is optional; an empty body is {}", () => {
    expect(ok(d, {})).toEqual({})
    expect(ok(d, "")).toEqual({})
    ok(d, { prefix: "user/", after: "user/a", limit: 1000, consistency: "linearizable" })
  })
  it("rejects unknown fields and non-objects even though every field is optional", () => {
    expect(fail(d, { prefix: "a", limti: 5 })).toContain("limti")
    fail(d, [])
    fail(d, '"x"')
    fail(d, "5")
    fail(d, "null")
  })
  it("limit is an integer in 1..1000", () => {
    fail(d, { limit: 0 })
    fail(d, { limit: 1001 })
    fail(d, { limit: 2.5 })
    fail(d, { limit: "10" })
  })
  it("refuses a reserved prefix, allows any after", () => {
    fail(d, { prefix: "!enc" })
    ok(d, { after: "!" })
  })
  it("reply round-trips", () => {
    const reply = { items: [{ key: "a", value: Uint8Array.of(1), version: 3 }], more: false } as never
    const bytes = kvApi.scan.encodeReply(reply)
    const r = kvApi.scan.decodeReply(bytes)
    expect(Result.isSuccess(r) && r.success).toEqual(reply)
  })
})
