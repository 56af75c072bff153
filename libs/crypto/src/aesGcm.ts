// AES-256-GCM with a 16-byte tag and a 12-byte nonce: the one AEAD every ekv
// format uses (CONTRACT §7, SPEC §4.3). Outputs are written into fresh,
// exactly-sized Uint8Arrays so no key or plaintext byte lands in Node's shared
// Buffer pool.
//
// Two backends, the same bytes: the native one (libs/crypto/native/aead.c,
// the OpenSSL Node itself links, one initialised context per key, ~0.5 µs per
// 256 B seal) when scripts/setup.sh built it and it passes a known-answer
// self-test against node:crypto at load; node:crypto otherwise (~3–5 µs per
// call, most of it per call, not per byte: docs/performance.md), or when
// EKV_NATIVE_AEAD=0.
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from "node:crypto"
import { NONCE_LENGTH, TAG_LENGTH } from "./argument.ts"
import { addonPath, chooseImpl, type Loaded, loadAddon } from "./nativeAddon.ts"

/** One AEAD backend: seal into the caller's array, open into a fresh one. */
export interface Aead {
  readonly name: "openssl-native" | "node-crypto"
  sealInto(
    key: Uint8Array,
    nonce: Uint8Array,
    aad: Uint8Array,
    plaintext: Uint8Array,
    out: Uint8Array,
    offset: number,
  ): void
  open(
    key: Uint8Array,
    nonce: Uint8Array,
    aad: Uint8Array,
    ciphertext: Uint8Array,
    tag: Uint8Array,
  ): Uint8Array | undefined
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}

/**
 * Per key array, what a backend derived from its bytes (a KeyObject, a native
 * context), kept for as long as the array lives. An array whose bytes changed
 * since (e.g. a zeroed, replaced DEK) gets a fresh one, never the old key.
 */
const perKey = <K>(make: (raw: Uint8Array) => K): ((raw: Uint8Array) => K) => {
  const cache = new WeakMap<Uint8Array, { readonly bytes: Uint8Array; readonly key: K }>()
  return (raw) => {
    const hit = cache.get(raw)
    if (hit !== undefined && sameBytes(hit.bytes, raw)) return hit.key
    const key = make(raw)
    cache.set(raw, { bytes: raw.slice(), key })
    return key
  }
}

// A raw key passed to createCipheriv becomes a new KeyObject on every call,
// which tripled the cost of sealing a small value (13 µs → 4.4 µs per seal of
// 256 B measured with a cached KeyObject).
const keyObjectOf = perKey((raw): KeyObject => createSecretKey(raw))

/** node:crypto: a cipher object per call. */
export const nodeCryptoAead: Aead = {
  name: "node-crypto",
  sealInto(key, nonce, aad, plaintext, out, offset) {
    const cipher = createCipheriv("aes-256-gcm", keyObjectOf(key), nonce, { authTagLength: TAG_LENGTH })
    cipher.setAAD(aad)
    const body = cipher.update(plaintext)
    const rest = cipher.final()
    out.set(body, offset)
    out.set(rest, offset + body.length)
    out.set(cipher.getAuthTag(), offset + body.length + rest.length)
  },
  open(key, nonce, aad, ciphertext, tag) {
    if (nonce.length !== NONCE_LENGTH || tag.length !== TAG_LENGTH) return undefined
    const decipher = createDecipheriv("aes-256-gcm", keyObjectOf(key), nonce, { authTagLength: TAG_LENGTH })
    decipher.setAAD(aad)
    decipher.setAuthTag(tag)
    const body = decipher.update(ciphertext)
    let rest: Uint8Array
    try {
      rest = decipher.final()
    } catch {
      body.fill(0)
      return undefined
    }
    // GCM is a stream mode: final() adds nothing, and `body` is a Buffer of its
    // own (not a slice of Node's pool), so it is the plaintext as it stands —
    // returned as a plain Uint8Array, whose slice() copies as callers expect.
    if (rest.length === 0) return new Uint8Array(body.buffer, body.byteOffset, body.length)
    const plaintext = new Uint8Array(body.length + rest.length)
    plaintext.set(body, 0)
    plaintext.set(rest, body.length)
    body.fill(0)
    return plaintext
  },
}

