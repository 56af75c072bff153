// Positive controls for the at-rest audits (test/src/audit.ts): on a cluster
// without encryption every value is cleartext, so the byte scan must find
// every one of them in every node's state-machine and Raft-log directories
// (including after LevelDB moved them into compressed tables), the LevelDB
// walkers must see every version and log entry, and the registry/sidecar
// readers must cope with a keystore that has none.
import { randomBytes } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import {
  checkNonceReuse,
  collectEnvelopes,
  describeHits,
  raftLogEntries,
  readSidecarFile,
  registryRows,
  scanForBytes,
  stateVersions,
} from "../../src/audit.ts"
import { type EkvSystem, startSystem } from "../../src/system.ts"

let sys: EkvSystem

beforeAll(async () => {
  // A 1 MiB write buffer (the default is 32 MiB), so the values below reach LevelDB tables.
  sys = await startSystem({ name: "audit", encryption: false, env: { EKV_LEVELDB_WRITE_BUFFER_MB: "1" } })
  await sys.waitForReady()
})

afterAll(async () => {
  await sys?.stopAll()
})

describe("at-rest audit tools", () => {
  it("find every cleartext value in every node's files, raw and inside LevelDB tables", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    // Compressible values, > 4 MiB in all, push LevelDB (1 MiB buffers) into writing (Snappy-compressed) tables.
    const needles: { key: string; value: Buffer }[] = []
    for (let b = 0; b < 3; b++) {
      const ops: unknown[] = []
      for (let i = 0; i < 80; i++) {
        const value = Buffer.concat([
          Buffer.from(`audit-${b}-${i}-`),
          randomBytes(24),
          Buffer.alloc(24_000, 0x61),
        ])
        const key = `audit/${randomBytes(12).toString("base64url")}`
        ops.push({ op: "put", key, value: value.toString("base64") })
        needles.push({ key, value: value.subarray(0, 36) })
      }
      const r = await sys.kv.batch(ops, 30_000)
      expect(r.ok, JSON.stringify(r)).toBe(true)
    }
    const last = await sys.putRetry("audit/last", "x")
    await sys.waitForApplied(last)
    for (const n of sys.nodes) await sys.killNode(n)

    for (const n of sys.nodes) {
      const report = await scanForBytes(
        [sys.stateDir(n), sys.raftDir(n)],
        needles.map((x) => ({ label: x.key, bytes: x.value })),
      )
      expect(report.unparsed).toEqual([])
      const found = new Set(report.hits.map((h) => h.needle))
      expect(found.size, describeHits(report.hits)).toBe(needles.length)
      expect(report.hits.some((h) => h.where.startsWith("table-"))).toBe(true)
      const keys = await scanForBytes(
        [sys.raftDir(n)],
        needles.map((x) => ({ label: x.key, bytes: Buffer.from(x.key) })),
      )
      expect(new Set(keys.hits.map((h) => h.needle)).size).toBe(needles.length)

      const versions = await stateVersions(`${sys.stateDir(n)}/db`)
      for (const x of needles) expect(versions.some((v) => v.key === x.key && v.state === 0)).toBe(true)
      const entries = await raftLogEntries(sys.raftDir(n))
      expect(entries.length).toBeGreaterThan(3)
      expect(await registryRows(sys.keystoreDir(n))).toEqual([])
      expect(await readSidecarFile(sys.sidecarPath(n))).toBeUndefined()
    }
    const col = await collectEnvelopes(
      sys.nodes.map((n) => ({ node: n, stateDir: sys.stateDir(n), raftDir: sys.raftDir(n) })),
    )
    expect(col.envelopes).toEqual([])
    expect(col.malformed).toEqual([])
    expect(col.unsealedEntries.length).toBeGreaterThanOrEqual(3 * 4)
    expect(checkNonceReuse(col.envelopes)).toEqual([])
  })
})
