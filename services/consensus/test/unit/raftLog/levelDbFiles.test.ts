// The LevelDB file verifier against real LevelDB directories written by
// classic-level, damaged the way the nemesis damages them.
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { ClassicLevel } from "classic-level"
import fc from "fast-check"
import { afterEach, describe, expect, it } from "vitest"
import { crc32c, maskCrc, unmaskCrc } from "../../../src/raftLog/crc32c.ts"
import {
  applyVersionEdits,
  describeProblems,
  readLogFile,
  verifyLevelDbDir,
  verifyTable,
} from "../../../src/raftLog/levelDbFiles.ts"
import { Prng } from "../../sim/prng.ts"

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})

const text = (s: string) => new TextEncoder().encode(s)
const key = (i: number) => text(`k${String(i).padStart(6, "0")}`)
// Half-random values: snappy compresses them a little, and tables get many data blocks.
const value = (i: number) => text(`${i}:${"x".repeat(40)}:${(i * 2654435761) >>> 0}`.repeat(3))

const open = (dir: string) =>
  new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: "view", valueEncoding: "view" })

const write = async (dir: string, from: number, to: number) => {
  const db = open(dir)
  await db.open()
  for (let i = from; i < to; i += 100) {
    const batch = db.batch()
    for (let k = i; k < Math.min(to, i + 100); k++) batch.put(key(k), value(k))
    await batch.write({ sync: true })
  }
  await db.close()
}

/** A database with a table (entries 0–3999: the WAL is turned into a table at reopen) and a WAL (4000–4999). */
const database = async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "ekv-ldbfiles-"))
  dirs.push(dir)
  await write(dir, 0, 4000)
  await write(dir, 4000, 5000)
  const names = await fs.readdir(dir)
  const table = names.find((n) => n.endsWith(".ldb"))
  const wal = names.filter((n) => n.endsWith(".log")).sort()
  const manifest = names.find((n) => n.startsWith("MANIFEST-"))
  if (table === undefined || wal.length !== 1 || manifest === undefined) throw new Error(`layout: ${names}`)
  return { dir, table, wal: wal[0]!, manifest }
}

const readBytes = async (file: string) => new Uint8Array(await fs.readFile(file))

const flipBit = async (file: string, offset: number, bit = 0) => {
  const b = await readBytes(file)
  b[offset] = b[offset]! ^ (1 << bit)
  await fs.writeFile(file, b)
}

/** The footer's two block handles (offset, size): metaindex, then index. */
const footer = (b: Uint8Array) => {
  let pos = b.length - 48
  const varint = () => {
    let v = 0
    for (let shift = 0; ; shift += 7) {
      const byte = b[pos++]!
      v += (byte & 0x7f) * 2 ** shift
      if (byte < 0x80) return v
    }
  }
  const metaindex = { offset: varint(), size: varint() }
  const index = { offset: varint(), size: varint() }
  return { metaindex, index, handlesEnd: pos }
}

describe("crc32c", () => {
  it("matches the standard test vectors and extends", () => {
    expect(crc32c(text("123456789"))).toBe(0xe3069283)
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa) // RFC 3720 B.4
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43)
    const all = text("The quick brown fox jumps over the lazy dog, twice or more")
    for (const cut of [0, 1, 7, 8, 9, 30, all.length])
      expect(crc32c(all.subarray(cut), crc32c(all.subarray(0, cut)))).toBe(crc32c(all))
  })

  it("masks as LevelDB does and unmasks back", () => {
    expect(maskCrc(0)).toBe(0xa282ead8)
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (c) => unmaskCrc(maskCrc(c)) === c))
  })
})

