// Acceptance: a registration rollback or collision proposed by any path never
// halts the cluster: it is refused up front, or rejected identically
// everywhere.
//
// Paths exercised, all as the operator:
// - bootstrap with an explicit batch that repeats a node (node_id16 clash in one request);
// - register-writer below a writer's epoch, and at its epoch with another session;
// - a node whose node_id16 collides with a member's, offered as a learner after activation;
// - many concurrent register-writers for one writer at mixed epochs (races the
//   leader's pre-validation; anything that slips through must be rejected at
//   apply, the same way on every node).
import { randomBytes } from "node:crypto"
import { fullNodeId, nodeId16 } from "@ekv/crypto"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { registryRows } from "../../src/audit.ts"
import { firstMutator, halts, ok, readBack, writeSet } from "../../src/lifecycle.ts"
import { type EkvSystem, startSystem } from "../../src/system.ts"

/** A node id whose node_id16 equals `of`'s (and whose full_node_id differs). */
const collidingId = (of: string): string => {
  const want = nodeId16(fullNodeId(of))
  for (let i = 0; ; i++) {
    const id = `x${i.toString(36)}`
    if (id !== of && nodeId16(fullNodeId(id)) === want) return id
  }
}

const COLLIDER = collidingId("n2")
let sys: EkvSystem

beforeAll(async () => {
  sys = await startSystem({ name: "registration", extraNodes: [COLLIDER] })
  await sys.waitForReady()
})

afterAll(async () => {
  await sys?.stopAll()
})

const idle = async () => {
  for (const n of sys.nodes.filter((x) => x !== COLLIDER)) await sys.waitForHealthy(n)
  const s = ok("cluster status", await sys.status())
  return { term: s.term, commit: s.commit_index }
}

const code = (r: { ok: boolean; error?: { code: string } }) => (r.ok ? "ok" : (r.error?.code ?? "?"))

