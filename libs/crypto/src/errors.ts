// Typed failures of the byte formats (CONTRACT §7). A failure to open is a
// value (`Result.fail`), never a defect; only caller bugs (a DEK of the wrong
// size, a nonce field out of its range) are thrown.
import { Data } from "effect"

/** Shorter than the format's minimum (34 for an envelope), or a DEK wrap that is not exactly 61 bytes. */
export class Truncated extends Data.TaggedError("Truncated")<{
  readonly message: string
  readonly length: number
  readonly expected: number
}> {}

/** Version byte ≠ 0x01, or reserved flag bits set (storage bits 1–7, raft flag ≠ 0). */
export class UnsupportedVersion extends Data.TaggedError("UnsupportedVersion")<{
  readonly message: string
  readonly version: number
  readonly flag?: number
}> {}

/** The envelope names a key id the keyring does not hold. */
export class UnknownKeyId extends Data.TaggedError("UnknownKeyId")<{
  readonly message: string
  readonly keyId: number
}> {}

/** AEAD authentication failed (wrong key, wrong AAD, altered bytes), or an authenticated payload is malformed. */
export class IntegrityError extends Data.TaggedError("IntegrityError")<{
  readonly message: string
  readonly reason: IntegrityReason
}> {}

export const IntegrityReason = {
  Authentication: "Authentication",
  Decompression: "Decompression",
  MalformedPayload: "MalformedPayload",
  InvalidPublicKey: "InvalidPublicKey",
} as const
export type IntegrityReason = (typeof IntegrityReason)[keyof typeof IntegrityReason]

/** A nonce sequence was asked for a write_count past 2^64−1 (CONTRACT §7). */
export class NonceExhausted extends Data.TaggedError("NonceExhausted")<{
  readonly message: string
  readonly nodeId16: number
  readonly localEpoch: number
}> {}

/** A local_epoch outside 0..0xFFFF (CONTRACT §1, §3): rejected, never truncated. */
export class LocalEpochOutOfRange extends Data.TaggedError("LocalEpochOutOfRange")<{
  readonly message: string
  readonly localEpoch: number
}> {}

/** A caller passed a value the formats cannot represent (wrong key size, node_id16 > 0xFFFF, key_id 0, ...). */
export class CryptoArgumentError extends Data.TaggedError("CryptoArgumentError")<{
  readonly message: string
}> {}

/** Every way opening an envelope can fail, in the order of CONTRACT §7's checks. */
export type OpenError = Truncated | UnsupportedVersion | UnknownKeyId | IntegrityError
