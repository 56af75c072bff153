// The replicated encryption state in the state machine (SPEC §2.4): written in
// the applying batch from the decoded payload and the keystore's verdict,
// carried in snapshots as SM metadata. The applier decides which key id seals
// from THIS state, never from the keystore's current view.
import type { EncryptionPayload } from "@ekv/wire"

export type Purpose = "storage" | "raft"

export interface EncKey {
  readonly purpose: Purpose
  readonly retired: boolean
}

export interface EncState {
  readonly storageEnvelopeActive: boolean
  /** 0 = no active key of that purpose. */
  readonly active: { readonly storage: number; readonly raft: number }
  /** The raft-envelope cutover index c (SPEC §2.5); 0 while there is none. */
  readonly cutoverIndex: number
  /** Index of the last applied 0x03–0x05 entry (the next dispatch's prev_encryption_index). */
  readonly lastEncryptionIndex: number
  /** Index of the last applied 0x04/0x05 entry (the sidecar's raft_applied_index). */
  readonly lastControlIndex: number
  /** Every DEK ever created, by key id (decimal); retired ones stay so an id is never reused. */
  readonly keys: Readonly<Record<string, EncKey>>
}

export const emptyEncState: EncState = {
  storageEnvelopeActive: false,
  active: { storage: 0, raft: 0 },
  cutoverIndex: 0,
  lastEncryptionIndex: 0,
  lastControlIndex: 0,
  keys: {},
}

/** SM metadata name of the encryption state. */
export const ENCRYPTION_STATE_META = "encryption_state"
/** The pre-lifecycle metadata record of the last encryption index (read for old stores). */
export const LEGACY_LAST_ENCRYPTION_INDEX = "last_encryption_index"

const utf8 = new TextEncoder()
const utf8d = new TextDecoder()

export const encodeEncState = (s: EncState): Uint8Array =>
  utf8.encode(
    JSON.stringify({
      storage_envelope_active: s.storageEnvelopeActive,
      active: s.active,
      raft_envelope_cutover_index: s.cutoverIndex,
      last_encryption_index: s.lastEncryptionIndex,
      last_control_index: s.lastControlIndex,
      keys: s.keys,
    }),
  )

const nat = (x: unknown): number => (typeof x === "number" && Number.isSafeInteger(x) && x >= 0 ? x : 0)

export const decodeEncState = (b: Uint8Array | undefined): EncState => {
  if (b === undefined || b.length === 0) return emptyEncState
  const v = JSON.parse(utf8d.decode(b)) as Record<string, unknown>
  const active = (v.active ?? {}) as Record<string, unknown>
  const keys: Record<string, EncKey> = {}
  for (const [id, k] of Object.entries(
    (v.keys ?? {}) as Record<string, { purpose?: unknown; retired?: unknown }>,
  ))
    keys[id] = { purpose: k.purpose === "raft" ? "raft" : "storage", retired: k.retired === true }
  return {
    storageEnvelopeActive: v.storage_envelope_active === true,
    active: { storage: nat(active.storage), raft: nat(active.raft) },
    cutoverIndex: nat(v.raft_envelope_cutover_index),
    lastEncryptionIndex: nat(v.last_encryption_index),
    lastControlIndex: nat(v.last_control_index),
    keys,
  }
}

export const hasDeks = (s: EncState): boolean => Object.keys(s.keys).length > 0

export const unretiredKeyIds = (s: EncState): number[] =>
  Object.entries(s.keys)
    .filter(([, k]) => !k.retired)
    .map(([id]) => Number(id))
    .sort((a, b) => a - b)

export type EncryptionKind =
  | "registration"
  | "bootstrap"
  | "rotate-dek"
  | "rewrap-deks"
  | "retire-dek"
  | "enable-storage-envelope"
  | "enable-raft-envelope"

export const kindOfPayload = (p: EncryptionPayload): EncryptionKind =>
  p.tag === 0x03 ? "registration" : p.tag === 0x04 ? "bootstrap" : p.control.kind

/**
 * The state after entry `index` applied with the keystore's verdict. A
 * rejected entry only moves the indexes (the keystore commits a rejected
 * 0x04/0x05 at raft_applied_index = i too).
 */
export const nextEncState = (
  s: EncState,
  index: number,
  p: EncryptionPayload,
  verdict: "applied" | "rejected",
): EncState => {
  const control = p.tag !== 0x03
  const base: EncState = {
    ...s,
    lastEncryptionIndex: index,
    lastControlIndex: control ? index : s.lastControlIndex,
  }
  if (verdict === "rejected" || p.tag === 0x03) return base
  if (p.tag === 0x04) {
    const b = p.bootstrap
    return {
      ...base,
      active: { storage: b.storage.key_id, raft: b.raft.key_id },
      keys: {
        ...s.keys,
        [String(b.storage.key_id)]: { purpose: "storage", retired: false },
        [String(b.raft.key_id)]: { purpose: "raft", retired: false },
      },
    }
  }
  const c = p.control
  switch (c.kind) {
    case "rotate-dek":
      return {
        ...base,
        active: { ...s.active, [c.purpose]: c.dek.key_id },
        keys: { ...s.keys, [String(c.dek.key_id)]: { purpose: c.purpose, retired: false } },
      }
    case "retire-dek": {
      const k = s.keys[String(c.key_id)]
      return k === undefined
        ? base
        : { ...base, keys: { ...s.keys, [String(c.key_id)]: { ...k, retired: true } } }
    }
    case "enable-storage-envelope":
      return { ...base, storageEnvelopeActive: true }
    case "enable-raft-envelope":
      return { ...base, cutoverIndex: index }
    case "rewrap-deks":
      return base
  }
}

/** Where a user payload at `index` stands against the cutover (SPEC §2.5). */
export const cutoverVerdict = (
  cutoverIndex: number,
  index: number,
  sealed: boolean,
): "ok" | "UnsealedAfterCutover" | "SealedBeforeCutover" => {
  if (sealed) return cutoverIndex === 0 || index <= cutoverIndex ? "SealedBeforeCutover" : "ok"
  return cutoverIndex > 0 && index > cutoverIndex ? "UnsealedAfterCutover" : "ok"
}
