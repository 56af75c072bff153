// A node whose LevelDB files were damaged while it was down refuses to start with
// CorruptLog naming the file and offset (SPEC §7), before LevelDB reads them
// (docs/reliability.md, bug 4: LevelDB aborted the process on a damaged table).
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { openStorage, RefuseStart, toStored } from "../../../src/node/storage.ts"
import { applierOf, layout, put } from "./storageFixture.ts"

/** A node with 400 applied entries; `reopen` turns each write-ahead log into a table. */
const node = async (reopen: boolean) => {
  const o = await layout("ekv-storage-damage-")
  const s = await openStorage(o)
  const a = applierOf(s)
  await a.apply(s.persisted.entries)
  const entries = Array.from({ length: 399 }, (_, k) => put(k + 2, `key-${k + 2}-${"x".repeat(200)}`))
  await s.log.persist({ entries: entries.map(toStored), hardState: { term: 1, vote: "n1", commit: 400 } })
  for (const e of entries) await a.apply([e])
  await s.sm.close()
  await s.log.close()
  if (reopen) {
    const again = await openStorage(o)
    await again.sm.close()
    await again.log.close()
  }
  return o
}

const flipBitIn = async (dir: string, suffix: string, offset: number) => {
  const names = (await fs.readdir(dir)).filter((f) => f.endsWith(suffix)).sort()
  for (const name of names) {
    const file = path.join(dir, name)
    const b = await fs.readFile(file)
    if (b.length <= offset) continue
    b[offset] = b[offset]! ^ 0x04
    await fs.writeFile(file, b)
    return name
  }
  throw new Error(`no ${suffix} file of more than ${offset} bytes in ${dir}`)
}

const refusal = (o: Awaited<ReturnType<typeof layout>>) =>
  openStorage(o).then(
    async (s) => {
      await s.sm.close()
      await s.log.close()
      return null
    },
    (e: unknown) => e,
  )

describe("node storage with damaged LevelDB files", () => {
  it("refuses with CorruptLog when a Raft-log table has a flipped bit", async () => {
    const o = await node(true)
    const table = await flipBitIn(o.raftDir, ".ldb", 5000)
    const r = await refusal(o)
    expect(r).toBeInstanceOf(RefuseStart)
    expect(r).toMatchObject({ code: "CorruptLog" })
    expect((r as RefuseStart).message).toMatch(
      new RegExp(
        `^Raft log at ${o.raftDir}: LevelDB file ${table} offset \\d+: data block checksum mismatch$`,
      ),
    )
    // Every restart refuses the same way; nothing was changed by the attempt.
    expect(await refusal(o)).toMatchObject({ code: "CorruptLog" })
  })

  it("refuses with CorruptLog when a Raft-log WAL record has a flipped bit", async () => {
    const o = await node(false)
    const wal = await flipBitIn(o.raftDir, ".log", 20_000)
    const r = await refusal(o)
    expect(r).toBeInstanceOf(RefuseStart)
    expect((r as RefuseStart).code).toBe("CorruptLog")
    expect((r as RefuseStart).message).toMatch(
      new RegExp(`LevelDB file ${wal} offset \\d+: record checksum mismatch`),
    )
  })

  it("refuses with CorruptLog when the state DB's WAL or MANIFEST has a flipped bit", async () => {
    for (const suffix of [".log", "MANIFEST"]) {
      const o = await node(false)
      const stateDb = path.join(o.stateDir, "db")
      const names = await fs.readdir(stateDb)
      const target = suffix === ".log" ? ".log" : names.find((n) => n.startsWith("MANIFEST-"))!
      const file = await flipBitIn(stateDb, target, suffix === ".log" ? 20_000 : 10)
      const r = await refusal(o)
      expect(r, suffix).toBeInstanceOf(RefuseStart)
      expect((r as RefuseStart).code).toBe("CorruptLog")
      expect((r as RefuseStart).message).toMatch(
        new RegExp(`^state machine at ${stateDb}: LevelDB file ${file} `),
      )
    }
  })

  it("starts when only the last record of the newest Raft-log WAL is torn (a crash mid-append)", async () => {
    const o = await node(false)
    const s = await openStorage(o)
    await s.log.persist({ entries: [toStored(put(401, "never-acknowledged"))] })
    await s.sm.close()
    await s.log.close()
    const wal = (await fs.readdir(o.raftDir)).find((f) => f.endsWith(".log"))!
    const file = path.join(o.raftDir, wal)
    await fs.truncate(file, (await fs.stat(file)).size - 5)
    const again = await openStorage(o)
    expect(again.persisted.entries.at(-1)?.index).toBe(400)
    await again.sm.close()
    await again.log.close()
  })
})
