// The sidecar `keys.json` (SPEC.md §4.2): KEK-wrapped DEKs and the replicated
// encryption state this keystore has applied, as of `raft_applied_index`.
// Read through a schema (anything unexpected → CorruptSidecar); written
// crash-durably: tmp file, fsync, rename, fsync of the directory, and only then
// success. A crash at any point leaves the complete old or the complete new file.
import { randomBytes } from "node:crypto"
import { mkdir, open, readFile, rename, rm } from "node:fs/promises"
import { basename, dirname, join } from "node:path"
import { Effect, Schema } from "effect"
import { CorruptSidecar, SidecarWriteFailed, UnsupportedFilesystem } from "./errors.ts"
import { errorText } from "./kekProvider.ts"

export const SIDECAR_VERSION = 1
export const WRAPPED_LENGTH = 61
const MAX_U32 = 0xffffffff

const Index = Schema.Number.check(
  Schema.isInt(),
  Schema.isBetween({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
)
const KeyIdOrZero = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: MAX_U32 }))
const Epoch = Schema.Number.check(Schema.isInt(), Schema.isBetween({ minimum: 0, maximum: 0xffff }))

export const SidecarKey = Schema.Struct({
  purpose: Schema.Literals(["storage", "raft"]),
  /** base64 of the 61-byte wrap; "" once retired (SPEC.md §4.2). */
  wrapped: Schema.String,
  created: Schema.String,
  local_epoch: Epoch,
  retired: Schema.Boolean,
})
export type SidecarKey = typeof SidecarKey.Type

export const Sidecar = Schema.Struct({
  version: Schema.Literal(SIDECAR_VERSION),
  raft_applied_index: Index,
  storage_envelope_active: Schema.Boolean,
  raft_envelope_cutover_index: Index,
  active: Schema.Struct({ storage: KeyIdOrZero, raft: KeyIdOrZero }),
  keys: Schema.Record(Schema.String, SidecarKey),
})
export type Sidecar = typeof Sidecar.Type

export const emptySidecar: Sidecar = {
  version: SIDECAR_VERSION,
  raft_applied_index: 0,
  storage_envelope_active: false,
  raft_envelope_cutover_index: 0,
  active: { storage: 0, raft: 0 },
  keys: {},
}

const decodeSidecar = Schema.decodeUnknownResult(Sidecar, { onExcessProperty: "error" })

const KEY_ID_STRING = /^[1-9][0-9]{0,9}$/
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/

/** Cross-field rules the schema alone cannot state; a violation is a corrupt file. */
export const sidecarInvariantViolation = (s: Sidecar): string | undefined => {
  for (const [id, k] of Object.entries(s.keys)) {
    if (!KEY_ID_STRING.test(id) || Number(id) > MAX_U32)
      return `key id ${JSON.stringify(id)} is not a uint32 ≥ 1`
    if (!ISO.test(k.created) || Number.isNaN(Date.parse(k.created)))
      return `key ${id}: created ${JSON.stringify(k.created)} is not an ISO-8601 UTC time`
    if (k.retired) {
      if (k.wrapped !== "") return `key ${id} is retired but still holds wrapped bytes`
    } else {
      if (!BASE64.test(k.wrapped) || k.wrapped.length % 4 !== 0)
        return `key ${id}: wrapped is not standard base64`
      if (Buffer.from(k.wrapped, "base64").length !== WRAPPED_LENGTH)
        return `key ${id}: wrapped is not ${WRAPPED_LENGTH} bytes`
    }
  }
  for (const purpose of ["storage", "raft"] as const) {
    const id = s.active[purpose]
    if (id === 0) continue
    const k = s.keys[String(id)]
    if (k === undefined) return `active ${purpose} key ${id} is not in keys`
    if (k.purpose !== purpose) return `active ${purpose} key ${id} has purpose ${k.purpose}`
    if (k.retired) return `active ${purpose} key ${id} is retired`
  }
  if (s.raft_envelope_cutover_index > s.raft_applied_index)
    return "raft_envelope_cutover_index is above raft_applied_index"
  return undefined
}

