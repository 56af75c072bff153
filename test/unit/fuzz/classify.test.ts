import { KvGetReply, KvPutReply } from "@ekv/wire"
import { describe, expect, it } from "vitest"
import { isFinding, Outcome, type ReplyMessage, replyChecker, subjectMatches } from "../../src/fuzz/mod.ts"

const enc = new TextEncoder()
const msg = (body: unknown, headers: Record<string, string> = {}): ReplyMessage => ({
  header: (n) => headers[n],
  data:
    typeof body === "string"
      ? enc.encode(body)
      : body instanceof Uint8Array
        ? body
        : enc.encode(JSON.stringify(body)),
})
const err = (code: string, numeric: string, details?: Record<string, unknown>) =>
  msg(
    { error: { code, message: "m", ...(details === undefined ? {} : { details }) } },
    { "Nats-Service-Error-Code": numeric, "Nats-Service-Error": "m" },
  )

describe("fuzz reply classifier", () => {
  const put = replyChecker(KvPutReply)
  const get = replyChecker(KvGetReply)

  it("accepts success replies that decode with the reply schema", () => {
    expect(put(msg({ index: 7 }))).toEqual({ outcome: "ok" })
    expect(get(msg({ found: true, value: "AAE=", version: 3 })).outcome).toBe("ok")
    expect(get(msg({ found: false })).outcome).toBe("ok")
  })

  it("rejects success replies that do not decode", () => {
    expect(put(msg({ index: -1 })).outcome).toBe("invalid-reply")
    expect(put(msg({ index: 1, extra: true })).outcome).toBe("invalid-reply")
    expect(put(msg("not json")).outcome).toBe("invalid-reply")
    expect(put(msg(new Uint8Array([0x7b, 0xff, 0x7d]))).outcome).toBe("invalid-reply")
    expect(put(msg("")).outcome).toBe("invalid-reply")
    // An error body without the headers is not a typed error.
    expect(put(msg({ error: { code: "InvalidArgument", message: "m" } })).outcome).toBe("invalid-reply")
  })

  it("accepts typed errors: both headers, the code's number, a decodable body", () => {
    expect(put(err("InvalidArgument", "400"))).toEqual({ outcome: "error", code: "InvalidArgument" })
    expect(put(err("Unavailable", "503")).code).toBe("Unavailable")
    expect(put(err("FailedPrecondition", "412", { reason: "NotBootstrapped" })).outcome).toBe("error")
  })

  it("flags malformed errors", () => {
    expect(put(err("InvalidArgument", "500")).outcome).toBe("untyped-error")
    expect(put(err("NoSuchCode", "400")).outcome).toBe("untyped-error")
    expect(put(err("FailedPrecondition", "412")).outcome).toBe("untyped-error")
    expect(put(err("FailedPrecondition", "412", { reason: "Whatever" })).outcome).toBe("untyped-error")
    expect(put(msg("oops", { "Nats-Service-Error-Code": "500", "Nats-Service-Error": "oops" })).outcome).toBe(
      "untyped-error",
    )
    expect(
      put(msg({ error: { code: "Internal", message: "m" } }, { "Nats-Service-Error-Code": "500" })).outcome,
    ).toBe("untyped-error")
  })

  it("knows which outcomes are findings", () => {
    expect(Object.values(Outcome).filter(isFinding).sort()).toEqual(
      ["invalid-reply", "no-responders", "timeout", "untyped-error"].sort(),
    )
  })

  it("matches NATS subject patterns", () => {
    expect(subjectMatches("ekv.kv.*", "ekv.kv.put")).toBe(true)
    expect(subjectMatches("ekv.kv.*", "ekv.kv.put.x")).toBe(false)
    expect(subjectMatches("ekv.admin.>", "ekv.admin.cluster.status")).toBe(true)
    expect(subjectMatches("ekv.node.*.health", "ekv.node.n1.health")).toBe(true)
    expect(subjectMatches("ekv.node.*.health", "ekv.node.n1.capability")).toBe(false)
    expect(subjectMatches("ekv.>", "ekv")).toBe(false)
  })
})
