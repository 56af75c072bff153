// Opens this node's two databases and rebuilds the core's persisted state
// (SPEC §2 durability, §7 refusals): the Raft log in `consensus/raft`, the
// state machine in `consensus/state/db`, snapshot files in
// `consensus/state/snapshots` (never under raft/: they hold user keys).
//
// Recovery rules, in order:
//   - a lock held by another process → DataDirLocked; a bad checksum → CorruptLog, and so
//     is damage to the LevelDB files, checked before LevelDB opens them (levelDbFiles.ts);
//   - the state machine behind the log's snapshot mark, or an unfinished
//     install → install the snapshot file at the mark (it was made durable
//     before the mark was written);
//   - an empty log → ask the other peers whether a cluster exists (probeCluster):
//     if one does, start empty in the rejoining mode (raft.ts "Rejoining": a
//     wiped voter must not vote again in a term or found a second cluster);
//     else bootstrap (this node founds the cluster with EKV_PEERS) or start
//     empty (it joins as a learner). Residual risk: a voter wiped while none
//     of its peers answers bootstraps a conflicting log; the safe procedure
//     is in docs/operations.md ("Replacing a node's data");
//   - only the entries after the state machine's applied index are re-applied.
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { Nats, type NatsOptions, natsLayer } from "@ekv/bus"
import { type RefusedStartCode, subjects } from "@ekv/wire"
import { Effect } from "effect"
import { decodeConfState, encodeConfState } from "../fsm/applier.ts"
import {
  bootstrapState,
  type ConfState,
  type Entry,
  type EntryType,
  emptyState,
  type PersistedState,
} from "../raft/mod.ts"
import { describeProblems, verifyLevelDbDir } from "../raftLog/levelDbFiles.ts"
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
  /** Started empty in the rejoining mode (now, or before a restart that came before any leader contact). */
  readonly rejoining: boolean
  /** Which peer reported the existing cluster, when this start chose to rejoin. */
  readonly rejoinEvidence: ClusterEvidence | null
}

/** A peer's answer showing that a cluster exists (cluster_id known or commit index > 1). */
export interface ClusterEvidence {
  readonly peer: string
  readonly clusterId: string
  readonly commitIndex: number
  /** The highest term any answering peer reported: the rejoining node starts there. */
  readonly term: number
}

/** Whether `e` or any of its causes matches. */
const causedBy = (e: unknown, match: (o: { code?: unknown; _tag?: unknown }) => boolean): boolean => {
  const seen = new Set<unknown>()
  let cur: unknown = e
  while (cur !== undefined && cur !== null && !seen.has(cur)) {
    seen.add(cur)
    const o = cur as { code?: unknown; _tag?: unknown; cause?: unknown }
    if (match(o)) return true
    cur = o.cause
  }
  return false
}

const isLocked = (e: unknown): boolean =>
  causedBy(e, (o) => o.code === "LEVEL_LOCKED" || o._tag === "StoreLocked")

/**
 * LevelDB refusing its own files (a damaged or truncated table, a bad manifest) or the
 * state machine's records failing their format: a checksum or schema failure of this
 * node's consensus data, refused as `CorruptLog` (SPEC §7) rather than a crash.
 */
const isDamaged = (e: unknown): boolean =>
  causedBy(
    e,
    (o) =>
      o.code === "LEVEL_CORRUPTION" ||
      o.code === "LEVEL_IO_ERROR" ||
      o._tag === "StorageIoError" ||
      o._tag === "CorruptRecord" ||
      o._tag === "UnsupportedStoreFormat",
  )

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e))

export interface StorageOptions {
  readonly nodeId: string
  readonly peers: readonly string[]
  readonly raftDir: string
  readonly stateDir: string
  readonly snapshotDir: string
  /** The write buffer of each LevelDB database (Raft log, state), bytes; LevelDB's default when absent. */
  readonly writeBufferBytes?: number
  /** Asked only when the log is empty; null = no peer reports a cluster. */
  readonly probeCluster?: () => Promise<ClusterEvidence | null>
}

export interface ProbeOptions {
  readonly nats: NatsOptions
  readonly prefix: string
  readonly nodeId: string
  readonly peers: readonly string[]
  /** Per peer (asked in parallel). */
  readonly timeoutMs?: number
}

interface StatusAnswer {
  readonly cluster_id?: unknown
  readonly term?: unknown
  readonly commit_index?: unknown
}

/**
 * Asks every other peer for its cluster status over
 * `<p>.internal.<peer>.admin.cluster.status`; any answer with a cluster_id, a
 * commit index above the bootstrap entry (1) or a term above the bootstrap
 * term (1: an election has begun, so votes may have been cast) means a cluster
 * exists. An unreachable bus or silent peers give null.
 */
