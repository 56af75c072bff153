// The state-DB scrubber against real LevelDB directories written by
// classic-level: clean tables pass, a flipped bit in a live table is found
// (file and offset), tables that a compaction deletes meanwhile are skipped,
// and the read rate holds.
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { ClassicLevel } from "classic-level"
import { afterEach, describe, expect, it } from "vitest"
import { silentLog } from "../../../src/log.ts"
import { makeConsensusMetrics } from "../../../src/metrics.ts"
import { type LevelDbProblem, liveTables } from "../../../src/raftLog/levelDbFiles.ts"
import { paceDelayMs, StateScrubber, scrubPass } from "../../../src/stateMachine/scrubber.ts"

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})

const tempDir = async () => {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), "ekv-scrub-"))
  dirs.push(d)
  return d
}

const key = (i: number) => new TextEncoder().encode(`k${String(i).padStart(7, "0")}`)

const open = (dir: string, writeBufferSize?: number) =>
  new ClassicLevel<Uint8Array, Uint8Array>(dir, {
    keyEncoding: "view",
    valueEncoding: "view",
    ...(writeBufferSize === undefined ? {} : { writeBufferSize }),
  })

/** Writes keys [from, to) with random (incompressible) values of `size` bytes. */
const write = async (db: ClassicLevel<Uint8Array, Uint8Array>, from: number, to: number, size = 120) => {
  for (let i = from; i < to; i += 500) {
    const batch = db.batch()
    for (let k = i; k < Math.min(to, i + 500); k++) batch.put(key(k), randomBytes(size))
    await batch.write()
  }
}

/** A closed database whose data is in tables (the WAL is turned into a table at reopen). */
const database = async (entries: number, dir?: string) => {
  const d = dir ?? (await tempDir())
  const db = open(d)
  await db.open()
  await write(db, 0, entries)
  await db.close()
  await db.open()
  await db.close()
  const { tables } = await liveTables(d)
  if (tables.length === 0) throw new Error(`no table in ${await fs.readdir(d)}`)
  return { dir: d, tables }
}

const flipBit = async (file: string, offset: number) => {
  const fh = await fs.open(file, "r+")
  try {
    const b = Buffer.alloc(1)
    await fh.read(b, 0, 1, offset)
    b[0] = b[0]! ^ 0x10
    await fh.write(b, 0, 1, offset)
  } finally {
    await fh.close()
  }
}

const totalSize = async (dir: string, files: ReadonlyArray<{ file: string }>) => {
  let n = 0
  for (const f of files) n += (await fs.stat(path.join(dir, f.file))).size
  return n
}

describe("paceDelayMs", () => {
  it("waits until the bytes read fit the rate, and never at full speed", () => {
    expect(paceDelayMs(1 << 20, 1 << 20, 0)).toBe(1000)
    expect(paceDelayMs(1 << 20, 1 << 20, 400)).toBe(600)
    expect(paceDelayMs(1 << 20, 1 << 20, 1500)).toBe(0)
    expect(paceDelayMs(1 << 30, 0, 0)).toBe(0)
  })
})

