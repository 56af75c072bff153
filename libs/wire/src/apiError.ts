// The error replies of CONTRACT.md §1. One schema-tagged class per code; the
// `_tag` is the code, so `Effect.catchTag("NotFound", ...)` reads like the contract.
import { Schema } from "effect"

export const Code = {
  InvalidArgument: "InvalidArgument",
  NotFound: "NotFound",
  FailedPrecondition: "FailedPrecondition",
  CapabilityCheckFailed: "CapabilityCheckFailed",
  LocalEpochOutOfRange: "LocalEpochOutOfRange",
  NodeIDCollision: "NodeIDCollision",
  LocalEpochRollback: "LocalEpochRollback",
  Unavailable: "Unavailable",
  Halted: "Halted",
  IntegrityError: "IntegrityError",
  Internal: "Internal",
} as const
export type Code = (typeof Code)[keyof typeof Code]

/** The numeric `Nats-Service-Error-Code` of each code. */
export const numericCode: { readonly [C in Code]: number } = {
  InvalidArgument: 400,
  NotFound: 404,
  FailedPrecondition: 412,
  CapabilityCheckFailed: 412,
  LocalEpochOutOfRange: 400,
  NodeIDCollision: 409,
  LocalEpochRollback: 409,
  Unavailable: 503,
  Halted: 503,
  IntegrityError: 500,
  Internal: 500,
}

/** `details.reason` of a FailedPrecondition (CONTRACT.md §1). */
export const PreconditionReason = {
  EncryptionDisabled: "EncryptionDisabled",
  KekNotConfigured: "KekNotConfigured",
  ApplierNotReady: "ApplierNotReady",
  NotBootstrapped: "NotBootstrapped",
  AlreadyBootstrapped: "AlreadyBootstrapped",
  StorageEnvelopeNotActive: "StorageEnvelopeNotActive",
  PeerNotEncryptionCapable: "PeerNotEncryptionCapable",
  PeerNotEncryptionRegistered: "PeerNotEncryptionRegistered",
  MemberNotRegistered: "MemberNotRegistered",
  KekNextMismatch: "KekNextMismatch",
  RetireCriteriaUnmet: "RetireCriteriaUnmet",
  ActiveKey: "ActiveKey",
  LocalEpochExhausted: "LocalEpochExhausted",
  NotAMember: "NotAMember",
} as const
export type PreconditionReason = (typeof PreconditionReason)[keyof typeof PreconditionReason]

const Details = Schema.Record(Schema.String, Schema.Unknown)
const fields = { message: Schema.String, details: Schema.optional(Details) }

export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", fields) {}
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", fields) {}
export class FailedPrecondition extends Schema.TaggedError<FailedPrecondition>()(
  "FailedPrecondition",
  fields,
) {}
export class CapabilityCheckFailed extends Schema.TaggedError<CapabilityCheckFailed>()(
  "CapabilityCheckFailed",
  fields,
) {}
export class LocalEpochOutOfRange extends Schema.TaggedError<LocalEpochOutOfRange>()(
  "LocalEpochOutOfRange",
  fields,
) {}
export class NodeIDCollision extends Schema.TaggedError<NodeIDCollision>()("NodeIDCollision", fields) {}
export class LocalEpochRollback extends Schema.TaggedError<LocalEpochRollback>()(
  "LocalEpochRollback",
  fields,
) {}
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", fields) {}
export class Halted extends Schema.TaggedError<Halted>()("Halted", fields) {}
export class IntegrityError extends Schema.TaggedError<IntegrityError>()("IntegrityError", fields) {}
export class Internal extends Schema.TaggedError<Internal>()("Internal", fields) {}

export type ApiError =
  | InvalidArgument
  | NotFound
  | FailedPrecondition
  | CapabilityCheckFailed
  | LocalEpochOutOfRange
  | NodeIDCollision
  | LocalEpochRollback
  | Unavailable
  | Halted
  | IntegrityError
  | Internal

const classes = {
  InvalidArgument,
  NotFound,
  FailedPrecondition,
  CapabilityCheckFailed,
  LocalEpochOutOfRange,
  NodeIDCollision,
  LocalEpochRollback,
  Unavailable,
  Halted,
  IntegrityError,
  Internal,
} as const

export const isApiError = (u: unknown): u is ApiError => {
  if (!(u instanceof Error) || !("_tag" in u)) return false
  const tag = u._tag
  return typeof tag === "string" && Object.hasOwn(classes, tag)
}

/** Builds the error of `code` (used when decoding an error reply). */
export const make = (code: Code, message: string, details?: Record<string, unknown>): ApiError =>
  new classes[code]({ message, ...(details === undefined ? {} : { details }) })

export const failedPrecondition = (
  reason: PreconditionReason,
  message: string,
  extra?: Record<string, unknown>,
): FailedPrecondition => new FailedPrecondition({ message, details: { ...extra, reason } })

/** The JSON body of an error reply (CONTRACT.md §1). */
export const ErrorBody = Schema.Struct({
  error: Schema.Struct({
    code: Schema.Literals(Object.values(Code) as [Code, ...Code[]]),
    message: Schema.String,
    details: Schema.optional(Details),
  }),
})
export type ErrorBody = typeof ErrorBody.Type

export const toBody = (e: ApiError): ErrorBody => {
  const details: Record<string, unknown> | undefined = e.details
  return { error: { code: e._tag, message: e.message, ...(details === undefined ? {} : { details }) } }
}

export const fromBody = (b: ErrorBody): ApiError => make(b.error.code, b.error.message, b.error.details)
