// InstallSnapshot in chunks (SPEC §2). When the core emits a Snap message for
// follower X, the leader streams a snapshot file to X — the one its node
// prepares for it (`PrepareSnapshot`: at the core's snapshot index or, when
// no file was written there, a fresh one at the applied index) — by
// request/reply over `<p>.internal.<X>.raft.snap`, one chunk at a time, each
// acknowledged before the next (bounded memory on both sides). X writes the
// chunks to a temp file, verifies the whole file (framing, count, SHA-256),
// moves it into its snapshot directory, and only then steps the Snap message
// into its core (whose Ready makes the driver install it). The leader reports
// the result to its core with reportSnapshot; a failed or abandoned transfer
// is simply started again by the core later.
//
//   chunk request = header length u32 BE ‖ header (JSON) ‖ chunk bytes
//   header        = { id, from, to, term, index, snap_term, voters, learners, offset, last }
//   reply         = JSON { ok: true } | { ok: false, reason }
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { subjects } from "@ekv/wire"
import type { NatsConnection, Subscription } from "@nats-io/transport-node"
import type { NodeId, SnapshotMeta, SnapshotRequest } from "../raft/mod.ts"
import { fsyncDir, readChunks, snapshotFileName, verifySnapshotFile } from "../stateMachine/snapshotDir.ts"

export const CHUNK_BYTES = 512 * 1024
const CHUNK_TIMEOUT_MS = 15_000
const CHUNK_ATTEMPTS = 3
const RECEIVER_IDLE_MS = 60_000

interface ChunkHeader {
  readonly id: string
  readonly from: string
  readonly to: string
  readonly term: number
  readonly index: number
  readonly snap_term: number
  readonly voters: readonly string[]
  readonly learners: readonly string[]
  readonly offset: number
  readonly last: boolean
}

const utf8 = new TextEncoder()
const utf8Decoder = new TextDecoder("utf-8", { fatal: true })

const encodeChunk = (h: ChunkHeader, chunk: Uint8Array): Uint8Array => {
  const head = utf8.encode(JSON.stringify(h))
  const out = new Uint8Array(4 + head.length + chunk.length)
  new DataView(out.buffer).setUint32(0, head.length)
  out.set(head, 4)
  out.set(chunk, 4 + head.length)
  return out
}

const isIdList = (x: unknown): x is string[] =>
  Array.isArray(x) && x.every((s) => typeof s === "string" && s.length > 0 && s.length <= 256)
const isIndex = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0

const decodeChunk = (data: Uint8Array): { header: ChunkHeader; chunk: Uint8Array } | null => {
  try {
    if (data.length < 4) return null
    const n = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0)
    if (4 + n > data.length) return null
    const h = JSON.parse(utf8Decoder.decode(data.subarray(4, 4 + n))) as Record<string, unknown>
    if (
      typeof h.id !== "string" ||
      typeof h.from !== "string" ||
      typeof h.to !== "string" ||
      !isIndex(h.term) ||
      !isIndex(h.index) ||
      !isIndex(h.snap_term) ||
      !isIdList(h.voters) ||
      !isIdList(h.learners) ||
      !isIndex(h.offset) ||
      typeof h.last !== "boolean"
    )
      return null
    return { header: h as unknown as ChunkHeader, chunk: data.subarray(4 + n) }
  } catch {
    return null
  }
}

const reply = (ok: boolean, reason?: string): Uint8Array =>
  utf8.encode(JSON.stringify(ok ? { ok: true } : { ok: false, reason }))

export interface SnapshotTransferLog {
  info(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
}

/**
 * The file to send for a Snap message whose core snapshot is `meta`, with the
 * metadata of what the file holds (its index may be later than `meta`'s: the
 * follower then skips the entries the file already covers); null when there is
 * none to send now (the core asks again later).
 */
export type PrepareSnapshot = (meta: SnapshotMeta) => Promise<{ file: string; meta: SnapshotMeta } | null>

/** The leader side: one transfer per follower at a time. */
export class SnapshotSender {
  private readonly active = new Map<NodeId, { aborted: boolean }>()
  private readonly nc: NatsConnection
  private readonly prefix: string
  private readonly prepare: PrepareSnapshot
  private readonly report: (to: NodeId, ok: boolean) => void
  private readonly log: SnapshotTransferLog

