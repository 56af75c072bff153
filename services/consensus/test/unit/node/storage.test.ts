import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { openStorage, RefuseStart, snapshotMark, toStored } from "../../../src/node/storage.ts"
import { applierOf, layout, put } from "./storageFixture.ts"

describe("node storage", () => {
  it("bootstraps a founding member once, starts a non-member empty, and reloads after a restart", async () => {
    const o = await layout()
    const s1 = await openStorage(o)
    expect(s1.bootstrapped).toBe(true)
    expect(s1.persisted.entries.map((e) => e.type)).toEqual(["ConfChange"])
    await s1.sm.close()
    await s1.log.close()
    const s2 = await openStorage(o)
    expect(s2.bootstrapped).toBe(false)
    expect(s2.persisted.entries.length).toBe(1)
    expect(s2.persisted.hardState.term).toBe(1)
    await s2.sm.close()
    await s2.log.close()

    const joiner = await openStorage({ ...(await layout()), nodeId: "n4" })
    expect(joiner.bootstrapped).toBe(false)
    expect(joiner.persisted.entries.length).toBe(0)
    expect(joiner.persisted.hardState.term).toBe(0)
    await joiner.sm.close()
    await joiner.log.close()
  })

  it("an empty data dir in an existing cluster rejoins instead of bootstrapping, and stays rejoining across restarts", async () => {
    const o = await layout()
    const evidence = { peer: "n2", clusterId: "ab".repeat(16), commitIndex: 40, term: 7 }
    let asked = 0
    const s1 = await openStorage({
      ...o,
      probeCluster: async () => {
        asked++
        return evidence
      },
    })
    expect(asked).toBe(1)
    expect(s1.bootstrapped).toBe(false)
    expect(s1.rejoining).toBe(true)
    expect(s1.rejoinEvidence).toEqual(evidence)
    expect(s1.persisted.entries).toEqual([])
    expect(s1.persisted.hardState).toEqual({ term: 7, vote: null, commit: 0, rejoining: true })
    await s1.sm.close()
    await s1.log.close()
    // A crash before any leader contact: still rejoining, and nobody is asked again.
    const s2 = await openStorage({ ...o, probeCluster: async () => null })
    expect(s2.rejoining).toBe(true)
    expect(s2.bootstrapped).toBe(false)
    expect(s2.persisted.hardState).toEqual({ term: 7, vote: null, commit: 0, rejoining: true })
    // Caught up by a leader: the core's next hard state has no flag; the store drops it.
    await s2.log.persist({ hardState: { term: 7, vote: "n2", commit: 0 } })
    await s2.sm.close()
    await s2.log.close()
    const s3 = await openStorage(o)
    expect(s3.rejoining).toBe(false)
    expect(s3.persisted.hardState).toEqual({ term: 7, vote: "n2", commit: 0 })
    await s3.sm.close()
    await s3.log.close()
  })

  it("a node outside EKV_PEERS (a promoted learner, wiped) rejoins too", async () => {
    const o = { ...(await layout()), nodeId: "n4" }
    const s = await openStorage({
      ...o,
      probeCluster: async () => ({ peer: "n1", clusterId: "", commitIndex: 1, term: 3 }),
    })
    expect(s.rejoining).toBe(true)
    expect(s.persisted.hardState).toEqual({ term: 3, vote: null, commit: 0, rejoining: true })
    await s.sm.close()
    await s.log.close()
  })

  it("bootstraps when no peer reports a cluster", async () => {
    const o = await layout()
    const s = await openStorage({ ...o, probeCluster: async () => null })
    expect(s.bootstrapped).toBe(true)
    expect(s.rejoining).toBe(false)
    await s.sm.close()
    await s.log.close()
  })

  it("refuses with CorruptLog when LevelDB rejects a damaged table of the state machine or the Raft log", async () => {
    for (const which of ["state", "raft"] as const) {
      const o = await layout()
      const s = await openStorage(o)
      const a = applierOf(s)
      const entries = Array.from({ length: 399 }, (_, k) => put(k + 2, `key-${k + 2}-${"x".repeat(200)}`))
      await s.log.persist({ entries: entries.map(toStored) })
      for (const e of entries) await a.apply([e])
      await s.sm.close()
      await s.log.close()
      // Reopening turns each write-ahead log into a table file; then truncate that table.
      const again = await openStorage(o)
      await again.sm.close()
      await again.log.close()
      const dir = which === "state" ? path.join(o.stateDir, "db") : o.raftDir
      const tables = (await fs.readdir(dir)).filter((f) => f.endsWith(".ldb"))
      expect(tables.length, `${which} has table files`).toBeGreaterThan(0)
      for (const t of tables) {
        const f = path.join(dir, t)
        await fs.truncate(f, Math.floor((await fs.stat(f)).size / 2))
      }
      const r = await openStorage(o).then(
        (x) => x,
        (e: unknown) => e,
      )
      expect(r, which).toBeInstanceOf(RefuseStart)
      expect(r, which).toMatchObject({ code: "CorruptLog" })
    }
  })

  it("gives both LevelDB databases the write buffer asked for: 6 MiB stays in a 64 MiB buffer, and flushes from LevelDB's 4 MiB", async () => {
    const tablesAfterWriting = async (writeBufferBytes: number | undefined) => {
      const o = await layout()
      const s = await openStorage(writeBufferBytes === undefined ? o : { ...o, writeBufferBytes })
      const a = applierOf(s)
      const entries = Array.from({ length: 1_600 }, (_, k) => put(k + 2, `${k + 2}-${"k".repeat(2_000)}`))
      // In batches, as the Raft loop writes: LevelDB switches buffers between writes, not within one.
      for (let i = 0; i < entries.length; i += 100)
        await s.log.persist({ entries: entries.slice(i, i + 100).map(toStored) })
      for (const e of entries) await a.apply([e])
      // Closing waits for a flush under way; it does not flush the buffer itself.
      await s.sm.close()
      await s.log.close()
      const tables = async (dir: string) => (await fs.readdir(dir)).filter((f) => f.endsWith(".ldb")).length
      return { raft: await tables(o.raftDir), state: await tables(path.join(o.stateDir, "db")) }
    }
    const small = await tablesAfterWriting(undefined)
    expect(small.raft).toBeGreaterThan(0)
    expect(small.state).toBeGreaterThan(0)
    expect(await tablesAfterWriting(64 << 20)).toEqual({ raft: 0, state: 0 })
  })

  it("refuses a second opener with DataDirLocked", async () => {
    const o = await layout()
    const s = await openStorage(o)
    await expect(openStorage(o)).rejects.toMatchObject({ code: "DataDirLocked" })
    await expect(openStorage(o)).rejects.toBeInstanceOf(RefuseStart)
    await s.sm.close()
    await s.log.close()
  })

  it("re-installs the snapshot file when the state machine is behind the log's snapshot mark", async () => {
    const o = await layout()
    const s = await openStorage(o)
    const entries = [put(2, "a"), put(3, "b"), put(4, "c")]
    await s.log.persist({ entries: entries.map(toStored), hardState: { term: 1, vote: null, commit: 4 } })
    const applier = applierOf(s)
    await applier.apply(s.persisted.entries)
    await applier.apply(entries)
    const exp = await s.sm.exportSnapshot(o.snapshotDir)
    expect(exp.index).toBe(4)
    await s.log.persist({ snapshot: snapshotMark(4, 1, applier.membership) })
    await s.sm.close()
    await s.log.close()
    // The state machine loses everything (as after a crash before its writes reached the disk).
    await fs.rm(path.join(o.stateDir, "db"), { recursive: true, force: true })

    const again = await openStorage(o)
    expect(again.sm.appliedIndex()).toBe(4)
    expect(again.persisted.applied).toBe(4)
    expect(again.persisted.snapshotMeta).toEqual({
      index: 4,
      term: 1,
      confState: { voters: ["n1", "n2", "n3"], learners: [] },
    })
    expect(again.persisted.entries.length).toBe(0)
    expect(again.replayEntries).toBe(0)
    const r = await again.sm.get("b")
    expect(r.found).toBe(true)
    await again.sm.close()
    await again.log.close()
  })

  it("refuses to start when the state machine is beyond the log", async () => {
    const o = await layout()
    const s = await openStorage(o)
    const applier = applierOf(s)
    await applier.apply(s.persisted.entries)
    await applier.apply([put(2, "a")])
    await s.sm.close()
    await s.log.close()
    await expect(openStorage(o)).rejects.toMatchObject({ code: "CorruptLog" })
  })
})
