// DEK wrap under the KEK (CONTRACT §7):
//   0x01 ‖ nonce (12, random) ‖ AES-256-GCM(dek) (32) ‖ tag (16) = 61 bytes,
//   AAD = ASCII "ekv/dek" ‖ purpose byte ('S' storage, 'R' raft) ‖ key_id (BE u32).
// The version byte is outside the AAD, so only the explicit check rejects it.
import { createHmac, getRandomValues } from "node:crypto"
import { Result } from "effect"
import * as AesGcm from "./aesGcm.ts"
import {
  KEY_LENGTH,
  NONCE_LENGTH,
  requireBytes,
  requireKeyId,
  requireUint8Array,
  TAG_LENGTH,
} from "./argument.ts"
import { CryptoArgumentError, IntegrityError, Truncated, UnsupportedVersion } from "./errors.ts"

export const WRAP_VERSION = 0x01
export const WRAPPED_DEK_LENGTH = 1 + NONCE_LENGTH + KEY_LENGTH + TAG_LENGTH // 61

export type Purpose = "storage" | "raft"

const AAD_LABEL = new TextEncoder().encode("ekv/dek")

const purposeByte = (purpose: Purpose): number => {
  if (purpose === "storage") return 0x53
  if (purpose === "raft") return 0x52
  throw new CryptoArgumentError({ message: `purpose must be "storage" or "raft", got ${String(purpose)}` })
}

const wrapAad = (purpose: Purpose, keyId: number): Uint8Array => {
  const aad = new Uint8Array(AAD_LABEL.length + 5)
  aad.set(AAD_LABEL, 0)
  aad[AAD_LABEL.length] = purposeByte(purpose)
  new DataView(aad.buffer).setUint32(AAD_LABEL.length + 1, keyId, false)
  return aad
}

/** Wraps a DEK; the nonce comes from the CSPRNG unless injected (tests, vectors). */
export const wrapDek = (p: {
  readonly kek: Uint8Array
  readonly dek: Uint8Array
  readonly purpose: Purpose
  readonly keyId: number
  readonly nonce?: Uint8Array
}): Uint8Array => {
  requireBytes("kek", p.kek, KEY_LENGTH)
  requireBytes("dek", p.dek, KEY_LENGTH)
  requireKeyId(p.keyId)
  const nonce = p.nonce ?? getRandomValues(new Uint8Array(NONCE_LENGTH))
  requireBytes("nonce", nonce, NONCE_LENGTH)
  const aad = wrapAad(p.purpose, p.keyId)
  const out = new Uint8Array(WRAPPED_DEK_LENGTH)
  out[0] = WRAP_VERSION
  out.set(nonce, 1)
  AesGcm.sealInto(p.kek, nonce, aad, p.dek, out, 1 + NONCE_LENGTH)
  return out
}

/** Unwraps a DEK: exactly 61 bytes (else Truncated) → version 0x01 → AEAD (CONTRACT §7). */
export const unwrapDek = (p: {
  readonly kek: Uint8Array
  readonly wrapped: Uint8Array
  readonly purpose: Purpose
  readonly keyId: number
}): Result.Result<Uint8Array, Truncated | UnsupportedVersion | IntegrityError> => {
  requireBytes("kek", p.kek, KEY_LENGTH)
  requireKeyId(p.keyId)
  requireUint8Array("wrapped", p.wrapped)
  const aad = wrapAad(p.purpose, p.keyId)
  const w = p.wrapped
  if (w.length !== WRAPPED_DEK_LENGTH) {
    return Result.fail(
      new Truncated({
        message: `a wrapped DEK is exactly ${WRAPPED_DEK_LENGTH} bytes, got ${w.length}`,
        length: w.length,
        expected: WRAPPED_DEK_LENGTH,
      }),
    )
  }
  if (w[0] !== WRAP_VERSION) {
    return Result.fail(
      new UnsupportedVersion({ message: `DEK wrap version ${w[0]} is not supported`, version: w[0]! }),
    )
  }
  const tagStart = WRAPPED_DEK_LENGTH - TAG_LENGTH
  const dek = AesGcm.open(
    p.kek,
    w.subarray(1, 1 + NONCE_LENGTH),
    aad,
    w.subarray(1 + NONCE_LENGTH, tagStart),
    w.subarray(tagStart),
  )
  if (dek === undefined) {
    return Result.fail(
      new IntegrityError({
        message: `wrapped ${p.purpose} DEK ${p.keyId} failed authentication (wrong KEK, purpose or key id, or altered bytes)`,
        reason: "Authentication",
      }),
    )
  }
  return Result.succeed(dek)
}

const KEK_ID_LABEL = new TextEncoder().encode("ekv/kek-id")

/** Hex of the first 8 bytes of HMAC-SHA256(KEK, "ekv/kek-id") (CONTRACT §3, SPEC §4.1). */
export const kekId = (kek: Uint8Array): string => {
  requireBytes("kek", kek, KEY_LENGTH)
  return createHmac("sha256", kek).update(KEK_ID_LABEL).digest().subarray(0, 8).toString("hex")
}
