import { describe, expect, it } from "vitest"
import { ValueHeaderError } from "../../../src/stateMachine/errors.ts"
import {
  decodeHeader,
  decodeStoredValue,
  EncryptionState,
  encodeHeader,
  encodeStoredValue,
  encodeTombstone,
  STORED_HEADER_LENGTH,
  withSealedHeader,
} from "../../../src/stateMachine/valueHeader.ts"

const reason = (f: () => unknown): string | undefined => {
  try {
    f()
  } catch (e) {
    if (e instanceof ValueHeaderError) return e.reason
    throw e
  }
  return undefined
}

describe("value header (SPEC §2.4)", () => {
  it("encodes tombstone | encryption_state << 1", () => {
    expect(encodeHeader({ tombstone: false, encryptionState: EncryptionState.Cleartext })).toBe(0x00)
    expect(encodeHeader({ tombstone: true, encryptionState: EncryptionState.Cleartext })).toBe(0x01)
    expect(encodeHeader({ tombstone: false, encryptionState: EncryptionState.StorageEnvelope })).toBe(0x02)
    expect(
      reason(() => encodeHeader({ tombstone: true, encryptionState: EncryptionState.StorageEnvelope })),
    ).toBe("SealedTombstone")
  })

  it("decodes every byte: valid ones round-trip, the rest are typed errors", () => {
    for (let b = 0; b < 256; b++) {
      if (b === 0x00 || b === 0x01 || b === 0x02) {
        expect(encodeHeader(decodeHeader(b))).toBe(b)
      } else if ((b & 0xf8) !== 0) {
        expect(reason(() => decodeHeader(b))).toBe("ReservedBits")
      } else if (b === 0x03) {
        expect(reason(() => decodeHeader(b))).toBe("SealedTombstone")
      } else {
        expect(reason(() => decodeHeader(b))).toBe("ReservedEncryptionState")
      }
    }
  })

  it("stored values: header then payload; tombstones carry no value", () => {
    const sv = decodeStoredValue(encodeStoredValue(EncryptionState.StorageEnvelope, Uint8Array.of(9, 8, 7)))
    expect(sv.header).toEqual({ tombstone: false, encryptionState: 1 })
    expect([...sv.payload]).toEqual([9, 8, 7])
    expect(
      decodeStoredValue(encodeStoredValue(EncryptionState.Cleartext, new Uint8Array(0))).payload.length,
    ).toBe(0)
    expect(decodeStoredValue(encodeTombstone()).header.tombstone).toBe(true)
    expect(reason(() => decodeStoredValue(Uint8Array.of(0x01, 0x00)))).toBe("TombstoneWithValue")
    expect(reason(() => decodeStoredValue(new Uint8Array(0)))).toBe("Empty")
    expect(reason(() => decodeStoredValue(Uint8Array.of(0x04, 1)))).toBe("ReservedEncryptionState")
    expect(reason(() => decodeStoredValue(Uint8Array.of(0x06, 1)))).toBe("ReservedEncryptionState")
  })

  it("a sealed value built in place after the header byte stores as encodeStoredValue would store it", () => {
    const envelope = Uint8Array.from({ length: 40 }, (_, i) => (i * 37) & 0xff)
    const inPlace = new Uint8Array(STORED_HEADER_LENGTH + envelope.length)
    inPlace.set(envelope, STORED_HEADER_LENGTH)
    expect([...withSealedHeader(inPlace)]).toEqual([
      ...encodeStoredValue(EncryptionState.StorageEnvelope, envelope),
    ])
    expect(reason(() => withSealedHeader(new Uint8Array(STORED_HEADER_LENGTH)))).toBe("Empty")
  })
})
