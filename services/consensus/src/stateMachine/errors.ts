// Typed failures of the state-machine store. Every failure a caller can act on
// is one of these tagged errors (STYLE: in-process errors are tagged data
// errors); LevelDB failures are wrapped, never leaked as `unknown`.
import { Data } from "effect"

/** A stored value's 1-byte header is invalid: reserved bits set, a reserved encryption state (2–3), or a tombstone with bytes (SPEC §2.4). */
export class ValueHeaderError extends Data.TaggedError("ValueHeaderError")<{
  readonly message: string
  readonly reason:
    | "Empty"
    | "ReservedBits"
    | "ReservedEncryptionState"
    | "TombstoneWithValue"
    | "SealedTombstone"
  readonly header?: number
  readonly key?: string
  readonly version?: number
}> {}

/** A LevelDB key or system value of the state-machine database does not decode (corruption, or a foreign database). */
export class CorruptRecord extends Data.TaggedError("CorruptRecord")<{
  readonly message: string
}> {}

/** A key or index argument the store cannot encode (not well-formed UTF-16, index not a safe non-negative integer). */
export class InvalidArgument extends Data.TaggedError("StateInvalidArgument")<{
  readonly message: string
}> {}

/** An apply batch breaks apply order: effects at or below the applied index, effects without `setApplied`, a non-increasing applied index. */
export class ApplyOrderError extends Data.TaggedError("ApplyOrderError")<{
  readonly message: string
  readonly appliedIndex: number
  readonly index: number
}> {}

/** A read asked for a point in time below the GC horizon: its versions may already be collected (SPEC §2.4). */
export class VersionCompacted extends Data.TaggedError("VersionCompacted")<{
  readonly message: string
  readonly atIndex: number
  readonly horizon: number
}> {}

/**
 * A snapshot install started and did not finish (the restoring marker is still
 * there). The store holds half a state: the driver must install a snapshot
 * again before it serves or applies anything.
 */
export class IncompleteInstall extends Data.TaggedError("IncompleteInstall")<{
  readonly message: string
  readonly snapshotIndex: number
}> {}

/** A snapshot file fails verification: bad magic, unsupported format, bad framing, wrong checksum. Nothing was changed. */
export class SnapshotCorrupt extends Data.TaggedError("SnapshotCorrupt")<{
  readonly message: string
  readonly path: string
  readonly reason:
    | "Truncated"
    | "BadMagic"
    | "UnsupportedFormat"
    | "BadFraming"
    | "ChecksumMismatch"
    | "TrailingBytes"
    | "BadRecord"
    | "IndexMismatch"
}> {}

/** The store was closed, is installing a snapshot, or was never opened. */
export class StoreUnavailable extends Data.TaggedError("StoreUnavailable")<{
  readonly message: string
  readonly state: "closed" | "installing" | "incomplete-install"
}> {}

/** Another process holds the LevelDB lock of this directory. */
export class StoreLocked extends Data.TaggedError("StoreLocked")<{
  readonly message: string
  readonly path: string
}> {}

/** A LevelDB or file-system operation failed (node-local; the driver halts or retries). */
export class StorageIoError extends Data.TaggedError("StorageIoError")<{
  readonly message: string
  readonly operation: string
  readonly cause: unknown
}> {}

/** The database was written by an unknown store format. */
export class UnsupportedStoreFormat extends Data.TaggedError("UnsupportedStoreFormat")<{
  readonly message: string
  readonly found: string
}> {}

export type StoreError =
  | ValueHeaderError
  | CorruptRecord
  | InvalidArgument
  | ApplyOrderError
  | VersionCompacted
  | IncompleteInstall
  | SnapshotCorrupt
  | StoreUnavailable
  | StoreLocked
  | StorageIoError
  | UnsupportedStoreFormat
