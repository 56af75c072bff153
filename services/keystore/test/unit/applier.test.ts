import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fullNodeId, kekId } from "@ekv/crypto"
import { describe, expect, it } from "vitest"
import { openSession } from "../../src/session.ts"
import { readSidecar } from "../../src/sidecarFile.ts"
import { nodeId16Of } from "../../src/writerRegistry.ts"
import {
  bootstrap,
  control,
  dek,
  dispatch,
  failure,
  KEK,
  KEK2,
  N2,
  N3,
  newSession,
  openAt,
  registration,
  rotate,
  run,
  SELF,
  tempDir,
  wrap,
} from "./harness.ts"

const S = 101
const R = 102
const s1 = "1".repeat(32)
const s2 = "2".repeat(32)
const collision = JSON.parse(readFileSync("/work/shared/vectors/node_ids.json", "utf8")).node_id16_collision
  .first_pair.ids as Array<{ id: string; full_node_id: string }>
const C1 = BigInt(collision[0]!.full_node_id)
const C2 = BigInt(collision[1]!.full_node_id)

const sidecarText = (dir: string) => readFileSync(join(dir, "keystore", "keys.json"), "utf8")

describe("applier: registrations (0x03)", () => {
  it("all five outcomes, session rules, replay, collision vectors", async () => {
    const dir = tempDir()
    const o = await openAt(dir)
    const store = o.ks.state.store
    expect(await dispatch(o, 1, 0, bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 0 }]))).toMatchObject({
      status: "applied",
      kind: "bootstrap",
    })

    expect(await dispatch(o, 2, 1, registration(S, N3, 1, s1))).toMatchObject({
      status: "applied",
      outcome: "inserted",
    })
    expect(await dispatch(o, 3, 2, registration(S, N3, 2, s1))).toMatchObject({
      status: "applied",
      outcome: "advanced",
    })
    expect(await dispatch(o, 4, 3, registration(S, N3, 2, s1))).toMatchObject({
      status: "applied",
      outcome: "unchanged",
    })
    expect(await dispatch(o, 5, 4, registration(S, N3, 1, s1))).toMatchObject({
      status: "rejected",
      code: "LocalEpochRollback",
    })
    // Equal epoch with another session: rollback.
    expect(await dispatch(o, 6, 5, registration(S, N3, 2, s2))).toMatchObject({
      status: "rejected",
      code: "LocalEpochRollback",
    })
    // No session: equal epoch is a replay and keeps the row's session.
    expect(await dispatch(o, 7, 6, registration(S, N3, 2))).toMatchObject({
      status: "applied",
      outcome: "unchanged",
    })
    const row = await run(store.row(S, nodeId16Of(N3)))
    expect(row).toEqual({
      full_node_id: N3,
      first_seen_local_epoch: 1,
      last_seen_local_epoch: 2,
      last_session_id: s1,
      raft_index: 3,
    })
    // The collision pair of the vectors.
    expect(await dispatch(o, 8, 7, registration(S, C1, 0, s1))).toMatchObject({ outcome: "inserted" })
    expect(await dispatch(o, 9, 8, registration(S, C2, 0, s2))).toMatchObject({
      status: "rejected",
      code: "NodeIDCollision",
    })
    expect((await run(store.row(S, nodeId16Of(C1))))?.full_node_id).toBe(C1)
    // Unknown DEK.
    expect(await dispatch(o, 10, 9, registration(999, N2, 0))).toMatchObject({
      status: "rejected",
      code: "PreconditionFailed",
    })
    expect(await run(store.lastRegistryIndex)).toBe(10)

    // Replays: recorded outcome, no effect.
    expect(await dispatch(o, 3, 2, registration(S, N3, 2, s1))).toMatchObject({
      status: "applied",
      outcome: "advanced",
      replay: true,
    })
    expect(await dispatch(o, 5, 4, registration(S, N3, 1, s1))).toMatchObject({
      status: "rejected",
      code: "LocalEpochRollback",
      replay: true,
    })
    expect(await run(store.row(S, nodeId16Of(N3)))).toEqual(row)
    expect(await run(store.lastRegistryIndex)).toBe(10)
    await o.close()

    // Outcomes survive a restart.
    const o2 = await openAt(dir)
    expect(await dispatch(o2, 9, 8, registration(S, C2, 0, s2))).toMatchObject({
      code: "NodeIDCollision",
      replay: true,
    })
    await o2.close()
  })

  it("prev_encryption_index above what was applied → SidecarBehindRaftLog", async () => {
    const o = await openAt(tempDir())
    await dispatch(o, 3, 0, bootstrap(S, R, []))
    const e = await failure(
      o.ks.applier.dispatch({
        index: 9,
        prevEncryptionIndex: 7,
        payload: registration(S, N2, 0),
        session: undefined,
      }),
    )
    expect(e?._tag).toBe("SidecarBehindRaftLog")
    expect(e?.code).toBe("SidecarBehindRaftLog")
    await o.close()
  })
})

