// Loads the known-answer vectors of /work/shared/vectors (CONTRACT §7). The
// shared/ tree sits beside the repository checkout (CI clones it there);
// EKV_VECTORS_DIR overrides the location.
import { readFileSync } from "node:fs"
import { fileURLToPath, pathToFileURL } from "node:url"

// libs/crypto/test/ → ../../../../ is the directory holding the checkout and shared/
const dir = process.env.EKV_VECTORS_DIR
  ? pathToFileURL(process.env.EKV_VECTORS_DIR.replace(/\/?$/, "/"))
  : new URL("../../../../shared/vectors/", import.meta.url)

// biome-ignore lint/suspicious/noExplicitAny: vector files are checked field by field by the tests that read them
export const loadVectors = (file: string): any =>
  JSON.parse(readFileSync(fileURLToPath(new URL(file, dir)), "utf8"))

export const hex = (s: string): Uint8Array => {
  if (!/^([0-9a-f]{2})*$/.test(s)) throw new Error(`not lowercase hex: ${s.slice(0, 40)}`)
  return Uint8Array.from(Buffer.from(s, "hex"))
}

export const toHex = (b: Uint8Array): string =>
  Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")