/** Parses keys.json text; any failure is CorruptSidecar. */
export const parseSidecar = (path: string, text: string): Effect.Effect<Sidecar, CorruptSidecar> =>
  Effect.suspend(() => {
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (cause) {
      return Effect.fail(new CorruptSidecar({ message: `${path}: not JSON (${errorText(cause)})`, path }))
    }
    if (typeof json === "object" && json !== null && "version" in json && json.version !== SIDECAR_VERSION) {
      return Effect.fail(
        new CorruptSidecar({
          message: `${path}: unknown sidecar version ${JSON.stringify(json.version)} (this build reads version ${SIDECAR_VERSION})`,
          path,
        }),
      )
    }
    const r = decodeSidecar(json)
    if (r._tag === "Failure") {
      return Effect.fail(new CorruptSidecar({ message: `${path}: ${r.failure.message}`, path }))
    }
    const violation = sidecarInvariantViolation(r.success)
    if (violation !== undefined) {
      return Effect.fail(new CorruptSidecar({ message: `${path}: ${violation}`, path }))
    }
    return Effect.succeed(r.success)
  })

/** Reads keys.json; `undefined` when it does not exist. A leftover keys.json.tmp is ignored. */
export const readSidecar = (path: string): Effect.Effect<Sidecar | undefined, CorruptSidecar> =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (cause) => cause,
  }).pipe(
    Effect.matchEffect({
      onFailure: (cause) =>
        (cause as NodeJS.ErrnoException)?.code === "ENOENT"
          ? Effect.succeed(undefined)
          : Effect.fail(new CorruptSidecar({ message: `${path}: cannot read (${errorText(cause)})`, path })),
      onSuccess: (text) => parseSidecar(path, text),
    }),
  )

/** Canonical text of a sidecar: the field order of SPEC.md §4.2, keys in ascending id order. */
export const renderSidecar = (s: Sidecar): string => {
  const keys: Record<string, SidecarKey> = {}
  for (const id of Object.keys(s.keys).sort((a, b) => Number(a) - Number(b))) {
    const k = s.keys[id]!
    keys[id] = {
      purpose: k.purpose,
      wrapped: k.wrapped,
      created: k.created,
      local_epoch: k.local_epoch,
      retired: k.retired,
    }
  }
  const ordered: Sidecar = {
    version: SIDECAR_VERSION,
    raft_applied_index: s.raft_applied_index,
    storage_envelope_active: s.storage_envelope_active,
    raft_envelope_cutover_index: s.raft_envelope_cutover_index,
    active: { storage: s.active.storage, raft: s.active.raft },
    keys,
  }
  return `${JSON.stringify(ordered, null, 2)}\n`
}

/** The steps of the durable write, in order; a test hook may run after each. */
export const WriteStep = {
  openTmp: "open-tmp",
  writeHalf: "write-half",
  writeTmp: "write-tmp",
  fsyncTmp: "fsync-tmp",
  closeTmp: "close-tmp",
  rename: "rename",
  fsyncDir: "fsync-dir",
} as const
export type WriteStep = (typeof WriteStep)[keyof typeof WriteStep]

export interface WriteOptions {
  /** Runs synchronously after each completed step (crash-point tests). */
  readonly afterStep?: (step: WriteStep) => void
}

/**
 * Writes `bytes` to `path` crash-durably with mode 0600: `<path>.tmp`, fsync,
 * rename over `path`, fsync of the directory. Each failing step is reported by
 * name; nothing falls back to a weaker write.
 */
export const writeFileDurably = (
  path: string,
  bytes: Uint8Array,
  options: WriteOptions = {},
): Effect.Effect<void, SidecarWriteFailed> => {
  const tmp = `${path}.tmp`
  const hook = options.afterStep ?? (() => {})
  const step = <A>(name: WriteStep, f: () => Promise<A>, runHook = true) =>
    Effect.tryPromise({
      try: async () => {
        const a = await f()
        if (runHook) hook(name)
        return a
      },
      catch: (cause) =>
        new SidecarWriteFailed({
          message: `${path}: durable write failed at ${name}: ${errorText(cause)}`,
          path,
          step: name,
        }),
    })
  return Effect.gen(function* () {
    // "w" truncates a leftover tmp from an earlier crash; chmod because an
    // existing file keeps its old mode.
    const fh = yield* step(
      WriteStep.openTmp,
      async () => {
        const h = await open(tmp, "w", 0o600)
        try {
          await h.chmod(0o600)
        } catch (e) {
          await h.close()
          throw e
        }
        return h
      },
      false,
    )
    const closeOnError = <A, E>(e: Effect.Effect<A, E>) =>
      e.pipe(Effect.tapError(() => Effect.promise(() => fh.close().catch(() => undefined))))
    yield* closeOnError(step(WriteStep.openTmp, async () => {}))
    const half = Math.floor(bytes.length / 2)
    yield* closeOnError(step(WriteStep.writeHalf, () => writeAll(fh, bytes.subarray(0, half), 0)))
    yield* closeOnError(step(WriteStep.writeTmp, () => writeAll(fh, bytes.subarray(half), half)))
    yield* closeOnError(step(WriteStep.fsyncTmp, () => fh.sync()))
    yield* step(WriteStep.closeTmp, () => fh.close())
    yield* step(WriteStep.rename, () => rename(tmp, path))
    yield* step(WriteStep.fsyncDir, () => fsyncDirectory(dirname(path)))
  })
}

