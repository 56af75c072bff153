// The consensus state-machine store: MVCC versions of user keys, metadata,
// rejection records and the applied index in one LevelDB; GC, in-place
// rewrite and snapshots (SPEC §2, §2.4).
export * from "./errors.ts"
export { MetaName, STORE_FORMAT } from "./keySpace.ts"
export {
  ApplyBatch,
  type ExportedSnapshot,
  type GcOptions,
  type GcResult,
  MvccStore,
  type OpenOptions,
  type ReadOptions,
  type ReadResult,
  type ScanOptions,
  type ScanResult,
  type StoredVersion,
  type StoreState,
  type Version,
} from "./mvccStore.ts"
export type { Rejection } from "./rejectionRecord.ts"
export {
  DEFAULT_KEEP,
  listSnapshots,
  pruneSnapshots,
  readChunks,
  receiveSnapshotFile,
  removeStaleTempFiles,
  type SnapshotFileInfo,
  snapshotFileName,
  verifySnapshotFile,
  type WrittenSnapshot,
} from "./snapshotDir.ts"
export type { SnapshotSummary } from "./snapshotFile.ts"
export * from "./statePaths.ts"
export {
  cleartextHeader,
  decodeHeader,
  decodeStoredValue,
  EncryptionState,
  encodeHeader,
  encodeStoredValue,
  encodeTombstone,
  type StoredValue,
  sealedHeader,
  tombstoneHeader,
  type ValueHeader,
} from "./valueHeader.ts"
export { compareBytes, decodeVersionKey, MAX_INDEX, versionKey } from "./versionKey.ts"
