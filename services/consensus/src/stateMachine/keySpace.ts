// System records of the state-machine database: everything that is not a
// user-key version. They live under the first byte 0x00 and version keys under
// 0x01 (versionKey.ts), so the two spaces cannot collide.
//
//   0x00 0x00            store format, ASCII "ekv-mvcc/1"
//   0x00 0x01            applied index, BE u64
//   0x00 0x02 ‖ name     named metadata (UTF-8 name): cluster id, encryption state, membership, ...
//   0x00 0x03 ‖ BE u64   rejection record of the entry at that index (rejectionRecord.ts)
//   0x00 0x04            GC horizon, BE u64 (node-local; reads below it are refused)
//   0x00 0x05            snapshot-install marker, BE u64 snapshot index (present ⇔ install unfinished)
import { CorruptRecord, InvalidArgument } from "./errors.ts"
import { requireIndex } from "./versionKey.ts"

export const SYSTEM_SPACE = 0x00

export const SystemKind = {
  Format: 0x00,
  Applied: 0x01,
  Meta: 0x02,
  Rejection: 0x03,
  GcHorizon: 0x04,
  InstallMarker: 0x05,
} as const
export type SystemKind = (typeof SystemKind)[keyof typeof SystemKind]

export const STORE_FORMAT = "ekv-mvcc/1"

export const formatKey = Uint8Array.of(SYSTEM_SPACE, SystemKind.Format)
export const appliedKey = Uint8Array.of(SYSTEM_SPACE, SystemKind.Applied)
export const gcHorizonKey = Uint8Array.of(SYSTEM_SPACE, SystemKind.GcHorizon)
export const installMarkerKey = Uint8Array.of(SYSTEM_SPACE, SystemKind.InstallMarker)

/** Names the driver uses for its metadata (any name matching META_NAME is accepted). */
export const MetaName = {
  ClusterId: "cluster_id",
  EncryptionState: "encryption_state",
  Membership: "raft_membership",
} as const

const META_NAME = /^[a-z0-9_.-]{1,128}$/
const utf8 = new TextEncoder()
const utf8Decoder = new TextDecoder("utf-8", { fatal: true })

export const metaKey = (name: string): Uint8Array => {
  if (!META_NAME.test(name)) {
    throw new InvalidArgument({
      message: `metadata name must match ${META_NAME}, got ${JSON.stringify(name)}`,
    })
  }
  const n = utf8.encode(name)
  const out = new Uint8Array(2 + n.length)
  out[0] = SYSTEM_SPACE
  out[1] = SystemKind.Meta
  out.set(n, 2)
  return out
}

export const rejectionKey = (index: number): Uint8Array => {
  const out = new Uint8Array(10)
  out[0] = SYSTEM_SPACE
  out[1] = SystemKind.Rejection
  writeU64(out, 2, index)
  return out
}

/** Range of every rejection record with index < `below`. */
export const rejectionRange = (below: number): { readonly gte: Uint8Array; readonly lt: Uint8Array } => ({
  gte: Uint8Array.of(SYSTEM_SPACE, SystemKind.Rejection),
  lt: rejectionKey(below),
})

export const encodeU64 = (n: number): Uint8Array => {
  const out = new Uint8Array(8)
  writeU64(out, 0, n)
  return out
}

export const writeU64 = (out: Uint8Array, at: number, n: number): void => {
  requireIndex("u64", n)
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  view.setUint32(at, Math.floor(n / 0x1_0000_0000))
  view.setUint32(at + 4, n % 0x1_0000_0000)
}

export const readU64 = (bytes: Uint8Array, at: number): number => {
  if (bytes.length < at + 8) throw new CorruptRecord({ message: "u64 truncated" })
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const n = view.getUint32(at) * 0x1_0000_0000 + view.getUint32(at + 4)
  if (!Number.isSafeInteger(n)) throw new CorruptRecord({ message: "u64 above 2^53 − 1" })
  return n
}

export const decodeU64Value = (bytes: Uint8Array, what: string): number => {
  if (bytes.length !== 8) throw new CorruptRecord({ message: `${what} is ${bytes.length} bytes, expected 8` })
  return readU64(bytes, 0)
}

export type SystemRecord =
  | { readonly kind: "format" }
  | { readonly kind: "applied" }
  | { readonly kind: "meta"; readonly name: string }
  | { readonly kind: "rejection"; readonly index: number }
  | { readonly kind: "gcHorizon" }
  | { readonly kind: "installMarker" }

/** Classifies a key of the system space; an unknown or malformed one is a CorruptRecord. */
export const decodeSystemKey = (key: Uint8Array): SystemRecord => {
  if (key[0] !== SYSTEM_SPACE || key.length < 2) throw new CorruptRecord({ message: "not a system key" })
  const kind = key[1]
  const fixed = (k: SystemRecord): SystemRecord => {
    if (key.length !== 2) throw new CorruptRecord({ message: `system key ${k.kind} has trailing bytes` })
    return k
  }
  switch (kind) {
    case SystemKind.Format:
      return fixed({ kind: "format" })
    case SystemKind.Applied:
      return fixed({ kind: "applied" })
    case SystemKind.GcHorizon:
      return fixed({ kind: "gcHorizon" })
    case SystemKind.InstallMarker:
      return fixed({ kind: "installMarker" })
    case SystemKind.Meta: {
      let name: string
      try {
        name = utf8Decoder.decode(key.subarray(2))
      } catch {
        throw new CorruptRecord({ message: "metadata name is not UTF-8" })
      }
      if (!META_NAME.test(name)) throw new CorruptRecord({ message: "bad metadata name" })
      return { kind: "meta", name }
    }
    case SystemKind.Rejection:
      if (key.length !== 10) throw new CorruptRecord({ message: "rejection key is not 10 bytes" })
      return { kind: "rejection", index: readU64(key, 2) }
    default:
      throw new CorruptRecord({ message: `unknown system key kind ${kind}` })
  }
}
