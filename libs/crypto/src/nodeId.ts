// full_node_id and node_id16 (CONTRACT §7): 64-bit FNV-1a over the UTF-8 bytes
// of the node id; a result of 0 becomes 1 (0 means "not capable" in reports).
import { CryptoArgumentError } from "./errors.ts"

const FNV_OFFSET_BASIS = 0xcbf29ce484222325n
const FNV_PRIME = 0x100000001b3n
const MAX_U64 = 0xffff_ffff_ffff_ffffn

const encoder = new TextEncoder()

/** 64-bit FNV-1a of raw bytes, with the 0 → 1 rule. */
export const fullNodeIdOfBytes = (bytes: Uint8Array): bigint => {
  let h = FNV_OFFSET_BASIS
  for (const b of bytes) {
    h = BigInt.asUintN(64, (h ^ BigInt(b)) * FNV_PRIME)
  }
  return h === 0n ? 1n : h
}

/** full_node_id of a node id string, hashed over its UTF-8 bytes (not UTF-16 code units). */
export const fullNodeId = (nodeId: string): bigint => fullNodeIdOfBytes(encoder.encode(nodeId))

/** node_id16 = the low 16 bits of a full_node_id. */
export const nodeId16 = (full: bigint): number => {
  if (typeof full !== "bigint" || full < 0n || full > MAX_U64) {
    throw new CryptoArgumentError({ message: `full_node_id must be a uint64, got ${String(full)}` })
  }
  return Number(full & 0xffffn)
}
