// Background verification of the state database's tables (docs/reliability.md,
// finding 2). classic-level never verifies LevelDB's block checksums, so a bit
// flip in a state-DB table would be served, or shipped in a snapshot file,
// unnoticed. The start checks only the WAL and MANIFEST (bounded by the write
// buffer); the tables grow with the data, so they are checked here instead,
// while the node runs: every block CRC of every live table of the current
// MANIFEST (levelDbFiles.ts `verifyTable`), at a bounded rate, pass after pass.
// Damage is a node-local fault (SPEC §2.2): the driver halts apply for good
// (`CorruptState`, raftNode.ts `haltOnDamage`).
//
// Tables are immutable once the manifest names them; LevelDB deletes them after
// a compaction. A table gone before it was opened is skipped, and so is one
// that fails its check but is no longer live by the time it is reported.
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { Log } from "../log.ts"
import type { ConsensusMetrics } from "../metrics.ts"
import { type LevelDbProblem, liveTables, verifyTable } from "../raftLog/levelDbFiles.ts"

/** Bytes read per chunk: the rate is held between chunks. */
const CHUNK_BYTES = 256 * 1024

/**
 * How long to wait before reading more, when `bytes` were read in `elapsedMs`,
 * to hold `bytesPerSec` on average (0 = full speed: never wait). Pure.
 */
export const paceDelayMs = (bytes: number, bytesPerSec: number, elapsedMs: number): number =>
  bytesPerSec <= 0 ? 0 : Math.max(0, (bytes / bytesPerSec) * 1000 - elapsedMs)

export interface ScrubPassOptions {
  /** Average read rate; 0 = full speed. */
  readonly bytesPerSec: number
  readonly now?: () => number
  readonly sleep?: (ms: number) => Promise<void>
  /** Checked between chunks: the pass ends early (`stopped`) once true. */
  readonly stopped?: () => boolean
  /** After every chunk read (metrics). */
  readonly onBytes?: (n: number) => void
}

export interface ScrubPass {
  /** Live tables read and checked. */
  readonly tables: number
  /** Tables that LevelDB deleted meanwhile (a compaction): not checked, never a finding. */
  readonly skipped: ReadonlyArray<string>
  readonly bytes: number
  /** Damage in a live table (the pass ends at the first damaged table). */
  readonly problems: ReadonlyArray<LevelDbProblem>
  /** The manifest could not be read now: nothing was checked (not damage found in a table). */
  readonly unreadable: ReadonlyArray<LevelDbProblem>
  readonly stopped: boolean
  readonly ms: number
}

const isGone = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "code" in e && (e as { code: unknown }).code === "ENOENT"

const realSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** One pass over the live tables of the LevelDB directory `dir`. */
export const scrubPass = async (dir: string, o: ScrubPassOptions): Promise<ScrubPass> => {
  const now = o.now ?? (() => performance.now())
  const sleep = o.sleep ?? realSleep
  const stopped = o.stopped ?? (() => false)
  const t0 = now()
  let bytes = 0
  let tables = 0
  const skipped: string[] = []
  const result = (problems: ReadonlyArray<LevelDbProblem>, unreadable: ReadonlyArray<LevelDbProblem>) => ({
    tables,
    skipped,
    bytes,
    problems,
    unreadable,
    stopped: stopped(),
    ms: now() - t0,
  })
  const live = await liveTables(dir)
  if (live.problems.length > 0) return result([], live.problems)

  for (const t of live.tables) {
    if (stopped()) break
    let fh: fs.FileHandle
    try {
      fh = await fs.open(path.join(dir, t.file), "r")
    } catch (e) {
      if (!isGone(e)) throw e
      skipped.push(t.file)
      continue
    }
    // An open handle keeps the contents even if LevelDB deletes the file meanwhile.
    let content: Uint8Array
    try {
      const size = (await fh.stat()).size
      content = new Uint8Array(size)
      let at = 0
      while (at < size) {
        if (stopped()) return result([], [])
        const { bytesRead } = await fh.read(content, at, Math.min(CHUNK_BYTES, size - at), at)
        if (bytesRead === 0) break
        at += bytesRead
        bytes += bytesRead
        o.onBytes?.(bytesRead)
        const wait = paceDelayMs(bytes, o.bytesPerSec, now() - t0)
        if (wait > 0) await sleep(wait)
      }
      if (at < size) content = content.subarray(0, at)
    } finally {
      await fh.close()
    }
    const problems = verifyTable(t.file, content, t.size)
    if (problems.length === 0) {
      tables++
      continue
    }
    // Damage counts only in a table that is still live: compaction may have replaced it.
    const again = await liveTables(dir)
    if (again.problems.length === 0 && !again.tables.some((x) => x.file === t.file)) {
      skipped.push(t.file)
      continue
    }
    tables++
    return result(problems, [])
  }
  return result([], [])
}

