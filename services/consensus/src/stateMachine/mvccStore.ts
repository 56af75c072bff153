// The MVCC state-machine store of a consensus node (SPEC §2, §2.4): every
// version of every user key under (key, commit index), metadata, rejection
// records and the applied index, in one LevelDB at <data>/consensus/state/db.
//
// - Apply: one ApplyBatch gathers the effects of many consecutive entries and
//   their applied index, and commits them as ONE LevelDB batch (the applied
//   index is always in the same batch as the effects it covers).
// - Reads: the newest version ≤ an index, and CONTRACT §2 scans; a tombstone
//   reads as absent. Payloads are returned as stored (the caller opens
//   envelopes; this module never encrypts).
// - Maintenance, node-local: GC below a horizon, in-place rewrite (re-seal),
//   snapshot export and crash-safe install.
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { ClassicLevel } from "classic-level"
import {
  ApplyOrderError,
  IncompleteInstall,
  InvalidArgument,
  SnapshotCorrupt,
  StorageIoError,
  StoreLocked,
  StoreUnavailable,
  UnsupportedStoreFormat,
  ValueHeaderError,
  VersionCompacted,
} from "./errors.ts"
import { GcPlanner } from "./gcPlan.ts"
import {
  appliedKey,
  decodeU64Value,
  encodeU64,
  formatKey,
  gcHorizonKey,
  installMarkerKey,
  metaKey,
  rejectionKey,
  rejectionRange,
  STORE_FORMAT,
} from "./keySpace.ts"
import { decodeRejection, encodeRejection, type Rejection } from "./rejectionRecord.ts"
import {
  DEFAULT_KEEP,
  pruneSnapshots,
  readSnapshotRecords,
  verifySnapshotFile,
  writeSnapshotFile,
} from "./snapshotDir.ts"
import { isAppliedKey, type SnapshotRecord, type SnapshotSummary } from "./snapshotFile.ts"
import { decodeStoredValue, encodeTombstone, type ValueHeader } from "./valueHeader.ts"
import {
  bytesEqual,
  compareBytes,
  decodeUtf8,
  decodeVersionKeyBytes,
  MAX_INDEX,
  prefixRange,
  requireIndex,
  userKeyBytes,
  versionKey,
  versionKeyFromBytes,
  versionSpace,
  versionsEnd,
} from "./versionKey.ts"

type Db = ClassicLevel<Uint8Array, Uint8Array>
type DbOp =
  | { readonly type: "put"; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly type: "del"; readonly key: Uint8Array }

export type StoreState = "open" | "installing" | "incomplete-install" | "closed"

export interface OpenOptions {
  /**
   * Open even when a snapshot install did not finish. The store then refuses
   * every read and write (IncompleteInstall) until installSnapshot succeeds.
   * Without it, open itself fails with IncompleteInstall.
   */
  readonly allowIncompleteInstall?: boolean
  /** LevelDB block cache, bytes (default 8 MiB). */
  readonly cacheSize?: number
  /** LevelDB write buffer, bytes (default 4 MiB). */
  readonly writeBufferSize?: number
}

/** A found version. `payload` is the stored bytes after the header (an envelope when sealed). */
export interface Version {
  readonly key: string
  readonly version: number
  readonly header: ValueHeader
  readonly payload: Uint8Array
  /** The exact LevelDB key (the AAD location of a storage envelope). */
  readonly storageKey: Uint8Array
}

export type ReadResult = ({ readonly found: true } & Version) | { readonly found: false }

export interface ReadOptions {
  /** Read as of this index: the newest version ≤ atIndex. Default: the newest version. */
  readonly atIndex?: number
}

export interface ScanOptions extends ReadOptions {
  readonly prefix?: string
  /** Only keys strictly greater than this one (UTF-8 byte order). */
  readonly after?: string
  /** 1.. items. */
  readonly limit: number
  /**
   * Stop (with more: true) before the items' size would exceed this; an item
   * counts its key's UTF-8 bytes plus its payload bytes. The first matching
   * item is always returned, so paging always progresses.
   */
  readonly maxBytes?: number
}

export interface ScanResult {
  readonly items: readonly Version[]
  /** True when further keys match (beyond limit or maxBytes). */
  readonly more: boolean
}