describe("scrubPass", () => {
  it("passes a clean database and reads every live table whole", async () => {
    const { dir, tables } = await database(20_000)
    const pass = await scrubPass(dir, { bytesPerSec: 0 })
    expect(pass.problems).toEqual([])
    expect(pass.unreadable).toEqual([])
    expect(pass.skipped).toEqual([])
    expect(pass.tables).toBe(tables.length)
    expect(pass.bytes).toBe(await totalSize(dir, tables))
    // A missing directory and an empty one hold no tables.
    expect(await scrubPass(path.join(dir, "none"), { bytesPerSec: 0 })).toMatchObject({
      tables: 0,
      problems: [],
    })
    expect(await scrubPass(await tempDir(), { bytesPerSec: 0 })).toMatchObject({ tables: 0, problems: [] })
  })

  it("finds a flipped bit in a data block of a live table, naming the file and the block's offset", async () => {
    const { dir, tables } = await database(20_000)
    const t = tables.at(-1)!
    await flipBit(path.join(dir, t.file), 1000)
    const pass = await scrubPass(dir, { bytesPerSec: 0 })
    expect(pass.problems[0]).toEqual({ file: t.file, offset: 0, what: "data block checksum mismatch" })
    // Anywhere else in the table too: the end of the index block, the footer.
    for (const fromEnd of [60, 30]) {
      const fresh = await database(5_000)
      const last = fresh.tables.at(-1)!
      await flipBit(path.join(fresh.dir, last.file), last.size - fromEnd)
      const p = await scrubPass(fresh.dir, { bytesPerSec: 0 })
      expect(p.problems.length, `flip ${fromEnd} bytes before the end`).toBeGreaterThan(0)
      expect(p.problems[0]!.file).toBe(last.file)
    }
  })

  it("finds damage while LevelDB has the database open", async () => {
    const { dir, tables } = await database(20_000)
    await flipBit(path.join(dir, tables[0]!.file), 5000)
    const db = open(dir)
    await db.open()
    try {
      await write(db, 20_000, 21_000)
      const pass = await scrubPass(dir, { bytesPerSec: 0 })
      expect(pass.problems[0]).toMatchObject({ file: tables[0]!.file, what: "data block checksum mismatch" })
    } finally {
      await db.close()
    }
  })

  it("skips a damaged table that a compaction deleted while it was being read", async () => {
    // Before: the layout as it was listed; after: the same database once a compaction
    // replaced its tables. The pass lists "before", and the switch happens mid-read.
    const before = await database(20_000)
    const afterDir = await tempDir()
    for (const f of await fs.readdir(before.dir))
      await fs.copyFile(path.join(before.dir, f), path.join(afterDir, f))
    const db = open(afterDir)
    await db.open()
    await write(db, 20_000, 22_000)
    await db.compactRange(key(0), key(30_000))
    await db.close()
    const after = await liveTables(afterDir)
    const victim = before.tables[0]!
    expect(after.tables.map((t) => t.file)).not.toContain(victim.file)
    await flipBit(path.join(before.dir, victim.file), 1000)
    let switched = false
    const pass = await scrubPass(before.dir, {
      // A clock that stands still: every chunk waits, so `sleep` runs after the first one.
      bytesPerSec: 1 << 30,
      now: () => 0,
      sleep: async () => {
        if (switched) return
        switched = true
        // LevelDB's compaction: new tables and manifest written, CURRENT switched, old tables deleted.
        for (const f of await fs.readdir(afterDir))
          if (/^(\d+\.ldb|MANIFEST-\d+|CURRENT)$/.test(f))
            await fs.copyFile(path.join(afterDir, f), path.join(before.dir, f))
        for (const t of before.tables) await fs.rm(path.join(before.dir, t.file))
      },
    })
    expect(switched).toBe(true)
    expect(pass.problems).toEqual([])
    expect(pass.skipped).toContain(victim.file)
    // The same damage in a table that stays live is a finding.
    const again = await database(20_000)
    await flipBit(path.join(again.dir, again.tables[0]!.file), 1000)
    const kept = await scrubPass(again.dir, { bytesPerSec: 1 << 30, now: () => 0, sleep: async () => {} })
    expect(kept.problems).not.toEqual([])
  })

  it("reports nothing while LevelDB compacts and deletes tables under a slow pass", async () => {
    const dir = await tempDir()
    const db = open(dir, 256 * 1024)
    await db.open()
    try {
      await write(db, 0, 30_000)
      const passing = scrubPass(dir, { bytesPerSec: 4 << 20 })
      for (let round = 0; round < 5; round++) {
        await write(db, round * 6_000, round * 6_000 + 6_000)
        await db.compactRange(key(0), key(40_000))
      }
      const pass = await passing
      expect(pass.problems).toEqual([])
      expect(pass.skipped.length, "tables deleted by the compactions").toBeGreaterThan(0)
    } finally {
      await db.close()
    }
  })

  it("holds the read rate (elapsed / (bytes / rate) stays near 1)", async () => {
    const { dir } = await database(24_000)
    const full = await scrubPass(dir, { bytesPerSec: 0 })
    const rate = Math.max(1 << 20, Math.round(full.bytes / 0.6))
    const t0 = performance.now()
    const pass = await scrubPass(dir, { bytesPerSec: rate })
    const elapsed = performance.now() - t0
    const ratio = elapsed / ((pass.bytes / rate) * 1000)
    expect(pass.problems).toEqual([])
    expect(ratio).toBeGreaterThan(0.95)
    expect(ratio).toBeLessThan(2.5)
    // Full speed is much faster than the paced pass.
    expect(full.ms / elapsed).toBeLessThan(0.5)
  })
})

