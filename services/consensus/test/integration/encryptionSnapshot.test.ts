// Snapshots carry the encryption state (SPEC §4.6) and epochs are fresh after
// any disk history (SPEC §6), with real processes and EKV_SNAPSHOT_ENTRIES
// small: a node wiped after bootstrap and a rotation rejoins through an
// InstallSnapshot and ends with the others' registry and wrapped DEKs, opens
// every value and raft envelope; a node restored from a stale copy of its
// data dir seals at epochs strictly above every epoch it used before.
import { encodeEntry, Tag } from "@ekv/wire"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import {
  checkNonceReuse,
  collectEnvelopes,
  type EnvelopeRecord,
  nodeId16,
  readSidecarFile,
  replicatedSidecar,
} from "../../../../test/src/audit.ts"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"
import { InternalAdminClient, replicatedExport, writersAt0 } from "./internalAdminClient.ts"

let sys: EkvSystem
let admin: InternalAdminClient

const written = new Map<string, string>()
const put = async (key: string) => {
  const value = `${key}=${Math.random().toString(36).slice(2)}`
  const index = await sys.putRetry(key, value)
  written.set(key, value)
  return index
}

/** Every written key read back through the leader (linearizable). */
const readAll = async (): Promise<string[]> => {
  const bad: string[] = []
  for (const [k, v] of written) {
    const r = await sys.kv.get(k, "linearizable", 15_000)
    if (!r.ok) bad.push(`${k}: ${r.error.code} ${r.error.message}`)
    else if (!r.value.found || Buffer.from(r.value.value!, "base64").toString() !== v) bad.push(`${k}: wrong`)
  }
  return bad
}

const transferTo = async (node: string) => {
  const leader = await sys.waitForLeader()
  if (leader !== node) await admin.internal(leader, "cluster.transfer-leader", { node }, 30_000)
  await sys.until("leader moved", async () => ((await sys.waitForLeader()) === node ? true : undefined))
}

/** Storage envelopes `node` sealed itself (its node_id16 in the nonce), from its stopped state dir. */
const ownEnvelopes = async (node: string): Promise<EnvelopeRecord[]> => {
  const col = await collectEnvelopes([{ node, stateDir: sys.stateDir(node), raftDir: sys.raftDir(node) }])
  return col.envelopes.filter((e) => e.kind === "storage" && e.nodeId16 === nodeId16(node))
}

beforeAll(async () => {
  sys = await startSystem({ name: "consensus-enc-snap", electionTimeoutMs: 500, snapshotEntries: 20 })
  admin = await InternalAdminClient.connect(sys)
}, 120_000)

afterAll(async () => {
  await admin?.close()
  await sys?.stopAll()
})