export interface StateScrubberOptions {
  /** The state database's LevelDB directory. */
  readonly dir: string
  /** EKV_SCRUB_BYTES_PER_SEC; 0 = no background passes (the check before an export stays). */
  readonly bytesPerSec: number
  readonly metrics: Pick<
    ConsensusMetrics,
    "scrubPasses" | "scrubBytes" | "scrubCorruptions" | "scrubLastPassSeconds"
  >
  readonly log: Log
  /** Damage in a live table: called once; the scrubber stops. */
  readonly onDamage: (problems: ReadonlyArray<LevelDbProblem>) => void
  /** Before the first pass (default 1 s). */
  readonly startDelayMs?: number
  /** At least this long from one pass's start to the next (default 10 s; a small store is not re-read nonstop). */
  readonly passIntervalMs?: number
}

/** The driver: passes in the background, and a full-speed check on demand. */
export class StateScrubber {
  private readonly o: StateScrubberOptions
  private closed = false
  private damaged = false
  private cancelSleep: (() => void) | null = null
  private running: Promise<void> | null = null

  constructor(o: StateScrubberOptions) {
    this.o = o
  }

  start(): void {
    if (this.o.bytesPerSec <= 0 || this.running !== null) return
    this.running = this.loop().catch((e: unknown) => {
      this.o.log.error("state scrubber stopped", { error: String(e) })
    })
  }

  async close(): Promise<void> {
    this.closed = true
    this.cancelSleep?.()
    await this.running
  }

  /**
   * Every live table checked now at full speed (before a snapshot file is
   * written from them); the problems of the first damaged one, reported
   * through `onDamage` too.
   */
  async verifyNow(): Promise<ReadonlyArray<LevelDbProblem>> {
    const pass = await scrubPass(this.o.dir, {
      bytesPerSec: 0,
      onBytes: (n) => this.o.metrics.scrubBytes.inc(undefined, n),
    })
    if (pass.problems.length > 0) this.report(pass.problems)
    return pass.problems
  }

  private report(problems: ReadonlyArray<LevelDbProblem>): void {
    this.o.metrics.scrubCorruptions.inc()
    if (this.damaged) return
    this.damaged = true
    this.cancelSleep?.()
    this.o.onDamage(problems)
  }

  private async loop(): Promise<void> {
    const interval = this.o.passIntervalMs ?? 10_000
    await this.sleep(this.o.startDelayMs ?? 1_000)
    while (!this.closed && !this.damaged) {
      let pass: ScrubPass
      try {
        pass = await scrubPass(this.o.dir, {
          bytesPerSec: this.o.bytesPerSec,
          sleep: (ms) => this.sleep(ms),
          stopped: () => this.closed || this.damaged,
          onBytes: (n) => this.o.metrics.scrubBytes.inc(undefined, n),
        })
      } catch (e) {
        // An I/O error (not a checksum): said, and tried again next pass.
        this.o.log.warn("state scrubber: pass failed; retried next pass", { error: String(e) })
        await this.sleep(interval)
        continue
      }
      if (pass.problems.length > 0) {
        this.report(pass.problems)
        return
      }
      if (pass.unreadable.length > 0)
        this.o.log.warn("state scrubber: manifest not readable now; retried next pass", {
          file: pass.unreadable[0]!.file,
          what: pass.unreadable[0]!.what,
        })
      else if (!pass.stopped) {
        this.o.metrics.scrubPasses.inc()
        this.o.metrics.scrubLastPassSeconds.set(pass.ms / 1000)
      }
      await this.sleep(Math.max(0, interval - pass.ms))
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.closed || this.damaged) return resolve()
      const t = setTimeout(() => {
        this.cancelSleep = null
        resolve()
      }, ms)
      this.cancelSleep = () => {
        clearTimeout(t)
        this.cancelSleep = null
        resolve()
      }
    })
  }
}
