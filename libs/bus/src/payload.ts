// Request decoding and reply encoding at the bus edge. A request is either
// JSON checked against a schema with unknown fields rejected (CONTRACT §1), or
// whatever a custom decoder makes of the raw bytes (binary internal subjects,
// or the wire package's decoder with its LocalEpochOutOfRange rule).
import { ApiError } from "@ekv/wire"
import { Effect, Schema } from "effect"

/** CONTRACT §1: a request body over 3 MiB is InvalidArgument. */
export const MAX_REQUEST_BYTES = 3 * 1024 * 1024

/** A decoder that sees the raw payload (and the message, for headers). */
export type DecodeFn<A, M = unknown> = (data: Uint8Array, msg: M) => Effect.Effect<A, ApiError.ApiError>

/** An encoder that produces the raw reply payload; a throw is a defect. */
export type EncodeFn<A> = (value: A) => Uint8Array

/** How a request body becomes `A`: a schema (JSON, strict) or a custom function. */
export type RequestDecoder<A, M = unknown> = Schema.Decoder<A> | DecodeFn<A, M>

/** How a reply `A` becomes bytes: a schema (JSON) or a custom function. */
export type ReplyEncoder<A> = Schema.Codec<A, unknown> | EncodeFn<A>

const encoder = new TextEncoder()
const strictUtf8 = new TextDecoder("utf-8", { fatal: true })

const invalid = (message: string, details?: Record<string, unknown>) =>
  new ApiError.InvalidArgument({ message, ...(details === undefined ? {} : { details }) })

/** Parses a UTF-8 JSON payload, failing with InvalidArgument. */
export const parseJsonPayload = (
  data: Uint8Array,
  maxBytes: number = MAX_REQUEST_BYTES,
): Effect.Effect<unknown, ApiError.InvalidArgument> =>
  Effect.suspend(() => {
    if (data.byteLength > maxBytes) {
      return Effect.fail(
        invalid(`request body is ${data.byteLength} bytes, over the limit of ${maxBytes}`, {
          size: data.byteLength,
          limit: maxBytes,
        }),
      )
    }
    let text: string
    try {
      text = strictUtf8.decode(data)
    } catch {
      return Effect.fail(invalid("request body is not valid UTF-8"))
    }
    try {
      return Effect.succeed(JSON.parse(text) as unknown)
    } catch (e) {
      return Effect.fail(invalid(`request body is not valid JSON: ${e instanceof Error ? e.message : e}`))
    }
  })

/**
 * JSON → `schema`, unknown fields rejected; any failure is InvalidArgument
 * whose message names the offending path (Effect's issue formatter does).
 */
export const decodeJson = <A>(
  schema: Schema.Decoder<A>,
  options?: { readonly maxBytes?: number },
): DecodeFn<A> => {
  const decode = Schema.decodeUnknownEffect(schema)
  return (data) =>
    parseJsonPayload(data, options?.maxBytes).pipe(
      Effect.flatMap((json) =>
        decode(json, { onExcessProperty: "error" }).pipe(
          Effect.mapError((e) => invalid(`invalid request: ${e.message.replace(/\n\s*/g, " ")}`)),
        ),
      ),
    )
}

/** JSON encoding of `schema`'s encoded form; an encode failure is a defect (the handler broke its own type). */
export const encodeJson = <A>(schema: Schema.Codec<A, unknown>): EncodeFn<A> => {
  const encode = Schema.encodeSync(schema)
  return (value) => encoder.encode(JSON.stringify(encode(value)))
}

/** Raw bytes in, as they arrived. */
export const bytesDecoder: DecodeFn<Uint8Array> = (data) => Effect.succeed(data)

/** Raw bytes out, as the handler produced them. */
export const bytesEncoder: EncodeFn<Uint8Array> = (value) => value

export const toDecodeFn = <A, M>(d: RequestDecoder<A, M>): DecodeFn<A, M> =>
  Schema.isSchema(d) ? (decodeJson(d) as DecodeFn<A, M>) : d

export const toEncodeFn = <A>(e: ReplyEncoder<A>): EncodeFn<A> => (Schema.isSchema(e) ? encodeJson(e) : e)
