// Acceptance: a node wiped after bootstrap, the storage envelope and
// rotations rejoins by LOG REPLAY (nothing was ever compacted, so it replays
// from index 1) and resumes by itself (SPEC §6 "New DEKs"): every DEK it first
// receives from an old entry gets max(local, floor) + 1 and is sealed under
// only once its own 0x03 commits — above the floors its registrations from
// before the wipe left in the log, so no (DEK, nonce) is ever used twice.
//
// The first rejoin forces the interleaving of bug 1 (docs/reliability.md):
// the replayed bootstrap reaches the keystore right AFTER the writer session
// it will not be dispatched under (its reply still on the way), so no
// hand-over carries the new DEKs. The harness orders it with SIGSTOPs and
// copies of the internal requests (subscriptions under the services' own bus
// users): the leader's keystore held while the wiped node asks for floors,
// the wiped node's keystore held from then until the bootstrap's dispatch is
// queued behind the session request, and apply held at the bootstrap by the
// test fault file meanwhile. Later rejoins run under load, one with a
// keystore restart during the replay.
import type { NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import {
  checkNonceReuse,
  collectEnvelopes,
  describeReuse,
  raftLogEntries,
  readSidecarFile,
  registryRows,
  replicatedSidecar,
} from "../../src/audit.ts"
import {
  firstMutator,
  halts,
  leadOn,
  nextOn,
  ok,
  readBack,
  spyAs as spyAsUser,
  Writers,
  type Written,
  writeSet,
} from "../../src/lifecycle.ts"
import { type EkvSystem, sleep, startSystem } from "../../src/system.ts"

let sys: EkvSystem
const spies: NatsConnection[] = []

beforeAll(async () => {
  // Far above the entries written: no snapshot, so every rejoin replays from index 1.
  sys = await startSystem({ name: "replay-rejoin", snapshotEntries: 1_000_000 })
  await sys.waitForReady()
})

afterAll(async () => {
  for (const nc of spies) await nc.close().catch(() => undefined)
  await sys?.stopAll()
})

/** A connection as one of the services' bus users, closed after the suite. */
const spyAs = async (user: string): Promise<NatsConnection> => {
  const nc = await spyAsUser(sys, user)
  spies.push(nc)
  return nc
}

describe("wiped node rejoins by log replay", () => {
  it("registers the DEKs it learns from old entries, resumes, and matches the others", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const data: Written[] = []
    data.push(...(await writeSet(sys, "p", 5)))
    const boot = ok("bootstrap", await firstMutator<{ index: number }>(sys, "bootstrap", { discover: true }))
    ok("enable-storage-envelope", await sys.encryption("enable-storage-envelope", {}, 60_000))
    data.push(...(await writeSet(sys, "s", 5)))
    const leader = await sys.waitForLeader()
    const f = sys.nodes.find((n) => n !== leader) as string
    const rot = ok(
      "rotate-dek",
      await sys.encryption<{ index: number }>("rotate-dek", { purpose: "storage" }),
    )
    await sys.waitForApplied(rot.index)
    data.push(...(await writeSet(sys, "r", 5)))
    // A second life of f: its session registrations above the batch epochs are in the log (floors).
    await sys.restartNode(f)
    await sys.waitForHealthy(f, 60_000)
    data.push(...(await writeSet(sys, "f", 5)))
    await sys.waitForApplied(data[data.length - 1]?.index ?? 0, sys.nodes, 60_000)

    // f's consensus goes first; its keystore still answers the rotation's capability poll.
    await sys.kill(`consensus-${f}`)
    data.push(...(await writeSet(sys, "away", 5)))
    // Replayed after f's next session opened: a DEK that session has to register by itself.
    const rot2 = ok(
      "rotate-dek",
      await sys.encryption<{ index: number }>("rotate-dek", { purpose: "storage" }),
    )
    expect(rot2.index).toBeGreaterThan(rot.index)
    data.push(...(await writeSet(sys, "away2", 5)))
    await sys.killNode(f)
    await sys.wipeNode(f)

    // ---- rejoin 1: the replayed bootstrap dispatched right behind a session request
    await sys.setFault(f, boot.index)
    const floors = (await spyAs(`consensus-${leader}`)).subscribe(
      `${sys.prefix}.internal.${leader}.admin.encryption.floors`,
    )
    const fks = await spyAs(`keystore-${f}`)
    const sessions = fks.subscribe(`${sys.prefix}.internal.${f}.keystore.session`)
    const dispatches = fks.subscribe(`${sys.prefix}.internal.${f}.keystore.dispatch`)
    sys.pause(`keystore-${leader}`)
    let leaderKsPaused = true
    let fKsPaused = false
    try {
      await sys.start(`keystore-${f}`)
      await sys.start(`consensus-${f}`)
      // f's session passed liveness and waits for floors (the leader's keystore is held).
      await nextOn(floors, "floors request", 20_000)
      sys.pause(`keystore-${f}`)
      fKsPaused = true
      sys.resume(`keystore-${leader}`)
      leaderKsPaused = false
      await nextOn(sessions, "session request", 10_000)
      await sys.setFault(f, null)
      await nextOn(dispatches, "dispatch of the bootstrap", 4_500, (b) => b.index === boot.index)
    } finally {
      if (leaderKsPaused) sys.resume(`keystore-${leader}`)
      if (fKsPaused) sys.resume(`keystore-${f}`)
    }
    await sys.waitForHealthy(f, 60_000)
    data.push(...(await writeSet(sys, "back1", 3)))
    await sys.waitForApplied(data[data.length - 1]?.index ?? 0, sys.nodes, 60_000)
    expect(await halts(sys)).toEqual([])

    // ---- rejoins 2 and 3: under load (a long log to catch up on), the second with a keystore restart
    const load = await Writers.start(sys, "load", 4)
    try {
      for (const keystoreRestart of [false, true]) {
        await sleep(1_500)
        await sys.killNode(f)
        await sys.wipeNode(f)
        await sys.startNode(f)
        if (keystoreRestart) {
          await sleep(300)
          await sys.restart(`keystore-${f}`)
        }
        await sys.waitForHealthy(f, 60_000)
      }
    } finally {
      await load.stop()
    }

    const after = await writeSet(sys, "back", 5)
    data.push(...after)
    const last = after[after.length - 1]?.index ?? 0
    await sys.waitForApplied(last, sys.nodes, 90_000)
    expect(await halts(sys)).toEqual([])

    // Reads served by the rejoined node: values from before the wipes and after.
    await leadOn(sys, f)
    expect(await readBack(sys, data)).toEqual([])
    const h = await sys.health(f)
    expect(h.ok && h.value.applied_index).toBeGreaterThanOrEqual(last)

    await sys.kill("admin")
    for (const n of sys.nodes) await sys.killNode(n)
    const first = (await raftLogEntries(sys.raftDir(f)))[0]
    expect(first?.index, "the wiped node replayed the log from index 1").toBe(1)
    const rows = await Promise.all(sys.nodes.map((n) => registryRows(sys.keystoreDir(n))))
    const sidecars = await Promise.all(sys.nodes.map((n) => readSidecarFile(sys.sidecarPath(n))))
    expect(rows[0]?.length).toBeGreaterThan(0)
    for (let i = 1; i < sys.nodes.length; i++) {
      expect(rows[i], `${sys.nodes[i]} registry`).toEqual(rows[0])
      const a = sidecars[i]
      const b = sidecars[0]
      if (a === undefined || b === undefined) throw new Error("missing sidecar")
      expect(replicatedSidecar(a), `${sys.nodes[i]} sidecar`).toEqual(replicatedSidecar(b))
    }
    const col = await collectEnvelopes(
      sys.nodes.map((n) => ({ node: n, stateDir: sys.stateDir(n), raftDir: sys.raftDir(n) })),
    )
    expect(col.malformed).toEqual([])
    expect(col.envelopes.filter((e) => e.node === f).length).toBeGreaterThan(0)
    const reuse = checkNonceReuse(col.envelopes)
    expect(reuse, describeReuse(reuse)).toEqual([])
  })
})
