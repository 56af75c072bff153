// Typed node-local failures of the keystore. Each carries the code an operator
// sees: a halt code of SPEC.md §2.2 when it stops apply, a refused-start code
// of SPEC.md §7 when it stops the process. Deterministic verdicts on entries
// are not errors (they are `rejected` outcomes, applier.ts).
import { Data } from "effect"

/** Encryption enabled and no KEK source set (SPEC.md §7). */
export class KekRequired extends Data.TaggedError("KekRequired")<{ readonly message: string }> {
  readonly code = "KekRequired"
}

/** Both EKV_KEK_FILE and EKV_KEK_BASE64 set (SPEC.md §4.1). */
export class KekSourcesConflict extends Data.TaggedError("KekSourcesConflict")<{ readonly message: string }> {
  readonly code = "KekSourcesConflict"
}

/** A KEK file readable by group/other or owned by another user (SPEC.md §4.1). */
export class KekFileInsecure extends Data.TaggedError("KekFileInsecure")<{
  readonly message: string
  readonly path: string
}> {
  readonly code = "KekFileInsecure"
}

/** A KEK source that is not exactly 32 bytes, or cannot be read. */
export class KekInvalid extends Data.TaggedError("KekInvalid")<{
  readonly message: string
  readonly source: string
}> {
  readonly code = "InvalidConfig"
}

/** The KEK does not unwrap a DEK (an entry's, or the sidecar's at startup). */
export class KekMismatch extends Data.TaggedError("KekMismatch")<{
  readonly message: string
  readonly keyId?: number
}> {
  readonly code = "KekMismatch"
}

/** rewrap-deks applied on a keystore without (the right) EKV_KEK_NEXT_FILE. */
export class KekNextMissing extends Data.TaggedError("KekNextMissing")<{ readonly message: string }> {
  readonly code = "KekNextMissing"
}

/** keys.json fails to parse or to validate (SPEC.md §7). */
export class CorruptSidecar extends Data.TaggedError("CorruptSidecar")<{
  readonly message: string
  readonly path: string
}> {
  readonly code = "CorruptSidecar"
}

/** A step of the crash-durable sidecar write failed (SPEC.md §4.2). */
export class SidecarWriteFailed extends Data.TaggedError("SidecarWriteFailed")<{
  readonly message: string
  readonly path: string
  readonly step: string
}> {
  readonly code = "SidecarWriteFailed"
}

/** The keystore directory failed the write/fsync/rename/dir-fsync probe (SPEC.md §7). */
export class UnsupportedFilesystem extends Data.TaggedError("UnsupportedFilesystem")<{
  readonly message: string
  readonly dir: string
  readonly step: string
}> {
  readonly code = "UnsupportedFilesystem"
}

/** Another process holds this keystore directory (SPEC.md §4.2, §7). */
export class DataDirLocked extends Data.TaggedError("DataDirLocked")<{
  readonly message: string
  readonly dir: string
}> {
  readonly code = "DataDirLocked"
}

/** A sidecar exists while EKV_ENCRYPTION_ENABLED is off (SPEC.md §7: no silent downgrade). */
export class SidecarPresentWithoutFlag extends Data.TaggedError("SidecarPresentWithoutFlag")<{
  readonly message: string
  readonly path: string
}> {
  readonly code = "SidecarPresentWithoutFlag"
}

/** A registry (LevelDB) read or write failed, or a stored row does not decode. */
export class RegistryFailed extends Data.TaggedError("RegistryFailed")<{
  readonly message: string
  readonly op: string
}> {
  readonly code = "RegistryWriteFailed"
}

/** A dispatch whose prev_encryption_index is above what this keystore applied (SPEC.md §4.4). */
export class SidecarBehindRaftLog extends Data.TaggedError("SidecarBehindRaftLog")<{
  readonly message: string
  readonly applied: number
  readonly prevEncryptionIndex: number
}> {
  readonly code = "SidecarBehindRaftLog"
}

/**
 * A dispatch at an index this keystore reflects but holds no recorded outcome
 * for (its state came from a snapshot restore after that index): the FSM and
 * keystore disagree about history; resync-sidecar recovers.
 */
export class OutcomeNotRetained extends Data.TaggedError("OutcomeNotRetained")<{
  readonly message: string
  readonly index: number
}> {
  readonly code = "SidecarBehindRaftLog"
}

/** Errors that stop the process at startup (SPEC.md §7). */
export type StartupError =
  | KekRequired
  | KekSourcesConflict
  | KekFileInsecure
  | KekInvalid
  | KekMismatch
  | CorruptSidecar
  | UnsupportedFilesystem
  | DataDirLocked
  | SidecarPresentWithoutFlag
  | RegistryFailed

/** Node-local errors of a dispatched entry: consensus halts at the entry (SPEC.md §2.2). */
export type ApplyError =
  | KekMismatch
  | KekNextMissing
  | SidecarWriteFailed
  | RegistryFailed
  | SidecarBehindRaftLog
  | OutcomeNotRetained
