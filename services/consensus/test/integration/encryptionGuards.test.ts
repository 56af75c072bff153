// The start-up guards of SPEC §7 that consensus decides, with real processes:
// each refuses with one line naming the guard, a `refused-start` event and a
// non-zero exit. Behind a rolled-back sidecar, the keystore's resync
// (`<p>.internal.<n>.keystore.resync`) reads the leader's `log.entries` (log
// replay) or, once the leader compacted past it, `log.state` (full state),
// and the node then starts and catches up.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { readSidecarFile, replicatedSidecar } from "../../../../test/src/audit.ts"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"
import { InternalAdminClient, writersAt0 } from "./internalAdminClient.ts"

let sys: EkvSystem
let admin: InternalAdminClient

const rotate = async (purpose: "storage" | "raft") => {
  const leader = await sys.waitForLeader()
  const { proposed: r } = await admin.rotateDek(leader, purpose, writersAt0(["n1", "n2", "n3"]))
  expect(r.status).toBe("applied")
  return r.index
}

/** `ekv.events.cluster.<node>` events (filtered here: the harness's filter needs nats-server ≥ 2.10). */
const clusterEvents = async (s: EkvSystem, node: string) =>
  (await s.events()).filter((e) => e.subject === `ekv.events.cluster.${node}`)

/** Starts `consensus-<node>` and expects it to refuse with `code`: exit ≠ 0, one line, an event. */
const expectRefusal = async (s: EkvSystem, node: string, code: string) => {
  const proc = `consensus-${node}`
  const since = new Date().toISOString()
  await s.start(proc, { waitReady: false })
  const exit = await s.waitExit(proc, 60_000)
  expect(exit?.code ?? 0, `${proc} exit`).not.toBe(0)
  const lines = (await s.readLog(proc)).split("\n").filter((l) => l.includes(`refusing to start: ${code}`))
  expect(lines.length, `${proc} log names ${code}`).toBeGreaterThan(0)
  const ev = await s.until(
    `refused-start ${code} event of ${node}`,
    async () =>
      (await clusterEvents(s, node)).find(
        (e) => e.body.kind === "refused-start" && e.body.code === code && String(e.body.at) >= since,
      ),
    20_000,
    500,
  )
  expect(ev.body.node).toBe(node)
}

const sameKeystoreState = async () => {
  const leader = await sys.waitForLeader()
  const strip = (e: Record<string, unknown>) => ({
    ...e,
    keys: (e.keys as { created: string }[]).map(({ created: _, ...k }) => k),
  })
  const want = strip(await admin.internal(leader, "log.state", {}))
  for (const n of sys.nodes) expect(strip(await admin.internal(n, "log.state", {})), n).toEqual(want)
  const sidecars = await Promise.all(sys.nodes.map((n) => readSidecarFile(sys.sidecarPath(n))))
  for (const s of sidecars) expect(replicatedSidecar(s!)).toEqual(replicatedSidecar(sidecars[0]!))
}

const follower = async () => {
  const leader = await sys.waitForLeader()
  return sys.nodes.find((n) => n !== leader)!
}

beforeAll(async () => {
  sys = await startSystem({ name: "consensus-enc-guards", electionTimeoutMs: 500 })
  admin = await InternalAdminClient.connect(sys)
  const leader = await sys.waitForLeader()
  for (const n of sys.nodes) await sys.waitForHealthy(n)
  await admin.bootstrapWithStorageEnvelope(leader, sys.nodes)
  await sys.putRetry("guards/first", "v")
}, 120_000)

afterAll(async () => {
  await admin?.close()
  await sys?.stopAll()
})

