// Storage and raft envelopes (CONTRACT §7):
//   0x01 ‖ flag (1) ‖ key_id (BE u32) ‖ nonce (12) ‖ ciphertext ‖ tag (16)
// AES-256-GCM, 34 bytes of overhead.
//   storage AAD = 0x01 ‖ flag ‖ key_id ‖ location (the exact storage key), so a
//                 value moved to another key or version fails to open;
//   raft AAD    = 0x52 ('R') ‖ 0x01 ‖ flag ‖ key_id, flag always 0x00.
// The two AADs differ in their first byte, so neither kind opens as the other.
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
import {
  CryptoArgumentError,
  IntegrityError,
  type OpenError,
  Truncated,
  UnknownKeyId,
  UnsupportedVersion,
} from "./errors.ts"

export const ENVELOPE_VERSION = 0x01
export const HEADER_LENGTH = 6
export const ENVELOPE_OVERHEAD = HEADER_LENGTH + NONCE_LENGTH + TAG_LENGTH // 34
/** Storage flag bit 0: the plaintext was compressed (raw Snappy) before sealing. */
export const FLAG_COMPRESSED = 0x01
const STORAGE_RESERVED_FLAG_BITS = 0xfe
const RAFT_AAD_PREFIX = 0x52

/** Looks up a DEK by key id; `undefined` when the key is not held. */
export type Keyring = (keyId: number) => Uint8Array | undefined

const header = (flag: number, keyId: number): Uint8Array => {
  const h = new Uint8Array(HEADER_LENGTH)
  h[0] = ENVELOPE_VERSION
  h[1] = flag
  new DataView(h.buffer).setUint32(2, keyId, false)
  return h
}

const storageAad = (headerBytes: Uint8Array, location: Uint8Array): Uint8Array => {
  const aad = new Uint8Array(HEADER_LENGTH + location.length)
  aad.set(headerBytes, 0)
  aad.set(location, HEADER_LENGTH)
  return aad
}

const raftAad = (headerBytes: Uint8Array): Uint8Array => {
  const aad = new Uint8Array(1 + HEADER_LENGTH)
  aad[0] = RAFT_AAD_PREFIX
  aad.set(headerBytes, 1)
  return aad
}

const seal = (
  dek: Uint8Array,
  headerBytes: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array => {
  const out = new Uint8Array(ENVELOPE_OVERHEAD + plaintext.length)
  out.set(headerBytes, 0)
  out.set(nonce, HEADER_LENGTH)
  AesGcm.sealInto(dek, nonce, aad, plaintext, out, HEADER_LENGTH + NONCE_LENGTH)
  return out
}

/**
 * Seals a value under the storage DEK, bound to `location` (the exact storage
 * key it lives under). `flag` is 0 or 1 (bit 0 = compressed); the caller owns
 * the nonce, which must come from a registered (DEK, epoch) sequence (SPEC §6).
 */
export const sealStorage = (p: {
  readonly dek: Uint8Array
  readonly keyId: number
  readonly flag: number
  readonly nonce: Uint8Array
  readonly location: Uint8Array
  readonly plaintext: Uint8Array
}): Uint8Array => {
  requireBytes("dek", p.dek, KEY_LENGTH)
  requireKeyId(p.keyId)
  if (
    !Number.isInteger(p.flag) ||
    p.flag < 0 ||
    p.flag > 0xff ||
    (p.flag & STORAGE_RESERVED_FLAG_BITS) !== 0
  ) {
    throw new CryptoArgumentError({ message: `storage flag must be 0 or 1, got ${p.flag}` })
  }
  requireBytes("nonce", p.nonce, NONCE_LENGTH)
  requireUint8Array("location", p.location)
  requireUint8Array("plaintext", p.plaintext)
  const h = header(p.flag, p.keyId)
  return seal(p.dek, h, p.nonce, storageAad(h, p.location), p.plaintext)
}

/** Seals a raft log payload under the raft DEK (flag 0x00, no location). */
export const sealRaft = (p: {
  readonly dek: Uint8Array
  readonly keyId: number
  readonly nonce: Uint8Array
  readonly plaintext: Uint8Array
}): Uint8Array => {
  requireBytes("dek", p.dek, KEY_LENGTH)
  requireKeyId(p.keyId)
  requireBytes("nonce", p.nonce, NONCE_LENGTH)
  requireUint8Array("plaintext", p.plaintext)
  const h = header(0, p.keyId)
  return seal(p.dek, h, p.nonce, raftAad(h), p.plaintext)
}

export interface EnvelopeHeader {
  readonly flag: number
  readonly keyId: number
  readonly nonce: Uint8Array
}

/**
 * The first two checks of CONTRACT §7 (length, then version) and the header
 * fields, without any key: for audits of key_id / nonce uniqueness. The flag
 * is returned as is; which bits are reserved depends on the envelope kind.
 */
export const envelopeHeader = (
  envelope: Uint8Array,
): Result.Result<EnvelopeHeader, Truncated | UnsupportedVersion> => {
  if (envelope.length < ENVELOPE_OVERHEAD) {
    return Result.fail(
      new Truncated({
        message: `envelope of ${envelope.length} bytes is below the ${ENVELOPE_OVERHEAD}-byte minimum`,
        length: envelope.length,
        expected: ENVELOPE_OVERHEAD,
      }),
    )
  }
  const version = envelope[0]!
  if (version !== ENVELOPE_VERSION) {
    return Result.fail(
      new UnsupportedVersion({ message: `envelope version 0x${hex2(version)} is not supported`, version }),
    )
  }
  const view = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength)
  return Result.succeed({
    flag: envelope[1]!,
    keyId: view.getUint32(2, false),
    nonce: envelope.slice(HEADER_LENGTH, HEADER_LENGTH + NONCE_LENGTH),
  })
}