/** The addon's functions (aead.c). */
interface NativeAddon {
  createKey(key: Uint8Array): object
  seal(ctx: object, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array): void
  open(
    ctx: object,
    nonce: Uint8Array,
    aad: Uint8Array,
    ct: Uint8Array,
    tag: Uint8Array,
    out: Uint8Array,
  ): boolean
}

const nativeAeadOf = (addon: NativeAddon): Aead => {
  const ctxOf = perKey((raw) => addon.createKey(raw))
  return {
    name: "openssl-native",
    sealInto(key, nonce, aad, plaintext, out, offset) {
      const end = offset + plaintext.length + TAG_LENGTH
      if (end > out.length)
        throw new RangeError(`no room for ${plaintext.length + TAG_LENGTH} bytes at ${offset}`)
      addon.seal(
        ctxOf(key),
        nonce,
        aad,
        plaintext,
        offset === 0 && end === out.length ? out : out.subarray(offset, end),
      )
    },
    open(key, nonce, aad, ciphertext, tag) {
      if (nonce.length !== NONCE_LENGTH || tag.length !== TAG_LENGTH) return undefined
      const out = new Uint8Array(ciphertext.length)
      return addon.open(ctxOf(key), nonce, aad, ciphertext, tag, out) ? out : undefined
    },
  }
}

/** Where setup builds the addon. */
export const NATIVE_AEAD_PATH = addonPath("aead.node")

/** Seals and opens a fixed input with `candidate` and node:crypto; a reason when they differ. */
const selfTest = (candidate: Aead): string | undefined => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1)
  const nonce = Uint8Array.from({ length: 12 }, (_, i) => 200 - i)
  const aad = Uint8Array.from({ length: 21 }, (_, i) => i)
  const pt = Uint8Array.from({ length: 300 }, (_, i) => (i * 31) & 0xff)
  const want = new Uint8Array(pt.length + TAG_LENGTH)
  const got = new Uint8Array(pt.length + TAG_LENGTH)
  nodeCryptoAead.sealInto(key, nonce, aad, pt, want, 0)
  candidate.sealInto(key, nonce, aad, pt, got, 0)
  if (!sameBytes(want, got)) return "its seal differs from node:crypto's"
  const opened = candidate.open(key, nonce, aad, want.subarray(0, pt.length), want.subarray(pt.length))
  if (opened === undefined || !sameBytes(opened, pt)) return "it does not open node:crypto's seal"
  want[5]! ^= 1
  if (candidate.open(key, nonce, aad, want.subarray(0, pt.length), want.subarray(pt.length)) !== undefined)
    return "it opened a tampered ciphertext"
  return undefined
}

/** The native backend, or why not (missing, not loadable, failed the self-test). */
export const loadNativeAead = (path = NATIVE_AEAD_PATH): Loaded<Aead> =>
  loadAddon(path, nativeAeadOf, selfTest)

const chosen = chooseImpl("EKV_NATIVE_AEAD", () => loadNativeAead(), NATIVE_AEAD_PATH, nodeCryptoAead)

/** The backend this process uses, and why (for start-up logs and benchmarks). */
export const aeadBackend: { readonly name: Aead["name"]; readonly why: string } = {
  name: chosen.impl.name,
  why: chosen.why,
}

const active = chosen.impl

/**
 * Encrypts `plaintext` and writes ciphertext ‖ tag into `out` at `offset`
 * (`out` must have room for plaintext.length + 16 bytes there).
 */
export const sealInto: Aead["sealInto"] = (key, nonce, aad, plaintext, out, offset) =>
  active.sealInto(key, nonce, aad, plaintext, out, offset)

/**
 * Decrypts `ciphertext` with `tag`; `undefined` when authentication fails.
 * No plaintext byte is returned unless the tag verified.
 */
export const open: Aead["open"] = (key, nonce, aad, ciphertext, tag) =>
  active.open(key, nonce, aad, ciphertext, tag)
