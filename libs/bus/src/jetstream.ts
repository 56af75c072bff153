// The JetStream pieces ekv needs (CONTRACT §5): a stream created if missing,
// and deduplicated publishing through the `Nats-Msg-Id` header.
import { ApiError } from "@ekv/wire"
import {
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type PubAck,
  type StreamInfo,
} from "@nats-io/jetstream"
import { Effect } from "effect"
import { errorMessage, Nats } from "./connection.ts"

export interface StreamSpec {
  readonly name: string
  readonly subjects: ReadonlyArray<string>
  readonly storage: "file" | "memory"
  /** Duplicate window in milliseconds (server default 2 min when unset). */
  readonly duplicateWindowMs?: number | undefined
}

// JetStream API error 10058: stream name already in use (a concurrent creator won).
const STREAM_NAME_IN_USE = 10058

const unavailable = (what: string, cause: unknown) =>
  new ApiError.Unavailable({ message: `${what}: ${errorMessage(cause)}`, details: { reason: "JetStream" } })

const isApiCode = (e: unknown, code: number): boolean => e instanceof JetStreamApiError && e.code === code

/** The stream's info, creating it from `spec` if it does not exist (an existing stream is left as is). */
export const ensureStream = (spec: StreamSpec): Effect.Effect<StreamInfo, ApiError.ApiError, Nats> =>
  Effect.flatMap(Effect.service(Nats), (nc) =>
    Effect.tryPromise({
      try: async () => {
        const jsm = await jetstreamManager(nc)
        try {
          return await jsm.streams.info(spec.name)
        } catch (e) {
          if (!isApiCode(e, JetStreamApiCodes.StreamNotFound)) throw e
        }
        try {
          return await jsm.streams.add({
            name: spec.name,
            subjects: [...spec.subjects],
            storage: spec.storage === "file" ? "file" : "memory",
            ...(spec.duplicateWindowMs === undefined
              ? {}
              : { duplicate_window: spec.duplicateWindowMs * 1e6 }),
          })
        } catch (e) {
          if (isApiCode(e, STREAM_NAME_IN_USE)) return await jsm.streams.info(spec.name)
          throw e
        }
      },
      catch: (cause) => unavailable(`cannot ensure stream ${spec.name}`, cause),
    }),
  )

/** Publishes with `Nats-Msg-Id: msgId`; a replay inside the duplicate window acks with `duplicate: true`. */
export const publishDeduped = (
  subject: string,
  body: Uint8Array | string,
  msgId: string,
  options?: { readonly timeoutMs?: number },
): Effect.Effect<PubAck, ApiError.ApiError, Nats> =>
  Effect.flatMap(Effect.service(Nats), (nc) =>
    Effect.tryPromise({
      try: () =>
        jetstream(nc).publish(subject, body, {
          msgID: msgId,
          ...(options?.timeoutMs === undefined ? {} : { timeout: options.timeoutMs }),
        }),
      catch: (cause) => unavailable(`cannot publish to ${subject}`, cause),
    }),
  )