describe("applier: bootstrap (0x04)", () => {
  it("applies once; the same index replays with no effect; a later index is AlreadyBootstrapped", async () => {
    const dir = tempDir()
    const o = await openAt(dir)
    const writers = [
      { full_node_id: SELF, local_epoch: 4 },
      { full_node_id: N2, local_epoch: 0 },
    ]
    const out = await dispatch(o, 5, 0, bootstrap(S, R, writers))
    expect(out).toMatchObject({ status: "applied", kind: "bootstrap", keyIds: [S, R], replay: false })
    const sc = (await run(readSidecar(join(dir, "keystore", "keys.json"))))!
    expect(sc.raft_applied_index).toBe(5)
    expect(sc.active).toEqual({ storage: S, raft: R })
    expect(sc.keys[String(S)]).toMatchObject({ purpose: "storage", local_epoch: 4, retired: false })
    expect(sc.keys[String(R)]).toMatchObject({ purpose: "raft", local_epoch: 4, retired: false })
    for (const d of [S, R]) {
      expect((await run(o.ks.state.store.rowsOf(d))).map((e) => e.row.full_node_id).sort()).toEqual(
        [SELF, N2].sort(),
      )
    }
    const text = sidecarText(dir)

    const again = await dispatch(o, 5, 0, bootstrap(S, R, writers))
    expect(again).toMatchObject({ status: "applied", kind: "bootstrap", replay: true, handover: undefined })
    expect(sidecarText(dir)).toBe(text)

    const later = await dispatch(o, 8, 5, bootstrap(201, 202, writers))
    expect(later).toMatchObject({ status: "rejected", code: "AlreadyBootstrapped", replay: false })
    const sc2 = (await run(readSidecar(join(dir, "keystore", "keys.json"))))!
    expect(sc2).toEqual({ ...sc, raft_applied_index: 8 })
    expect(await run(o.ks.state.store.rowsOf(201))).toEqual([])
    expect(await dispatch(o, 8, 5, bootstrap(201, 202, writers))).toMatchObject({
      status: "rejected",
      code: "AlreadyBootstrapped",
      replay: true,
    })
    await o.close()
  })

  it("a DEK the KEK does not unwrap is a node-local KekMismatch: nothing written, nothing applied", async () => {
    const dir = tempDir()
    const o = await openAt(dir)
    const e = await failure(
      o.ks.applier.dispatch({
        index: 3,
        prevEncryptionIndex: 0,
        payload: bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 0 }], KEK2),
        session: undefined,
      }),
    )
    expect(e?._tag).toBe("KekMismatch")
    expect(e?.code).toBe("KekMismatch")
    expect(await run(readSidecar(join(dir, "keystore", "keys.json")))).toBeUndefined()
    expect(await run(o.ks.state.store.allRows)).toEqual([])
    expect(await run(o.ks.state.store.outcome(3))).toBeUndefined()
    await o.close()
  })

  it("a writer batch with a node_id16 collision rejects the entry", async () => {
    const o = await openAt(tempDir())
    const out = await dispatch(
      o,
      2,
      0,
      bootstrap(S, R, [
        { full_node_id: C1, local_epoch: 0 },
        { full_node_id: C2, local_epoch: 0 },
      ]),
    )
    expect(out).toMatchObject({ status: "rejected", code: "NodeIDCollision" })
    expect(o.ks.state.sidecar.keys).toEqual({})
    expect(o.ks.state.sidecar.raft_applied_index).toBe(2)
    await o.close()
  })
})