describe("StateScrubber", () => {
  const scrubber = (dir: string, onDamage: (p: ReadonlyArray<LevelDbProblem>) => void) => {
    const metrics = makeConsensusMetrics()
    const s = new StateScrubber({
      dir,
      bytesPerSec: 64 << 20,
      metrics,
      log: silentLog,
      onDamage,
      startDelayMs: 0,
      passIntervalMs: 20,
    })
    return { s, metrics }
  }
  const until = async (what: string, ok: () => boolean, ms = 10_000) => {
    const t0 = Date.now()
    while (!ok()) {
      if (Date.now() - t0 > ms) throw new Error(`${what}: not after ${ms} ms`)
      await new Promise((r) => setTimeout(r, 10))
    }
  }

  it("runs pass after pass over a clean database and counts them", async () => {
    const { dir, tables } = await database(10_000)
    const found: unknown[] = []
    const { s, metrics } = scrubber(dir, (p) => found.push(p))
    s.start()
    await until("three passes", () => metrics.scrubPasses.get() >= 3)
    await s.close()
    expect(found).toEqual([])
    expect(metrics.scrubBytes.get()).toBeGreaterThanOrEqual(3 * (await totalSize(dir, tables)))
    expect(metrics.scrubLastPassSeconds.get()).toBeGreaterThan(0)
    expect(metrics.scrubCorruptions.get()).toBe(0)
  })

  it("reports damage once and stops; verifyNow finds it at full speed", async () => {
    const { dir, tables } = await database(10_000)
    await flipBit(path.join(dir, tables[0]!.file), 2000)
    const found: ReadonlyArray<LevelDbProblem>[] = []
    const { s, metrics } = scrubber(dir, (p) => found.push(p))
    s.start()
    await until("damage reported", () => found.length > 0)
    await new Promise((r) => setTimeout(r, 100))
    await s.close()
    expect(found).toHaveLength(1)
    expect(found[0]![0]).toMatchObject({ file: tables[0]!.file, offset: 0 })
    expect(metrics.scrubCorruptions.get()).toBe(1)
    expect(metrics.scrubPasses.get()).toBe(0)
    expect((await s.verifyNow())[0]).toMatchObject({ file: tables[0]!.file })
    expect(found).toHaveLength(1)
  })

  it("does nothing in the background at rate 0", async () => {
    const { dir, tables } = await database(5_000)
    await flipBit(path.join(dir, tables[0]!.file), 2000)
    const found: unknown[] = []
    const metrics = makeConsensusMetrics()
    const s = new StateScrubber({
      dir,
      bytesPerSec: 0,
      metrics,
      log: silentLog,
      onDamage: (p) => found.push(p),
      startDelayMs: 0,
    })
    s.start()
    await new Promise((r) => setTimeout(r, 200))
    await s.close()
    expect(found).toEqual([])
    expect(metrics.scrubBytes.get()).toBe(0)
  })
})
