import { kekId, unwrapDek } from "@ekv/crypto"
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import {
  capabilityReport,
  epochsBelowRegistry,
  exportState,
  generateDeks,
  restoreState,
  sidecarState,
} from "../../src/encryptionState.ts"
import { openSession } from "../../src/session.ts"
import {
  bootstrap,
  control,
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
} from "./harness.ts"

const S = 501
const R = 502

const populated = async () => {
  const o = await openAt(tempDir())
  await dispatch(
    o,
    2,
    0,
    bootstrap(S, R, [
      { full_node_id: SELF, local_epoch: 0 },
      { full_node_id: N2, local_epoch: 0 },
    ]),
  )
  await dispatch(o, 3, 2, registration(S, N3, 1, "a".repeat(32)))
  await dispatch(o, 4, 3, control({ kind: "enable-storage-envelope" }))
  await dispatch(o, 6, 4, rotate("storage", 503, [{ full_node_id: SELF, local_epoch: 0 }]))
  await dispatch(o, 7, 6, control({ kind: "retire-dek", key_id: S }))
  await dispatch(o, 9, 7, registration(503, N2, 2))
  return o
}

describe("export / restore (SPEC §4.6)", () => {
  it("a wiped node restored from a snapshot ends with the same registry and wrapped DEKs", async () => {
    const a = await populated()
    const snap = await run(exportState(a.ks.state))
    expect(snap.raft_applied_index).toBe(7)
    expect(snap.last_registry_index).toBe(9)
    expect(snap.keys.map((k) => [k.key_id, k.retired])).toEqual([
      [S, true],
      [R, false],
      [503, false],
    ])
    // The retired DEK's slice is gone.
    expect(snap.writers.some((w) => w.dek_id === S)).toBe(false)

    const dir = tempDir()
    const b = await openAt(dir)
    await run(restoreState(b.ks.state, snap))
    expect(await run(exportState(b.ks.state))).toEqual(snap)
    await b.close()
    // Durable: a restart reads the same state, and the next entry follows on.
    const b2 = await openAt(dir)
    expect(await run(exportState(b2.ks.state))).toEqual(snap)
    expect(await dispatch(b2, 10, 9, registration(503, N3, 0))).toMatchObject({ outcome: "inserted" })
    // Entries at or below the snapshot have no recorded outcome here.
    const e = await failure(
      b2.ks.applier.dispatch({
        index: 9,
        prevEncryptionIndex: 7,
        payload: registration(503, N2, 2),
        session: undefined,
      }),
    )
    expect(e?._tag).toBe("OutcomeNotRetained")
    await b2.close()
    await a.close()
  })

  it("restore keeps local epochs from going down; a session then goes above the floors", async () => {
    const a = await populated()
    const snap = await run(exportState(a.ks.state))
    const b = await openAt(tempDir())
    await run(restoreState(b.ks.state, snap))
    const s = newSession("c".repeat(32))
    const r = await run(
      openSession(b.ks.state, {
        sessionId: s.sessionId,
        publicKey: s.publicKey,
        floors: { 503: 4 },
        floorsAsOfIndex: 9,
      }),
    )
    expect(s.open(r.sealed).map((k) => [k.keyId, k.localEpoch])).toEqual([
      [R, 1],
      [503, 5],
    ])
    await b.close()
    await a.close()
  })

  it("a snapshot whose DEKs the KEK does not open is refused before anything is written", async () => {
    const a = await populated()
    const snap = await run(exportState(a.ks.state))
    const b = await openAt(tempDir(), { kek: KEK2 })
    const e = await failure(restoreState(b.ks.state, snap))
    expect(e?._tag).toBe("KekMismatch")
    expect(await run(b.ks.state.store.allRows)).toEqual([])
    expect(b.ks.state.sidecarPresent).toBe(false)
    await b.close()
    await a.close()
  })

  it("a restore interrupted before the sidecar commit is redone completely", async () => {
    const a = await populated()
    const snap = await run(exportState(a.ks.state))
    const dir = tempDir()
    const crashing = await openAt(dir, {
      sidecarWrite: {
        afterStep: (st) => {
          if (st === "write-half") throw new Error("crash")
        },
      },
    })
    expect((await failure(restoreState(crashing.ks.state, snap)))?._tag).toBe("SidecarWriteFailed")
    await crashing.close()
    const b = await openAt(dir)
    expect(b.ks.state.sidecarPresent).toBe(false)
    // Nothing applies on snapshot rows with the old sidecar.
    const blocked = await failure(
      b.ks.applier.dispatch({
        index: 10,
        prevEncryptionIndex: 9,
        payload: registration(503, N3, 0),
        session: undefined,
      }),
    )
    expect(blocked?._tag).toBe("SidecarBehindRaftLog")
    await run(restoreState(b.ks.state, snap))
    expect(await run(exportState(b.ks.state))).toEqual(snap)
    expect(await dispatch(b, 10, 9, registration(503, N3, 0))).toMatchObject({ outcome: "inserted" })
    await b.close()
    await a.close()
  })
})