export interface StoredVersion {
  readonly key: string
  readonly index: number
  readonly header: ValueHeader
  readonly payload: Uint8Array
  readonly storageKey: Uint8Array
}

export interface GcOptions {
  /** Most versions deleted by this call (default 1000; a tombstone closing a key may add one). */
  readonly maxDeletes?: number
  /** Most versions examined by this call (default 10 × maxDeletes). */
  readonly maxScan?: number
}

export interface GcResult {
  readonly deleted: number
  readonly scanned: number
  /** The pass over the whole key space finished; the next call starts a new pass. */
  readonly passComplete: boolean
  /** The horizon used: min(requested, applied index, never below the previous one). */
  readonly horizon: number
}

/** A point-in-time view of the store (`openExport`), written once, then closed. */
export interface SnapshotExport {
  /** The applied index the view is at. */
  readonly index: number
  write(dir: string, keep?: number): Promise<ExportedSnapshot>
  close(): Promise<void>
}

export interface ExportedSnapshot {
  readonly path: string
  readonly index: number
  readonly bytes: number
  readonly records: number
  readonly sha256: string
}

const DEFAULT_MAX_DELETES = 1000
const INSTALL_BATCH_BYTES = 4 * 1024 * 1024
const INSTALL_BATCH_RECORDS = 4096
/** Consecutive stale versions a scan steps over before it seeks past them. */
const SKIP_BEFORE_SEEK = 8

export class MvccStore {
  private readonly db: Db
  private stateValue: StoreState
  private applied: number
  private horizon: number
  private markerIndex: number
  private gcCursor: Uint8Array | undefined
  /** Serializes writers: commits, GC, rewrites, installs, close. */
  private lock: Promise<void> = Promise.resolve()

  private constructor(db: Db, state: StoreState, applied: number, horizon: number, markerIndex: number) {
    this.db = db
    this.stateValue = state
    this.applied = applied
    this.horizon = horizon
    this.markerIndex = markerIndex
  }

  /** Opens (creating if missing) the store whose LevelDB lives at `location`. */
  static async open(location: string, options: OpenOptions = {}): Promise<MvccStore> {
    const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(location, {
      keyEncoding: "view",
      valueEncoding: "view",
      ...(options.cacheSize === undefined ? {} : { cacheSize: options.cacheSize }),
      ...(options.writeBufferSize === undefined ? {} : { writeBufferSize: options.writeBufferSize }),
    })
    try {
      await db.open()
    } catch (e) {
      const cause = (e as { cause?: { code?: unknown } }).cause
      if (cause?.code === "LEVEL_LOCKED") {
        throw new StoreLocked({
          message: `state database ${location} is locked by another process`,
          path: location,
        })
      }
      throw ioError("open", e)
    }
    try {
      const marker = await db.get(installMarkerKey)
      const format = await db.get(formatKey)
      if (format === undefined && marker === undefined) {
        const any = await db.keys({ limit: 1 }).all()
        if (any.length > 0) {
          throw new UnsupportedStoreFormat({
            message: `${location} holds data without a store format`,
            found: "",
          })
        }
        await db.put(formatKey, ascii(STORE_FORMAT), { sync: true })
      } else if (format !== undefined && latin1(format) !== STORE_FORMAT) {
        throw new UnsupportedStoreFormat({
          message: `${location} has store format ${JSON.stringify(latin1(format))}, this build reads ${STORE_FORMAT}`,
          found: latin1(format),
        })
      }
      const applied = await readU64Or0(db, appliedKey, "applied index")
      const horizon = await readU64Or0(db, gcHorizonKey, "GC horizon")
      if (marker !== undefined) {
        const idx = decodeU64Value(marker, "install marker")
        if (options.allowIncompleteInstall !== true) {
          throw incompleteInstall(idx)
        }
        return new MvccStore(db, "incomplete-install", applied, horizon, idx)
      }
      return new MvccStore(db, "open", applied, horizon, 0)
    } catch (e) {
      await db.close().catch(() => {})
      throw wrap("open", e)
    }
  }

  get state(): StoreState {
    return this.stateValue
  }

  /** Index of the last entry whose effects are committed (0 for a new store). */
  appliedIndex(): number {
    return this.applied
  }

