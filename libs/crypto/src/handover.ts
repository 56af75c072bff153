// Sealed DEK hand-over from a node's keystore to its own consensus (SPEC §4.3).
//
// Consensus makes an ephemeral X25519 key pair per session and sends the
// public half; the keystore seals the session's DEKs to it:
//
//   ephemeral        = a fresh X25519 key pair of the keystore, one per seal
//   shared           = X25519(ephemeral private, recipient public)
//   key              = HKDF-SHA256(ikm = shared, salt = node secret (32 bytes),
//                        info = "ekv/handover/v1" ‖ node_id ‖ session_id, 32 bytes)
//   aad              = 0x01 ‖ ephemeral public (32) ‖ recipient public (32)
//   sealed           = 0x01 (version, 1)
//                    ‖ ephemeral public key (32, raw X25519)
//                    ‖ nonce (12, random)
//                    ‖ AES-256-GCM(key, nonce, aad, payload) ‖ tag (16)
//   payload          = count (BE u16)
//                    ‖ count × [ key_id (BE u32) ‖ purpose ('S' 0x53 | 'R' 0x52)
//                                ‖ dek (32) ‖ local_epoch (BE u16) ]
//
// node_id and session_id are UTF-8 in `info`; session_id is always 32
// lowercase hex characters (CONTRACT §1) so the concatenation is unambiguous.
// The AAD binds both public keys (as HPKE does): X25519 ignores the top bit of
// a public key, so without it a flipped bit there would still open. Epochs
// travel only inside the sealed payload. Without the node secret nobody can
// open or forge a hand-over, even with control of the bus.
import {
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  getRandomValues,
  hkdfSync,
  type KeyObject,
} from "node:crypto"
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
import type { Purpose } from "./dekWrap.ts"
import {
  CryptoArgumentError,
  IntegrityError,
  LocalEpochOutOfRange,
  Truncated,
  UnsupportedVersion,
} from "./errors.ts"
import { MAX_LOCAL_EPOCH } from "./nonce.ts"

export const HANDOVER_VERSION = 0x01
export const X25519_PUBLIC_KEY_LENGTH = 32
const PREFIX_LENGTH = 1 + X25519_PUBLIC_KEY_LENGTH + NONCE_LENGTH
const ENTRY_LENGTH = 4 + 1 + KEY_LENGTH + 2
const COUNT_LENGTH = 2
/** The shortest sealed hand-over: an empty key list. */
export const HANDOVER_MIN_LENGTH = PREFIX_LENGTH + COUNT_LENGTH + TAG_LENGTH
const MAX_KEYS = 0xffff

const INFO_LABEL = "ekv/handover/v1"
const NODE_ID = /^[a-z0-9-]{1,64}$/
const SESSION_ID = /^[0-9a-f]{32}$/

export interface HandoverKey {
  readonly keyId: number
  readonly purpose: Purpose
  readonly dek: Uint8Array
  readonly localEpoch: number
}

const encoder = new TextEncoder()

const requireIds = (nodeId: string, sessionId: string): void => {
  if (typeof nodeId !== "string" || !NODE_ID.test(nodeId)) {
    throw new CryptoArgumentError({
      message: `node id must match [a-z0-9-]{1,64}, got ${JSON.stringify(nodeId)}`,
    })
  }
  if (typeof sessionId !== "string" || !SESSION_ID.test(sessionId)) {
    throw new CryptoArgumentError({
      message: `session_id must be 32 lowercase hex characters, got ${JSON.stringify(sessionId)}`,
    })
  }
}

const deriveKey = (
  shared: Uint8Array,
  nodeSecret: Uint8Array,
  nodeId: string,
  sessionId: string,
): Uint8Array =>
  new Uint8Array(
    hkdfSync("sha256", shared, nodeSecret, encoder.encode(INFO_LABEL + nodeId + sessionId), KEY_LENGTH),
  )

const rawPublicKey = (key: KeyObject): Uint8Array => {
  const x = key.export({ format: "jwk" }).x
  if (typeof x !== "string") throw new CryptoArgumentError({ message: "not an X25519 key" })
  return new Uint8Array(Buffer.from(x, "base64url"))
}

