// The 1-byte header every stored value starts with (SPEC §2.4):
//
//   bit 0     tombstone
//   bits 1–2  encryption_state: 0 cleartext, 1 storage envelope, 2–3 reserved
//   bits 3–7  zero
//
// Whether a value is sealed is decided by this byte, never by sniffing the
// payload. A tombstone is exactly the one byte 0x01: it carries no value and
// is never sealed.
import { ValueHeaderError } from "./errors.ts"

export const EncryptionState = {
  Cleartext: 0,
  StorageEnvelope: 1,
} as const
export type EncryptionState = (typeof EncryptionState)[keyof typeof EncryptionState]

export interface ValueHeader {
  readonly tombstone: boolean
  /** Always `Cleartext` for a tombstone. */
  readonly encryptionState: EncryptionState
}

export const TOMBSTONE_BIT = 0x01
const STATE_SHIFT = 1
const STATE_MASK = 0x06
const RESERVED_MASK = 0xf8

export const cleartextHeader: ValueHeader = { tombstone: false, encryptionState: EncryptionState.Cleartext }
export const sealedHeader: ValueHeader = {
  tombstone: false,
  encryptionState: EncryptionState.StorageEnvelope,
}
export const tombstoneHeader: ValueHeader = { tombstone: true, encryptionState: EncryptionState.Cleartext }

/** The header byte of `h`; a sealed tombstone is refused. */
export const encodeHeader = (h: ValueHeader): number => {
  if (h.tombstone && h.encryptionState !== EncryptionState.Cleartext) {
    throw new ValueHeaderError({ message: "a tombstone is never sealed", reason: "SealedTombstone" })
  }
  return (h.tombstone ? TOMBSTONE_BIT : 0) | (h.encryptionState << STATE_SHIFT)
}

/** Decodes one header byte; reserved bits or a reserved encryption state are a typed read error. */
export const decodeHeader = (byte: number): ValueHeader => {
  if ((byte & RESERVED_MASK) !== 0) {
    throw new ValueHeaderError({
      message: `value header 0x${hex2(byte)} has reserved bits 3–7 set`,
      reason: "ReservedBits",
      header: byte,
    })
  }
  const state = (byte & STATE_MASK) >> STATE_SHIFT
  if (state !== EncryptionState.Cleartext && state !== EncryptionState.StorageEnvelope) {
    throw new ValueHeaderError({
      message: `value header 0x${hex2(byte)} has reserved encryption state ${state}`,
      reason: "ReservedEncryptionState",
      header: byte,
    })
  }
  const tombstone = (byte & TOMBSTONE_BIT) !== 0
  if (tombstone && state !== EncryptionState.Cleartext) {
    throw new ValueHeaderError({
      message: `value header 0x${hex2(byte)} marks a sealed tombstone`,
      reason: "SealedTombstone",
      header: byte,
    })
  }
  return tombstone ? tombstoneHeader : state === 0 ? cleartextHeader : sealedHeader
}

export interface StoredValue {
  readonly header: ValueHeader
  /** The bytes after the header (an envelope when sealed); empty for a tombstone. */
  readonly payload: Uint8Array
}

/** Header byte followed by `payload`: the exact bytes a version is stored as. */
export const encodeStoredValue = (encryptionState: EncryptionState, payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(1 + payload.length)
  out[0] = encodeHeader({ tombstone: false, encryptionState })
  out.set(payload, 1)
  return out
}

/** Bytes the header takes before the payload in a stored value. */
export const STORED_HEADER_LENGTH = 1

/**
 * The stored bytes of a sealed value whose envelope was built in place, after
 * STORED_HEADER_LENGTH free bytes: writes the header there and returns `bytes`.
 */
export const withSealedHeader = (bytes: Uint8Array): Uint8Array => {
  if (bytes.length <= STORED_HEADER_LENGTH) {
    throw new ValueHeaderError({ message: "a sealed value carries an envelope", reason: "Empty" })
  }
  bytes[0] = encodeHeader(sealedHeader)
  return bytes
}

/** The stored bytes of a tombstone. */
export const encodeTombstone = (): Uint8Array => Uint8Array.of(TOMBSTONE_BIT)

/** Splits stored bytes into header and payload (a view, not a copy). */
export const decodeStoredValue = (bytes: Uint8Array): StoredValue => {
  const first = bytes[0]
  if (first === undefined) {
    throw new ValueHeaderError({ message: "stored value is empty (no header byte)", reason: "Empty" })
  }
  const header = decodeHeader(first)
  if (header.tombstone && bytes.length !== 1) {
    throw new ValueHeaderError({
      message: `tombstone carries ${bytes.length - 1} bytes of value`,
      reason: "TombstoneWithValue",
      header: first,
    })
  }
  return { header, payload: bytes.subarray(1) }
}

const hex2 = (b: number): string => b.toString(16).padStart(2, "0")