  /**
   * Makes everything applied so far durable: one synced write of the applied
   * index (LevelDB fsyncs its current write-ahead log), then an fsync of every
   * write-ahead log file — LevelDB closes a log it rolls over without syncing
   * it, and until that log's memtable reaches a table file its unsynced tail
   * is the only copy of earlier batches. After it, a restart (even after a
   * power loss) finds the state at least here.
   */
  async syncApplied(): Promise<number> {
    return this.exclusive(async () => {
      this.requireReady()
      const applied = this.applied
      try {
        await this.db.put(appliedKey, encodeU64(applied), { sync: true })
        await fsyncWriteAheadLogs(this.db.location)
      } catch (e) {
        throw ioError("sync applied state", e)
      }
      return applied
    })
  }

  /** Reads below this index may see collected versions and are refused. */
  gcHorizon(): number {
    return this.horizon
  }

  async close(): Promise<void> {
    await this.exclusive(async () => {
      if (this.stateValue === "closed") return
      this.stateValue = "closed"
      await this.db.close()
    })
  }

  /** A new apply batch. Nothing is written until `commit`. */
  batch(): ApplyBatch {
    this.requireReady()
    return new ApplyBatch(this, this.applied)
  }

  async get(key: string, options: ReadOptions = {}): Promise<ReadResult> {
    this.requireReady()
    const raw = userKeyBytes(key)
    const at = this.readPoint(options.atIndex)
    const entries = await this.db
      .iterator({ gte: versionKeyFromBytes(raw, at), lt: versionsEnd(raw), limit: 1 })
      .all()
    const first = entries[0]
    if (first === undefined) return { found: false }
    const [storageKey, value] = first
    const v = toVersion(key, decodeVersionKeyBytes(storageKey).index, storageKey, value)
    return v.header.tombstone ? { found: false } : { found: true, ...v }
  }

  async scan(options: ScanOptions): Promise<ScanResult> {
    this.requireReady()
    const { limit } = options
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new InvalidArgument({ message: "scan limit must be ≥ 1" })
    const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY
    if (!(maxBytes > 0)) throw new InvalidArgument({ message: "scan maxBytes must be > 0" })
    const at = this.readPoint(options.atIndex)
    const range = options.prefix === undefined ? versionSpace : prefixRange(userKeyBytes(options.prefix))
    let start = range.gte
    if (options.after !== undefined) {
      const afterEnd = versionsEnd(userKeyBytes(options.after))
      if (compareBytes(afterEnd, start) > 0) start = afterEnd
    }
    if (compareBytes(start, range.lt) >= 0) return { items: [], more: false }

    const items: Version[] = []
    let bytes = 0
    let more = false
    // The iterator reads from an implicit LevelDB snapshot: one consistent state.
    const it = this.db.iterator({ gte: start, lt: range.lt })
    try {
      let done: Uint8Array | undefined // prefix of the key already decided
      let skipped = 0
      for (;;) {
        const e = await it.next()
        if (e === undefined) break
        const [storageKey, value] = e
        const d = decodeVersionKeyBytes(storageKey)
        const prefix = storageKey.subarray(0, d.prefixLength)
        if (done !== undefined && bytesEqual(done, prefix)) {
          if (++skipped >= SKIP_BEFORE_SEEK) {
            it.seek(versionsEnd(d.keyBytes))
            skipped = 0
          }
          continue
        }
        if (d.index > at) {
          if (++skipped >= SKIP_BEFORE_SEEK) {
            it.seek(versionKeyFromBytes(d.keyBytes, at))
            skipped = 0
          }
          continue
        }
        // The newest version ≤ at of this key.
        done = prefix
        skipped = 0
        const key = decodeUtf8(d.keyBytes)
        const v = toVersion(key, d.index, storageKey, value)
        if (v.header.tombstone) continue
        const cost = d.keyBytes.length + v.payload.length
        if (items.length >= limit || (items.length > 0 && bytes + cost > maxBytes)) {
          more = true
          break
        }
        items.push(v)
        bytes += cost
      }
    } finally {
      await it.close()
    }
    return { items, more }
  }

