// Acceptance: the full encryption lifecycle on a 3-node cluster, as the
// operator, over real processes (NATS with §9 auth; keystore + consensus per
// node; admin):
// plaintext writes → capability fan-out → bootstrap (discover) →
// enable-storage-envelope → writes → rotate storage DEK → rewrite →
// enable-raft-envelope while 8 clients write concurrently (every
// acknowledged write readable afterwards; unacknowledged ones fully present
// or absent) → rotate raft DEK → rewrap-deks to a different KEK → restart
// every process with the new KEK as EKV_KEK_FILE → all data readable.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import {
  attemptsAsWritten,
  checkAttempts,
  firstMutator,
  halts,
  ok,
  readBack,
  Writers,
  type Written,
  waitForEncryption,
  waitForRewriteDone,
  writeSet,
} from "../../src/lifecycle.ts"
import { type CapabilityReport, type EkvSystem, startSystem } from "../../src/system.ts"

let sys: EkvSystem
const written: Written[] = []

beforeAll(async () => {
  sys = await startSystem({ name: "lifecycle" })
  await sys.waitForReady()
})

afterAll(async () => {
  await sys?.stopAll()
})

const onFail = () =>
  onTestFailed(async () => {
    sys.markFailed()
    console.error(await sys.failureReport())
  })