describe("applier: crash between the registry write and the sidecar write", () => {
  for (const step of ["open-tmp", "write-half", "fsync-tmp", "rename"] as const) {
    it(`bootstrap interrupted at ${step}, then replayed after a restart`, async () => {
      const dir = tempDir()
      const writers = [
        { full_node_id: SELF, local_epoch: 2 },
        { full_node_id: N2, local_epoch: 0 },
        { full_node_id: N3, local_epoch: 1 },
      ]
      const crashing = await openAt(dir, {
        sidecarWrite: {
          afterStep: (s) => {
            if (s === step) throw new Error(`injected crash after ${s}`)
          },
        },
      })
      const e = await failure(
        crashing.ks.applier.dispatch({
          index: 4,
          prevEncryptionIndex: 0,
          payload: bootstrap(S, R, writers),
          session: undefined,
        }),
      )
      expect(e?._tag).toBe("SidecarWriteFailed")
      // The registry batch went first and is durable.
      expect((await run(crashing.ks.state.store.rowsOf(S))).length).toBe(3)
      // The in-memory state never moved ahead of the file.
      expect(crashing.ks.state.sidecar.raft_applied_index).toBe(0)
      await crashing.close()

      const o = await openAt(dir)
      const out = await dispatch(o, 4, 0, bootstrap(S, R, writers))
      expect(out).toMatchObject({ status: "applied", kind: "bootstrap" })
      // Before rename the sidecar is the old (absent) one and the entry applies
      // again; after rename the file is the commit point and it is a replay.
      expect(out.replay).toBe(step === "rename")
      const sc = (await run(readSidecar(join(dir, "keystore", "keys.json"))))!
      expect(sc.raft_applied_index).toBe(4)
      expect(sc.active).toEqual({ storage: S, raft: R })
      expect(Object.keys(sc.keys).sort()).toEqual([String(S), String(R)])
      for (const d of [S, R]) {
        const rows = await run(o.ks.state.store.rowsOf(d))
        expect(
          rows.map((r) => [r.row.full_node_id, r.row.last_seen_local_epoch, r.row.raft_index]).sort(),
        ).toEqual(writers.map((w) => [w.full_node_id, w.local_epoch, 4]).sort())
      }
      // And the next entry follows normally.
      expect(await dispatch(o, 6, 4, registration(S, N2, 1))).toMatchObject({ outcome: "advanced" })
      await o.close()
    })
  }
})