  async getMeta(name: string): Promise<Uint8Array | undefined> {
    this.requireReady()
    const v = await this.db.get(metaKey(name))
    return v === undefined ? undefined : plain(v)
  }

  async rejection(index: number): Promise<Rejection | undefined> {
    this.requireReady()
    requireIndex("index", index)
    const v = await this.db.get(rejectionKey(index))
    return v === undefined ? undefined : decodeRejection(v)
  }

  /**
   * Every stored version (tombstones included), in storage-key order, from one
   * consistent view. `after` resumes after a storage key (exclusive).
   */
  async *iterateVersions(options: { readonly after?: Uint8Array } = {}): AsyncGenerator<StoredVersion> {
    this.requireReady()
    const it = this.db.iterator({
      ...(options.after === undefined ? { gte: versionSpace.gte } : { gt: options.after }),
      lt: versionSpace.lt,
    })
    try {
      for (;;) {
        const batch = await it.nextv(256)
        if (batch.length === 0) return
        for (const [storageKey, value] of batch) {
          const d = decodeVersionKeyBytes(storageKey)
          const v = toVersion(decodeUtf8(d.keyBytes), d.index, storageKey, value)
          yield {
            key: v.key,
            index: v.version,
            header: v.header,
            payload: v.payload,
            storageKey: v.storageKey,
          }
        }
      }
    } finally {
      await it.close()
    }
  }

  /**
   * Replaces the stored bytes of an existing non-tombstone version at the
   * same storage key (re-seal, SPEC §2.4 rewrite): no new version. Returns
   * false when the version is gone (GC), is a tombstone, or its bytes differ
   * from `expected` (a concurrent rewrite).
   */
  async rewriteInPlace(
    key: string,
    index: number,
    stored: Uint8Array,
    options: { readonly expected?: Uint8Array; readonly sync?: boolean } = {},
  ): Promise<boolean> {
    const next = decodeStoredValue(stored)
    if (next.header.tombstone) throw new InvalidArgument({ message: "a rewrite never writes a tombstone" })
    const storageKey = versionKeyFromBytes(userKeyBytes(key), index)
    return this.exclusive(async () => {
      this.requireReady()
      const current = await this.db.get(storageKey)
      if (current === undefined) return false
      if (decodeStoredValue(current).header.tombstone) return false
      if (options.expected !== undefined && !bytesEqual(options.expected, current)) return false
      await this.db.put(storageKey, stored, { sync: options.sync ?? false })
      return true
    })
  }

  /**
   * Collects versions no read at or above `horizon` can see (SPEC §2.4), with
   * bounded work; call repeatedly (each call resumes where the last stopped).
   * The horizon is clamped to the applied index and never moves down; reads
   * below it are refused from then on (VersionCompacted).
   */
  async gc(horizon: number, options: GcOptions = {}): Promise<GcResult> {
    requireIndex("horizon", horizon)
    const maxDeletes = options.maxDeletes ?? DEFAULT_MAX_DELETES
    const maxScan = options.maxScan ?? maxDeletes * 10
    return this.exclusive(async () => {
      this.requireReady()
      const h = Math.max(this.horizon, Math.min(horizon, this.applied))
      const planner = new GcPlanner(h, maxDeletes, maxScan)
      const it = this.db.iterator({ gte: this.gcCursor ?? versionSpace.gte, lt: versionSpace.lt })
      let stopped = false
      try {
        outer: for (;;) {
          const entries = await it.nextv(Math.min(256, maxScan + 1))
          if (entries.length === 0) break
          for (const [storageKey, value] of entries) {
            const d = decodeVersionKeyBytes(storageKey)
            const offer = planner.offer({
              keyPrefix: storageKey.subarray(0, d.prefixLength),
              storageKey,
              index: d.index,
              tombstone: decodeStoredValue(value).header.tombstone,
            })
            if (offer === "stop") {
              stopped = true
              break outer
            }
          }
        }
      } finally {
        await it.close()
      }
      if (!stopped) planner.end()
      const ops: DbOp[] = planner.deletes.map((key) => ({ type: "del", key }))
      if (h !== this.horizon) ops.push({ type: "put", key: gcHorizonKey, value: encodeU64(h) })
      if (ops.length > 0) await this.db.batch(ops)
      this.horizon = h
      this.gcCursor = stopped ? planner.resumeAt?.slice() : undefined
      return { deleted: planner.deletes.length, scanned: planner.scanned, passComplete: !stopped, horizon: h }
    })
  }