describe("verifyLevelDbDir", () => {
  it("accepts a clean database, a missing directory and an empty one", async () => {
    const { dir } = await database()
    const r = await verifyLevelDbDir(dir, { tables: "checksums" })
    expect(r.problems).toEqual([])
    expect(r.files).toBe(4) // CURRENT, manifest, WAL, table
    expect(await verifyLevelDbDir(dir, { tables: "sizes" })).toMatchObject({ problems: [] })
    expect(await verifyLevelDbDir(path.join(dir, "nothing-here"), { tables: "checksums" })).toEqual({
      problems: [],
      files: 0,
      bytes: 0,
    })
    const empty = await fs.mkdtemp(path.join(os.tmpdir(), "ekv-ldbfiles-"))
    dirs.push(empty)
    expect((await verifyLevelDbDir(empty, { tables: "checksums" })).problems).toEqual([])
  })

  it("parses a snappy-compressed index block", async () => {
    const { dir, table } = await database()
    const b = await readBytes(path.join(dir, table))
    const { index } = footer(b)
    expect(b[index.offset + index.size], "the index block is compressed").toBe(1)
    expect(verifyTable(table, b)).toEqual([])
  })

  it("reports a flipped bit in a table's data block", async () => {
    const { dir, table } = await database()
    await flipBit(path.join(dir, table), 100, 3)
    const r = await verifyLevelDbDir(dir, { tables: "checksums" })
    expect(r.problems).toEqual([{ file: table, offset: 0, what: "data block checksum mismatch" }])
    expect(describeProblems(r.problems)).toBe(`LevelDB file ${table} offset 0: data block checksum mismatch`)
    // The state DB's mode does not read tables.
    expect((await verifyLevelDbDir(dir, { tables: "sizes" })).problems).toEqual([])
  })

  it("reports a flipped bit in a table's index block", async () => {
    const { dir, table } = await database()
    const { index } = footer(await readBytes(path.join(dir, table)))
    await flipBit(path.join(dir, table), index.offset + 7, 6)
    expect((await verifyLevelDbDir(dir, { tables: "checksums" })).problems).toEqual([
      { file: table, offset: index.offset, what: "index block checksum mismatch" },
    ])
  })

  it("reports a flipped bit anywhere in a table's footer", async () => {
    const { dir, table } = await database()
    const file = path.join(dir, table)
    const clean = await readBytes(file)
    const { handlesEnd } = footer(clean)
    const footerAt = clean.length - 48
    for (const [at, what] of [
      [footerAt, /metaindex block|bytes not in any block|blocks overlap|outside the file/],
      [handlesEnd - 1, /index block|bytes not in any block|outside the file|not minimally encoded/],
      [handlesEnd + 2, /footer padding is not zero/],
      [clean.length - 1, /bad table magic number/],
    ] as const) {
      for (let bit = 0; bit < 8; bit++) {
        await fs.writeFile(file, clean)
        await flipBit(file, at, bit)
        const r = await verifyLevelDbDir(dir, { tables: "checksums" })
        expect(r.problems.length, `offset ${at} bit ${bit}`).toBeGreaterThan(0)
        expect(r.problems[0]!.file).toBe(table)
        expect(r.problems.map((p) => p.what).join("; ")).toMatch(what)
      }
    }
  })

  it("reports a table that is missing or not the size the manifest recorded", async () => {
    const { dir, table } = await database()
    const file = path.join(dir, table)
    const size = (await fs.stat(file)).size
    await fs.truncate(file, size - 1000)
    for (const tables of ["checksums", "sizes"] as const) {
      const r = await verifyLevelDbDir(dir, { tables })
      expect(r.problems[0]).toEqual({
        file: table,
        offset: null,
        what: `size ${size - 1000}, the manifest says ${size}`,
      })
    }
    await fs.rm(file)
    expect((await verifyLevelDbDir(dir, { tables: "sizes" })).problems).toEqual([
      { file: table, offset: null, what: "live table named by the manifest is missing" },
    ])
  })

  it("ignores a table the manifest does not name (a compaction's output cut short by a kill)", async () => {
    const { dir } = await database()
    await fs.writeFile(path.join(dir, "000099.ldb"), text("half a table"))
    expect((await verifyLevelDbDir(dir, { tables: "checksums" })).problems).toEqual([])
  })

  it("reports a flipped bit in a WAL record, including the last one", async () => {
    const { dir, wal } = await database()
    const file = path.join(dir, wal)
    const clean = await readBytes(file)
    const records = readLogFile(wal, clean, true)
    expect(records.problems).toEqual([])
    expect(records.records.length).toBe(10)
    for (const at of [5000, clean.length - 3]) {
      await fs.writeFile(file, clean)
      await flipBit(file, at, 2)
      const r = await verifyLevelDbDir(dir, { tables: "checksums" })
      expect(r.problems).toHaveLength(1)
      expect(r.problems[0]).toMatchObject({ file: wal, what: "record checksum mismatch" })
      expect(r.problems[0]!.offset).toBeLessThanOrEqual(at)
    }
  })

  it("reports a damaged length of the WAL's last record, even when it then runs past the end", async () => {
    const { dir, wal } = await database()
    const file = path.join(dir, wal)
    const clean = await readBytes(file)
    const last = lastRecordOffset(clean)
    const length = clean[last + 4]! | (clean[last + 5]! << 8)
    expect(last + 7 + length).toBe(clean.length)
    for (const bit of [0, 1, 2, 3, 4, 5, 6, 7]) {
      for (const byte of [4, 5]) {
        await fs.writeFile(file, clean)
        await flipBit(file, last + byte, bit)
        const r = await verifyLevelDbDir(dir, { tables: "checksums" })
        expect(r.problems, `byte ${byte} bit ${bit}`).toHaveLength(1)
        expect(r.problems[0]).toMatchObject({ file: wal, offset: last })
      }
    }
  })

  it("accepts a torn WAL tail (last record cut, header cut, zero-filled) and LevelDB opens it", async () => {
    const { dir, wal } = await database()
    const file = path.join(dir, wal)
    const clean = await readBytes(file)
    const last = lastRecordOffset(clean)
    const cuts = [Math.floor((last + clean.length) / 2), last + 3, last + 7]
    for (const cut of cuts) {
      await fs.writeFile(file, clean.subarray(0, cut))
      const torn = readLogFile(wal, clean.subarray(0, cut), true)
      expect(torn.problems, `cut at ${cut}`).toEqual([])
      expect(torn.tornTail?.offset).toBe(last)
      expect((await verifyLevelDbDir(dir, { tables: "checksums" })).problems).toEqual([])
      // The same cut in a log that is not the newest is damage.
      expect(readLogFile(wal, clean.subarray(0, cut), false).problems).toHaveLength(1)
    }
    const zeroFilled = new Uint8Array(clean.length + 5000)
    zeroFilled.set(clean)
    expect(readLogFile(wal, zeroFilled, true)).toMatchObject({
      problems: [],
      tornTail: { offset: clean.length },
    })
    // LevelDB drops the torn batch and keeps everything before it.
    await fs.writeFile(file, clean.subarray(0, cuts[0]))
    const db = open(dir)
    await db.open()
    expect(await db.get(key(4899))).toBeDefined()
    expect(await db.get(key(4999))).toBeUndefined()
    await db.close()
  })

  it("reports a flipped bit in the MANIFEST and a CURRENT that names no manifest", async () => {
    const { dir, manifest } = await database()
    const file = path.join(dir, manifest)
    const clean = await readBytes(file)
    expect(applyVersionEdits(readLogFile(manifest, clean, true).records)).toMatchObject({
      logNumber: expect.any(Number),
    })
    for (let at = 0; at < clean.length; at++) {
      await fs.writeFile(file, clean)
      await flipBit(file, at, at % 8)
      const r = await verifyLevelDbDir(dir, { tables: "checksums" })
      expect(r.problems.length, `offset ${at}`).toBeGreaterThan(0)
      expect(r.problems[0]!.file).toBe(manifest)
    }
    await fs.writeFile(file, clean)
    await fs.writeFile(path.join(dir, "CURRENT"), "MANIFEST-000777\n")
    expect((await verifyLevelDbDir(dir, { tables: "checksums" })).problems).toEqual([
      { file: "CURRENT", offset: 0, what: "names MANIFEST-000777, which does not exist" },
    ])
    await fs.writeFile(path.join(dir, "CURRENT"), manifest) // no newline
    expect((await verifyLevelDbDir(dir, { tables: "checksums" })).problems[0]?.what).toBe(
      "does not name a manifest",
    )
    await fs.rm(path.join(dir, "CURRENT"))
    expect((await verifyLevelDbDir(dir, { tables: "checksums" })).problems[0]).toMatchObject({
      file: "CURRENT",
      what: expect.stringMatching(/^missing, while/),
    })
  })

  it("reports every one of 400 seeded random bit flips in table files and WALs, never throwing", async () => {
    const { dir, table, wal } = await database()
    const prng = new Prng(4)
    for (const name of [table, wal]) {
      const clean = await readBytes(path.join(dir, name))
      for (let n = 0; n < 200; n++) {
        const damaged = clean.slice()
        const flips = 1 + prng.int(8)
        const at: number[] = []
        for (let k = 0; k < flips; k++) {
          const offset = prng.int(damaged.length)
          damaged[offset] = damaged[offset]! ^ (1 << prng.int(8))
          at.push(offset)
        }
        // Flips that cancel out leave the file intact.
        if (damaged.every((b, i) => b === clean[i])) continue
        const problems =
          name === table
            ? verifyTable(name, damaged, clean.length)
            : readLogFile(name, damaged, true).problems
        expect(problems.length, `${name}: flips at ${at}`).toBeGreaterThan(0)
      }
    }
  })

  it("never throws or reads out of bounds on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, torn) => {
        verifyTable("t.ldb", bytes)
        const log = readLogFile("x.log", bytes, torn)
        applyVersionEdits([bytes, ...log.records])
      }),
      { numRuns: 2000 },
    )
    // Tables that end in a valid footer and magic number, pointing at random handles.
    const magic = Uint8Array.of(0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb)
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.uint8Array({ minLength: 40, maxLength: 40 }),
        (body, f) => {
          const t = new Uint8Array(body.length + 48)
          t.set(body)
          t.set(f, body.length)
          t.set(magic, body.length + 40)
          expect(verifyTable("t.ldb", t).length).toBeGreaterThan(0)
        },
      ),
      { numRuns: 2000 },
    )
  })
})

/** The offset of the last physical record of a log file that ends exactly after it. */
const lastRecordOffset = (b: Uint8Array): number => {
  let pos = 0
  let last = 0
  while (pos + 7 <= b.length) {
    const blockLeft = 32768 - (pos % 32768)
    if (blockLeft < 7) {
      pos += blockLeft
      continue
    }
    last = pos
    pos += 7 + (b[pos + 4]! | (b[pos + 5]! << 8))
  }
  return last
}