describe("full encryption lifecycle", () => {
  it("runs every phase and ends with all data readable under the new KEK", async () => {
    onFail()
    // 1. plaintext writes
    written.push(...(await writeSet(sys, "p0", 20)))
    const st0 = ok("status", await sys.encryptionStatus())
    expect(st0.phase).toBe("capable")

    // 2. capability fan-out: every member capable, one KEK, one next KEK
    const fan = ok(
      "capability fan-out",
      await sys.encryption<{
        members: { node: string; role: string; report?: CapabilityReport; error?: unknown }[]
      }>("capability", {}),
    )
    expect(fan.members.map((m) => m.node).sort()).toEqual([...sys.nodes].sort())
    for (const m of fan.members) {
      expect(m.error, `${m.node}: ${JSON.stringify(m.error)}`).toBeUndefined()
      expect(m.report?.encryption_capable).toBe(true)
      expect(m.report?.sidecar_present).toBe(false)
    }
    const kekA = fan.members[0]?.report?.kek_id
    const kekB = fan.members[0]?.report?.next_kek_id
    expect(kekA).toMatch(/^[0-9a-f]{16}$/)
    expect(kekB).toMatch(/^[0-9a-f]{16}$/)
    expect(kekB).not.toBe(kekA)
    for (const m of fan.members) {
      expect(m.report?.kek_id).toBe(kekA)
      expect(m.report?.next_kek_id).toBe(kekB)
    }

    // 3. bootstrap (discover)
    const boot = ok(
      "bootstrap",
      await firstMutator<{
        index: number
        storage_key_id: number
        raft_key_id: number
        writers: { node: string; full_node_id: string; node_id16: number; local_epoch: number }[]
      }>(sys, "bootstrap", { discover: true }),
    )
    expect(boot.storage_key_id).toBeGreaterThan(0)
    expect(boot.raft_key_id).toBeGreaterThan(0)
    expect(boot.raft_key_id).not.toBe(boot.storage_key_id)
    expect(boot.writers.map((w) => w.node).sort()).toEqual([...sys.nodes].sort())
    for (const w of boot.writers) expect(w.local_epoch).toBe(0)
    await sys.waitForApplied(boot.index)
    const st1 = ok("status", await sys.encryptionStatus())
    expect(st1.phase).toBe("bootstrapped")
    expect(st1.active).toEqual({ storage: boot.storage_key_id, raft: boot.raft_key_id })

    // 4. enable-storage-envelope (idempotent: a second call proposes nothing and returns the same index)
    const ese = ok(
      "enable-storage-envelope",
      await sys.encryption<{ index: number; bootstrapped: boolean }>("enable-storage-envelope"),
    )
    expect(ese.bootstrapped).toBe(false)
    const commitBefore = ok("cluster status", await sys.status()).commit_index
    const ese2 = ok(
      "enable-storage-envelope again",
      await sys.encryption<{ index: number; bootstrapped: boolean }>("enable-storage-envelope"),
    )
    expect(ese2.index).toBe(ese.index)
    expect(ok("cluster status", await sys.status()).commit_index).toBe(commitBefore)
    expect(ok("status", await sys.encryptionStatus()).phase).toBe("storage-envelope")

    // 5. writes
    written.push(...(await writeSet(sys, "s1", 20)))

    // 6. rotate the storage DEK
    const rot = ok(
      "rotate-dek storage",
      await sys.encryption<{ index: number; key_id: number }>("rotate-dek", { purpose: "storage" }),
    )
    expect(rot.key_id).not.toBe(boot.storage_key_id)
    expect(rot.key_id).not.toBe(boot.raft_key_id)
    await sys.waitForApplied(rot.index)
    expect(ok("status", await sys.encryptionStatus()).active.storage).toBe(rot.key_id)
    written.push(...(await writeSet(sys, "s2", 10)))

    // 7. rewrite: every node re-seals its cleartext and old-DEK versions
    const rw = ok("rewrite", await sys.encryption<{ started: string[] }>("rewrite", {}))
    expect([...rw.started].sort()).toEqual([...sys.nodes].sort())
    const afterRewrite = await waitForRewriteDone(sys, sys.nodes)
    for (const n of afterRewrite.nodes) {
      expect(n.cleartext_versions, `${String(n.node)} cleartext versions after rewrite`).toBe(0)
      const byKey = n.versions_by_key_id as Record<string, number>
      for (const [k, count] of Object.entries(byKey))
        if (count > 0) expect(Number(k), `${String(n.node)} versions under ${k}`).toBe(rot.key_id)
    }
    expect(await readBack(sys, written)).toEqual([])

    // 8. enable-raft-envelope while 8 clients write
    const writers = await Writers.start(sys, "cw", 8)
    await new Promise((r) => setTimeout(r, 1_500))
    const ere = ok(
      "enable-raft-envelope",
      await sys.encryption<{ index: number; cutover_index: number }>("enable-raft-envelope", {}, 60_000),
    )
    expect(ere.cutover_index).toBe(ere.index)
    await new Promise((r) => setTimeout(r, 1_500))
    await writers.stop()
    const acked = writers.acknowledged()
    expect(acked.length, "writes acknowledged while the cutover ran").toBeGreaterThan(20)
    expect(
      acked.some((a) => (a.index ?? 0) > ere.cutover_index),
      "writes acknowledged after the cutover",
    ).toBe(true)
    expect(await checkAttempts(sys, writers.attempts)).toEqual([])
    expect(ok("status", await sys.encryptionStatus()).phase).toBe("raft-envelope")

    // 9. rotate the raft DEK
    const rotR = ok(
      "rotate-dek raft",
      await sys.encryption<{ index: number; key_id: number }>("rotate-dek", { purpose: "raft" }),
    )
    expect(rotR.key_id).not.toBe(boot.raft_key_id)
    await sys.waitForApplied(rotR.index)
    written.push(...(await writeSet(sys, "r2", 10)))

    // 10. rewrap-deks to the next KEK: every member then reports it as its current KEK
    const rewrap = ok(
      "rewrap-deks",
      await sys.encryption<{ index: number; key_ids: number[] }>("rewrap-deks", {}),
    )
    expect([...rewrap.key_ids].sort()).toEqual(
      [boot.storage_key_id, boot.raft_key_id, rot.key_id, rotR.key_id].sort(),
    )
    await sys.waitForApplied(rewrap.index)
    for (const n of sys.nodes) {
      const cap = ok(`capability ${n}`, await sys.capability(n))
      expect(cap.kek_id, `${n} current KEK after rewrap`).toBe(kekB)
    }
    expect(await halts(sys)).toEqual([])

    // 11. restart every process with the new KEK as EKV_KEK_FILE (no next KEK)
    const stAll = ok("status", await sys.encryptionStatus())
    await sys.kill("admin")
    for (const n of sys.nodes) await sys.killNode(n)
    for (const n of sys.nodes)
      sys.setEnv(`keystore-${n}`, { EKV_KEK_FILE: sys.kekFile("b"), EKV_KEK_NEXT_FILE: "" })
    for (const n of sys.nodes) await sys.start(`keystore-${n}`)
    await Promise.all(sys.nodes.map((n) => sys.start(`consensus-${n}`)))
    await sys.startAdmin()
    await sys.waitForReady()
    for (const n of sys.nodes) {
      const cap = ok(`capability ${n}`, await sys.capability(n))
      expect(cap.encryption_capable).toBe(true)
      expect(cap.kek_id).toBe(kekB)
      expect(cap.next_kek_id).toBeNull()
    }

    // 12. all data readable
    expect(await readBack(sys, written)).toEqual([])
    expect(await checkAttempts(sys, writers.attempts)).toEqual([])
    expect(await readBack(sys, attemptsAsWritten(acked))).toEqual([])
    const stEnd = await waitForEncryption(sys, "raft-envelope phase after restart", (s) =>
      s.phase === "raft-envelope" ? s : undefined,
    )
    expect(stEnd.active).toEqual(stAll.active)
    expect(await halts(sys)).toEqual([])
  })
})