  /** Deletes rejection records of entries below `below` (bounded); returns how many. */
  async pruneRejections(below: number, options: { readonly maxDeletes?: number } = {}): Promise<number> {
    requireIndex("below", below)
    return this.exclusive(async () => {
      this.requireReady()
      const keys = await this.db
        .keys({ ...rejectionRange(below), limit: options.maxDeletes ?? DEFAULT_MAX_DELETES })
        .all()
      if (keys.length > 0) await this.db.batch(keys.map((key) => ({ type: "del" as const, key })))
      return keys.length
    })
  }

  /**
   * Writes every record of one consistent view of the store (versions,
   * metadata, rejections, applied index) to a snapshot file in `dir`, then
   * keeps only the newest `keep` snapshot files there.
   *
   * The view is taken synchronously when this is called (before it yields),
   * so a driver that pauses apply around the call knows the exact index.
   * `attachments` are extra metadata records written into the file only, as
   * of that index (e.g. the keystore's encryption state, SPEC §4.6); an
   * install stores them as metadata (getMeta). `expectIndex` refuses to write
   * a snapshot of any other applied index.
   */
  async exportSnapshot(
    dir: string,
    options: {
      readonly keep?: number
      readonly attachments?: ReadonlyMap<string, Uint8Array>
      readonly expectIndex?: number
    } = {},
  ): Promise<ExportedSnapshot> {
    const view = await this.openExport(options)
    try {
      return await view.write(dir, options.keep)
    } finally {
      await view.close()
    }
  }

  /**
   * A consistent view of the store as it is now (a LevelDB snapshot), to be
   * written to a snapshot file later while applies go on: the caller holds
   * its apply lock only for this call, not for the write.
   */
  async openExport(
    options: { readonly attachments?: ReadonlyMap<string, Uint8Array>; readonly expectIndex?: number } = {},
  ): Promise<SnapshotExport> {
    this.requireReady()
    const snap = this.db.snapshot()
    const extra: SnapshotRecord[] = [...(options.attachments ?? new Map<string, Uint8Array>())].map(
      ([name, value]) => ({ key: metaKey(name), value }),
    )
    let index: number
    try {
      const appliedBytes = await this.db.get(appliedKey, { snapshot: snap })
      index = appliedBytes === undefined ? 0 : decodeU64Value(appliedBytes, "applied index")
      if (options.expectIndex !== undefined && options.expectIndex !== index) {
        throw new ApplyOrderError({
          message: `snapshot view is at applied index ${index}, expected ${options.expectIndex}`,
          appliedIndex: index,
          index: options.expectIndex,
        })
      }
      // A store that never applied anything: the applied index is still explicit in the file.
      if (appliedBytes === undefined) extra.push({ key: appliedKey, value: encodeU64(0) })
    } catch (e) {
      await snap.close()
      throw wrap("export snapshot", e)
    }
    let closed = false
    return {
      index,
      write: async (dir, keep) => {
        try {
          const written = await writeSnapshotFile(
            dir,
            index,
            merged(this.db.iterator({ snapshot: snap }), extra),
          )
          await pruneSnapshots(dir, keep ?? DEFAULT_KEEP)
          return {
            path: written.path,
            index: written.index,
            bytes: written.bytes,
            records: written.records,
            sha256: written.sha256,
          }
        } catch (e) {
          throw wrap("export snapshot", e)
        }
      },
      close: async () => {
        if (closed) return
        closed = true
        await snap.close()
      },
    }
  }

