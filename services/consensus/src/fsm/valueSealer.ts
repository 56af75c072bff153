// How a value becomes the bytes stored under its version key, and back
// (SPEC §2.4). Cleartext for now (encryption_state 0); the storage envelope
// plugs in here: seal under the active storage DEK with AAD = the exact
// storage key, open by the header's encryption_state, never by sniffing.
import type { Version } from "../stateMachine/mvccStore.ts"
import { EncryptionState, encodeStoredValue } from "../stateMachine/valueHeader.ts"
import { userKeyBytes, versionKeyFromBytes } from "../stateMachine/versionKey.ts"

export interface ValueSealer {
  /** Stored bytes (header ‖ payload) of `value` as version `index` of `key`. */
  seal(key: string, index: number, value: Uint8Array): Uint8Array
  /** The value of a stored (non-tombstone) version; fails with OpenFailure when it does not open. */
  open(v: Version): Uint8Array
}

/** A stored value that cannot be opened: read as IntegrityError, never as data (SPEC §2.4). */
export class OpenFailure extends Error {
  override readonly name = "OpenFailure"
  readonly key: string
  readonly version: number
  readonly reason: string
  constructor(key: string, version: number, reason: string) {
    super(`value of ${JSON.stringify(key)} at version ${version} does not open: ${reason}`)
    this.key = key
    this.version = version
    this.reason = reason
  }
}

export const cleartextSealer: ValueSealer = {
  seal: (_key, _index, value) => encodeStoredValue(EncryptionState.Cleartext, value),
  open: (v) => {
    if (v.header.encryptionState !== EncryptionState.Cleartext)
      throw new OpenFailure(v.key, v.version, "sealed value and no storage key available")
    return v.payload
  },
}

/** The storage key (AAD location) of version `index` of `key`. */
export const storageKeyOf = (key: string, index: number): Uint8Array =>
  versionKeyFromBytes(userKeyBytes(key), index)