const writeAll = async (
  fh: import("node:fs/promises").FileHandle,
  bytes: Uint8Array,
  position: number,
): Promise<void> => {
  let off = 0
  while (off < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, off, bytes.length - off, position + off)
    if (bytesWritten <= 0) throw new Error("write made no progress")
    off += bytesWritten
  }
}

export const fsyncDirectory = async (dir: string): Promise<void> => {
  const d = await open(dir, "r")
  try {
    await d.sync()
  } finally {
    await d.close()
  }
}

/** Writes the sidecar crash-durably (SPEC.md §4.2). */
export const writeSidecar = (
  path: string,
  s: Sidecar,
  options: WriteOptions = {},
): Effect.Effect<void, SidecarWriteFailed> =>
  Effect.suspend(() => {
    const violation = sidecarInvariantViolation(s)
    if (violation !== undefined) {
      // Never persist a state that the reader would call corrupt.
      return Effect.fail(
        new SidecarWriteFailed({
          message: `${path}: refusing to write: ${violation}`,
          path,
          step: "validate",
        }),
      )
    }
    return writeFileDurably(path, new TextEncoder().encode(renderSidecar(s)), options)
  })

// mkdir -p one level at a time: Node's recursive mkdir loops forever on some
// pseudo filesystems (/proc), and a refusal must come out, not a hang.
const mkdirs = async (dir: string): Promise<void> => {
  const parent = dirname(dir)
  try {
    await mkdir(dir, { mode: 0o700 })
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "EEXIST") return
    if (code !== "ENOENT" || parent === dir) throw e
    await mkdirs(parent)
    await mkdir(dir, { mode: 0o700 }).catch((e2: NodeJS.ErrnoException) => {
      if (e2.code !== "EEXIST") throw e2
    })
  }
}

/** Creates the keystore directory (0700) if missing. */
export const ensureDirectory = (dir: string): Effect.Effect<void, UnsupportedFilesystem> =>
  Effect.tryPromise({
    try: () => mkdirs(dir),
    catch: (cause) =>
      new UnsupportedFilesystem({
        message: `${dir}: cannot create the keystore directory: ${errorText(cause)}`,
        dir,
        step: "mkdir",
      }),
  }).pipe(Effect.asVoid)

/**
 * The startup durability probe (SPEC.md §7): the full write protocol on a
 * probe file in `dir`, read back, then removed. Any failing step →
 * UnsupportedFilesystem naming it.
 */
export const probeDirectory = (dir: string): Effect.Effect<void, UnsupportedFilesystem> => {
  const name = `.durability-probe-${process.pid}-${randomBytes(4).toString("hex")}`
  const path = join(dir, name)
  const payload = randomBytes(64)
  const fail = (step: string, cause: unknown) =>
    new UnsupportedFilesystem({
      message: `${dir}: durability probe failed at ${step}: ${errorText(cause)}`,
      dir,
      step,
    })
  return Effect.gen(function* () {
    yield* writeFileDurably(path, payload).pipe(Effect.mapError((e) => fail(e.step, e.message)))
    const back = yield* Effect.tryPromise({ try: () => readFile(path), catch: (c) => fail("read-back", c) })
    if (!back.equals(payload))
      return yield* fail("read-back", new Error(`${basename(path)} read back differently`))
    yield* Effect.tryPromise({
      try: async () => {
        await rm(path)
        await fsyncDirectory(dir)
      },
      catch: (c) => fail("cleanup", c),
    })
  }).pipe(
    // Leave no probe file behind whatever failed.
    Effect.tapError(() =>
      Effect.promise(() =>
        Promise.all([rm(path, { force: true }), rm(`${path}.tmp`, { force: true })]).catch(() => undefined),
      ),
    ),
  )
}
