// The typed request side: encode, send, and turn the reply back into either
// the success value or the ApiError class it names (CONTRACT §1).
import { ApiError } from "@ekv/wire"
import { type Msg, type MsgHdrs, errors as natsErrors } from "@nats-io/transport-node"
import { Effect, Schema } from "effect"
import { Nats } from "./connection.ts"
import { parseErrorReply } from "./errorReply.ts"

export interface RequestOptions {
  readonly timeoutMs: number
  readonly headers?: MsgHdrs | undefined
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Maps a failed `nc.request` to an ApiError: nobody answering in time is Unavailable (retryable). */
export const requestFailure = (subject: string, cause: unknown): ApiError.ApiError => {
  if (cause instanceof natsErrors.RequestError && cause.isNoResponders()) {
    return new ApiError.Unavailable({
      message: `no responders on ${subject}`,
      details: { subject, reason: "NoResponders" },
    })
  }
  if (cause instanceof natsErrors.NoRespondersError) {
    return new ApiError.Unavailable({
      message: `no responders on ${subject}`,
      details: { subject, reason: "NoResponders" },
    })
  }
  if (cause instanceof natsErrors.TimeoutError || hasCause(cause, natsErrors.TimeoutError)) {
    return new ApiError.Unavailable({
      message: `request on ${subject} timed out`,
      details: { subject, reason: "Timeout" },
    })
  }
  if (cause instanceof natsErrors.InvalidArgumentError) {
    // e.g. a body over the server's max_payload: nothing was sent.
    return new ApiError.InvalidArgument({
      message: `request on ${subject}: ${cause.message}`,
      details: { subject },
    })
  }
  if (cause instanceof natsErrors.PermissionViolationError) {
    return new ApiError.Internal({
      message: `not permitted: ${cause.message}`,
      details: { subject, reason: "PermissionViolation" },
    })
  }
  return new ApiError.Unavailable({
    message: `request on ${subject} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
    details: { subject, reason: "Transport" },
  })
}

const hasCause = (e: unknown, cls: abstract new (...args: never[]) => Error): boolean =>
  e instanceof Error && e.cause instanceof cls

/** Sends `data` and returns the reply message as is (no error-header interpretation). */
export const requestMsg = (
  subject: string,
  data: Uint8Array,
  options: RequestOptions,
): Effect.Effect<Msg, ApiError.ApiError, Nats> =>
  Effect.flatMap(Effect.service(Nats), (nc) =>
    Effect.tryPromise({
      try: () =>
        nc.request(subject, data, {
          timeout: options.timeoutMs,
          ...(options.headers === undefined ? {} : { headers: options.headers }),
        }),
      catch: (cause) => requestFailure(subject, cause),
    }),
  )

/** The raw-bytes request for binary internal subjects; an error reply fails with its ApiError. */
export const requestBytes = (
  subject: string,
  data: Uint8Array,
  options: RequestOptions,
): Effect.Effect<Uint8Array, ApiError.ApiError, Nats> =>
  Effect.flatMap(requestMsg(subject, data, options), (msg) => {
    const error = parseErrorReply(msg.headers, msg.data)
    return error === undefined ? Effect.succeed(msg.data) : Effect.fail(error)
  })

/**
 * A typed JSON request. The body is encoded with `requestSchema` (a value that
 * does not fit is InvalidArgument, nothing is sent); a success reply is
 * decoded with `replySchema`, ignoring fields this client does not know (the
 * contract grows by adding fields); an undecodable reply is Internal.
 */
export const request = <Req, Rep>(
  subject: string,
  requestSchema: Schema.Codec<Req, unknown>,
  replySchema: Schema.Decoder<Rep>,
  body: Req,
  options: RequestOptions,
): Effect.Effect<Rep, ApiError.ApiError, Nats> => {
  const encode = Schema.encodeEffect(requestSchema)
  const decode = Schema.decodeUnknownEffect(replySchema)
  return encode(body).pipe(
    Effect.mapError(
      (e) =>
        new ApiError.InvalidArgument({ message: `request does not fit its schema: ${oneLine(e.message)}` }),
    ),
    Effect.map((encoded) => encoder.encode(JSON.stringify(encoded))),
    Effect.flatMap((data) => requestBytes(subject, data, options)),
    Effect.flatMap((reply) => {
      let json: unknown
      try {
        json = JSON.parse(decoder.decode(reply))
      } catch {
        return Effect.fail(
          new ApiError.Internal({ message: `reply on ${subject} is not JSON`, details: { subject } }),
        )
      }
      return decode(json).pipe(
        Effect.mapError(
          (e) =>
            new ApiError.Internal({
              message: `reply on ${subject} does not fit its schema: ${oneLine(e.message)}`,
              details: { subject },
            }),
        ),
      )
    }),
  )
}

const oneLine = (s: string): string => s.replace(/\n\s*/g, " ")
