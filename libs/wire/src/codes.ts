// The verdict codes of SPEC.md §2.2 (rejections, halts) and §7 (refused
// starts). Rejections are deterministic results recorded on every replica;
// halts and refused starts are node-local.
import { Schema } from "effect"

/** Deterministic rejection of an entry at apply (SPEC.md §2.2). */
export const RejectionCode = {
  UnknownEntryTag: "UnknownEntryTag",
  MalformedEntry: "MalformedEntry",
  LocalEpochRollback: "LocalEpochRollback",
  NodeIDCollision: "NodeIDCollision",
  AlreadyBootstrapped: "AlreadyBootstrapped",
  PreconditionFailed: "PreconditionFailed",
  UnsealedAfterCutover: "UnsealedAfterCutover",
  SealedBeforeCutover: "SealedBeforeCutover",
} as const
export type RejectionCode = (typeof RejectionCode)[keyof typeof RejectionCode]

/** Node-local reason to stop applying at an index (SPEC.md §2.2). */
export const HaltCode = {
  KeystoreUnavailable: "KeystoreUnavailable",
  KekMismatch: "KekMismatch",
  KekNextMissing: "KekNextMissing",
  SidecarWriteFailed: "SidecarWriteFailed",
  RegistryWriteFailed: "RegistryWriteFailed",
  RaftEnvelopeOpenFailed: "RaftEnvelopeOpenFailed",
  CorruptLog: "CorruptLog",
  SidecarBehindRaftLog: "SidecarBehindRaftLog",
  LocalEpochExhausted: "LocalEpochExhausted",
  // Not named in SPEC.md §2.2: a block checksum of the state database's tables
  // failed (found while running, docs/reliability.md finding 2). It never
  // resumes by itself: the node is wiped and rejoins through a snapshot.
  CorruptState: "CorruptState",
  // SPEC.md §6: a node's own session registration rejected at apply halts it
  // with the rejection's code.
  LocalEpochRollback: "LocalEpochRollback",
  NodeIDCollision: "NodeIDCollision",
} as const
export type HaltCode = (typeof HaltCode)[keyof typeof HaltCode]

/** Guards that refuse a process start (SPEC.md §7). */
export const RefusedStartCode = {
  KekRequired: "KekRequired",
  KekSourcesConflict: "KekSourcesConflict",
  SidecarPresentWithoutFlag: "SidecarPresentWithoutFlag",
  KekMismatch: "KekMismatch",
  SidecarBehindRaftLog: "SidecarBehindRaftLog",
  SidecarAheadOfRaftLog: "SidecarAheadOfRaftLog",
  EnvelopeCutoverDivergence: "EnvelopeCutoverDivergence",
  LocalEpochRollback: "LocalEpochRollback",
  UnsupportedFilesystem: "UnsupportedFilesystem",
  NodeIDCollision: "NodeIDCollision",
  CorruptLog: "CorruptLog",
  CorruptSidecar: "CorruptSidecar",
  DataDirLocked: "DataDirLocked",
  // Not named in SPEC.md §7; an operator still needs a code for them.
  /** A KEK file readable by group/other or owned by another user (SPEC.md §4.1). */
  KekFileInsecure: "KekFileInsecure",
  /** A configuration value fails its format (EKV_PREFIX, EKV_NODE_ID, ...). */
  InvalidConfig: "InvalidConfig",
} as const
export type RefusedStartCode = (typeof RefusedStartCode)[keyof typeof RefusedStartCode]

const literals = <T extends string>(o: Readonly<Record<string, T>>) =>
  Schema.Literals(Object.values(o) as [T, ...T[]])

export const RejectionCodeSchema = literals(RejectionCode)
export const HaltCodeSchema = literals(HaltCode)
export const RefusedStartCodeSchema = literals(RefusedStartCode)

/** Any code a cluster event may carry. */
export type EventCode = RejectionCode | HaltCode | RefusedStartCode
export const EventCodeSchema = Schema.Literals([
  ...new Set<EventCode>([
    ...Object.values(RejectionCode),
    ...Object.values(HaltCode),
    ...Object.values(RefusedStartCode),
  ]),
] as [EventCode, ...EventCode[]])
