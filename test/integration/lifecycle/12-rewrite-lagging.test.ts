// Acceptance (SPEC §2.4 rewrite, §6): `rewrite` right after `rotate-dek`
// leaves no version under the previous storage DEK on any node, also on a
// follower that applies behind the leader. Such a follower can get the rewrite
// before it has applied the rotation (so the old DEK still looks active to it)
// and, once it has, still seals new versions under the old DEK until its own
// registration of the new one commits (SPEC §6). A rewrite that scanned at
// that moment reported done and left those versions under the old DEK (bug 6
// in docs/reliability.md).
// A node that cannot get there (it halted) reports its rewrite stopped, with
// why, instead of done; a new request, once it resumed, finishes the job.
//
// The harness makes the lag certain: n3's every apply batch waits before its
// state write (EKV_TEST_FAULT_APPLY_WRITE_DELAY_MS), and n1 leads.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { runCli } from "../../src/cli.ts"
import {
  firstMutator,
  leadOn,
  ok,
  readBack,
  type Written,
  waitForEncryption,
  waitForRewriteDone,
  writeSet,
} from "../../src/lifecycle.ts"
import { type EkvSystem, startSystem } from "../../src/system.ts"

const LAGGING = "n3"
let sys: EkvSystem
const written: Written[] = []
let storageKeyId = 0

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

/** Runs the `ekv` CLI as the operator against this system. */
const cli = (args: ReadonlyArray<string>) =>
  runCli(sys.nats.servers, "operator", sys.passwords.operator ?? "", args)

describe("rewrite on a follower that applies behind", () => {
  it("re-seals every version under the DEK the rotation made active", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    await leadOn(sys, "n1")
    ok("bootstrap", await firstMutator(sys, "bootstrap", { discover: true }))
    ok("enable-storage-envelope", await sys.encryption("enable-storage-envelope", {}, 60_000))
    written.push(...(await writeSet(sys, "old", 12)))

    // No wait for the followers: the operator's "rotate, then rewrite".
    const rot = ok(
      "rotate-dek storage",
      await sys.encryption<{ index: number; key_id: number }>("rotate-dek", { purpose: "storage" }),
    )
    storageKeyId = rot.key_id
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

  it("a node that halted reports its rewrite stopped, and a new request finishes it once it resumed", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const commit = ok("cluster status", await sys.status()).commit_index
    await sys.setFault(LAGGING, commit + 1)
    written.push(...(await writeSet(sys, "halted", 4)))
    const halt = await sys.waitForHalted(LAGGING)
    expect(halt.index).toBe(commit + 1)

    const rw = ok("rewrite", await sys.encryption<{ started: string[] }>("rewrite", {}))
    expect([...rw.started].sort()).toEqual([...sys.nodes].sort())
    // The halted node cannot apply up to the leader's commit index: stopped, not done.
    await expect(waitForRewriteDone(sys, sys.nodes, 60_000)).rejects.toThrow(
      new RegExp(`rewrite stopped on ${LAGGING}: this node halted at ${commit + 1}`),
    )
    const stopped = await waitForEncryption(
      sys,
      `${LAGGING} rewrite stopped, the others done`,
      (s) => {
        const by = (n: string) =>
          s.nodes.find((x) => x.node === n) as { rewrite?: { done: boolean; error?: string } } | undefined
        return by("n1")?.rewrite?.done === true && by("n2")?.rewrite?.done === true ? by(LAGGING) : undefined
      },
      30_000,
    )
    expect(stopped?.rewrite?.done).toBe(false)
    expect(stopped?.rewrite?.error).toContain("halted")
    // The operator's `rewrite --follow` starts it again and ends with an error naming the node.
    const follow = await cli(["encryption", "rewrite", "--follow"])
    expect(follow.code, follow.err).toBe(1)
    expect(follow.err).toMatch(new RegExp(`n1 done +n2 done +${LAGGING} stopped at \\d+%: this node halted`))
    expect(follow.err).toContain(`Unavailable: the rewrite stopped on ${LAGGING}: this node halted`)
    expect(follow.err).toContain('"reason":"RewriteStopped"')

    // The fault cleared, the node resumes (a transient halt) and catches up; a new request finishes.
    await sys.setFault(LAGGING, null)
    await sys.waitForApplied(ok("cluster status", await sys.status()).commit_index)
    const again = ok("rewrite", await sys.encryption<{ started: string[] }>("rewrite", {}))
    expect(again.started).toContain(LAGGING)
    const st = await waitForRewriteDone(sys, sys.nodes)
    for (const n of st.nodes) {
      expect(n.cleartext_versions, `${n.node} cleartext versions`).toBe(0)
      const under = Object.entries(n.versions_by_key_id as Record<string, number>).filter(([, c]) => c > 0)
      expect(under, `${n.node} versions by key id`).toEqual([[String(storageKeyId), written.length]])
    }
    expect(await readBack(sys, written)).toEqual([])
  })
})
