// @ekv/crypto: the byte formats of CONTRACT §7 and the sealed DEK hand-over of
// SPEC §4.3. Pure and synchronous; the only I/O is the CSPRNG.

export { aeadBackend } from "./aesGcm.ts"
export { kekId, type Purpose, unwrapDek, WRAPPED_DEK_LENGTH, wrapDek } from "./dekWrap.ts"
export {
  ENVELOPE_OVERHEAD,
  type EnvelopeHeader,
  envelopeHeader,
  FLAG_COMPRESSED,
  type Keyring,
  MAX_HEADROOM,
  openRaft,
  openStorage,
  sealRaft,
  sealStorage,
} from "./envelope.ts"
export {
  CryptoArgumentError,
  IntegrityError,
  IntegrityReason,
  LocalEpochOutOfRange,
  NonceExhausted,
  type OpenError,
  Truncated,
  UnknownKeyId,
  UnsupportedVersion,
} from "./errors.ts"
export {
  generateHandoverKeyPair,
  HANDOVER_MIN_LENGTH,
  type HandoverKey,
  openHandover,
  sealHandover,
  X25519_PUBLIC_KEY_LENGTH,
} from "./handover.ts"
export { drawKeyId, generateDek } from "./keyMaterial.ts"
export { fullNodeId, fullNodeIdOfBytes, nodeId16 } from "./nodeId.ts"
export {
  MAX_LOCAL_EPOCH,
  MAX_WRITE_COUNT,
  makeNonce,
  makeNonceSequence,
  type NonceSequence,
  nonceFields,
  WriteCounter,
} from "./nonce.ts"
export { snappyBackend } from "./snappy.ts"
export { openStorageValue, sealStorageValue } from "./storageValue.ts"
