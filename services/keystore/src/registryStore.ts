// The writer registry in the keystore's LevelDB (SPEC.md §4.4), plus the
// applier's bookkeeping: last_registry_index, the recorded outcome per index,
// the current writer session, the last published event index. Every write is
// one synchronous batch. LevelDB's LOCK file is also the keystore directory's
// exclusive lock: an OS lock released when the process dies (SPEC.md §4.2).
import { join } from "node:path"
import { ClassicLevel } from "classic-level"
import { Effect, Schema, type Scope } from "effect"
import { DataDirLocked, RegistryFailed } from "./errors.ts"
import { errorText } from "./kekProvider.ts"
import { RecordedOutcome, SessionRecord } from "./outcome.ts"
import type { WriterRow } from "./writerRegistry.ts"

const WRITERS = "!encryption|writers|"
const OUTCOME = "!encryption|outcome|"
const LAST_REGISTRY_INDEX = "!encryption|meta|last_registry_index"
const LAST_PUBLISHED_INDEX = "!encryption|meta|last_published_index"
const SESSION = "!encryption|session"
const CLUSTER_ID = "!encryption|meta|cluster_id"
const RESTORE_PENDING = "!encryption|meta|restore_pending"
const END = "\uffff"

export const writerKey = (dekId: number, nodeId16: number): string => `${WRITERS}${dekId}|${nodeId16}`
const outcomeKey = (index: number): string => `${OUTCOME}${String(index).padStart(16, "0")}`

const Int = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))
/** A stored row; full_node_id as a decimal string (uint64 does not fit a JSON number). */
const StoredRow = Schema.Struct({
  full_node_id: Schema.String.check(Schema.isPattern(/^(0|[1-9][0-9]{0,19})$/)),
  first_seen_local_epoch: Int,
  last_seen_local_epoch: Int,
  last_session_id: Schema.NullOr(Schema.String),
  raft_index: Int,
})
const decodeRow = Schema.decodeUnknownResult(Schema.fromJsonString(StoredRow), { onExcessProperty: "error" })
const decodeOutcome = Schema.decodeUnknownResult(Schema.fromJsonString(RecordedOutcome))
const decodeSession = Schema.decodeUnknownResult(Schema.fromJsonString(SessionRecord))

const encodeRow = (r: WriterRow): string =>
  JSON.stringify({
    full_node_id: r.full_node_id.toString(),
    first_seen_local_epoch: r.first_seen_local_epoch,
    last_seen_local_epoch: r.last_seen_local_epoch,
    last_session_id: r.last_session_id ?? null,
    raft_index: r.raft_index,
  })

export interface RegistryEntry {
  readonly dekId: number
  readonly nodeId16: number
  readonly row: WriterRow
}

/** One synchronous batch: drops first, then puts. */
export interface RegistryWrite {
  /** Delete every row under these DEKs (retire-dek; leftovers of an interrupted attempt). */
  readonly dropDeks?: ReadonlyArray<number>
  readonly putRows?: ReadonlyArray<RegistryEntry>
  readonly lastRegistryIndex?: number
  readonly outcome?: RecordedOutcome
}

export interface RegistryStore {
  readonly row: (dekId: number, nodeId16: number) => Effect.Effect<WriterRow | undefined, RegistryFailed>
  readonly rowsOf: (dekId: number) => Effect.Effect<ReadonlyArray<RegistryEntry>, RegistryFailed>
  readonly allRows: Effect.Effect<ReadonlyArray<RegistryEntry>, RegistryFailed>
  readonly lastRegistryIndex: Effect.Effect<number, RegistryFailed>
  readonly outcome: (index: number) => Effect.Effect<RecordedOutcome | undefined, RegistryFailed>
  readonly write: (w: RegistryWrite) => Effect.Effect<void, RegistryFailed>
  /**
   * Restore, phase 1 (SPEC.md §4.6): every row and outcome replaced in one
   * batch, with a restore-pending marker that blocks applying until phase 2.
   */
  readonly replaceAll: (
    rows: ReadonlyArray<RegistryEntry>,
    lastRegistryIndex: number,
  ) => Effect.Effect<void, RegistryFailed>
  /** Restore, phase 2 (after the sidecar commit): last_registry_index set, marker cleared. */
  readonly finishRestore: Effect.Effect<void, RegistryFailed>
  /** The last_registry_index of an interrupted restore, if one is pending. */
  readonly restorePending: Effect.Effect<number | undefined, RegistryFailed>
  readonly session: Effect.Effect<SessionRecord | undefined, RegistryFailed>
  readonly putSession: (s: SessionRecord) => Effect.Effect<void, RegistryFailed>
  /** Recorded outcomes with index > `after`, ascending (event catch-up). */
  readonly outcomesAfter: (
    after: number,
    limit: number,
  ) => Effect.Effect<ReadonlyArray<RecordedOutcome>, RegistryFailed>
  readonly clusterId: Effect.Effect<string | undefined, RegistryFailed>
  readonly putClusterId: (id: string) => Effect.Effect<void, RegistryFailed>
  readonly lastPublishedIndex: Effect.Effect<number, RegistryFailed>
  readonly putLastPublishedIndex: (index: number) => Effect.Effect<void, RegistryFailed>
}