describe("start-up guards decided by consensus (SPEC §7)", () => {
  const fail = () =>
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })

  it("SidecarBehindRaftLog, then resync in log-replay mode brings the node back", async () => {
    fail()
    const f = await follower()
    await sys.copySidecar(f, "behind")
    const rot = await rotate("storage")
    // A registration after the rotation (another node's new session) moves the registry past it.
    const lead = await sys.waitForLeader()
    const other = sys.nodes.find((n) => n !== f && n !== lead)!
    await sys.restartNode(other)
    await sys.waitForHealthy(other)
    const idx = await sys.putRetry("guards/behind", "v")
    await sys.waitForApplied(idx)
    await sys.killNode(f)
    await sys.rollbackSidecar(f, "behind")
    await sys.start(`keystore-${f}`)
    await expectRefusal(sys, f, "SidecarBehindRaftLog")

    const leader = await sys.waitForLeader()
    const r = await admin.request(`ekv.internal.${f}.keystore.resync`, { leader }, 60_000)
    expect(r).toEqual({ node: f, mode: "log-replay", raft_applied_index: rot })
    await sys.start(`consensus-${f}`)
    await sys.waitForHealthy(f, 60_000)
    const last = await sys.putRetry("guards/behind/after", "v")
    await sys.waitForApplied(last)
    await sameKeystoreState()
  }, 150_000)

  it("SidecarBehindRaftLog after the leader compacted past it: resync in full-state mode", async () => {
    fail()
    const f = await follower()
    await sys.copySidecar(f, "behind2")
    const rot = await rotate("raft")
    const idx = await sys.putRetry("guards/behind2", "v")
    await sys.waitForApplied(idx)
    const leader = await sys.waitForLeader()
    const snap = (await admin.internal(leader, "cluster.snapshot", { node: leader }, 30_000)) as {
      snapshots: { index: number }[]
    }
    expect(snap.snapshots[0]!.index).toBeGreaterThan(rot)
    await sys.killNode(f)
    await sys.rollbackSidecar(f, "behind2")
    await sys.start(`keystore-${f}`)
    await expectRefusal(sys, f, "SidecarBehindRaftLog")
    const r = await admin.request(`ekv.internal.${f}.keystore.resync`, { leader }, 60_000)
    expect(r.mode).toBe("full-state")
    expect(r.raft_applied_index).toBe(rot)
    await sys.start(`consensus-${f}`)
    await sys.waitForHealthy(f, 60_000)
    const last = await sys.putRetry("guards/behind2/after", "v")
    await sys.waitForApplied(last)
    await sameKeystoreState()
  }, 150_000)

  it("SidecarAheadOfRaftLog: a keystore whose sidecar is beyond this node's log", async () => {
    fail()
    const f = await follower()
    await sys.killNode(f)
    await sys.copyDataDir(f, "ahead")
    await sys.wipe(`consensus-${f}`)
    await sys.start(`keystore-${f}`)
    await expectRefusal(sys, f, "SidecarAheadOfRaftLog")
    await sys.killNode(f)
    await sys.restoreDataDir(f, "ahead")
    await sys.startNode(f)
    await sys.waitForHealthy(f, 60_000)
  }, 120_000)

  it("EnvelopeCutoverDivergence: the sidecar's cutover index differs from the state machine's", async () => {
    fail()
    const f = await follower()
    await sys.killNode(f)
    await sys.copySidecar(f, "cutover")
    const sc = await readSidecarFile(sys.sidecarPath(f))
    const { writeFile } = await import("node:fs/promises")
    await writeFile(
      sys.sidecarPath(f),
      JSON.stringify({ ...sc, raft_envelope_cutover_index: sc!.raft_applied_index }),
      { mode: 0o600 },
    )
    await sys.start(`keystore-${f}`)
    await expectRefusal(sys, f, "EnvelopeCutoverDivergence")
    await sys.killNode(f)
    await sys.rollbackSidecar(f, "cutover")
    await sys.startNode(f)
    await sys.waitForHealthy(f, 60_000)
  }, 120_000)

  it("LocalEpochRollback: the sidecar's epoch of an active DEK is below this node's registry row", async () => {
    fail()
    const f = await follower()
    await sys.copySidecar(f, "epoch-old")
    // A new session raises f's epochs and registers them.
    await sys.restartNode(f)
    await sys.waitForHealthy(f, 60_000)
    await sys.killNode(f)
    await sys.copySidecar(f, "epoch-new")
    await sys.rollbackSidecar(f, "epoch-old")
    await sys.start(`keystore-${f}`)
    await expectRefusal(sys, f, "LocalEpochRollback")
    await sys.killNode(f)
    await sys.rollbackSidecar(f, "epoch-new")
    await sys.startNode(f)
    await sys.waitForHealthy(f, 60_000)
  }, 120_000)

  it("a keystore down at start: the sidecar guards run once it answers, before anything applies", async () => {
    fail()
    const f = await follower()
    await sys.copySidecar(f, "late-old")
    await rotate("storage")
    const idx = await sys.putRetry("guards/late", "v")
    await sys.waitForApplied(idx)
    await sys.killNode(f)
    await sys.copySidecar(f, "late-new")
    await sys.rollbackSidecar(f, "late-old")
    const since = new Date().toISOString()
    // Consensus first: its keystore does not answer, so it starts without the checks.
    await sys.start(`consensus-${f}`)
    await sys.start(`keystore-${f}`)
    await sys.putRetry("guards/late/trigger", "v")
    const exit = await sys.waitExit(`consensus-${f}`, 60_000)
    expect(exit?.code ?? 0).not.toBe(0)
    expect(await sys.readLog(`consensus-${f}`)).toContain("refusing to start: SidecarBehindRaftLog")
    await sys.until(
      "late refused-start event",
      async () =>
        (await clusterEvents(sys, f)).find(
          (e) =>
            e.body.kind === "refused-start" &&
            e.body.code === "SidecarBehindRaftLog" &&
            String(e.body.at) >= since,
        ),
      20_000,
      500,
    )
    await sys.killNode(f)
    await sys.rollbackSidecar(f, "late-new")
    await sys.startNode(f)
    await sys.waitForHealthy(f, 60_000)
    await sameKeystoreState()
  }, 120_000)

  it("NodeIDCollision: two members share a node_id16", async () => {
    fail()
    // n24292 shares node_id16 0xd4c0 with n1 (vectors/node_ids.json with_cluster_ids).
    const c = await startSystem({
      name: "consensus-enc-collide",
      nodes: ["n1", "n24292", "n3"],
      start: false,
    })
    try {
      await c.start("keystore-n1")
      await expectRefusal(c, "n1", "NodeIDCollision")
      await expectRefusal(c, "n24292", "NodeIDCollision")
    } catch (e) {
      c.markFailed()
      console.error(await c.failureReport())
      throw e
    } finally {
      await c.stopAll()
    }
  }, 120_000)
})