describe("DEK generation", () => {
  it("fresh key ids, never one the sidecar holds, wrapped under the KEK only", async () => {
    const o = await populated()
    const gens = await run(generateDeks(o.ks.state, ["storage", "raft"]))
    expect(gens.map((g) => g.purpose)).toEqual(["storage", "raft"])
    const ids = gens.map((g) => g.keyId)
    expect(new Set(ids).size).toBe(2)
    for (const g of gens) {
      expect(o.ks.state.sidecar.keys[String(g.keyId)]).toBeUndefined()
      expect(g.keyId).not.toBe(0)
      expect(g.wrapped.length).toBe(61)
      expect(
        Result.isSuccess(unwrapDek({ kek: KEK, wrapped: g.wrapped, purpose: g.purpose, keyId: g.keyId })),
      ).toBe(true)
    }
    const more = await run(generateDeks(o.ks.state, ["storage"]))
    expect(ids).not.toContain(more[0]!.keyId)
    await o.close()
    const none = await openAt(tempDir(), { kek: null, enabled: false })
    expect((await failure(generateDeks(none.ks.state, ["storage"])))?._tag).toBe("KekMismatch")
    await none.close()
  })
})

describe("capability and sidecar-state", () => {
  it("capable only with flag, KEK, probe and applier; epochs of the storage DEK", async () => {
    const o = await populated()
    const input = {
      node: "n1",
      buildSha: "abc",
      encryptionEnabled: true,
      probePassed: true,
      applierReady: true,
    }
    expect(capabilityReport(o.ks.state, input)).toEqual({
      node: "n1",
      encryption_capable: true,
      build_sha: "abc",
      sidecar_present: true,
      full_node_id: SELF.toString(),
      local_epoch: 0,
      kek_id: kekId(KEK),
      next_kek_id: null,
    })
    for (const off of ["encryptionEnabled", "probePassed", "applierReady"] as const) {
      const r = capabilityReport(o.ks.state, { ...input, [off]: false })
      expect(r.encryption_capable).toBe(false)
      expect(r.full_node_id).toBe("0")
      expect(r.local_epoch).toBe(0)
    }
    const s = newSession("d".repeat(32))
    await run(
      openSession(o.ks.state, {
        sessionId: s.sessionId,
        publicKey: s.publicKey,
        floors: { 503: 6 },
        floorsAsOfIndex: 9,
      }),
    )
    expect(capabilityReport(o.ks.state, input).local_epoch).toBe(7)
    await o.close()

    const noKek = await openAt(tempDir(), { kek: null, enabled: false })
    expect(capabilityReport(noKek.ks.state, { ...input, encryptionEnabled: false })).toMatchObject({
      encryption_capable: false,
      sidecar_present: false,
      kek_id: null,
      local_epoch: 0,
    })
    await noKek.close()
    const withNext = await openAt(tempDir(), { next: KEK2 })
    expect(capabilityReport(withNext.ks.state, input).next_kek_id).toBe(kekId(KEK2))
    await withNext.close()
  })

  it("sidecar-state lists unretired wrapped DEKs and the caller's registry epochs", async () => {
    const o = await populated()
    const r = await run(sidecarState(o.ks.state, N2))
    expect(Object.keys(r.wrapped_deks_by_id).sort()).toEqual([String(R), "503"])
    expect(r).toMatchObject({
      active_storage_id: 503,
      active_raft_id: R,
      storage_envelope_active: true,
      raft_envelope_cutover_index: 0,
      latest_applied_index: 9,
      writer_registry_for_caller: { [R]: 0, 503: 2 },
    })
    expect((await run(sidecarState(o.ks.state, undefined))).writer_registry_for_caller).toEqual({})
    await o.close()
  })
})

describe("epochsBelowRegistry (SPEC §7 LocalEpochRollback, for consensus)", () => {
  it("reports an active DEK whose local epoch is below this node's own row", async () => {
    const o = await openAt(tempDir())
    await dispatch(o, 1, 0, bootstrap(S, R, [{ full_node_id: SELF, local_epoch: 2 }]))
    expect(await run(epochsBelowRegistry(o.ks.state))).toEqual([])
    await dispatch(o, 2, 1, registration(S, SELF, 9))
    expect(await run(epochsBelowRegistry(o.ks.state))).toEqual([S])
    await o.close()
  })
})
