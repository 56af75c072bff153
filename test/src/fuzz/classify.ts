// Classifies the answer to one fuzz request. Acceptable: a success reply that
// decodes with the endpoint's wire reply schema, or a typed error reply
// (CONTRACT.md §1: `Nats-Service-Error-Code` numeric and equal to the code's
// number, `Nats-Service-Error` present, a body `{ error: { code, message,
// details? } }` with a known code, FailedPrecondition with a known
// `details.reason`). Anything else — no reply in time, no responder, an
// error without headers or body, a success body that does not decode — is a
// finding.
import { ApiError } from "@ekv/wire"
import { Result, Schema } from "effect"

export const Outcome = {
  /** A success reply that decodes with the reply schema. */
  ok: "ok",
  /** A well-formed typed error reply. */
  error: "error",
  /** The client refused to send it (over the connection's max_payload): not a finding. */
  notSent: "not-sent",
  timeout: "timeout",
  noResponders: "no-responders",
  /** Error headers without a well-formed error body, or vice versa mismatched. */
  untypedError: "untyped-error",
  /** A success reply that is not JSON or does not decode with the reply schema. */
  invalidReply: "invalid-reply",
} as const
export type Outcome = (typeof Outcome)[keyof typeof Outcome]

export const isFinding = (o: Outcome): boolean =>
  o !== Outcome.ok && o !== Outcome.error && o !== Outcome.notSent

export interface Classified {
  readonly outcome: Outcome
  /** The error code of a typed error reply. */
  readonly code?: string
  /** Why an answer is a finding. */
  readonly problem?: string
}

/** The parts of a NATS reply the classifier reads (so it can be tested without NATS). */
export interface ReplyMessage {
  readonly header: (name: string) => string | undefined
  readonly data: Uint8Array
}

const decodeErrorBody = Schema.decodeUnknownResult(ApiError.ErrorBody, { onExcessProperty: "error" })
const utf8 = new TextDecoder("utf-8", { fatal: true })
const reasons: ReadonlySet<string> = new Set(Object.values(ApiError.PreconditionReason))

const parseJson = (data: Uint8Array): { ok: true; value: unknown } | { ok: false; problem: string } => {
  try {
    return { ok: true, value: JSON.parse(utf8.decode(data)) }
  } catch (e) {
    return { ok: false, problem: `not UTF-8 JSON: ${e instanceof Error ? e.message : String(e)}` }
  }
}

const preview = (data: Uint8Array): string => {
  const t = new TextDecoder().decode(data.subarray(0, 200))
  return data.length > 200 ? `${t}…` : t
}

/** Builds a reply-schema check for one endpoint (decoders are built once). */
export const replyChecker = (reply: Schema.Top): ((m: ReplyMessage) => Classified) => {
  const decodeReply = Schema.decodeUnknownResult(reply as Schema.Codec<unknown, unknown, never, never>, {
    onExcessProperty: "error",
  })
  return (m) => {
    const numeric = m.header("Nats-Service-Error-Code")
    const text = m.header("Nats-Service-Error")
    if (numeric !== undefined || text !== undefined) {
      if (numeric === undefined || text === undefined)
        return { outcome: Outcome.untypedError, problem: "only one of the two error headers" }
      const parsed = parseJson(m.data)
      if (!parsed.ok)
        return { outcome: Outcome.untypedError, problem: `error body ${parsed.problem}: ${preview(m.data)}` }
      const body = decodeErrorBody(parsed.value)
      if (Result.isFailure(body))
        return { outcome: Outcome.untypedError, problem: `error body does not decode: ${preview(m.data)}` }
      const { code, details } = body.success.error
      if (Number(numeric) !== ApiError.numericCode[code])
        return { outcome: Outcome.untypedError, code, problem: `header code ${numeric} for ${code}` }
      if (code === "FailedPrecondition" && !reasons.has(String(details?.reason)))
        return {
          outcome: Outcome.untypedError,
          code,
          problem: `FailedPrecondition reason ${String(details?.reason)}`,
        }
      return { outcome: Outcome.error, code }
    }
    const parsed = parseJson(m.data)
    if (!parsed.ok) return { outcome: Outcome.invalidReply, problem: `${parsed.problem}: ${preview(m.data)}` }
    const r = decodeReply(parsed.value)
    if (Result.isFailure(r))
      return {
        outcome: Outcome.invalidReply,
        problem: `reply does not decode: ${String(r.failure).slice(0, 300)}`,
      }
    return { outcome: Outcome.ok }
  }
}
