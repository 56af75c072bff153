import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ClassicLevel } from "classic-level"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  CorruptLog,
  decodeEntry,
  decodeHardState,
  encodeEntry,
  encodeHardState,
  entryKey,
  type StoredEntry,
} from "../../../src/raftLog/logRecord.ts"
import { RaftLogStore } from "../../../src/raftLog/logStore.ts"

const tmp = () => mkdtempSync(join(tmpdir(), "ekv-raftlog-"))
const entry = (index: number, term: number, text = `e${index}`): StoredEntry => ({
  index,
  term,
  type: 1,
  data: new TextEncoder().encode(text),
})
const range = (lo: number, hi: number, term: number) =>
  Array.from({ length: hi - lo + 1 }, (_, i) => entry(lo + i, term))

describe("log records", () => {
  it("round-trips entries and detects any flipped byte", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.integer({ min: 0, max: 255 }),
        fc.uint8Array({ maxLength: 64 }),
        fc.nat(),
        (index, term, type, data, flipAt) => {
          const rec = encodeEntry({ index, term, type, data })
          expect(decodeEntry(index, rec)).toEqual({ index, term, type, data })
          const bad = rec.slice()
          const at = flipAt % bad.length
          bad[at] = bad[at]! ^ 0x01
          expect(() => decodeEntry(index, bad)).toThrow(CorruptLog)
          // A record moved to another index fails too: the index is inside the checksum.
          expect(() => decodeEntry(index + 1, rec)).toThrow(CorruptLog)
        },
      ),
    )
  })

  it("round-trips the hard state, with and without a vote", () => {
    for (const h of [
      { term: 0, vote: null, commit: 0 },
      { term: 7, vote: "n2", commit: 123456 },
    ]) {
      expect(decodeHardState(encodeHardState(h))).toEqual(h)
    }
  })
})

describe("RaftLogStore", () => {
  it("persists hard state and entries and loads them after reopen", async () => {
    const dir = tmp()
    const { store, log } = await RaftLogStore.open(dir)
    expect(log).toEqual({ hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] })
    await store.persist({ hardState: { term: 2, vote: "n1", commit: 0 }, entries: range(1, 5, 2) })
    await store.persist({ hardState: { term: 2, vote: "n1", commit: 3 } })
    await store.close()
    const again = await RaftLogStore.open(dir)
    expect(again.log.hardState).toEqual({ term: 2, vote: "n1", commit: 3 })
    expect(again.log.entries).toEqual(range(1, 5, 2))
    expect(again.store.lastIndex).toBe(5)
    await again.store.close()
  })

  it("replaces a conflicting suffix atomically with the append", async () => {
    const dir = tmp()
    const { store } = await RaftLogStore.open(dir)
    await store.persist({ entries: range(1, 6, 1) })
    await store.persist({ entries: [entry(4, 2, "new4")] })
    expect(store.lastIndex).toBe(4)
    await store.close()
    const { store: s2, log } = await RaftLogStore.open(dir)
    expect(log.entries.map((e) => [e.index, e.term])).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
      [4, 2],
    ])
    await expect(s2.persist({ entries: [entry(9, 2)] })).rejects.toThrow(/gap/)
    await s2.close()
  })

  it("compacts to a snapshot and keeps only later entries", async () => {
    const dir = tmp()
    const { store } = await RaftLogStore.open(dir)
    await store.persist({ entries: range(1, 10, 1) })
    await store.persist({ snapshot: { index: 7, term: 1, conf: Uint8Array.of(9) } })
    await store.close()
    const { store: s2, log } = await RaftLogStore.open(dir)
    expect(log.snapshot).toEqual({ index: 7, term: 1, conf: Uint8Array.of(9) })
    expect(log.entries.map((e) => e.index)).toEqual([8, 9, 10])
    expect(await s2.entries(1, 10)).toHaveLength(3)
    // Installing a snapshot that conflicts with the log drops what follows it.
    await s2.persist({ snapshot: { index: 12, term: 3, conf: new Uint8Array() }, discardAfterSnapshot: true })
    expect(s2.lastIndex).toBe(12)
    await s2.persist({ entries: [entry(13, 3)] })
    await s2.close()
    const { store: s3, log: l3 } = await RaftLogStore.open(dir)
    expect(l3.snapshot?.index).toBe(12)
    expect(l3.entries.map((e) => e.index)).toEqual([13])
    await s3.close()
  })

  it("refuses to load a log whose entry was altered on disk", async () => {
    const dir = tmp()
    const { store } = await RaftLogStore.open(dir)
    await store.persist({ hardState: { term: 1, vote: "n1", commit: 2 }, entries: range(1, 3, 1) })
    await store.close()
    // Rewrite entry 2's record with one payload byte changed but the old checksum.
    const db = new ClassicLevel<Uint8Array, Uint8Array>(dir, { keyEncoding: "view", valueEncoding: "view" })
    const rec = (await db.get(entryKey(2)))!.slice()
    rec[rec.length - 1] = rec[rec.length - 1]! ^ 0xff
    await db.put(entryKey(2), rec)
    await db.close()
    await expect(RaftLogStore.open(dir)).rejects.toMatchObject({ _tag: "CorruptLog", index: 2 })
  })

  it("refuses with CorruptLog, before LevelDB reads them, when its LevelDB table or WAL files are damaged", async () => {
    const big = Array.from({ length: 200 }, (_, i) => ({
      ...entry(i + 1, 1),
      data: new Uint8Array(256).fill(i),
    }))
    for (const kind of [".ldb", ".log"]) {
      const dir = tmp()
      const { store } = await RaftLogStore.open(dir)
      await store.persist({ entries: big })
      await store.close()
      if (kind === ".ldb") {
        // Reopening turns the write-ahead log into a table.
        const again = await RaftLogStore.open(dir)
        await again.store.close()
      }
      const file = readdirSync(dir).find((f) => f.endsWith(kind) && readFileSync(join(dir, f)).length > 1000)
      expect(file, kind).toBeDefined()
      const p = join(dir, file!)
      const buf = readFileSync(p)
      buf[700] = buf[700]! ^ 0x10
      writeFileSync(p, buf)
      const r = await RaftLogStore.open(dir).then(
        () => null,
        (e: unknown) => e,
      )
      expect(r, kind).toBeInstanceOf(CorruptLog)
      expect((r as CorruptLog).reason).toMatch(
        new RegExp(`^LevelDB file ${file} offset \\d+: .*checksum mismatch`),
      )
    }
  })

  it("refuses a second opener of the same directory", async () => {
    const dir = tmp()
    const { store } = await RaftLogStore.open(dir)
    await expect(RaftLogStore.open(dir)).rejects.toThrow()
    await store.close()
  })
})
