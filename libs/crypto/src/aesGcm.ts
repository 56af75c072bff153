// AES-256-GCM with a 16-byte tag and a 12-byte nonce: the one AEAD every ekv
// format uses (CONTRACT §7, SPEC §4.3). Outputs are written into fresh,
// exactly-sized Uint8Arrays so no key or plaintext byte lands in Node's shared
// Buffer pool.
import { createCipheriv, createDecipheriv } from "node:crypto"
import { NONCE_LENGTH, TAG_LENGTH } from "./argument.ts"

/**
 * Encrypts `plaintext` and writes ciphertext ‖ tag into `out` at `offset`
 * (`out` must have room for plaintext.length + 16 bytes there).
 */
export const sealInto = (
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  out: Uint8Array,
  offset: number,
): void => {
  const cipher = createCipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_LENGTH })
  cipher.setAAD(aad)
  const body = cipher.update(plaintext)
  const rest = cipher.final()
  out.set(body, offset)
  out.set(rest, offset + body.length)
  out.set(cipher.getAuthTag(), offset + body.length + rest.length)
}

/**
 * Decrypts `ciphertext` with `tag`; `undefined` when authentication fails.
 * No plaintext byte is returned unless the tag verified.
 */
export const open = (
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
): Uint8Array | undefined => {
  if (nonce.length !== NONCE_LENGTH || tag.length !== TAG_LENGTH) return undefined
  const decipher = createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: TAG_LENGTH })
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
  const plaintext = new Uint8Array(body.length + rest.length)
  plaintext.set(body, 0)
  plaintext.set(rest, body.length)
  body.fill(0)
  return plaintext
}