describe("snapshots and epochs (consensus mechanics)", () => {
  it("a node wiped after bootstrap and a rotation rejoins through a snapshot with the same encryption state", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    let leader = await sys.waitForLeader()
    for (const n of sys.nodes) await sys.waitForHealthy(n)
    for (let i = 0; i < 5; i++) await put(`snap/plain/${i}`)
    await admin.bootstrapWithStorageEnvelope(leader, sys.nodes)
    for (let i = 0; i < 5; i++) await put(`snap/sealed/${i}`)
    const { dek: rot, proposed: r } = await admin.rotateDek(leader, "storage", writersAt0(sys.nodes))
    expect(r.status).toBe("applied")
    const cut = await admin.propose(
      leader,
      encodeEntry({ tag: Tag.Control, control: { kind: "enable-raft-envelope" } }),
    )
    expect(cut.status).toBe("applied")
    for (let i = 0; i < 5; i++) await put(`snap/rotated/${i}`)

    leader = await sys.waitForLeader()
    const f = sys.nodes.find((n) => n !== leader)!
    await sys.killNode(f)
    await sys.wipeNode(f)
    // Enough entries that the others' logs are compacted (automatically) past everything f had.
    let last = 0
    for (let i = 0; i < 30; i++) last = await put(`snap/away/${i}`)
    for (const n of sys.nodes.filter((x) => x !== f)) {
      const s = (await admin.internal(n, "cluster.snapshot", { node: n }, 30_000)) as {
        snapshots: { node: string; index: number }[]
      }
      expect(s.snapshots[0]!.index).toBeGreaterThan(cut.index)
    }

    await sys.startNode(f)
    // No write meanwhile: the keystore gets the snapshot's state at the install, not at the next
    // apply (an idle cluster has none; f then stayed `Registering` until someone wrote).
    await sys.until(
      "f restored the snapshot's keystore state with no write after its install",
      async () =>
        (await sys.logEntries(`consensus-${f}`, "keystore state restored from snapshot")).length > 0
          ? true
          : undefined,
      30_000,
    )
    await sys.waitForHealthy(f, 30_000)
    expect((await sys.logEntries(`consensus-${f}`, "snapshot installed")).length).toBeGreaterThan(0)
    expect((await sys.logEntries(`consensus-${f}`, "keystore state restored from snapshot")).length).toBe(1)
    for (let i = 0; i < 5; i++) last = await put(`snap/back/${i}`)
    await sys.waitForApplied(last, sys.nodes, 60_000)

    const exports = await Promise.all(sys.nodes.map((n) => admin.logState(n)))
    const mine = exports[sys.nodes.indexOf(f)]!
    for (const e of exports) expect(replicatedExport(e)).toEqual(replicatedExport(mine))
    expect(mine.active.storage).toBe((rot("storage") as { key_id: number }).key_id)
    // A new session after the install gave f fresh epochs (above the batch's 0), registered by its 0x03s.
    for (const id of [mine.active.storage, mine.active.raft]) {
      const row = mine.writers.find((w) => w.dek_id === id && w.node_id16 === nodeId16(f))!
      expect(row.last_seen_local_epoch).toBeGreaterThan(0)
    }
    const sidecars = await Promise.all(sys.nodes.map((n) => readSidecarFile(sys.sidecarPath(n))))
    for (const s of sidecars) expect(replicatedSidecar(s!)).toEqual(replicatedSidecar(sidecars[0]!))

    // f's state machine serves every value (leadership moved to it; reads are linearizable).
    await transferTo(f)
    expect(await readAll()).toEqual([])
  }, 150_000)

  it("a node restored from a stale copy of its data dir seals at epochs above every epoch it used", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const leader = await sys.waitForLeader()
    const g = sys.nodes.find((n) => n !== leader)!
    let last = 0
    for (let i = 0; i < 3; i++) last = await put(`stale/a/${i}`)
    await sys.waitForApplied(last)
    await sys.killNode(g)
    await sys.copyDataDir(g, "stale")

    // One more session after the copy, sealing new writes; then the copy is put back.
    await sys.startNode(g)
    await sys.waitForHealthy(g, 60_000)
    for (let i = 0; i < 3; i++) last = await put(`stale/b/${i}`)
    await sys.waitForApplied(last, [g])
    await sys.killNode(g)
    const used = await ownEnvelopes(g)
    expect(used.length).toBeGreaterThan(0)
    const maxUsed = new Map<number, number>()
    for (const e of used) maxUsed.set(e.keyId, Math.max(maxUsed.get(e.keyId) ?? -1, e.localEpoch))

    await sys.restoreDataDir(g, "stale")
    await sys.startNode(g)
    await sys.waitForHealthy(g, 60_000)
    const from = last
    for (let i = 0; i < 3; i++) last = await put(`stale/c/${i}`)
    await sys.waitForApplied(last, [g])
    await sys.killNode(g)
    const after = (await ownEnvelopes(g)).filter((e) => e.index > from)
    expect(after.length).toBeGreaterThan(0)
    for (const e of after) expect(e.localEpoch).toBeGreaterThan(maxUsed.get(e.keyId) ?? -1)
    expect(checkNonceReuse([...used, ...after])).toEqual([])
    await sys.startNode(g)
    await sys.waitForHealthy(g, 60_000)
    expect(await readAll()).toEqual([])
  }, 150_000)
})