  constructor(
    nc: NatsConnection,
    prefix: string,
    prepare: PrepareSnapshot,
    report: (to: NodeId, ok: boolean) => void,
    log: SnapshotTransferLog,
  ) {
    this.nc = nc
    this.prefix = prefix
    this.prepare = prepare
    this.report = report
    this.log = log
  }

  get inFlight(): number {
    return this.active.size
  }

  send(m: SnapshotRequest): void {
    if (this.active.has(m.to)) return
    const state = { aborted: false }
    this.active.set(m.to, state)
    void this.run(m, state).then(
      (ok) => {
        this.active.delete(m.to)
        if (!state.aborted) this.report(m.to, ok)
      },
      () => {
        this.active.delete(m.to)
        if (!state.aborted) this.report(m.to, false)
      },
    )
  }

  abortAll(): void {
    for (const s of this.active.values()) s.aborted = true
  }

  private async run(m: SnapshotRequest, state: { aborted: boolean }): Promise<boolean> {
    const prepared = await this.prepare(m.snapshot.meta)
    if (prepared === null) {
      this.log.warn("no snapshot file to send", { to: m.to, index: m.snapshot.meta.index })
      return false
    }
    const { file, meta } = prepared
    const size = await fs.stat(file).then(
      (s) => s.size,
      () => -1,
    )
    if (size < 0) {
      this.log.warn("snapshot file to send is missing", { to: m.to, index: meta.index })
      return false
    }
    const subject = subjects(this.prefix).internal(m.to).raft.kind("snap")
    const id = randomBytes(8).toString("hex")
    const started = Date.now()
    this.log.info("sending snapshot", { to: m.to, index: meta.index, bytes: size })
    let offset = 0
    const base = {
      id,
      from: m.from,
      to: m.to,
      term: m.term,
      index: meta.index,
      snap_term: meta.term,
      voters: meta.confState.voters,
      learners: meta.confState.learners,
    }
    // Look one chunk ahead so the last chunk is flagged as such (an empty file still sends one).
    const it = readChunks(file, CHUNK_BYTES)[Symbol.asyncIterator]()
    let cur = await it.next()
    for (;;) {
      if (state.aborted) {
        await it.return?.(undefined)
        return false
      }
      const chunk = cur.done === true ? new Uint8Array(0) : cur.value
      const next = cur.done === true ? cur : await it.next()
      const last = next.done === true
      const body = encodeChunk({ ...base, offset, last }, chunk)
      let acked = false
      for (let attempt = 0; attempt < CHUNK_ATTEMPTS && !acked && !state.aborted; attempt++) {
        try {
          const r = await this.nc.request(subject, body, { timeout: CHUNK_TIMEOUT_MS })
          const parsed = JSON.parse(utf8Decoder.decode(r.data)) as { ok?: boolean; reason?: string }
          if (parsed.ok === true) acked = true
          else {
            this.log.warn("snapshot chunk refused", { to: m.to, index: meta.index, reason: parsed.reason })
            await it.return?.(undefined)
            return false
          }
        } catch (e) {
          this.log.warn("snapshot chunk not acknowledged", { to: m.to, attempt, error: String(e) })
        }
      }
      if (!acked) {
        await it.return?.(undefined)
        return false
      }
      offset += chunk.length
      cur = next
      if (last) break
    }
    this.log.info("snapshot sent", { to: m.to, index: meta.index, bytes: offset, ms: Date.now() - started })
    return true
  }
}

interface Incoming {
  readonly id: string
  readonly tmp: string
  readonly fh: fs.FileHandle
  next: number
  lastActivity: number
}

/** The follower side: at most one transfer at a time (a new one replaces an old one). */
export class SnapshotReceiver {
  private current: Incoming | null = null
  private chain: Promise<void> = Promise.resolve()
  private readonly sub: Subscription
  private readonly idleTimer: ReturnType<typeof setInterval>
  private readonly incomingDir: string
  private readonly snapshotDir: string
  private readonly self: NodeId
  private readonly onComplete: (m: SnapshotRequest) => Promise<void>
  private readonly log: SnapshotTransferLog