type Db = ClassicLevel<string, string>

const fail = (op: string) => (cause: unknown) =>
  new RegistryFailed({ message: `registry ${op} failed: ${errorText(cause)}`, op })

const parseRow = (key: string, value: string): Effect.Effect<RegistryEntry, RegistryFailed> => {
  const parts = key.slice(WRITERS.length).split("|")
  const dekId = Number(parts[0])
  const nodeId16 = Number(parts[1])
  const r = decodeRow(value)
  if (parts.length !== 2 || !Number.isInteger(dekId) || !Number.isInteger(nodeId16) || r._tag === "Failure") {
    return Effect.fail(new RegistryFailed({ message: `registry row ${key} does not decode`, op: "read" }))
  }
  const s = r.success
  return Effect.succeed({
    dekId,
    nodeId16,
    row: {
      full_node_id: BigInt(s.full_node_id),
      first_seen_local_epoch: s.first_seen_local_epoch,
      last_seen_local_epoch: s.last_seen_local_epoch,
      last_session_id: s.last_session_id ?? undefined,
      raft_index: s.raft_index,
    },
  })
}

const get = (db: Db, key: string): Effect.Effect<string | undefined, RegistryFailed> =>
  Effect.tryPromise({ try: () => db.get(key), catch: fail("read") })

const keysIn = (db: Db, gte: string, lt: string): Effect.Effect<Array<string>, RegistryFailed> =>
  Effect.tryPromise({ try: () => db.keys({ gte, lt }).all(), catch: fail("read") })

const entriesIn = (db: Db, gte: string, lt: string) =>
  Effect.tryPromise({ try: () => db.iterator({ gte, lt }).all(), catch: fail("read") }).pipe(
    Effect.flatMap((kvs) => Effect.forEach(kvs, ([k, v]) => parseRow(k, v))),
  )

const readIndex = (db: Db, key: string) =>
  get(db, key).pipe(
    Effect.flatMap((v) => {
      if (v === undefined) return Effect.succeed(0)
      const n = Number(v)
      return Number.isSafeInteger(n) && n >= 0
        ? Effect.succeed(n)
        : Effect.fail(new RegistryFailed({ message: `${key} holds ${JSON.stringify(v)}`, op: "read" }))
    }),
  )

type BatchOp = { type: "put"; key: string; value: string } | { type: "del"; key: string }

const batch = (db: Db, ops: Array<BatchOp>) =>
  ops.length === 0
    ? Effect.void
    : Effect.tryPromise({ try: () => db.batch(ops, { sync: true }), catch: fail("write") })