describe("applier: control (0x05)", () => {
  it("enable flags, rotation, retire, replay and preconditions", async () => {
    const dir = tempDir()
    const o = await openAt(dir)
    expect(await dispatch(o, 1, 0, control({ kind: "enable-storage-envelope" }))).toMatchObject({
      status: "rejected",
      code: "PreconditionFailed",
    })
    expect(await dispatch(o, 2, 1, rotate("storage", 150, []))).toMatchObject({ code: "PreconditionFailed" })
    await dispatch(o, 3, 2, bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 0 }]))
    expect(await dispatch(o, 4, 3, control({ kind: "enable-raft-envelope" }))).toMatchObject({
      code: "PreconditionFailed",
    })
    expect(await dispatch(o, 5, 4, control({ kind: "enable-storage-envelope" }))).toMatchObject({
      status: "applied",
    })
    expect(o.ks.state.sidecar.storage_envelope_active).toBe(true)
    // Replay of the same index: recorded outcome, no effect.
    expect(await dispatch(o, 5, 4, control({ kind: "enable-storage-envelope" }))).toMatchObject({
      status: "applied",
      replay: true,
    })
    expect(o.ks.state.sidecar.raft_applied_index).toBe(5)
    // A second one later: rejected, the flag stays.
    expect(await dispatch(o, 6, 5, control({ kind: "enable-storage-envelope" }))).toMatchObject({
      status: "rejected",
      code: "PreconditionFailed",
    })
    expect(await dispatch(o, 7, 6, control({ kind: "enable-raft-envelope" }))).toMatchObject({
      status: "applied",
    })
    expect(o.ks.state.sidecar.raft_envelope_cutover_index).toBe(7)
    expect(await dispatch(o, 8, 7, control({ kind: "enable-raft-envelope" }))).toMatchObject({
      code: "PreconditionFailed",
    })
    expect(o.ks.state.sidecar.raft_envelope_cutover_index).toBe(7)

    // Rotation adds and activates, with its batch.
    expect(
      await dispatch(
        o,
        9,
        8,
        rotate("storage", 150, [
          { full_node_id: SELF, local_epoch: 0 },
          { full_node_id: N2, local_epoch: 0 },
        ]),
      ),
    ).toMatchObject({
      status: "applied",
      kind: "rotate-dek",
      keyIds: [150],
    })
    expect(o.ks.state.sidecar.active).toEqual({ storage: 150, raft: R })
    expect((await run(o.ks.state.store.rowsOf(150))).length).toBe(2)
    expect(await dispatch(o, 10, 9, rotate("raft", 150, []))).toMatchObject({ code: "PreconditionFailed" })

    // Retire: not the active one; then the old storage DEK.
    expect(await dispatch(o, 11, 10, control({ kind: "retire-dek", key_id: 150 }))).toMatchObject({
      code: "PreconditionFailed",
    })
    expect(await dispatch(o, 12, 11, control({ kind: "retire-dek", key_id: S }))).toMatchObject({
      status: "applied",
    })
    expect(o.ks.state.sidecar.keys[String(S)]).toMatchObject({ retired: true, wrapped: "" })
    expect(await run(o.ks.state.store.rowsOf(S))).toEqual([])
    expect(await dispatch(o, 13, 12, control({ kind: "retire-dek", key_id: S }))).toMatchObject({
      code: "PreconditionFailed",
    })
    // A retired key id is never reused.
    expect(await dispatch(o, 14, 13, rotate("storage", S, []))).toMatchObject({ code: "PreconditionFailed" })
    // Registering under a retired DEK is refused.
    expect(await dispatch(o, 15, 14, registration(S, N2, 3))).toMatchObject({ code: "PreconditionFailed" })
    await o.close()

    const sc = (await run(readSidecar(join(dir, "keystore", "keys.json"))))!
    expect(sc.raft_applied_index).toBe(14)
  })

  it("rewrap-deks verifies under the next KEK, switches to it, and a restart starts with it", async () => {
    const dir = tempDir()
    const o = await openAt(dir, { next: KEK2 })
    await dispatch(o, 1, 0, bootstrap(S, R, []))
    const wraps = [
      { key_id: S, wrapped: wrap(KEK2, dek(S & 0xff), "storage", S) },
      { key_id: R, wrapped: wrap(KEK2, dek(R & 0xff), "raft", R) },
    ]
    // Must cover exactly the unretired DEKs.
    expect(
      await dispatch(
        o,
        2,
        1,
        control({ kind: "rewrap-deks", next_kek_id: kekId(KEK2), wraps: wraps.slice(0, 1) }),
      ),
    ).toMatchObject({
      code: "PreconditionFailed",
    })
    expect(
      await dispatch(o, 3, 2, control({ kind: "rewrap-deks", next_kek_id: kekId(KEK2), wraps })),
    ).toMatchObject({
      status: "applied",
      kind: "rewrap-deks",
    })
    expect(o.ks.state.keks.current?.kekId).toBe(kekId(KEK2))
    await o.close()
    // Restart with the old KEK as EKV_KEK_FILE and the new one as next: starts with the next.
    const o2 = await openAt(dir, { next: KEK2 })
    expect(o2.ks.state.keks.current?.kekId).toBe(kekId(KEK2))
    await o2.close()
    // Without the next KEK: KekMismatch at startup.
    await expect(openAt(dir)).rejects.toMatchObject({ _tag: "KekMismatch" })
  })

  it("rewrap-deks without the next KEK is KekNextMissing; with wraps of other key bytes, KekMismatch", async () => {
    const o = await openAt(tempDir())
    await dispatch(o, 1, 0, bootstrap(S, R, []))
    const wraps = [
      { key_id: S, wrapped: wrap(KEK2, dek(S & 0xff), "storage", S) },
      { key_id: R, wrapped: wrap(KEK2, dek(R & 0xff), "raft", R) },
    ]
    const e = await failure(
      o.ks.applier.dispatch({
        index: 2,
        prevEncryptionIndex: 1,
        payload: control({ kind: "rewrap-deks", next_kek_id: kekId(KEK2), wraps }),
        session: undefined,
      }),
    )
    expect(e?._tag).toBe("KekNextMissing")
    await o.close()

    const o2 = await openAt(tempDir(), { next: KEK2 })
    await dispatch(o2, 1, 0, bootstrap(S, R, []))
    const bad = [wraps[0]!, { key_id: R, wrapped: wrap(KEK2, dek(0x99), "raft", R) }]
    const e2 = await failure(
      o2.ks.applier.dispatch({
        index: 2,
        prevEncryptionIndex: 1,
        payload: control({ kind: "rewrap-deks", next_kek_id: kekId(KEK2), wraps: bad }),
        session: undefined,
      }),
    )
    expect(e2?._tag).toBe("KekMismatch")
    expect(o2.ks.state.sidecar.raft_applied_index).toBe(1)
    await o2.close()
  })
})