export const probeClusterOverNats = async (o: ProbeOptions): Promise<ClusterEvidence | null> => {
  const timeout = o.timeoutMs ?? 2_000
  const ask = Effect.gen(function* () {
    const nc = yield* Nats
    const s = subjects(o.prefix)
    return yield* Effect.promise(() =>
      Promise.all(
        o.peers
          .filter((p) => p !== o.nodeId)
          .map(async (peer) => {
            try {
              const m = await nc.request(`${s.internal(peer).admin.op("cluster")}.status`, "{}", { timeout })
              if (m.headers?.get("Nats-Service-Error-Code")) return null
              const a = m.json<StatusAnswer>()
              return {
                peer,
                clusterId: typeof a.cluster_id === "string" ? a.cluster_id : "",
                commitIndex: typeof a.commit_index === "number" ? a.commit_index : 0,
                term: typeof a.term === "number" ? a.term : 0,
              }
            } catch {
              return null
            }
          }),
      ),
    )
  })
  const answers = await Effect.runPromise(
    ask.pipe(
      Effect.provide(natsLayer({ ...o.nats, timeoutMs: timeout })),
      Effect.orElseSucceed(() => []),
    ),
  )
  let found: ClusterEvidence | null = null
  let term = 0
  for (const a of answers) {
    if (a === null) continue
    term = Math.max(term, a.term)
    if (found === null && (a.clusterId !== "" || a.commitIndex > 1 || a.term > 1)) found = { ...a, term: 0 }
  }
  return found === null ? null : { ...found, term }
}

export const openStorage = async (o: StorageOptions): Promise<OpenedStorage> => {
  await fs.mkdir(o.raftDir, { recursive: true, mode: 0o700 })
  await fs.mkdir(o.snapshotDir, { recursive: true, mode: 0o700 })
  let opened: Awaited<ReturnType<typeof RaftLogStore.open>>
  try {
    opened = await RaftLogStore.open(o.raftDir, { writeBufferSize: o.writeBufferBytes })
  } catch (e) {
    if (isLocked(e)) throw new RefuseStart("DataDirLocked", `${o.raftDir} is locked by another process`)
    if (e instanceof CorruptLog)
      throw new RefuseStart(
        "CorruptLog",
        `Raft log at ${o.raftDir}: ${e.reason}${e.index === null ? "" : ` (index ${e.index})`}`,
      )
    if (isDamaged(e)) throw new RefuseStart("CorruptLog", `Raft log at ${o.raftDir}: ${describe(e)}`)
    throw e
  }
  const { store: log, log: loaded } = opened
  const stateDb = path.join(o.stateDir, "db")
  // The state DB's WAL and manifest (bounded by the write buffer), before LevelDB silently skips
  // a damaged record; its tables grow with the data, so only their sizes are compared.
  const stateFiles = await verifyLevelDbDir(stateDb, { tables: "sizes" })
  if (stateFiles.problems.length > 0) {
    await log.close()
    throw new RefuseStart(
      "CorruptLog",
      `state machine at ${stateDb}: ${describeProblems(stateFiles.problems)}`,
    )
  }
  let sm: MvccStore
  try {
    sm = await MvccStore.open(stateDb, { allowIncompleteInstall: true, writeBufferSize: o.writeBufferBytes })
  } catch (e) {
    await log.close()
    if (isLocked(e)) throw new RefuseStart("DataDirLocked", `${o.stateDir} is locked by another process`)
    if (isDamaged(e)) throw new RefuseStart("CorruptLog", `state machine at ${o.stateDir}: ${describe(e)}`)
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
    const empty =
      loaded.hardState.term === 0 &&
      entries.length === 0 &&
      mark === null &&
      loaded.hardState.rejoining !== true
    let persisted: PersistedState
    let bootstrapped = false
    let rejoinEvidence: ClusterEvidence | null = null
    if (empty && sm.appliedIndex() === 0) {
      // Asked by non-founders too: a wiped node may be a promoted learner (a new
      // learner loses nothing by rejoining: it does not vote anyway).
      rejoinEvidence = (await o.probeCluster?.()) ?? null
      if (rejoinEvidence !== null) {
        // Lost state in an existing cluster: never bootstrap again, never vote before a leader caught us up.
        const e = emptyState()
        persisted = { ...e, hardState: { ...e.hardState, term: rejoinEvidence.term, rejoining: true } }
        await log.persist({ hardState: persisted.hardState })
      } else if (o.peers.includes(o.nodeId)) {
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
      rejoining: persisted.hardState.rejoining === true,
      rejoinEvidence,
    }
  } catch (e) {
    await sm.close().catch(() => {})
    await log.close().catch(() => {})
    throw e
  }
}
