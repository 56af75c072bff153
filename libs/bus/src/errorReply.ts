// Error replies on the bus (CONTRACT §1): the NATS service error headers plus
// a JSON `{ "error": { code, message, details } }` body. Pure: building the
// reply for an ApiError, and reading one back into the matching class.
import { ApiError } from "@ekv/wire"
import { Result, Schema } from "effect"

export const ServiceErrorHeader = "Nats-Service-Error"
export const ServiceErrorCodeHeader = "Nats-Service-Error-Code"

/** What a responder sends for a failed request. */
export interface ErrorReply {
  /** `Nats-Service-Error-Code`. */
  readonly code: number
  /** `Nats-Service-Error`: the message, on one line. */
  readonly description: string
  /** The JSON error body. */
  readonly body: Uint8Array
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

// Header values may not hold CR/LF; long messages stay whole in the body.
const MAX_DESCRIPTION = 1024

export const headerDescription = (message: string): string => {
  const oneLine = message.replace(/[\r\n]+/g, " ").trim()
  return oneLine.length > MAX_DESCRIPTION ? `${oneLine.slice(0, MAX_DESCRIPTION - 3)}...` : oneLine
}

/** The reply for `e`. Details that JSON cannot carry (bigint, cycles) degrade to a message, never a throw. */
export const errorReply = (e: ApiError.ApiError): ErrorReply => {
  const body = ApiError.toBody(e)
  let json: string
  try {
    json = JSON.stringify(body)
  } catch {
    json = JSON.stringify({ error: { code: body.error.code, message: body.error.message } })
  }
  return {
    code: ApiError.numericCode[e._tag],
    description: headerDescription(e.message),
    body: encoder.encode(json),
  }
}

/** The header view the parser needs (nats.js `MsgHdrs` satisfies it). */
export interface HeaderView {
  get(key: string): string
  has(key: string): boolean
}

// A responder that is not ekv's (or a truncated body) only gives the numeric
// code; pick the class a caller would treat the same way.
const byNumeric: Readonly<Record<number, ApiError.Code>> = {
  400: "InvalidArgument",
  404: "NotFound",
  409: "NodeIDCollision",
  412: "FailedPrecondition",
  503: "Unavailable",
  500: "Internal",
}

const decodeErrorBody = Schema.decodeUnknownResult(ApiError.ErrorBody)

/**
 * The error carried by a reply, or `undefined` when the reply is a success
 * (no `Nats-Service-Error-Code` header).
 */
export const parseErrorReply = (
  headers: HeaderView | undefined,
  data: Uint8Array,
): ApiError.ApiError | undefined => {
  if (headers === undefined || !headers.has(ServiceErrorCodeHeader)) return undefined
  const numeric = Number.parseInt(headers.get(ServiceErrorCodeHeader), 10)
  const description = headers.get(ServiceErrorHeader)
  const body = parseJson(data)
  if (body !== undefined) {
    const decoded = decodeErrorBody(body)
    if (Result.isSuccess(decoded)) return ApiError.fromBody(decoded.success)
  }
  const code = byNumeric[numeric] ?? (numeric >= 500 ? "Internal" : "InvalidArgument")
  return ApiError.make(code, description === "" ? `error reply ${numeric}` : description, {
    status: Number.isNaN(numeric) ? headers.get(ServiceErrorCodeHeader) : numeric,
  })
}

const parseJson = (data: Uint8Array): unknown => {
  try {
    return JSON.parse(decoder.decode(data))
  } catch {
    return undefined
  }
}