describe("applier: one at a time", () => {
  it("a duplicate arriving while the first is in progress gets the same outcome, applied once", async () => {
    const dir = tempDir()
    let writes = 0
    const o = await openAt(dir, {
      sidecarWrite: {
        afterStep: (s) => {
          if (s === "rename") writes++
        },
      },
    })
    const session = newSession("a".repeat(32))
    await run(
      openSession(o.ks.state, {
        sessionId: session.sessionId,
        publicKey: session.publicKey,
        floors: {},
        floorsAsOfIndex: 0,
      }),
    )
    writes = 0
    const p = bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 0 }])
    const [a, b, c] = await Promise.all([
      dispatch(o, 1, 0, p, session),
      dispatch(o, 1, 0, p, session),
      dispatch(o, 1, 0, p, session),
    ])
    expect(a).toBe(b)
    expect(b).toBe(c)
    expect(a).toMatchObject({ status: "applied", replay: false })
    expect(writes).toBe(1)
    // The following entry, queued behind, applies in order.
    const [d, e] = await Promise.all([
      dispatch(o, 2, 1, registration(S, N2, 0)),
      dispatch(o, 3, 2, registration(S, N3, 0)),
    ])
    expect(d).toMatchObject({ outcome: "inserted" })
    expect(e).toMatchObject({ outcome: "inserted" })
    await o.close()
  })
})

