// Fresh key material from the CSPRNG (CONTRACT §7: key ids are CSPRNG uint32s,
// never 0, never reused within a cluster). getRandomValues fills a fresh
// Uint8Array, so DEK bytes never share Node's Buffer pool.
import { getRandomValues } from "node:crypto"
import { KEY_LENGTH } from "./argument.ts"
import { CryptoArgumentError } from "./errors.ts"

/** A new 32-byte DEK. */
export const generateDek = (): Uint8Array => getRandomValues(new Uint8Array(KEY_LENGTH))

const MAX_DRAWS = 1024

/** A CSPRNG uint32 key id that is neither 0 nor in `used` (every id the cluster ever had, retired included). */
export const drawKeyId = (used: ReadonlySet<number>): number => {
  const word = new Uint32Array(1)
  for (let i = 0; i < MAX_DRAWS; i++) {
    getRandomValues(word)
    const id = word[0]!
    if (id !== 0 && !used.has(id)) return id
  }
  throw new CryptoArgumentError({
    message: `no unused key id found in ${MAX_DRAWS} draws (${used.size} ids used)`,
  })
}
