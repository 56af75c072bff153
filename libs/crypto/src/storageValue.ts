// Storage values: compress-then-encrypt (SPEC §2.4, CONTRACT §7). Flag bit 0 is
// set only when raw Snappy made the value strictly smaller; opening
// decompresses when it is set, and a value that does not decompress is an
// IntegrityError (it authenticated, so the sealer was broken or malicious).
import { Result } from "effect"
import { requireUint8Array } from "./argument.ts"
import { FLAG_COMPRESSED, type Keyring, openStorage, sealStorage } from "./envelope.ts"
import { IntegrityError, type OpenError } from "./errors.ts"
import * as Snappy from "./snappy.ts"

/** Seals a user value under `location`, compressed when that makes it smaller. */
export const sealStorageValue = (p: {
  readonly dek: Uint8Array
  readonly keyId: number
  readonly nonce: Uint8Array
  readonly location: Uint8Array
  readonly value: Uint8Array
  /** Zero bytes left before the envelope in the returned array (see sealStorage). */
  readonly headroom?: number
}): Uint8Array => {
  requireUint8Array("value", p.value)
  const compressed = Snappy.compressIfSmaller(p.value)
  return sealStorage({
    dek: p.dek,
    keyId: p.keyId,
    nonce: p.nonce,
    location: p.location,
    flag: compressed === undefined ? 0 : FLAG_COMPRESSED,
    plaintext: compressed ?? p.value,
    headroom: p.headroom,
  })
}

/** Opens a storage envelope under `location` and returns the user value. */
export const openStorageValue = (
  envelope: Uint8Array,
  keyring: Keyring,
  location: Uint8Array,
): Result.Result<Uint8Array, OpenError> =>
  Result.flatMap(openStorage(envelope, keyring, location), ({ plaintext, flag, keyId }) => {
    if ((flag & FLAG_COMPRESSED) === 0) return Result.succeed(plaintext)
    const value = Snappy.decompress(plaintext)
    if (value === undefined) {
      return Result.fail(
        new IntegrityError({
          message: `value under key id ${keyId} authenticated but is not valid raw Snappy`,
          reason: "Decompression",
        }),
      )
    }
    return Result.succeed(value)
  })