  /**
   * Replaces the whole store with a snapshot file, crash-safely. The file is
   * verified first (a corrupt one changes nothing). Then a marker is written,
   * the store cleared and loaded, and the applied index set and the marker
   * removed in the last batch: a crash in between leaves the marker, and the
   * next open reports IncompleteInstall instead of serving half a state.
   */
  async installSnapshot(file: string): Promise<SnapshotSummary> {
    const checked = await verifySnapshotFile(file)
    return this.exclusive(async () => {
      if (this.stateValue === "closed" || this.stateValue === "installing") {
        throw new StoreUnavailable({ message: `store is ${this.stateValue}`, state: this.stateValue })
      }
      this.stateValue = "installing"
      try {
        await this.db.put(installMarkerKey, encodeU64(checked.index), { sync: true })
        this.markerIndex = checked.index
        // The format record stays: the store is still this format while half-installed.
        await this.db.clear({ gt: formatKey, lt: installMarkerKey })
        await this.db.clear({ gt: installMarkerKey })
        let ops: DbOp[] = []
        let opBytes = 0
        let summary: SnapshotSummary | undefined
        let horizon = 0
        for await (const r of readSnapshotRecords(file, (s) => {
          summary = s
        })) {
          if (isAppliedKey(r.key)) continue
          if (bytesEqual(r.key, gcHorizonKey)) horizon = decodeU64Value(r.value, "GC horizon")
          ops.push({ type: "put", key: r.key, value: r.value })
          opBytes += r.key.length + r.value.length
          if (ops.length >= INSTALL_BATCH_RECORDS || opBytes >= INSTALL_BATCH_BYTES) {
            await this.db.batch(ops)
            ops = []
            opBytes = 0
          }
        }
        if (summary === undefined || summary.sha256 !== checked.sha256) {
          throw new SnapshotCorrupt({
            message: `snapshot ${file} changed while installing`,
            path: file,
            reason: "ChecksumMismatch",
          })
        }
        ops.push({ type: "put", key: formatKey, value: ascii(STORE_FORMAT) })
        ops.push({ type: "put", key: appliedKey, value: encodeU64(summary.index) })
        ops.push({ type: "del", key: installMarkerKey })
        await this.db.batch(ops, { sync: true })
        this.applied = summary.index
        this.horizon = horizon
        this.gcCursor = undefined
        this.stateValue = "open"
        return summary
      } catch (e) {
        this.stateValue = "incomplete-install"
        throw wrap("install snapshot", e)
      }
    })
  }

  /** @internal Commits an apply batch (ApplyBatch.commit). */
  async commitBatch(
    ops: readonly DbOp[],
    firstIndex: number | undefined,
    appliedTo: number | undefined,
    sync: boolean,
  ): Promise<void> {
    await this.exclusive(async () => {
      this.requireReady()
      const floor = this.applied
      if (firstIndex !== undefined && firstIndex <= floor) {
        throw new ApplyOrderError({
          message: `batch has effects at ${firstIndex}, already applied through ${floor}`,
          appliedIndex: floor,
          index: firstIndex,
        })
      }
      if (appliedTo !== undefined && appliedTo <= floor) {
        throw new ApplyOrderError({
          message: `batch sets applied index ${appliedTo}, already applied through ${floor}`,
          appliedIndex: floor,
          index: appliedTo,
        })
      }
      const all =
        appliedTo === undefined
          ? ops
          : [...ops, { type: "put" as const, key: appliedKey, value: encodeU64(appliedTo) }]
      if (all.length === 0) return
      try {
        await this.db.batch(all as DbOp[], { sync })
      } catch (e) {
        throw ioError("commit apply batch", e)
      }
      if (appliedTo !== undefined) this.applied = appliedTo
    })
  }

  private readPoint(atIndex: number | undefined): number {
    if (atIndex === undefined) return MAX_INDEX
    requireIndex("atIndex", atIndex)
    if (atIndex < this.horizon) {
      throw new VersionCompacted({
        message: `read at ${atIndex} is below the GC horizon ${this.horizon}`,
        atIndex,
        horizon: this.horizon,
      })
    }
    return atIndex
  }

  private requireReady(): void {
    switch (this.stateValue) {
      case "open":
        return
      case "incomplete-install":
        throw incompleteInstall(this.markerIndex)
      default:
        throw new StoreUnavailable({ message: `state store is ${this.stateValue}`, state: this.stateValue })
    }
  }

  private exclusive<A>(f: () => Promise<A>): Promise<A> {
    const run = this.lock.then(f)
    this.lock = run.then(
      () => {},
      () => {},
    )
    return run
  }
}

