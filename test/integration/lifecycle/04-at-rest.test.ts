// Acceptance: at rest. After the lifecycle (and a rewrite), every byte of
// every node's state-machine directory holds none of the values written after
// enable-storage-envelope, and every byte of its raft-log directory holds none
// of the keys or values written after enable-raft-envelope (values written
// between the two phases may remain in log entries up to the cutover). Across
// all stored envelopes of the cluster no (key_id, nonce) pair occurs twice
// with different envelope bytes (a snapshot copy is the same envelope).
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import {
  checkNonceReuse,
  collectEnvelopes,
  describeHits,
  describeReuse,
  scanForBytes,
} from "../../src/audit.ts"
import {
  firstMutator,
  keyNeedles,
  ok,
  readBack,
  valueNeedles,
  type Written,
  waitForRewriteDone,
  writeSet,
} from "../../src/lifecycle.ts"
import { type EkvSystem, startSystem } from "../../src/system.ts"

let sys: EkvSystem

beforeAll(async () => {
  sys = await startSystem({ name: "at-rest" })
  await sys.waitForReady()
})

afterAll(async () => {
  await sys?.stopAll()
})

describe("at rest", () => {
  it("holds no plaintext of protected writes and never reuses a (key_id, nonce)", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const p0 = await writeSet(sys, "p0", 20)

    const ese = ok(
      "enable-storage-envelope",
      await firstMutator<{ index: number; bootstrapped: boolean }>(sys, "enable-storage-envelope"),
    )
    expect(ese.bootstrapped).toBe(true)
    const afterStorage: Written[] = []
    afterStorage.push(...(await writeSet(sys, "s1", 30)))
    // Overwrites of plaintext keys: their new values are protected too.
    for (const w of p0.slice(0, 5)) {
      const value = Buffer.from(`${w.key}-sealed-`.padEnd(60, "x"))
      afterStorage.push({ key: w.key, value, index: await sys.putRetry(w.key, value) })
    }
    const rot = ok(
      "rotate-dek storage",
      await sys.encryption<{ index: number }>("rotate-dek", { purpose: "storage" }),
    )
    await sys.waitForApplied(rot.index)
    afterStorage.push(...(await writeSet(sys, "s2", 10)))
    ok("rewrite", await sys.encryption("rewrite", {}))
    await waitForRewriteDone(sys, sys.nodes)
    // Snapshots hold copies of stored envelopes (and compact the log).
    ok("snapshot", await sys.cluster("snapshot", {}))

    // Written between the phases, after the compaction: cleartext entries before the cutover (positive control).
    const between = await writeSet(sys, "m", 10)

    const ere = ok(
      "enable-raft-envelope",
      await sys.encryption<{ index: number; cutover_index: number }>("enable-raft-envelope", {}, 60_000),
    )
    const afterRaft: Written[] = []
    afterRaft.push(...(await writeSet(sys, "r1", 30)))
    const ops = Array.from({ length: 5 }, (_, i) => ({
      op: "put",
      key: `rb/${Buffer.from(`batch-key-${i}-`).toString("hex")}${Math.random().toString(36).slice(2)}`,
      value: Buffer.from(`batch-value-${i}-${Math.random().toString(36).slice(2)}`.padEnd(48, "z")),
    }))
    const b = ok(
      "batch",
      await sys.kv.batch(ops.map((o) => ({ op: "put", key: o.key, value: o.value.toString("base64") }))),
    )
    afterRaft.push(...ops.map((o) => ({ key: o.key, value: o.value, index: b.index })))
    const rotR = ok(
      "rotate-dek raft",
      await sys.encryption<{ index: number }>("rotate-dek", { purpose: "raft" }),
    )
    await sys.waitForApplied(rotR.index)
    afterRaft.push(...(await writeSet(sys, "r2", 10)))
    ok("rewrite", await sys.encryption("rewrite", {}))
    await waitForRewriteDone(sys, sys.nodes)
    const last = await sys.putRetry("zz/last", "last")
    await sys.waitForApplied(last)
    expect(await readBack(sys, [...afterStorage, ...between, ...afterRaft])).toEqual([])
    for (const w of afterRaft) expect(w.index).toBeGreaterThan(ere.cutover_index)

    await sys.kill("admin")
    for (const n of sys.nodes) await sys.killNode(n)

    const failures: string[] = []
    for (const n of sys.nodes) {
      const state = await scanForBytes([sys.stateDir(n)], valueNeedles([...afterStorage, ...afterRaft]))
      if (state.hits.length > 0)
        failures.push(`${n} state dir holds protected values:\n${describeHits(state.hits)}`)
      if (state.unparsed.length > 0) failures.push(`${n} state dir: unparsed ${state.unparsed.join("; ")}`)
      const raft = await scanForBytes(
        [sys.raftDir(n)],
        [...keyNeedles(afterRaft), ...valueNeedles(afterRaft)],
      )
      if (raft.hits.length > 0)
        failures.push(
          `${n} raft-log dir holds keys/values written after the cutover:\n${describeHits(raft.hits)}`,
        )
      if (raft.unparsed.length > 0) failures.push(`${n} raft dir: unparsed ${raft.unparsed.join("; ")}`)
      // Positive control: the scan does see cleartext log entries before the cutover.
      const control = await scanForBytes([sys.raftDir(n)], valueNeedles(between))
      if (new Set(control.hits.map((h) => h.needle)).size !== between.length)
        failures.push(
          `${n}: positive control failed: only ${control.hits.length} of ${between.length} pre-cutover values found in the raft log`,
        )
    }
    expect(failures.join("\n\n")).toBe("")

    const col = await collectEnvelopes(
      sys.nodes.map((n) => ({ node: n, stateDir: sys.stateDir(n), raftDir: sys.raftDir(n) })),
    )
    const issues: string[] = []
    if (col.malformed.length > 0) issues.push(`malformed envelopes: ${col.malformed.slice(0, 5).join("; ")}`)
    const storage = col.envelopes.filter((e) => e.kind === "storage").length
    const raft = col.envelopes.filter((e) => e.kind === "raft").length
    if (storage < 3 * 50) issues.push(`only ${storage} storage envelopes in the cluster`)
    if (raft < 3 * 40) issues.push(`only ${raft} raft envelopes in the cluster`)
    // The rewrite left no cleartext version; no user entry after the cutover is unsealed.
    if (col.cleartext.length > 0)
      issues.push(
        `${col.cleartext.length} cleartext versions after the rewrite, e.g. ${col.cleartext
          .slice(0, 3)
          .map((c) => `${c.node} ${c.source}`)
          .join(", ")}`,
      )
    const unsealed = col.unsealedEntries.filter((u) => u.index > ere.cutover_index)
    if (unsealed.length > 0)
      issues.push(`unsealed user entries after the cutover: ${JSON.stringify(unsealed.slice(0, 5))}`)
    const early = col.envelopes.filter((e) => e.kind === "raft" && e.index <= ere.cutover_index)
    if (early.length > 0)
      issues.push(`raft envelopes at or before the cutover: ${early.map((e) => e.source).join(", ")}`)
    const reuse = checkNonceReuse(col.envelopes)
    if (reuse.length > 0) issues.push(`(key_id, nonce) reused with other bytes:\n${describeReuse(reuse)}`)
    expect(issues.join("\n")).toBe("")
  })
})
