// Acceptance: the gate. With encryption disabled, or the KEK missing on the
// leader's keystore, every encryption mutator whose request names no unknown
// node or key id returns FailedPrecondition with the reason of CONTRACT §1
// (`EncryptionDisabled` / `KekNotConfigured`: "if its keystore has no KEK or
// does not answer"), and the commit index does not move (CONTRACT §1: an idle
// cluster whose members are all healthy appends nothing, so an unchanged
// commit index with an unchanged term proves nothing was proposed).
import { afterEach, describe, expect, it } from "vitest"
import { firstMutator, ok } from "../../src/lifecycle.ts"
import { type EkvSystem, startSystem } from "../../src/system.ts"

let sys: EkvSystem | undefined

// A failed test keeps its system's directory and prints its logs (onTestFailed runs after afterEach).
afterEach(async (ctx) => {
  if (sys !== undefined && ctx.task.result?.state === "fail") {
    sys.markFailed()
    console.error(await sys.failureReport())
  }
  await sys?.stopAll()
  sys = undefined
})

interface Mutator {
  readonly op: string
  readonly body: Record<string, unknown>
}

/** Every mutator whose request names no key id (node names are members). */
const keylessMutators = (
  s: EkvSystem,
  writers: { full_node_id: string; local_epoch: number }[],
): Mutator[] => [
  { op: "bootstrap", body: { discover: true } },
  { op: "bootstrap", body: { writers } },
  { op: "rotate-dek", body: { purpose: "storage" } },
  { op: "rotate-dek", body: { purpose: "raft" } },
  { op: "rewrap-deks", body: {} },
  { op: "enable-storage-envelope", body: {} },
  { op: "enable-raft-envelope", body: {} },
  { op: "rewrite", body: {} },
  { op: "rewrite", body: { rate_mib_s: 1 } },
  { op: "resync-sidecar", body: { node: s.nodes[1] } },
]

/** Idle, every member healthy: the (term, commit index) pair as the leader reports it. */
const idlePoint = async (s: EkvSystem): Promise<{ term: number; commit: number; leader: string }> => {
  for (const n of s.runningNodes()) await s.waitForHealthy(n, 60_000, false)
  const a = ok("cluster status", await s.status())
  return { term: a.term, commit: a.commit_index, leader: a.leader ?? "" }
}

const expectRefused = async (s: EkvSystem, muts: readonly Mutator[], reason: string) => {
  const wrong: string[] = []
  for (const m of muts) {
    const r = await s.encryption(m.op, m.body, 30_000)
    if (r.ok) wrong.push(`${m.op} ${JSON.stringify(m.body)}: succeeded ${JSON.stringify(r.value)}`)
    else if (r.error.code !== "FailedPrecondition" || r.status !== 412 || r.error.details?.reason !== reason)
      wrong.push(
        `${m.op} ${JSON.stringify(m.body)}: ${r.status} ${r.error.code} ${JSON.stringify(r.error.details)}`,
      )
  }
  expect(wrong, `every mutator refused with FailedPrecondition/${reason}`).toEqual([])
}

const fullNodeIds = async (s: EkvSystem) => {
  const out: { node: string; full_node_id: string; local_epoch: number }[] = []
  for (const n of s.nodes) {
    const c = ok(`capability ${n}`, await s.capability(n))
    out.push({ node: n, full_node_id: c.full_node_id, local_epoch: c.local_epoch })
  }
  return out
}

describe("the encryption gate", () => {
  it("refuses every mutator with EncryptionDisabled when encryption is disabled, proposing nothing", async () => {
    sys = await startSystem({ name: "gate-off", encryption: false })
    await sys.waitForReady()
    await sys.putRetry("gate/x", "1")
    const st = ok("status", await sys.encryptionStatus())
    expect(st.phase).toBe("disabled")
    for (const n of sys.nodes)
      expect(ok(`capability ${n}`, await sys.capability(n)).encryption_capable).toBe(false)
    // Not capable: full_node_id "0" in the report, so the explicit batch is built from the node ids' FNV values (CONTRACT §7).
    const { fullNodeId } = await import("@ekv/crypto")
    const writers = sys.nodes.map((n) => ({ full_node_id: fullNodeId(n).toString(), local_epoch: 0 }))
    const before = await idlePoint(sys)
    await expectRefused(sys, keylessMutators(sys, writers), "EncryptionDisabled")
    // A request naming an unknown key id is NotFound (checked before the gate, CONTRACT §1 order).
    const reg = await sys.encryption("register-writer", {
      dek_id: 12345,
      full_node_id: writers[0]?.full_node_id,
      local_epoch: 1,
    })
    expect(reg.ok ? "ok" : reg.error.code).toBe("NotFound")
    const ret = await sys.encryption("retire-dek", { key_id: 12345 })
    expect(ret.ok ? "ok" : ret.error.code).toBe("NotFound")
    const after = await idlePoint(sys)
    expect(after).toEqual(before)
  })

  it("refuses every mutator with KekNotConfigured when the leader's keystore is gone, proposing nothing", async () => {
    const s = await startSystem({ name: "gate-kek" })
    sys = s
    await s.waitForReady()
    const ids = await fullNodeIds(s)
    const writers = ids.map((i) => ({ full_node_id: i.full_node_id, local_epoch: 0 }))

    // Before bootstrap.
    let point = await idlePoint(s)
    await s.kill(`keystore-${point.leader}`)
    await expectRefused(s, keylessMutators(s, writers), "KekNotConfigured")
    let after = ok("cluster status", await s.status())
    expect({ term: after.term, commit: after.commit_index, leader: after.leader ?? "" }).toEqual(point)
    await s.start(`keystore-${point.leader}`)

    // After bootstrap and a raft rotation, requests naming known key ids too.
    const boot = ok(
      "bootstrap",
      await firstMutator<{ index: number; storage_key_id: number; raft_key_id: number }>(s, "bootstrap", {
        discover: true,
      }),
    )
    const rot = ok(
      "rotate-dek raft",
      await s.encryption<{ index: number }>("rotate-dek", { purpose: "raft" }),
    )
    await s.waitForApplied(rot.index)
    point = await idlePoint(s)
    const follower = ids.find((i) => i.node !== point.leader)
    if (follower === undefined) throw new Error("no follower")
    const epoch = ok(`capability ${follower.node}`, await s.capability(follower.node)).local_epoch
    await s.kill(`keystore-${point.leader}`)
    await expectRefused(
      s,
      [
        ...keylessMutators(s, writers).filter((m) => m.op !== "bootstrap"),
        {
          op: "register-writer",
          body: { dek_id: boot.storage_key_id, full_node_id: follower.full_node_id, local_epoch: epoch + 1 },
        },
        { op: "retire-dek", body: { key_id: boot.raft_key_id } },
      ],
      "KekNotConfigured",
    )
    after = ok("cluster status", await s.status())
    expect({ term: after.term, commit: after.commit_index, leader: after.leader ?? "" }).toEqual(point)
  })
})