/**
 * The effects of consecutive entries, committed as one LevelDB batch.
 * For each entry i, in log order: its effects (put / delete / putMeta /
 * recordRejection), then setApplied(i). Several ops on one key at one index:
 * the last wins (CONTRACT §2 batch semantics).
 */
export class ApplyBatch {
  private readonly store: MvccStore
  private readonly base: number
  private readonly ops: DbOp[] = []
  /** The newest pending stored value per user key (reads see the batch's own writes). */
  private readonly latest = new Map<
    string,
    { readonly index: number; readonly stored: Uint8Array; readonly storageKey: Uint8Array }
  >()
  private readonly meta = new Map<string, Uint8Array | undefined>()
  private firstIndex: number | undefined
  private lastEffect = 0
  private appliedTo: number | undefined
  private committed = false
  private bytes = 0

  constructor(store: MvccStore, base: number) {
    this.store = store
    this.base = base
  }

  /** Number of LevelDB operations gathered so far. */
  get size(): number {
    return this.ops.length
  }

  /** Approximate bytes gathered so far (keys + values), to bound a batch. */
  get byteSize(): number {
    return this.bytes
  }

  /** The applied index this batch will commit, if any entry was closed. */
  get appliedIndex(): number | undefined {
    return this.appliedTo
  }

  /** Writes version `index` of `key`; `stored` is header byte ‖ payload (valueHeader.ts), not a tombstone. */
  put(key: string, index: number, stored: Uint8Array): void {
    const sv = decodeStoredValue(stored)
    if (sv.header.tombstone) throw new InvalidArgument({ message: "put of a tombstone: use delete" })
    this.version(key, index, stored)
  }

  /** Writes a tombstone version of `key` at `index`. */
  delete(key: string, index: number): void {
    this.version(key, index, encodeTombstone())
  }

  putMeta(name: string, value: Uint8Array): void {
    this.push({ type: "put", key: metaKey(name), value })
    this.meta.set(name, value)
  }

  deleteMeta(name: string): void {
    this.push({ type: "del", key: metaKey(name) })
    this.meta.set(name, undefined)
  }

  /** Records the verdict of a rejected entry (its applied index still advances: call setApplied). */
  recordRejection(index: number, code: string, reason: string): void {
    this.effect(index)
    this.push({ type: "put", key: rejectionKey(index), value: encodeRejection({ code, reason }) })
  }

  /** Marks entries up to `index` applied; every effect so far must be at or below it. */
  setApplied(index: number): void {
    this.open()
    requireIndex("applied index", index)
    const floor = Math.max(this.base, this.appliedTo ?? 0)
    if (index <= floor || index < this.lastEffect) {
      throw new ApplyOrderError({
        message: `setApplied(${index}) after applied ${floor} with effects at ${this.lastEffect}`,
        appliedIndex: floor,
        index,
      })
    }
    this.appliedTo = index
  }

  /** The key as the store will read it after this batch commits. */
  async get(key: string): Promise<ReadResult> {
    const p = this.latest.get(key)
    if (p === undefined) return this.store.get(key)
    const v = toVersion(key, p.index, p.storageKey, p.stored)
    return v.header.tombstone ? { found: false } : { found: true, ...v }
  }

  async getMeta(name: string): Promise<Uint8Array | undefined> {
    if (this.meta.has(name)) return this.meta.get(name)
    return this.store.getMeta(name)
  }

  /** Writes the batch as one LevelDB batch (fsync'd when `sync`). A batch commits once. */
  async commit(options: { readonly sync?: boolean } = {}): Promise<void> {
    this.open()
    if (this.lastEffect > 0 && (this.appliedTo === undefined || this.appliedTo < this.lastEffect)) {
      throw new ApplyOrderError({
        message: `effects at ${this.lastEffect} without setApplied`,
        appliedIndex: this.appliedTo ?? this.base,
        index: this.lastEffect,
      })
    }
    this.committed = true
    await this.store.commitBatch(this.ops, this.firstIndex, this.appliedTo, options.sync ?? false)
  }

  private version(key: string, index: number, stored: Uint8Array): void {
    this.effect(index)
    const storageKey = versionKey(key, index)
    this.push({ type: "put", key: storageKey, value: stored })
    this.latest.set(key, { index, stored, storageKey })
  }

