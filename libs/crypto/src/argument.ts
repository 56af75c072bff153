// Preconditions on caller-supplied values. A violation is a bug in the caller,
// so it is thrown (a defect), unlike a failure to open, which is a value.
import { CryptoArgumentError } from "./errors.ts"

export const KEY_LENGTH = 32
export const NONCE_LENGTH = 12
export const TAG_LENGTH = 16
export const MAX_U32 = 0xffff_ffff

export const requireBytes = (name: string, value: Uint8Array, length: number): void => {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new CryptoArgumentError({
      message: `${name} must be ${length} bytes, got ${value instanceof Uint8Array ? value.length : typeof value}`,
    })
  }
}

export const requireUint8Array = (name: string, value: Uint8Array): void => {
  if (!(value instanceof Uint8Array)) {
    throw new CryptoArgumentError({ message: `${name} must be a Uint8Array, got ${typeof value}` })
  }
}

/** key_id is a uint32, never 0 (CONTRACT §7). */
export const requireKeyId = (keyId: number): void => {
  if (!Number.isInteger(keyId) || keyId < 1 || keyId > MAX_U32) {
    throw new CryptoArgumentError({ message: `key_id must be an integer in 1..0xffffffff, got ${keyId}` })
  }
}
