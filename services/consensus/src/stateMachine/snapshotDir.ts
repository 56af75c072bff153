// Snapshot files on disk: naming, crash-safe writing (temp name, fsync,
// rename, fsync of the directory), verification, chunked reading for
// InstallSnapshot transfer, and retention (the newest N files).
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { SnapshotCorrupt, StorageIoError } from "./errors.ts"
import {
  SnapshotDecoder,
  SnapshotEncoder,
  type SnapshotRecord,
  type SnapshotSummary,
} from "./snapshotFile.ts"

/** Files are `snapshot-<index, 20 decimal digits>.snap`, so names sort like indexes. */
const NAME = /^snapshot-(\d{20})\.snap$/
const TEMP = /^\.snapshot-.*\.tmp$/
export const DEFAULT_KEEP = 2
const WRITE_BUFFER = 1024 * 1024
const READ_CHUNK = 1024 * 1024

export const snapshotFileName = (index: number): string => `snapshot-${String(index).padStart(20, "0")}.snap`

export interface SnapshotFileInfo {
  readonly path: string
  readonly index: number
}

export interface WrittenSnapshot extends SnapshotSummary {
  readonly path: string
}

/** Snapshot files in `dir`, newest (highest index) first. A missing directory holds none. */
export const listSnapshots = async (dir: string): Promise<SnapshotFileInfo[]> => {
  let names: string[]
  try {
    names = await fs.readdir(dir)
  } catch (e) {
    if (isNotFound(e)) return []
    throw ioError("list snapshots", e)
  }
  const out: SnapshotFileInfo[] = []
  for (const name of names) {
    const m = NAME.exec(name)
    if (m?.[1] !== undefined) out.push({ path: path.join(dir, name), index: Number(m[1]) })
  }
  return out.sort((a, b) => b.index - a.index)
}

/** Deletes all but the newest `keep` snapshot files; returns the paths removed. */
export const pruneSnapshots = async (dir: string, keep: number = DEFAULT_KEEP): Promise<string[]> => {
  const all = await listSnapshots(dir)
  const removed: string[] = []
  for (const f of all.slice(Math.max(keep, 1))) {
    await fs.rm(f.path, { force: true }).catch((e: unknown) => {
      throw ioError("prune snapshot", e)
    })
    removed.push(f.path)
  }
  if (removed.length > 0) await fsyncDir(dir)
  return removed
}

/** Removes temp files a crash left behind; call before any writer of this directory runs. */
export const removeStaleTempFiles = async (dir: string): Promise<string[]> => {
  let names: string[]
  try {
    names = await fs.readdir(dir)
  } catch (e) {
    if (isNotFound(e)) return []
    throw ioError("list snapshots", e)
  }
  const removed: string[] = []
  for (const name of names.filter((n) => TEMP.test(n))) {
    await fs.rm(path.join(dir, name), { force: true })
    removed.push(name)
  }
  return removed
}

/**
 * Writes a snapshot at `index` from `records` (strictly ascending, in chunks)
 * into `dir`, crash-safely: a temp file, fsync, rename to its final name,
 * fsync of the directory. A crash leaves either no file or a complete one.
 * Each chunk is encoded and hashed as one buffer (per-record awaits and
 * hash calls dominated the export of a large store).
 */
export const writeSnapshotFile = async (
  dir: string,
  index: number,
  records: AsyncIterable<ReadonlyArray<SnapshotRecord>>,
): Promise<WrittenSnapshot> => {
  await mkdirDurable(dir)
  const finalPath = path.join(dir, snapshotFileName(index))
  return writeDurably(dir, finalPath, async (write) => {
    const enc = new SnapshotEncoder()
    await write(enc.header(index))
    for await (const chunk of records) if (chunk.length > 0) await write(enc.records(chunk))
    const tail = enc.finish()
    await write(tail.bytes)
    return { path: finalPath, index, records: tail.records, bytes: enc.bytes, sha256: tail.sha256 }
  })
}

/**
 * Stores a snapshot received in chunks (InstallSnapshot) under its final name
 * in `dir`, after verifying it completely; a corrupt transfer leaves nothing.
 */
export const receiveSnapshotFile = async (
  dir: string,
  chunks: AsyncIterable<Uint8Array>,
): Promise<WrittenSnapshot> => {
  await mkdirDurable(dir)
  let finalPath = ""
  return writeDurably(
    dir,
    () => finalPath,
    async (write) => {
      const dec = new SnapshotDecoder("(received)")
      for await (const c of chunks) {
        dec.push(c)
        // Copied: the transport may reuse the chunk's memory after this turn.
        await write(c.slice())
      }
      const s = dec.end()
      finalPath = path.join(dir, snapshotFileName(s.index))
      return { ...s, path: finalPath }
    },
  )
}