const makeStore = (db: Db): RegistryStore => ({
  row: (dekId, nodeId16) => {
    const key = writerKey(dekId, nodeId16)
    return get(db, key).pipe(
      Effect.flatMap((v) =>
        v === undefined ? Effect.succeed(undefined) : parseRow(key, v).pipe(Effect.map((e) => e.row)),
      ),
    )
  },
  rowsOf: (dekId) => entriesIn(db, `${WRITERS}${dekId}|`, `${WRITERS}${dekId}|${END}`),
  allRows: entriesIn(db, WRITERS, `${WRITERS}${END}`),
  lastRegistryIndex: readIndex(db, LAST_REGISTRY_INDEX),
  outcome: (index) =>
    get(db, outcomeKey(index)).pipe(
      Effect.flatMap((v) => {
        if (v === undefined) return Effect.succeed(undefined)
        const r = decodeOutcome(v)
        return r._tag === "Success"
          ? Effect.succeed(r.success)
          : Effect.fail(
              new RegistryFailed({ message: `recorded outcome at ${index} does not decode`, op: "read" }),
            )
      }),
    ),
  write: (w) =>
    Effect.gen(function* () {
      const ops: Array<BatchOp> = []
      for (const dekId of w.dropDeks ?? []) {
        for (const key of yield* keysIn(db, `${WRITERS}${dekId}|`, `${WRITERS}${dekId}|${END}`)) {
          ops.push({ type: "del", key })
        }
      }
      for (const e of w.putRows ?? []) {
        ops.push({ type: "put", key: writerKey(e.dekId, e.nodeId16), value: encodeRow(e.row) })
      }
      if (w.lastRegistryIndex !== undefined) {
        ops.push({ type: "put", key: LAST_REGISTRY_INDEX, value: String(w.lastRegistryIndex) })
      }
      if (w.outcome !== undefined) {
        ops.push({ type: "put", key: outcomeKey(w.outcome.index), value: JSON.stringify(w.outcome) })
      }
      yield* batch(db, ops)
    }),
  replaceAll: (rows, lastRegistryIndex) =>
    Effect.gen(function* () {
      const ops: Array<BatchOp> = []
      for (const key of yield* keysIn(db, WRITERS, `${WRITERS}${END}`)) ops.push({ type: "del", key })
      for (const key of yield* keysIn(db, OUTCOME, `${OUTCOME}${END}`)) ops.push({ type: "del", key })
      for (const e of rows)
        ops.push({ type: "put", key: writerKey(e.dekId, e.nodeId16), value: encodeRow(e.row) })
      ops.push({ type: "put", key: RESTORE_PENDING, value: String(lastRegistryIndex) })
      yield* batch(db, ops)
    }),
  finishRestore: readIndex(db, RESTORE_PENDING).pipe(
    Effect.flatMap((lri) =>
      batch(db, [
        { type: "put", key: LAST_REGISTRY_INDEX, value: String(lri) },
        { type: "del", key: RESTORE_PENDING },
      ]),
    ),
  ),
  restorePending: get(db, RESTORE_PENDING).pipe(
    Effect.flatMap((v) => (v === undefined ? Effect.succeed(undefined) : readIndex(db, RESTORE_PENDING))),
  ),
  session: get(db, SESSION).pipe(
    Effect.flatMap((v) => {
      if (v === undefined) return Effect.succeed(undefined)
      const r = decodeSession(v)
      return r._tag === "Success"
        ? Effect.succeed(r.success)
        : Effect.fail(new RegistryFailed({ message: "stored session does not decode", op: "read" }))
    }),
  ),
  putSession: (s) => batch(db, [{ type: "put", key: SESSION, value: JSON.stringify(s) }]),
  outcomesAfter: (after, limit) =>
    Effect.tryPromise({
      try: () => db.iterator({ gt: outcomeKey(after), lt: `${OUTCOME}${END}`, limit }).all(),
      catch: fail("read"),
    }).pipe(
      Effect.flatMap((kvs) =>
        Effect.forEach(kvs, ([k, v]) => {
          const r = decodeOutcome(v)
          return r._tag === "Success"
            ? Effect.succeed(r.success)
            : Effect.fail(
                new RegistryFailed({ message: `recorded outcome ${k} does not decode`, op: "read" }),
              )
        }),
      ),
    ),
  clusterId: get(db, CLUSTER_ID),
  putClusterId: (id) => batch(db, [{ type: "put", key: CLUSTER_ID, value: id }]),
  lastPublishedIndex: readIndex(db, LAST_PUBLISHED_INDEX),
  putLastPublishedIndex: (index) =>
    batch(db, [{ type: "put", key: LAST_PUBLISHED_INDEX, value: String(index) }]),
})

/** Where the registry lives inside the keystore directory. */
export const registryPath = (keystoreDir: string): string => join(keystoreDir, "registry")

/**
 * Opens the registry, taking the directory lock; another live keystore on the
 * same directory → DataDirLocked. Closed (lock released) with the scope.
 */
export const openRegistryStore = (
  keystoreDir: string,
): Effect.Effect<RegistryStore, DataDirLocked | RegistryFailed, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const db: Db = new ClassicLevel<string, string>(registryPath(keystoreDir), {
          keyEncoding: "utf8",
          valueEncoding: "utf8",
        })
        await db.open()
        return db
      },
      catch: (cause) => {
        const c = cause as { code?: string; cause?: { code?: string } }
        if (c?.cause?.code === "LEVEL_LOCKED" || c?.code === "LEVEL_LOCKED") {
          return new DataDirLocked({
            message: `${keystoreDir} is locked by another keystore process (LevelDB LOCK held)`,
            dir: keystoreDir,
          })
        }
        return new RegistryFailed({
          message: `cannot open the registry under ${keystoreDir}: ${errorText(c?.cause ?? cause)}`,
          op: "open",
        })
      },
    }),
    (db) => Effect.promise(() => db.close().catch(() => undefined)),
  ).pipe(Effect.map(makeStore))
