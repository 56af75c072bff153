// Fresh key material from the CSPRNG (CONTRACT §7: key ids are CSPRNG uint32s,
// never 0, never reused within a cluster). getRandomValues fills a fresh
// Uint8Array, so DEK bytes never share Node's Buffer pool.
import { getRandomValues } from "node:crypto"
import { KEY_LENGTH } from "./argument.ts"
import { CryptoArgumentError } from "./errors.ts"

/** A new 32-byte DEK. */
export const generateDek = (): Uint8Array => getRandomValues(new Uint8Array(KEY_LENGTH))

const MAX_DRAWS = 1024

const csprngUint32 = (): number => getRandomValues(new Uint32Array(1))[0]!

/**
 * A CSPRNG uint32 key id that is neither 0 nor in `used` (every id the
 * cluster ever had, retired included). `random` is injectable for tests only.
 */
export const drawKeyId = (used: ReadonlySet<number>, random: () => number = csprngUint32): number => {
  for (let i = 0; i < MAX_DRAWS; i++) {
    const id = random()
    if (Number.isInteger(id) && id > 0 && id <= 0xffff_ffff && !used.has(id)) return id
  }
  throw new CryptoArgumentError({
    message: `no unused key id found in ${MAX_DRAWS} draws (${used.size} ids used)`,
  })
}
