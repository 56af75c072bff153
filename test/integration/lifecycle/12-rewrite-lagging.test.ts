// Acceptance (SPEC §2.4 rewrite, §6): `rewrite` right after `rotate-dek`
// leaves no version under the previous storage DEK on any node, also on a
// follower that applies behind the leader. Such a follower can get the rewrite
// before it has applied the rotation (so the old DEK still looks active to it)
// and, once it has, still seals new versions under the old DEK until its own
// registration of the new one commits (SPEC §6). A rewrite that scanned at
// that moment reported done and left those versions under the old DEK — the
// CI failure of stop 15 (01-full-lifecycle, "n2 versions under …").
//
// The harness makes the lag certain: n3's every apply batch waits before its
// state write (EKV_TEST_FAULT_APPLY_WRITE_DELAY_MS), and n1 leads.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { firstMutator, leadOn, ok, readBack, waitForRewriteDone, writeSet } from "../../src/lifecycle.ts"
import { type EkvSystem, startSystem } from "../../src/system.ts"

const LAGGING = "n3"
let sys: EkvSystem

beforeAll(async () => {
  sys = await startSystem({
    name: "rewrite-lagging",
    processEnv: { [`consensus-${LAGGING}`]: { EKV_TEST_FAULT_APPLY_WRITE_DELAY_MS: "250" } },
  })
  await sys.waitForReady()
})

afterAll(async () => {
  await sys?.stopAll()
})

describe("rewrite on a follower that applies behind", () => {
  it("re-seals every version under the DEK the rotation made active", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    await leadOn(sys, "n1")
    ok("bootstrap", await firstMutator(sys, "bootstrap", { discover: true }))
    ok("enable-storage-envelope", await sys.encryption("enable-storage-envelope", {}, 60_000))
    const written = await writeSet(sys, "old", 12)

    // No wait for the followers: the operator's "rotate, then rewrite".
    const rot = ok(
      "rotate-dek storage",
      await sys.encryption<{ index: number; key_id: number }>("rotate-dek", { purpose: "storage" }),
    )
    written.push(...(await writeSet(sys, "new", 6)))
    const lag = ok("cluster status", await sys.status()).members.find((m) => m.node === LAGGING)
    // The precondition of the race: the lagging node has not applied the rotation yet.
    expect(lag?.applied_index ?? 0, `${LAGGING} applied index`).toBeLessThan(rot.index)
    const rw = ok("rewrite", await sys.encryption<{ started: string[] }>("rewrite", {}))
    expect([...rw.started].sort()).toEqual([...sys.nodes].sort())
    // Written while the rewrite runs: the lagging node may seal these under the old DEK
    // until its own registration of the new one commits, so its scan has to come after that.
    written.push(...(await writeSet(sys, "late", 6)))

    const st = await waitForRewriteDone(sys, sys.nodes)
    for (const n of st.nodes) {
      expect(n.cleartext_versions, `${n.node} cleartext versions`).toBe(0)
      const under = Object.entries(n.versions_by_key_id as Record<string, number>).filter(([, c]) => c > 0)
      expect(under, `${n.node} versions by key id`).toEqual([[String(rot.key_id), written.length]])
    }
    expect(await readBack(sys, written)).toEqual([])
  })
})