const hex2 = (n: number): string => n.toString(16).padStart(2, "0")

interface Opened {
  readonly plaintext: Uint8Array
  readonly flag: number
  readonly keyId: number
  readonly nonce: Uint8Array
}

// CONTRACT §7 order: Truncated → UnsupportedVersion (version, then reserved
// flag bits) → UnknownKeyId → IntegrityError.
const open = (
  envelope: Uint8Array,
  keyring: Keyring,
  reservedFlagBits: number,
  aadOf: (headerBytes: Uint8Array) => Uint8Array,
): Result.Result<Opened, OpenError> => {
  requireUint8Array("envelope", envelope)
  const parsed = envelopeHeader(envelope)
  if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
  const { flag, keyId, nonce } = parsed.success
  if ((flag & reservedFlagBits) !== 0) {
    return Result.fail(
      new UnsupportedVersion({
        message: `envelope flag 0x${hex2(flag)} sets reserved bits`,
        version: ENVELOPE_VERSION,
        flag,
      }),
    )
  }
  const dek = keyring(keyId)
  if (dek === undefined) {
    return Result.fail(new UnknownKeyId({ message: `key id ${keyId} is not in the keyring`, keyId }))
  }
  requireBytes("dek", dek, KEY_LENGTH)
  const headerBytes = envelope.subarray(0, HEADER_LENGTH)
  const tagStart = envelope.length - TAG_LENGTH
  const plaintext = AesGcm.open(
    dek,
    nonce,
    aadOf(headerBytes),
    envelope.subarray(HEADER_LENGTH + NONCE_LENGTH, tagStart),
    envelope.subarray(tagStart),
  )
  if (plaintext === undefined) {
    return Result.fail(
      new IntegrityError({
        message: `envelope under key id ${keyId} failed authentication`,
        reason: "Authentication",
      }),
    )
  }
  return Result.succeed({ plaintext, flag, keyId, nonce })
}

/**
 * Opens a storage envelope that must live under `location`. Every failure is a
 * value; only a keyring that returns a DEK other than 32 bytes (a caller bug)
 * throws `CryptoArgumentError`.
 */
export const openStorage = (
  envelope: Uint8Array,
  keyring: Keyring,
  location: Uint8Array,
): Result.Result<
  {
    readonly plaintext: Uint8Array
    readonly flag: number
    readonly keyId: number
    readonly nonce: Uint8Array
  },
  OpenError
> => {
  requireUint8Array("location", location)
  return open(envelope, keyring, STORAGE_RESERVED_FLAG_BITS, (h) => storageAad(h, location))
}

/** Opens a raft envelope (flag must be 0x00). */
export const openRaft = (
  envelope: Uint8Array,
  keyring: Keyring,
): Result.Result<
  { readonly plaintext: Uint8Array; readonly keyId: number; readonly nonce: Uint8Array },
  OpenError
> =>
  Result.map(open(envelope, keyring, 0xff, raftAad), ({ plaintext, keyId, nonce }) => ({
    plaintext,
    keyId,
    nonce,
  }))