describe("registration rollbacks and collisions", () => {
  it("are refused up front or rejected identically everywhere, and never halt anything", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const members = ["n1", "n2", "n3"]
    const fid = Object.fromEntries(members.map((n) => [n, fullNodeId(n).toString()]))

    // 1. A batch naming a node twice (one request, one node_id16 twice): InvalidArgument, nothing proposed.
    let point = await idle()
    const dup = await sys.encryption("bootstrap", {
      writers: [...members, "n2"].map((n) => ({ full_node_id: fid[n], local_epoch: 0 })),
    })
    expect(code(dup)).toBe("InvalidArgument")
    expect(await idle()).toEqual(point)

    const boot = ok(
      "bootstrap",
      await firstMutator<{ index: number; storage_key_id: number; raft_key_id: number }>(sys, "bootstrap", {
        discover: true,
      }),
    )
    const ese = ok(
      "enable-storage-envelope",
      await sys.encryption<{ index: number }>("enable-storage-envelope"),
    )
    await sys.waitForApplied(ese.index)
    const data = await writeSet(sys, "a", 10)
    const dek = boot.storage_key_id
    const epochOf = async (n: string) => {
      const st = ok("status", await sys.encryptionStatus())
      const row = st.registry.find((r) => r.dek_id === dek && r.full_node_id === fid[n])
      if (row === undefined) throw new Error(`no registry row for ${n} under ${dek}`)
      return row.last_seen_local_epoch
    }

    // 2. Rollback below the registered epoch, and the same epoch with another session: 409, nothing proposed.
    //    (n2's row is first advanced by two, so "below" exists even when it registered epoch 0.)
    const e0 = await epochOf("n2")
    const adv = ok(
      "register-writer advance",
      await sys.encryption<{ index: number; outcome: string }>("register-writer", {
        dek_id: dek,
        full_node_id: fid.n2,
        local_epoch: e0 + 2,
      }),
    )
    expect(adv.outcome).toBe("advanced")
    await sys.waitForApplied(adv.index, members)
    const e2 = await epochOf("n2")
    expect(e2).toBe(e0 + 2)
    point = await idle()
    const lower = await sys.encryption("register-writer", {
      dek_id: dek,
      full_node_id: fid.n2,
      local_epoch: e2 - 1,
    })
    expect(code(lower)).toBe("LocalEpochRollback")
    expect(lower.ok ? 0 : (lower as { status: number }).status).toBe(409)
    const otherSession = await sys.encryption("register-writer", {
      dek_id: dek,
      full_node_id: fid.n2,
      local_epoch: e2,
      session_id: randomBytes(16).toString("hex"),
    })
    expect(code(otherSession)).toBe("LocalEpochRollback")
    const same = ok(
      "register-writer unchanged",
      await sys.encryption<{ index: number; outcome: string }>("register-writer", {
        dek_id: dek,
        full_node_id: fid.n2,
        local_epoch: e2,
      }),
    )
    expect(same.outcome).toBe("unchanged")
    expect(same.index).toBe(adv.index)
    expect(await idle()).toEqual(point)

    // 3. A colliding node offered as a learner after activation.
    await sys.start(`keystore-${COLLIDER}`)
    await sys.start(`consensus-${COLLIDER}`, { waitReady: false })
    const capC = ok(`capability ${COLLIDER}`, await sys.capability(COLLIDER, 10_000))
    expect(capC.encryption_capable).toBe(true)
    point = await idle()
    const add = await sys.cluster("add-learner", { node: COLLIDER }, 30_000)
    expect(add.ok, `add-learner of a colliding node: ${JSON.stringify(add)}`).toBe(false)
    expect(["NodeIDCollision", "FailedPrecondition"]).toContain(code(add))
    const members2 = ok("cluster status", await sys.status()).members.map((m) => m.node)
    expect(members2).not.toContain(COLLIDER)
    expect(await idle()).toEqual(point)
    await sys.kill(`consensus-${COLLIDER}`)
    await sys.kill(`keystore-${COLLIDER}`)

    // 4. Racing registrations for one writer at mixed epochs.
    const base = await epochOf("n3")
    const epochs = [5, 3, 7, 1, 6, 2, 8, 4].map((d) => base + d)
    const replies = await Promise.all(
      epochs.map((e) =>
        sys.encryption<{ index: number; outcome: string }>(
          "register-writer",
          { dek_id: dek, full_node_id: fid.n3, local_epoch: e },
          30_000,
        ),
      ),
    )
    const codes = replies.map(code)
    for (const c of codes) expect(["ok", "LocalEpochRollback", "Unavailable"]).toContain(c)
    const accepted = epochs.filter((_, i) => replies[i]?.ok === true)
    expect(accepted.length).toBeGreaterThan(0)
    const last = await sys.putRetry("zz/last", "x")
    await sys.waitForApplied(last, members)
    expect(await epochOf("n3")).toBe(Math.max(...accepted))

    // Nothing halted; the cluster still writes and reads; every rejection was the same everywhere.
    expect(await halts(sys)).toEqual([])
    const more = await writeSet(sys, "b", 5)
    expect(await readBack(sys, [...data, ...more])).toEqual([])
    const rejected = new Map<string, string[]>()
    for (const n of members) {
      const ev = (await sys.events(`ekv.events.encryption.${n}`))
        .map((e) => e.body)
        .filter((b) => b.outcome === "rejected")
        .map((b) => `${String(b.index)}:${String(b.code)}`)
        .sort()
      rejected.set(n, ev)
    }
    expect(rejected.get("n2")).toEqual(rejected.get("n1"))
    expect(rejected.get("n3")).toEqual(rejected.get("n1"))
    for (const r of rejected.get("n1") ?? []) expect(r).toMatch(/:(LocalEpochRollback|NodeIDCollision)$/)

    await sys.kill("admin")
    for (const n of members) await sys.killNode(n)
    const rows = await Promise.all(members.map((n) => registryRows(sys.keystoreDir(n))))
    expect(rows[1]).toEqual(rows[0])
    expect(rows[2]).toEqual(rows[0])
    expect(rows[0]?.some((r) => r.full_node_id === fullNodeId(COLLIDER).toString())).toBe(false)
  })
})
