// The durable Raft log of one node in its own LevelDB (`consensus/raft`,
// CONTRACT.md §6): hard state (and its rejoining flag), the snapshot mark and
// the entries after it.
// Every persist is one synchronous (fsync'd) batch: callers persist a whole
// Ready (many proposals) at once, which is the group commit of SPEC.md §2.
// Before LevelDB opens the directory, all its live files are checked
// (levelDbFiles.ts): LevelDB itself checks no block CRC and skips damaged WAL
// records. The log is compacted at every snapshot, so this stays bounded.
import { ClassicLevel } from "classic-level"
import { describeProblems, verifyLevelDbDir } from "./levelDbFiles.ts"
import {
  CorruptLog,
  decodeEntry,
  decodeHardState,
  decodeSnapshotMark,
  ENTRY_KEY_HIGH,
  ENTRY_KEY_LOW,
  encodeEntry,
  encodeHardState,
  encodeSnapshotMark,
  entryKey,
  HARD_STATE_KEY,
  type HardState,
  indexOfEntryKey,
  REJOIN_KEY,
  REJOIN_VALUE,
  SNAPSHOT_KEY,
  type SnapshotMark,
  type StoredEntry,
} from "./logRecord.ts"

export interface LoadedLog {
  readonly hardState: HardState
  readonly snapshot: SnapshotMark | null
  /** Entries after the snapshot, contiguous, each checksum-verified. */
  readonly entries: ReadonlyArray<StoredEntry>
}

export interface PersistRequest {
  readonly hardState?: HardState
  /** A snapshot was installed or taken: entries up to its index are dropped. */
  readonly snapshot?: SnapshotMark
  /** With `snapshot`: the log after it conflicts with it and is dropped too (installing). */
  readonly discardAfterSnapshot?: boolean
  /** Entries to append; any stored entry at or after the first one's index is replaced. */
  readonly entries?: ReadonlyArray<StoredEntry>
}

type Db = ClassicLevel<Uint8Array, Uint8Array>

export class RaftLogStore {
  readonly #db: Db
  /** Index of the last stored entry (or the snapshot index when none follow it). */
  #lastIndex: number
  #snapshotIndex: number

  private constructor(db: Db, lastIndex: number, snapshotIndex: number) {
    this.#db = db
    this.#lastIndex = lastIndex
    this.#snapshotIndex = snapshotIndex
  }

  /**
   * Opens (creating if missing) the log at `dir`. Fails if another process holds it, and with
   * `CorruptLog` naming the file and offset if any LevelDB file of it is damaged.
   */
  static async open(
    dir: string,
    options: { readonly writeBufferSize?: number } = {},
  ): Promise<{ store: RaftLogStore; log: LoadedLog }> {
    const files = await verifyLevelDbDir(dir, { tables: "checksums" })
    if (files.problems.length > 0)
      throw new CorruptLog({ index: null, reason: describeProblems(files.problems) })
    const db: Db = new ClassicLevel<Uint8Array, Uint8Array>(dir, {
      keyEncoding: "view",
      valueEncoding: "view",
      ...(options.writeBufferSize === undefined ? {} : { writeBufferSize: options.writeBufferSize }),
    })
    await db.open()
    try {
      const log = await load(db)
      const last = log.entries.at(-1)?.index ?? log.snapshot?.index ?? 0
      return { store: new RaftLogStore(db, last, log.snapshot?.index ?? 0), log }
    } catch (e) {
      await db.close()
      throw e
    }
  }

  get lastIndex(): number {
    return this.#lastIndex
  }

  async persist(req: PersistRequest): Promise<void> {
    const batch = this.#db.batch()
    let last = this.#lastIndex
    let compactTo = 0
    if (req.snapshot !== undefined) {
      batch.put(SNAPSHOT_KEY, encodeSnapshotMark(req.snapshot))
      compactTo = req.snapshot.index
      if (req.discardAfterSnapshot === true) {
        for (let i = req.snapshot.index + 1; i <= last; i++) batch.del(entryKey(i))
        last = req.snapshot.index
      }
      last = Math.max(last, req.snapshot.index)
    }
    if (req.entries !== undefined && req.entries.length > 0) {
      const first = req.entries[0]!.index
      const newLast = req.entries.at(-1)!.index
      if (first > last + 1) throw new Error(`log gap: appending ${first} after ${last}`)
      // Drop a stale suffix in the same batch, so a crash never leaves old entries after new ones.
      for (let i = newLast + 1; i <= last; i++) batch.del(entryKey(i))
      for (const e of req.entries) batch.put(entryKey(e.index), encodeEntry(e))
      last = newLast
    }
    if (req.hardState !== undefined) {
      batch.put(HARD_STATE_KEY, encodeHardState(req.hardState))
      // The rejoining flag changes only together with the hard state, in the same batch.
      if (req.hardState.rejoining === true) batch.put(REJOIN_KEY, REJOIN_VALUE)
      else batch.del(REJOIN_KEY)
    }
    await batch.write({ sync: true })
    this.#lastIndex = last
    if (compactTo > this.#snapshotIndex) {
      // Outside the batch: entries at or below the mark are ignored by load anyway.
      await this.#db.clear({ gte: ENTRY_KEY_LOW, lte: entryKey(compactTo) })
      this.#snapshotIndex = compactTo
    }
  }

  /** Reads and verifies entries [lo, hi] (for re-reads after restart or audits). */
  async entries(lo: number, hi: number): Promise<ReadonlyArray<StoredEntry>> {
    const out: StoredEntry[] = []
    for await (const [k, v] of this.#db.iterator({ gte: entryKey(lo), lte: entryKey(hi) })) {
      out.push(decodeEntry(indexOfEntryKey(k), v))
    }
    return out
  }

  close(): Promise<void> {
    return this.#db.close()
  }
}

const load = async (db: Db): Promise<LoadedLog> => {
  const hs = await db.get(HARD_STATE_KEY)
  const stored = hs === undefined ? { term: 0, vote: null, commit: 0 } : decodeHardState(hs)
  const hardState = (await db.get(REJOIN_KEY)) === undefined ? stored : { ...stored, rejoining: true }
  const sm = await db.get(SNAPSHOT_KEY)
  const snapshot = sm === undefined ? null : decodeSnapshotMark(sm)
  const from = (snapshot?.index ?? 0) + 1
  const entries: StoredEntry[] = []
  for await (const [k, v] of db.iterator({ gte: entryKey(from), lt: ENTRY_KEY_HIGH })) {
    const index = indexOfEntryKey(k)
    const expected = from + entries.length
    if (index !== expected) throw new CorruptLog({ index: expected, reason: `log gap: found ${index}` })
    entries.push(decodeEntry(index, v))
  }
  if (snapshot === null && entries.length > 0 && entries[0]!.index !== 1) {
    throw new CorruptLog({ index: 1, reason: "log does not start at 1 and has no snapshot" })
  }
  return { hardState, snapshot, entries }
}