const publicKeyOfRaw = (raw: Uint8Array): KeyObject =>
  createPublicKey({
    key: { kty: "OKP", crv: "X25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  })

const handoverAad = (ephemeralPublic: Uint8Array, recipientPublic: Uint8Array): Uint8Array => {
  const aad = new Uint8Array(1 + 2 * X25519_PUBLIC_KEY_LENGTH)
  aad[0] = HANDOVER_VERSION
  aad.set(ephemeralPublic, 1)
  aad.set(recipientPublic, 1 + X25519_PUBLIC_KEY_LENGTH)
  return aad
}

/** The consensus side's per-session key pair; send `publicKey` (32 raw bytes), keep `privateKey`. */
export const generateHandoverKeyPair = (): {
  readonly publicKey: Uint8Array
  readonly privateKey: KeyObject
} => {
  const { publicKey, privateKey } = generateKeyPairSync("x25519")
  return { publicKey: rawPublicKey(publicKey), privateKey }
}

export const encodePayload = (keys: ReadonlyArray<HandoverKey>): Uint8Array => {
  if (keys.length > MAX_KEYS) {
    throw new CryptoArgumentError({ message: `at most ${MAX_KEYS} keys per hand-over, got ${keys.length}` })
  }
  const payload = new Uint8Array(COUNT_LENGTH + keys.length * ENTRY_LENGTH)
  const view = new DataView(payload.buffer)
  view.setUint16(0, keys.length, false)
  const seen = new Set<number>()
  keys.forEach((k, i) => {
    requireKeyId(k.keyId)
    if (seen.has(k.keyId)) throw new CryptoArgumentError({ message: `key id ${k.keyId} is listed twice` })
    seen.add(k.keyId)
    requireBytes("dek", k.dek, KEY_LENGTH)
    if (!Number.isInteger(k.localEpoch) || k.localEpoch < 0 || k.localEpoch > MAX_LOCAL_EPOCH) {
      throw new LocalEpochOutOfRange({
        message: `local_epoch must be an integer in 0..0xffff, got ${k.localEpoch}`,
        localEpoch: k.localEpoch,
      })
    }
    const at = COUNT_LENGTH + i * ENTRY_LENGTH
    view.setUint32(at, k.keyId, false)
    if (k.purpose === "storage") payload[at + 4] = 0x53
    else if (k.purpose === "raft") payload[at + 4] = 0x52
    else
      throw new CryptoArgumentError({
        message: `purpose must be "storage" or "raft", got ${String(k.purpose)}`,
      })
    payload.set(k.dek, at + 5)
    view.setUint16(at + 5 + KEY_LENGTH, k.localEpoch, false)
  })
  return payload
}

// An authenticated payload that does not parse can only come from a broken
// sealer holding the node secret; it is refused all the same.
export const decodePayload = (payload: Uint8Array): ReadonlyArray<HandoverKey> | undefined => {
  if (payload.length < COUNT_LENGTH) return undefined
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
  const count = view.getUint16(0, false)
  if (payload.length !== COUNT_LENGTH + count * ENTRY_LENGTH) return undefined
  const keys: Array<HandoverKey> = []
  const seen = new Set<number>()
  for (let i = 0; i < count; i++) {
    const at = COUNT_LENGTH + i * ENTRY_LENGTH
    const keyId = view.getUint32(at, false)
    const p = payload[at + 4]
    const purpose: Purpose | undefined = p === 0x53 ? "storage" : p === 0x52 ? "raft" : undefined
    if (keyId === 0 || seen.has(keyId) || purpose === undefined) return undefined
    seen.add(keyId)
    keys.push({
      keyId,
      purpose,
      dek: payload.slice(at + 5, at + 5 + KEY_LENGTH),
      localEpoch: view.getUint16(at + 5 + KEY_LENGTH, false),
    })
  }
  return keys
}

/** Keystore side: seals `keys` to the session's public key (SPEC §4.3). */
export const sealHandover = (p: {
  readonly recipientPublicKey: Uint8Array
  readonly nodeSecret: Uint8Array
  readonly nodeId: string
  readonly sessionId: string
  readonly keys: ReadonlyArray<HandoverKey>
}): Uint8Array => {
  requireBytes("recipientPublicKey", p.recipientPublicKey, X25519_PUBLIC_KEY_LENGTH)
  requireBytes("nodeSecret", p.nodeSecret, KEY_LENGTH)
  requireIds(p.nodeId, p.sessionId)
  const payload = encodePayload(p.keys)
  const ephemeral = generateKeyPairSync("x25519")
  const ephemeralPublic = rawPublicKey(ephemeral.publicKey)
  let shared: Uint8Array
  try {
    shared = diffieHellman({
      privateKey: ephemeral.privateKey,
      publicKey: publicKeyOfRaw(p.recipientPublicKey),
    })
  } catch (cause) {
    throw new CryptoArgumentError({
      message: `recipient public key is not usable for X25519: ${String(cause)}`,
    })
  }
  const key = deriveKey(shared, p.nodeSecret, p.nodeId, p.sessionId)
  const nonce = getRandomValues(new Uint8Array(NONCE_LENGTH))
  const out = new Uint8Array(PREFIX_LENGTH + payload.length + TAG_LENGTH)
  out[0] = HANDOVER_VERSION
  out.set(ephemeralPublic, 1)
  out.set(nonce, 1 + X25519_PUBLIC_KEY_LENGTH)
  AesGcm.sealInto(key, nonce, handoverAad(ephemeralPublic, p.recipientPublicKey), payload, out, PREFIX_LENGTH)
  shared.fill(0)
  key.fill(0)
  payload.fill(0)
  return out
}

/**
 * Consensus side: opens a hand-over sealed to `privateKey`. Checks: length →
 * Truncated, version → UnsupportedVersion, then anything else (a bad public
 * key, a wrong node secret / node id / session id, any altered byte, a
 * malformed payload) → IntegrityError.
 */
export const openHandover = (p: {
  readonly privateKey: KeyObject
  readonly nodeSecret: Uint8Array
  readonly nodeId: string
  readonly sessionId: string
  readonly sealed: Uint8Array
}): Result.Result<ReadonlyArray<HandoverKey>, Truncated | UnsupportedVersion | IntegrityError> => {
  if (p.privateKey?.type !== "private" || p.privateKey.asymmetricKeyType !== "x25519") {
    throw new CryptoArgumentError({ message: "privateKey must be an X25519 private KeyObject" })
  }
  requireBytes("nodeSecret", p.nodeSecret, KEY_LENGTH)
  requireIds(p.nodeId, p.sessionId)
  requireUint8Array("sealed", p.sealed)
  const s = p.sealed
  if (s.length < HANDOVER_MIN_LENGTH) {
    return Result.fail(
      new Truncated({
        message: `sealed hand-over of ${s.length} bytes is below the ${HANDOVER_MIN_LENGTH}-byte minimum`,
        length: s.length,
        expected: HANDOVER_MIN_LENGTH,
      }),
    )
  }
  if (s[0] !== HANDOVER_VERSION) {
    return Result.fail(
      new UnsupportedVersion({ message: `hand-over version ${s[0]} is not supported`, version: s[0]! }),
    )
  }
  const ephemeralPublic = s.slice(1, 1 + X25519_PUBLIC_KEY_LENGTH)
  let shared: Uint8Array
  try {
    shared = diffieHellman({ privateKey: p.privateKey, publicKey: publicKeyOfRaw(ephemeralPublic) })
  } catch {
    return Result.fail(
      new IntegrityError({
        message: "hand-over carries an unusable ephemeral public key",
        reason: "InvalidPublicKey",
      }),
    )
  }
  const key = deriveKey(shared, p.nodeSecret, p.nodeId, p.sessionId)
  shared.fill(0)
  const recipientPublic = rawPublicKey(createPublicKey(p.privateKey))
  const tagStart = s.length - TAG_LENGTH
  const payload = AesGcm.open(
    key,
    s.subarray(1 + X25519_PUBLIC_KEY_LENGTH, PREFIX_LENGTH),
    handoverAad(ephemeralPublic, recipientPublic),
    s.subarray(PREFIX_LENGTH, tagStart),
    s.subarray(tagStart),
  )
  key.fill(0)
  if (payload === undefined) {
    return Result.fail(
      new IntegrityError({
        message:
          "hand-over failed authentication (wrong node secret, node id, session id or key pair, or altered bytes)",
        reason: "Authentication",
      }),
    )
  }
  const keys = decodePayload(payload)
  payload.fill(0)
  if (keys === undefined) {
    return Result.fail(
      new IntegrityError({ message: "hand-over payload is malformed", reason: "MalformedPayload" }),
    )
  }
  return Result.succeed(keys)
}