describe("applier: hand-over of new DEKs (SPEC §4.3, §6)", () => {
  it("an entry appended after the session's floors: the batch epoch, registered", async () => {
    const o = await openAt(tempDir())
    const session = newSession("b".repeat(32))
    await run(
      openSession(o.ks.state, {
        sessionId: session.sessionId,
        publicKey: session.publicKey,
        floors: {},
        floorsAsOfIndex: 4,
      }),
    )
    const out = await dispatch(o, 5, 0, bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 3 }]), session)
    if (out.status !== "applied" || out.handover === undefined) throw new Error("expected a hand-over")
    expect(out.handover.unregisteredKeyIds).toEqual([])
    const keys = session.open(out.handover.sealed)
    expect(keys.map((k) => [k.keyId, k.purpose, k.localEpoch])).toEqual([
      [S, "storage", 3],
      [R, "raft", 3],
    ])
    expect(keys[0]!.dek).toEqual(dek(S & 0xff))
    expect(o.ks.state.sidecar.keys[String(S)]!.local_epoch).toBe(3)

    // A replay in the same session (a lost reply) hands the keys over again.
    const again = await dispatch(o, 5, 0, bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 3 }]), session)
    if (again.status !== "applied" || again.handover === undefined) throw new Error("expected a hand-over")
    expect(session.open(again.handover.sealed).map((k) => k.localEpoch)).toEqual([3, 3])

    // After a new session, a replay carries no key material.
    const next = newSession("c".repeat(32))
    const opened = await run(
      openSession(o.ks.state, {
        sessionId: next.sessionId,
        publicKey: next.publicKey,
        floors: { [S]: 9 },
        floorsAsOfIndex: 5,
      }),
    )
    expect(next.open(opened.sealed).map((k) => [k.keyId, k.localEpoch])).toEqual([
      [S, 10],
      [R, 4],
    ])
    const replayed = await dispatch(o, 5, 0, bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 3 }]), next)
    expect(replayed).toMatchObject({ status: "applied", replay: true, handover: undefined })
    await o.close()
  })

  it("an older entry (index ≤ floors index) or no batch line: a fresh epoch, to be registered", async () => {
    const o = await openAt(tempDir())
    const session = newSession("d".repeat(32))
    await run(
      openSession(o.ks.state, {
        sessionId: session.sessionId,
        publicKey: session.publicKey,
        floors: { [S]: 6, [R]: 2 },
        floorsAsOfIndex: 10,
      }),
    )
    const out = await dispatch(o, 5, 0, bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 3 }]), session)
    if (out.status !== "applied" || out.handover === undefined) throw new Error("expected a hand-over")
    expect(out.handover.unregisteredKeyIds).toEqual([S, R])
    expect(session.open(out.handover.sealed).map((k) => [k.keyId, k.localEpoch])).toEqual([
      [S, 7],
      [R, 4],
    ])
    expect(o.ks.state.sidecar.keys[String(S)]!.local_epoch).toBe(7)
    // Rotation after the floors, this node missing from the batch.
    const rot = await dispatch(
      o,
      11,
      5,
      rotate("storage", 300, [{ full_node_id: N2, local_epoch: 0 }]),
      session,
    )
    if (rot.status !== "applied" || rot.handover === undefined) throw new Error("expected a hand-over")
    expect(rot.handover.unregisteredKeyIds).toEqual([300])
    expect(session.open(rot.handover.sealed).map((k) => [k.keyId, k.localEpoch])).toEqual([[300, 1]])
    await o.close()
  })
})

