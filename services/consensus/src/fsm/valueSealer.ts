// How a value becomes the bytes stored under its version key, and back
// (SPEC §2.4). Before `enable-storage-envelope` values are cleartext
// (encryption_state 0); after it every applied value is sealed under the
// active storage DEK at this node's registered epoch, AAD = the exact storage
// key. Reads open by the header's encryption_state, never by sniffing.
import { envelopeHeader, openStorageValue, sealStorageValue } from "@ekv/crypto"
import { ApiError, type HaltCode } from "@ekv/wire"
import { Result } from "effect"
import type { Version } from "../stateMachine/mvccStore.ts"
import {
  EncryptionState,
  encodeStoredValue,
  STORED_HEADER_LENGTH,
  withSealedHeader,
} from "../stateMachine/valueHeader.ts"
import { versionKey } from "../stateMachine/versionKey.ts"

export interface SealerHalt {
  readonly reason: HaltCode
  readonly message: string
  readonly transient: boolean
}

export interface ValueSealer {
  /** Stored bytes (header ‖ payload) of `value` as version `index` of `key`. */
  seal(key: string, index: number, value: Uint8Array): Uint8Array
  /** The value of a stored (non-tombstone) version; fails with OpenFailure when it does not open. */
  open(v: Version): Uint8Array
  /**
   * Called before an entry with puts applies: null once `seal` can run, or a
   * node-local halt (no registered epoch in time, epoch exhausted). Answers
   * at once (no promise) when it need not wait, which is almost always.
   */
  prepare?(): SealerHalt | null | Promise<SealerHalt | null>
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
export const storageKeyOf = (key: string, index: number): Uint8Array => versionKey(key, index)

/** What the envelope sealer needs of this node's session. */
export interface SealingKeys {
  /** Whether the replicated state says values are sealed now. */
  readonly active: () => boolean
  /** The registered key to seal under now, or why there is none. */
  readonly sealingKey: () =>
    | { readonly keyId: number; readonly dek: Uint8Array; readonly next: () => Uint8Array }
    | "exhausted"
    | "wait"
    | "refused"
  /** Why "refused": this node's own registration got a verdict (SPEC §6). */
  readonly refusal?: () => { readonly code: HaltCode; readonly reason: string } | null
  /** Any DEK this node holds (the read ring: every unretired DEK). */
  readonly dek: (keyId: number) => Uint8Array | undefined
  /**
   * Whether the session is open and holds every unretired DEK of the replicated
   * state (an unknown key before that is Unavailable, not corruption).
   */
  readonly sessionOpen: () => boolean
  /** Waits for a change in keys/registrations, up to `ms`. */
  readonly changed: (ms: number) => Promise<void>
  readonly onSealed?: (keyId: number) => void
  readonly onOpenFailure?: (reason: string) => void
}

/** How long an apply waits for this node's registration before reporting a (transient) halt. */
const PREPARE_WAIT_MS = 5_000

const exhaustedHalt: SealerHalt = {
  reason: "LocalEpochExhausted",
  message: "this node's epoch of the active storage DEK is exhausted; rotate the storage DEK",
  transient: false,
}

/** SPEC §6: this node's own registration refused halts it with that code (a restart opens a new session). */
const refusedHalt = (k: SealingKeys): SealerHalt => {
  const r = k.refusal?.()
  return {
    reason: r?.code ?? "LocalEpochRollback",
    message: `this node's registration for sealing was refused: ${r?.reason ?? "no reason given"}; restart the node to open a writer session above the registered epochs`,
    transient: false,
  }
}

/** Waits (bounded) for a registered epoch of the active storage DEK. */
const awaitSealingKey = async (k: SealingKeys): Promise<SealerHalt | null> => {
  const deadline = Date.now() + PREPARE_WAIT_MS
  for (;;) {
    const s = k.sealingKey()
    if (s === "exhausted") return exhaustedHalt
    if (s === "refused") return refusedHalt(k)
    if (s !== "wait") return null
    const left = deadline - Date.now()
    if (left <= 0)
      return {
        reason: "KeystoreUnavailable",
        message: "no committed registration of the active storage DEK for this node yet (session pending)",
        transient: true,
      }
    await k.changed(Math.min(left, 500))
  }
}

export const envelopeSealer = (k: SealingKeys): ValueSealer => ({
  prepare() {
    if (!k.active()) return null
    const s = k.sealingKey()
    if (s === "exhausted") return exhaustedHalt
    if (s === "refused") return refusedHalt(k)
    return s === "wait" ? awaitSealingKey(k) : null
  },
  seal(key, index, value) {
    if (!k.active()) return encodeStoredValue(EncryptionState.Cleartext, value)
    const s = k.sealingKey()
    // prepare() ran first in the same apply; anything else is a bug, never a silent cleartext write.
    if (typeof s === "string") throw new Error(`no sealing key for ${JSON.stringify(key)}@${index}: ${s}`)
    // The envelope is built after the header byte, in the array that is stored.
    const stored = sealStorageValue({
      dek: s.dek,
      keyId: s.keyId,
      nonce: s.next(),
      location: storageKeyOf(key, index),
      value,
      headroom: STORED_HEADER_LENGTH,
    })
    k.onSealed?.(s.keyId)
    return withSealedHeader(stored)
  },
  open(v) {
    if (v.header.encryptionState === EncryptionState.Cleartext) return v.payload
    if (v.header.encryptionState !== EncryptionState.StorageEnvelope)
      throw new OpenFailure(v.key, v.version, "UnsupportedEncryptionState")
    if (!k.sessionOpen()) {
      const h = envelopeHeader(v.payload)
      if (Result.isSuccess(h) && k.dek(h.success.keyId) === undefined)
        throw new ApiError.Unavailable({
          message: "this node's storage keys are not loaded yet (keystore session pending); retry",
          details: { reason: "KeysNotLoaded" },
        })
    }
    const r = openStorageValue(v.payload, k.dek, v.storageKey)
    if (Result.isFailure(r)) {
      const reason = r.failure._tag
      k.onOpenFailure?.(reason)
      throw new OpenFailure(v.key, v.version, reason)
    }
    return r.success
  },
})
