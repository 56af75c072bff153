// Opens this node's two databases and rebuilds the core's persisted state
// (SPEC §2 durability, §7 refusals): the Raft log in `consensus/raft`, the
// state machine in `consensus/state/db`, snapshot files in
// `consensus/state/snapshots` (never under raft/: they hold user keys).
//
// Recovery rules, in order:
//   - a lock held by another process → DataDirLocked; a bad checksum → CorruptLog;
//   - the state machine behind the log's snapshot mark, or an unfinished
//     install → install the snapshot file at the mark (it was made durable
//     before the mark was written);
//   - an empty log → bootstrap (this node founds the cluster with EKV_PEERS)
//     or start empty (it joins as a learner);
//   - only the entries after the state machine's applied index are re-applied.
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { RefusedStartCode } from "@ekv/wire"
import { decodeConfState, encodeConfState } from "../fsm/applier.ts"
import {
  bootstrapState,
  type ConfState,
  type Entry,
  type EntryType,
  emptyState,
  type PersistedState,
} from "../raft/mod.ts"
import { CorruptLog, type SnapshotMark } from "../raftLog/logRecord.ts"
import { RaftLogStore } from "../raftLog/logStore.ts"
import { MvccStore } from "../stateMachine/mvccStore.ts"
import { removeStaleTempFiles, snapshotFileName } from "../stateMachine/snapshotDir.ts"

export class RefuseStart extends Error {
  override readonly name = "RefuseStart"
  readonly code: RefusedStartCode
  constructor(code: RefusedStartCode, message: string) {
    super(message)
    this.code = code
  }
}

const TYPE_CODE: Readonly<Record<EntryType, number>> = { Normal: 0, Empty: 1, ConfChange: 2 }
const TYPE_OF: readonly EntryType[] = ["Normal", "Empty", "ConfChange"]

export const toStored = (e: Entry) => ({
  index: e.index,
  term: e.term,
  type: TYPE_CODE[e.type],
  data: e.data,
})

export const fromStored = (e: { index: number; term: number; type: number; data: Uint8Array }): Entry => {
  const type = TYPE_OF[e.type]
  if (type === undefined) throw new CorruptLog({ index: e.index, reason: `unknown entry type ${e.type}` })
  return { index: e.index, term: e.term, type, data: e.data }
}

export const snapshotMark = (index: number, term: number, conf: ConfState): SnapshotMark => ({
  index,
  term,
  conf: encodeConfState(conf),
})

export interface OpenedStorage {
  readonly log: RaftLogStore
  readonly sm: MvccStore
  readonly persisted: PersistedState
  /** Entries read from the log at start (bounded by the snapshot interval). */
  readonly loadedEntries: number
  /** Log entries after the state machine's applied index: at most this many are re-applied. */
  readonly replayEntries: number
  readonly bootstrapped: boolean
}

const isLocked = (e: unknown): boolean => {
  const seen = new Set<unknown>()
  let cur: unknown = e
  while (cur !== undefined && cur !== null && !seen.has(cur)) {
    seen.add(cur)
    const o = cur as { code?: unknown; _tag?: unknown; cause?: unknown }
    if (o.code === "LEVEL_LOCKED" || o._tag === "StoreLocked") return true
    cur = o.cause
  }
  return false
}

export interface StorageOptions {
  readonly nodeId: string
  readonly peers: readonly string[]
  readonly raftDir: string
  readonly stateDir: string
  readonly snapshotDir: string
}

export const openStorage = async (o: StorageOptions): Promise<OpenedStorage> => {
  await fs.mkdir(o.raftDir, { recursive: true, mode: 0o700 })
  await fs.mkdir(o.snapshotDir, { recursive: true, mode: 0o700 })
  let opened: Awaited<ReturnType<typeof RaftLogStore.open>>
  try {
    opened = await RaftLogStore.open(o.raftDir)
  } catch (e) {
    if (isLocked(e)) throw new RefuseStart("DataDirLocked", `${o.raftDir} is locked by another process`)
    if (e instanceof CorruptLog)
      throw new RefuseStart("CorruptLog", `Raft log at ${o.raftDir}: ${e.reason} (index ${e.index ?? "-"})`)
    throw e
  }
  const { store: log, log: loaded } = opened
  let sm: MvccStore
  try {
    sm = await MvccStore.open(path.join(o.stateDir, "db"), { allowIncompleteInstall: true })
  } catch (e) {
    await log.close()
    if (isLocked(e)) throw new RefuseStart("DataDirLocked", `${o.stateDir} is locked by another process`)
    throw e
  }
  try {
    await removeStaleTempFiles(o.snapshotDir)
    let entries: Entry[]
    try {
      entries = loaded.entries.map(fromStored)
    } catch (e) {
      if (e instanceof CorruptLog) throw new RefuseStart("CorruptLog", `Raft log: ${e.reason}`)
      throw e
    }
    const mark = loaded.snapshot
    if (mark !== null && (sm.state === "incomplete-install" || sm.appliedIndex() < mark.index)) {
      const file = path.join(o.snapshotDir, snapshotFileName(mark.index))
      try {
        await sm.installSnapshot(file)
      } catch (e) {
        throw new RefuseStart(
          "CorruptLog",
          `state behind the log's snapshot ${mark.index} and ${file} does not install: ${String(e)}`,
        )
      }
    } else if (sm.state === "incomplete-install") {
      throw new RefuseStart(
        "CorruptLog",
        "state machine holds an unfinished snapshot install and the log has no snapshot",
      )
    }
    const empty = loaded.hardState.term === 0 && entries.length === 0 && mark === null
    let persisted: PersistedState
    let bootstrapped = false
    if (empty && sm.appliedIndex() === 0) {
      if (o.peers.includes(o.nodeId)) {
        persisted = bootstrapState(o.peers)
        bootstrapped = true
        await log.persist({ hardState: persisted.hardState, entries: persisted.entries.map(toStored) })
      } else persisted = emptyState()
    } else {
      const applied = sm.appliedIndex()
      const last = entries.at(-1)?.index ?? mark?.index ?? 0
      if (applied > last)
        throw new RefuseStart(
          "CorruptLog",
          `state machine applied ${applied} is beyond the Raft log's last index ${last}`,
        )
      persisted = {
        hardState: loaded.hardState,
        snapshotMeta:
          mark === null
            ? { index: 0, term: 0, confState: { voters: [], learners: [] } }
            : { index: mark.index, term: mark.term, confState: decodeConfState(mark.conf) },
        entries,
        applied,
      }
    }
    const lastIndex = persisted.entries.at(-1)?.index ?? persisted.snapshotMeta.index
    return {
      log,
      sm,
      persisted,
      loadedEntries: entries.length,
      replayEntries: Math.max(0, lastIndex - persisted.applied),
      bootstrapped,
    }
  } catch (e) {
    await sm.close().catch(() => {})
    await log.close().catch(() => {})
    throw e
  }
}
