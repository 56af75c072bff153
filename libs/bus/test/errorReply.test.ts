import { describe, expect, it } from "@effect/vitest"
import { ApiError } from "@ekv/wire"
import fc from "fast-check"
import {
  errorReply,
  headerDescription,
  parseErrorReply,
  ServiceErrorCodeHeader,
  ServiceErrorHeader,
} from "../src/errorReply.ts"

/** A header map like nats.js's, enough for the parser. */
const hdrs = (entries: Record<string, string>) => ({
  get: (k: string) => entries[k] ?? "",
  has: (k: string) => k in entries,
})

const text = new TextDecoder()
const bytes = (s: string) => new TextEncoder().encode(s)
const codes = Object.values(ApiError.Code)

describe("errorReply", () => {
  it("builds the CONTRACT §1 headers and body", () => {
    const e = ApiError.failedPrecondition("NotBootstrapped", "cluster not bootstrapped", { leader: "n1" })
    const r = errorReply(e)
    expect(r.code).toBe(412)
    expect(r.description).toBe("cluster not bootstrapped")
    expect(JSON.parse(text.decode(r.body))).toEqual({
      error: {
        code: "FailedPrecondition",
        message: "cluster not bootstrapped",
        details: { leader: "n1", reason: "NotBootstrapped" },
      },
    })
  })

  it.each(codes)("maps %s to its numeric code", (code) => {
    expect(errorReply(ApiError.make(code, "m")).code).toBe(ApiError.numericCode[code])
  })

  it("omits details when there are none", () => {
    const body = JSON.parse(text.decode(errorReply(new ApiError.NotFound({ message: "no such node" })).body))
    expect(body).toEqual({ error: { code: "NotFound", message: "no such node" } })
  })

  it("keeps header values on one bounded line; the body keeps the full message", () => {
    const message = `line one\r\nline two\n${"x".repeat(5000)}`
    const r = errorReply(new ApiError.Internal({ message }))
    expect(r.description).not.toMatch(/[\r\n]/)
    expect(r.description.length).toBeLessThanOrEqual(1024)
    expect(JSON.parse(text.decode(r.body)).error.message).toBe(message)
  })

  it("does not throw on details JSON cannot hold", () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const r = errorReply(new ApiError.Internal({ message: "m", details: { big: 1n, cyclic } }))
    expect(JSON.parse(text.decode(r.body))).toEqual({ error: { code: "Internal", message: "m" } })
  })

  it("headerDescription trims and flattens", () => {
    expect(headerDescription("  a\r\n\r\nb  ")).toBe("a b")
  })
})

describe("parseErrorReply", () => {
  it("is undefined for a success reply", () => {
    expect(parseErrorReply(undefined, bytes("{}"))).toBeUndefined()
    expect(parseErrorReply(hdrs({ other: "1" }), bytes("{}"))).toBeUndefined()
  })

  it("round-trips every code, message and details into the matching class", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...codes),
        fc.string(),
        fc.option(fc.dictionary(fc.string(), fc.jsonValue()), { nil: undefined }),
        (code, message, details) => {
          const e = ApiError.make(code, message, details)
          const r = errorReply(e)
          const back = parseErrorReply(
            hdrs({ [ServiceErrorCodeHeader]: String(r.code), [ServiceErrorHeader]: r.description }),
            r.body,
          )
          expect(back?._tag).toBe(code)
          expect(back?.message).toBe(message)
          // JSON normalizes -0 and drops undefined; compare what travelled.
          expect(back?.details).toEqual(
            details === undefined ? undefined : JSON.parse(JSON.stringify(details)),
          )
          expect(ApiError.isApiError(back)).toBe(true)
        },
      ),
    )
  })

  it("falls back to the numeric code when the body is not an ekv error body", () => {
    const cases: Array<[string, string]> = [
      ["400", "InvalidArgument"],
      ["404", "NotFound"],
      ["409", "NodeIDCollision"],
      ["412", "FailedPrecondition"],
      ["500", "Internal"],
      ["503", "Unavailable"],
      ["418", "InvalidArgument"],
      ["502", "Internal"],
      ["garbage", "InvalidArgument"],
    ]
    for (const [numeric, tag] of cases) {
      const e = parseErrorReply(
        hdrs({ [ServiceErrorCodeHeader]: numeric, [ServiceErrorHeader]: "boom" }),
        bytes(""),
      )
      expect(e?._tag).toBe(tag)
      expect(e?.message).toBe("boom")
    }
  })

  it("falls back when the body names an unknown code or is malformed", () => {
    const h = hdrs({ [ServiceErrorCodeHeader]: "503", [ServiceErrorHeader]: "down" })
    expect(parseErrorReply(h, bytes('{"error":{"code":"Nope","message":"x"}}'))?._tag).toBe("Unavailable")
    expect(parseErrorReply(h, bytes("\xff{"))?._tag).toBe("Unavailable")
    expect(parseErrorReply(hdrs({ [ServiceErrorCodeHeader]: "500" }), bytes(""))?.message).toBe(
      "error reply 500",
    )
  })

  it("never throws on arbitrary headers and bodies", () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.uint8Array(), (code, desc, body) => {
        const e = parseErrorReply(hdrs({ [ServiceErrorCodeHeader]: code, [ServiceErrorHeader]: desc }), body)
        expect(ApiError.isApiError(e)).toBe(true)
      }),
    )
  })
})