  private effect(index: number): void {
    this.open()
    requireIndex("index", index)
    const floor = Math.max(this.base, this.appliedTo ?? 0)
    if (index <= floor || index < this.lastEffect) {
      throw new ApplyOrderError({
        message: `effect at ${index} after applied ${floor} / effects at ${this.lastEffect}`,
        appliedIndex: floor,
        index,
      })
    }
    this.firstIndex ??= index
    this.lastEffect = index
  }

  private push(op: DbOp): void {
    this.open()
    this.ops.push(op)
    this.bytes += op.key.length + (op.type === "put" ? op.value.length : 0)
  }

  private open(): void {
    if (this.committed) throw new InvalidArgument({ message: "apply batch already committed" })
  }
}

/**
 * Storage records of a LevelDB iterator with `extra` merged in key order, in
 * chunks (one per `nextv`); an extra record replaces a stored one with the
 * same key.
 */
async function* merged(
  it: {
    nextv(n: number): Promise<Array<[Uint8Array, Uint8Array]>>
    close(): Promise<void>
  },
  extra: readonly SnapshotRecord[],
): AsyncGenerator<SnapshotRecord[]> {
  const pending = [...extra].sort((a, b) => compareBytes(a.key, b.key))
  let p = 0
  try {
    for (;;) {
      const entries = await it.nextv(1024)
      if (entries.length === 0) break
      const chunk: SnapshotRecord[] = []
      for (const [key, value] of entries) {
        if (bytesEqual(key, installMarkerKey)) continue
        while (p < pending.length && compareBytes(pending[p]!.key, key) < 0) chunk.push(pending[p++]!)
        if (p < pending.length && bytesEqual(pending[p]!.key, key)) {
          chunk.push(pending[p++]!)
          continue
        }
        chunk.push({ key, value })
      }
      yield chunk
    }
    if (p < pending.length) yield pending.slice(p)
  } finally {
    await it.close()
  }
}

const toVersion = (key: string, index: number, storageKey: Uint8Array, value: Uint8Array): Version => {
  try {
    const sv = decodeStoredValue(plain(value))
    return { key, version: index, header: sv.header, payload: sv.payload, storageKey: plain(storageKey) }
  } catch (e) {
    if (e instanceof ValueHeaderError) {
      throw new ValueHeaderError({
        message: `${e.message} (key ${JSON.stringify(key)}, version ${index})`,
        reason: e.reason,
        ...(e.header === undefined ? {} : { header: e.header }),
        key,
        version: index,
      })
    }
    throw e
  }
}

/** LevelDB hands out Buffers; callers get plain Uint8Array views of the same memory. */
const plain = (b: Uint8Array): Uint8Array =>
  Object.getPrototypeOf(b) === Uint8Array.prototype ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength)

const readU64Or0 = async (db: Db, key: Uint8Array, what: string): Promise<number> => {
  const v = await db.get(key)
  return v === undefined ? 0 : decodeU64Value(v, what)
}

const incompleteInstall = (index: number): IncompleteInstall =>
  new IncompleteInstall({
    message: `the install of snapshot ${index} did not finish: install a snapshot again before serving`,
    snapshotIndex: index,
  })

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0))
const latin1 = (b: Uint8Array): string => String.fromCharCode(...b)

const isTagged = (e: unknown): boolean => e instanceof Error && "_tag" in e

const wrap = (operation: string, e: unknown): unknown => (isTagged(e) ? e : ioError(operation, e))

const ioError = (operation: string, cause: unknown): StorageIoError =>
  new StorageIoError({ message: `${operation} failed: ${String(cause)}`, operation, cause })

/** fsync of every `*.log` file in a LevelDB directory (a log that vanished meanwhile was compacted). */
const fsyncWriteAheadLogs = async (dir: string): Promise<void> => {
  for (const name of await fs.readdir(dir)) {
    if (!name.endsWith(".log")) continue
    let h: fs.FileHandle | undefined
    try {
      h = await fs.open(path.join(dir, name), "r")
      await h.sync()
    } catch (e) {
      if ((e as { code?: unknown }).code !== "ENOENT") throw e
    } finally {
      await h?.close()
    }
  }
}