  constructor(
    nc: NatsConnection,
    prefix: string,
    self: NodeId,
    incomingDir: string,
    snapshotDir: string,
    onComplete: (m: SnapshotRequest) => Promise<void>,
    log: SnapshotTransferLog,
  ) {
    this.self = self
    this.incomingDir = incomingDir
    this.snapshotDir = snapshotDir
    this.onComplete = onComplete
    this.log = log
    this.sub = nc.subscribe(subjects(prefix).internal(self).raft.kind("snap"), {
      callback: (err, msg) => {
        if (err !== null) return
        // Chunks are handled one at a time, in arrival order.
        this.chain = this.chain.then(async () => {
          let r: Uint8Array
          try {
            r = await this.handle(msg.data)
          } catch (e) {
            this.log.warn("snapshot chunk failed", { error: String(e) })
            await this.discard()
            r = reply(false, "receiver error")
          }
          try {
            msg.respond(r)
          } catch {
            // the requester is gone
          }
        })
      },
    })
    this.idleTimer = setInterval(() => {
      const c = this.current
      if (c !== null && Date.now() - c.lastActivity > RECEIVER_IDLE_MS) {
        this.chain = this.chain.then(() => this.discard())
      }
    }, 10_000)
    this.idleTimer.unref?.()
  }

  private async discard(): Promise<void> {
    const c = this.current
    this.current = null
    if (c === null) return
    await c.fh.close().catch(() => {})
    await fs.rm(c.tmp, { force: true }).catch(() => {})
  }

  private async handle(data: Uint8Array): Promise<Uint8Array> {
    const d = decodeChunk(data)
    if (d === null) return reply(false, "malformed chunk")
    const { header: h, chunk } = d
    if (h.to !== this.self) return reply(false, "wrong destination")
    if (h.offset === 0) {
      await this.discard()
      await fs.mkdir(this.incomingDir, { recursive: true, mode: 0o700 })
      const tmp = path.join(this.incomingDir, `.incoming-${h.id}.tmp`)
      const fh = await fs.open(tmp, "w", 0o600)
      this.current = { id: h.id, tmp, fh, next: 0, lastActivity: Date.now() }
      this.log.info("receiving snapshot", { from: h.from, index: h.index })
    }
    const c = this.current
    if (c === null || c.id !== h.id) return reply(false, "unknown transfer")
    if (h.offset !== c.next) return reply(false, `expected offset ${c.next}, got ${h.offset}`)
    let off = 0
    while (off < chunk.length) {
      const { bytesWritten } = await c.fh.write(chunk, off, chunk.length - off, null)
      off += bytesWritten
    }
    c.next += chunk.length
    c.lastActivity = Date.now()
    if (!h.last) return reply(true)

    await c.fh.sync()
    await c.fh.close()
    this.current = null
    try {
      const summary = await verifySnapshotFile(c.tmp)
      if (summary.index !== h.index) {
        await fs.rm(c.tmp, { force: true })
        return reply(false, `snapshot file is at ${summary.index}, expected ${h.index}`)
      }
      await fs.mkdir(this.snapshotDir, { recursive: true, mode: 0o700 })
      await fs.rename(c.tmp, path.join(this.snapshotDir, snapshotFileName(h.index)))
      await fsyncDir(this.snapshotDir)
    } catch (e) {
      await fs.rm(c.tmp, { force: true }).catch(() => {})
      this.log.warn("received snapshot does not verify", { index: h.index, error: String(e) })
      return reply(false, "snapshot does not verify")
    }
    this.log.info("snapshot received and verified", { from: h.from, index: h.index, bytes: c.next })
    await this.onComplete({
      type: "Snap",
      from: h.from,
      to: h.to,
      term: h.term,
      snapshot: {
        meta: { index: h.index, term: h.snap_term, confState: { voters: h.voters, learners: h.learners } },
        data: new Uint8Array(0),
      },
    })
    return reply(true)
  }

  async close(): Promise<void> {
    clearInterval(this.idleTimer)
    this.sub.unsubscribe()
    await this.chain
    await this.discard()
  }
}