/** Reads and verifies a whole snapshot file (framing, records, count, checksum). */
export const verifySnapshotFile = async (file: string): Promise<SnapshotSummary> => {
  const dec = new SnapshotDecoder(file)
  for await (const chunk of readChunks(file, READ_CHUNK)) dec.push(chunk)
  return dec.end()
}

/**
 * The records of a snapshot file, streamed. They are NOT verified until the
 * iteration finished without error (the checksum is at the end): load them
 * only into a place that is discarded if this throws.
 */
export async function* readSnapshotRecords(
  file: string,
  onEnd: (s: SnapshotSummary) => void,
): AsyncGenerator<SnapshotRecord> {
  const dec = new SnapshotDecoder(file)
  for await (const chunk of readChunks(file, READ_CHUNK)) yield* dec.push(chunk)
  onEnd(dec.end())
}

/** The file in chunks of `chunkSize` bytes (the last one may be shorter), for transfer. */
export async function* readChunks(file: string, chunkSize: number): AsyncGenerator<Uint8Array> {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new RangeError("chunkSize must be ≥ 1")
  let h: fs.FileHandle
  try {
    h = await fs.open(file, "r")
  } catch (e) {
    if (isNotFound(e)) {
      throw new SnapshotCorrupt({
        message: `snapshot ${file} does not exist`,
        path: file,
        reason: "Truncated",
      })
    }
    throw ioError("open snapshot", e)
  }
  try {
    for (;;) {
      // A fresh buffer per chunk: consumers may keep what they were given.
      const buf = new Uint8Array(chunkSize)
      let filled = 0
      while (filled < chunkSize) {
        const { bytesRead } = await h.read(buf, filled, chunkSize - filled, null)
        if (bytesRead === 0) break
        filled += bytesRead
      }
      if (filled > 0) yield filled === chunkSize ? buf : buf.subarray(0, filled)
      if (filled < chunkSize) return
    }
  } finally {
    await h.close()
  }
}

type Write = (b: Uint8Array) => Promise<void>

const writeDurably = async <A>(
  dir: string,
  finalPath: string | (() => string),
  body: (write: Write) => Promise<A>,
): Promise<A> => {
  const tmp = path.join(dir, `.snapshot-${process.pid}-${randomBytes(6).toString("hex")}.tmp`)
  let h: fs.FileHandle | undefined
  try {
    h = await fs.open(tmp, "wx", 0o600)
    const handle = h
    let pending: Uint8Array[] = []
    let pendingBytes = 0
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return
      const buf = pending.length === 1 ? pending[0]! : Buffer.concat(pending)
      pending = []
      pendingBytes = 0
      await writeAll(handle, buf)
    }
    const result = await body(async (b) => {
      pending.push(b)
      pendingBytes += b.length
      if (pendingBytes >= WRITE_BUFFER) await flush()
    })
    await flush()
    await h.sync()
    await h.close()
    h = undefined
    await fs.rename(tmp, typeof finalPath === "string" ? finalPath : finalPath())
    await fsyncDir(dir)
    return result
  } catch (e) {
    await h?.close().catch(() => {})
    await fs.rm(tmp, { force: true }).catch(() => {})
    if (e instanceof SnapshotCorrupt || e instanceof StorageIoError) throw e
    if (e instanceof Error && "_tag" in e) throw e
    throw ioError("write snapshot", e)
  }
}

const writeAll = async (h: fs.FileHandle, buf: Uint8Array): Promise<void> => {
  let off = 0
  while (off < buf.length) {
    const { bytesWritten } = await h.write(buf, off, buf.length - off, null)
    off += bytesWritten
  }
}

const mkdirDurable = async (dir: string): Promise<void> => {
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (e) {
    throw ioError("create snapshot directory", e)
  }
}

export const fsyncDir = async (dir: string): Promise<void> => {
  let h: fs.FileHandle | undefined
  try {
    h = await fs.open(dir, "r")
    await h.sync()
  } catch (e) {
    throw ioError("fsync directory", e)
  } finally {
    await h?.close().catch(() => {})
  }
}

const isNotFound = (e: unknown): boolean =>
  typeof e === "object" && e !== null && (e as { code?: unknown }).code === "ENOENT"

const ioError = (operation: string, cause: unknown): StorageIoError =>
  new StorageIoError({ message: `${operation} failed: ${String(cause)}`, operation, cause })
