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
import { envelopeArray } from "./envelopeSlab.ts"
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

/**
 * Bytes a sealer may leave free before the envelope for the caller's own
 * prefix (a stored value's header byte, a log entry's tag), so the envelope is
 * built in the caller's final array instead of being copied into it.
 */
export const MAX_HEADROOM = 16

/** Looks up a DEK by key id; `undefined` when the key is not held. */
export type Keyring = (keyId: number) => Uint8Array | undefined

// Small, fresh typed arrays live on V8's heap; handing one to native code
// (the cipher's IV and AAD) or viewing its buffer through a DataView moves it
// off the heap first, which cost more than the AES-GCM work on a 256 B value
// (docs/performance.md). So the header is written with shifts, the IV is a
// view of the envelope being built or opened, and the AAD goes through one
// reusable off-heap scratch (not secret; setAAD copies it before returning).
let aadScratch = Buffer.allocUnsafeSlow(256)

const aadView = (length: number): Uint8Array => {
  if (aadScratch.length < length) aadScratch = Buffer.allocUnsafeSlow(Math.max(length, aadScratch.length * 2))
  return aadScratch.subarray(0, length)
}

const writeHeader = (out: Uint8Array, at: number, flag: number, keyId: number): void => {
  out[at] = ENVELOPE_VERSION
  out[at + 1] = flag
  out[at + 2] = keyId >>> 24
  out[at + 3] = (keyId >>> 16) & 0xff
  out[at + 4] = (keyId >>> 8) & 0xff
  out[at + 5] = keyId & 0xff
}

const readKeyId = (envelope: Uint8Array): number =>
  ((envelope[2]! << 24) | (envelope[3]! << 16) | (envelope[4]! << 8) | envelope[5]!) >>> 0

/** The AAD of a storage envelope: header ‖ location (in the scratch: use before the next seal or open). */
const storageAad = (headerBytes: Uint8Array, location: Uint8Array): Uint8Array => {
  const aad = aadView(HEADER_LENGTH + location.length)
  aad.set(headerBytes, 0)
  aad.set(location, HEADER_LENGTH)
  return aad
}

/** The AAD of a raft envelope: 'R' ‖ header (in the scratch, likewise). */
const raftAad = (headerBytes: Uint8Array): Uint8Array => {
  const aad = aadView(1 + HEADER_LENGTH)
  aad[0] = RAFT_AAD_PREFIX
  aad.set(headerBytes, 1)
  return aad
}

const requireHeadroom = (headroom: number): void => {
  if (!Number.isInteger(headroom) || headroom < 0 || headroom > MAX_HEADROOM) {
    throw new CryptoArgumentError({
      message: `headroom must be an integer in 0..${MAX_HEADROOM}, got ${headroom}`,
    })
  }
}

const seal = (
  dek: Uint8Array,
  flag: number,
  keyId: number,
  nonce: Uint8Array,
  aadOf: (headerBytes: Uint8Array) => Uint8Array,
  plaintext: Uint8Array,
  headroom: number,
): Uint8Array => {
  const out = envelopeArray(headroom + ENVELOPE_OVERHEAD + plaintext.length)
  writeHeader(out, headroom, flag, keyId)
  out.set(nonce, headroom + HEADER_LENGTH)
  const iv = out.subarray(headroom + HEADER_LENGTH, headroom + HEADER_LENGTH + NONCE_LENGTH)
  AesGcm.sealInto(
    dek,
    iv,
    aadOf(out.subarray(headroom, headroom + HEADER_LENGTH)),
    plaintext,
    out,
    headroom + HEADER_LENGTH + NONCE_LENGTH,
  )
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
  /** Zero bytes left before the envelope in the returned array (default 0; see MAX_HEADROOM). */
  readonly headroom?: number
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
  const headroom = p.headroom ?? 0
  requireHeadroom(headroom)
  const location = p.location
  return seal(p.dek, p.flag, p.keyId, p.nonce, (h) => storageAad(h, location), p.plaintext, headroom)
}

/** Seals a raft log payload under the raft DEK (flag 0x00, no location). */
export const sealRaft = (p: {
  readonly dek: Uint8Array
  readonly keyId: number
  readonly nonce: Uint8Array
  readonly plaintext: Uint8Array
  /** Zero bytes left before the envelope in the returned array (default 0; see MAX_HEADROOM). */
  readonly headroom?: number
}): Uint8Array => {
  requireBytes("dek", p.dek, KEY_LENGTH)
  requireKeyId(p.keyId)
  requireBytes("nonce", p.nonce, NONCE_LENGTH)
  requireUint8Array("plaintext", p.plaintext)
  const headroom = p.headroom ?? 0
  requireHeadroom(headroom)
  return seal(p.dek, 0, p.keyId, p.nonce, raftAad, p.plaintext, headroom)
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
  return Result.succeed({
    flag: envelope[1]!,
    keyId: readKeyId(envelope),
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
    envelope.subarray(HEADER_LENGTH, HEADER_LENGTH + NONCE_LENGTH),
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