describe("sessions", () => {
  it("epochs become max(local, floor)+1, durable before the reply; exhausted DEKs are left out", async () => {
    const dir = tempDir()
    const o = await openAt(dir)
    await dispatch(o, 1, 0, bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 5 }]))
    const s = newSession("e".repeat(32))
    const r = await run(
      openSession(o.ks.state, {
        sessionId: s.sessionId,
        publicKey: s.publicKey,
        floors: { [S]: 2, [R]: 0xffff },
        floorsAsOfIndex: 1,
      }),
    )
    expect(r.exhaustedKeyIds).toEqual([R])
    expect(r.keyIds).toEqual([S])
    expect(s.open(r.sealed).map((k) => [k.keyId, k.localEpoch])).toEqual([[S, 6]])
    const sc = (await run(readSidecar(join(dir, "keystore", "keys.json"))))!
    expect(sc.keys[String(S)]!.local_epoch).toBe(6)
    expect(sc.keys[String(R)]!.local_epoch).toBe(5)
    // Another session goes higher again, even with no floor.
    const s2b = newSession("f".repeat(32))
    const r2 = await run(
      openSession(o.ks.state, {
        sessionId: s2b.sessionId,
        publicKey: s2b.publicKey,
        floors: {},
        floorsAsOfIndex: 1,
      }),
    )
    expect(s2b.open(r2.sealed).map((k) => [k.keyId, k.localEpoch])).toEqual([
      [S, 7],
      [R, 6],
    ])
    expect((await run(o.ks.state.store.session))?.session_id).toBe(s2b.sessionId)
    // Above 0xFF00: reported.
    const s3 = newSession("9".repeat(32))
    const r3 = await run(
      openSession(o.ks.state, {
        sessionId: s3.sessionId,
        publicKey: s3.publicKey,
        floors: { [S]: 0xff00 },
        floorsAsOfIndex: 1,
      }),
    )
    expect(r3.highEpochKeyIds).toEqual([S])
    await o.close()
  })

  it("a failing sidecar write fails the session: no keys handed out", async () => {
    const dir = tempDir()
    const o = await openAt(dir)
    await dispatch(o, 1, 0, bootstrap(S, R, []))
    await o.close()
    const broken = await openAt(dir, {
      sidecarWrite: {
        afterStep: (st) => {
          if (st === "fsync-tmp") throw new Error("disk gone")
        },
      },
    })
    const s = newSession("7".repeat(32))
    const e = await failure(
      openSession(broken.ks.state, {
        sessionId: s.sessionId,
        publicKey: s.publicKey,
        floors: {},
        floorsAsOfIndex: 0,
      }),
    )
    expect(e?._tag).toBe("SidecarWriteFailed")
    expect(await run(broken.ks.state.store.session)).toBeUndefined()
    await broken.close()
  })
})

describe("fullNodeId sanity", () => {
  it("harness ids", () => {
    expect(SELF).toBe(fullNodeId("n1"))
  })
})

describe("KeystoreService layer", () => {
  it("opens with the layer and releases the directory lock when the layer closes", async () => {
    const { Effect } = await import("effect")
    const { KeystoreService } = await import("../../src/startup.ts")
    const { localKekProvider } = await import("../../src/kekProvider.ts")
    const dir = tempDir()
    const opts = {
      nodeId: "n1",
      sidecarPath: join(dir, "keystore", "keys.json"),
      encryptionEnabled: true,
      keks: { current: localKekProvider(KEK), next: undefined },
      nodeSecret: new Uint8Array(32),
    }
    const useIt = Effect.gen(function* () {
      const ks = yield* KeystoreService
      return ks.state.config.nodeId
    }).pipe(Effect.provide(KeystoreService.layer(opts)))
    expect(await Effect.runPromise(useIt)).toBe("n1")
    expect(await Effect.runPromise(useIt)).toBe("n1")
  })
})

describe("applier: order", () => {
  it("an entry arriving while its predecessor is still in progress waits for it", async () => {
    const o = await openAt(tempDir())
    const { Effect } = await import("effect")
    const first = Effect.runPromise(
      o.ks.applier.dispatch({
        index: 1,
        prevEncryptionIndex: 0,
        payload: bootstrap(S, R, []),
        session: undefined,
      }),
    )
    const second = dispatch(o, 2, 1, registration(S, N2, 0))
    expect(await first).toMatchObject({ status: "applied" })
    expect(await second).toMatchObject({ outcome: "inserted" })
    await o.close()
  })
})
