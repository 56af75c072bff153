// rewrap (SPEC.md §4.4, §5 rewrap-deks): the wraps the leader's keystore makes
// for a KEK rotation open under the next KEK to the DEKs the current KEK
// holds, and the 0x05 entry built from them switches the applier to that KEK.
import { kekId, unwrapDek } from "@ekv/crypto"
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import { rewrapDeks } from "../../src/kekRewrap.ts"
import {
  bootstrap,
  control,
  dek,
  dispatch,
  failure,
  KEK,
  KEK2,
  openAt,
  rotate,
  run,
  tempDir,
} from "./harness.ts"

const S = 0x0a0b0c01
const R = 0x0a0b0c02
const S2 = 0x0a0b0c03
const KEK3 = new Uint8Array(32).fill(0x44)

const open = (kek: Uint8Array, wrapped: Uint8Array, purpose: "storage" | "raft", keyId: number) => {
  const r = unwrapDek({ kek, wrapped, purpose, keyId })
  if (Result.isFailure(r)) throw new Error(r.failure.message)
  return r.success
}

describe("rewrap", () => {
  it("wraps every unretired DEK under the next KEK: same key bytes, fresh wraps", async () => {
    const o = await openAt(tempDir(), { next: KEK2 })
    await dispatch(o, 1, 0, bootstrap(S, R, []))
    await dispatch(o, 2, 1, rotate("storage", S2, []))
    await dispatch(o, 3, 2, control({ kind: "retire-dek", key_id: S }))

    const wraps = await run(rewrapDeks(o.ks.state, kekId(KEK2)))
    expect(wraps.map((w) => w.keyId)).toEqual([R, S2])
    for (const w of wraps) {
      const key = o.ks.state.sidecar.keys[String(w.keyId)]!
      const before = open(KEK, Buffer.from(key.wrapped, "base64"), key.purpose, w.keyId)
      expect(open(KEK2, w.wrapped, key.purpose, w.keyId)).toEqual(before)
      expect(before).toEqual(dek(w.keyId & 0xff))
      // Bound to its purpose and key id (CONTRACT.md §7 AAD); never the current KEK.
      const other = key.purpose === "storage" ? "raft" : "storage"
      expect(
        Result.isFailure(unwrapDek({ kek: KEK2, wrapped: w.wrapped, purpose: other, keyId: w.keyId })),
      ).toBe(true)
      expect(
        Result.isFailure(unwrapDek({ kek: KEK, wrapped: w.wrapped, purpose: key.purpose, keyId: w.keyId })),
      ).toBe(true)
    }
    // A fresh random nonce each call.
    const again = await run(rewrapDeks(o.ks.state, kekId(KEK2)))
    expect(Buffer.from(again[0]!.wrapped).equals(Buffer.from(wraps[0]!.wrapped))).toBe(false)
    // Nothing changed: the KEK switches only when the entry applies.
    expect(o.ks.state.keks.current?.kekId).toBe(kekId(KEK))
    expect(o.ks.state.sidecar.raft_applied_index).toBe(3)
    await o.close()
  })

  it("the 0x05 rewrap-deks entry built from the wraps applies and switches to the next KEK", async () => {
    const dir = tempDir()
    const o = await openAt(dir, { next: KEK2 })
    await dispatch(o, 1, 0, bootstrap(S, R, []))
    const wraps = await run(rewrapDeks(o.ks.state, kekId(KEK2)))
    const out = await dispatch(
      o,
      2,
      1,
      control({
        kind: "rewrap-deks",
        next_kek_id: kekId(KEK2),
        wraps: wraps.map((w) => ({ key_id: w.keyId, wrapped: w.wrapped })),
      }),
    )
    expect(out).toMatchObject({ status: "applied", kind: "rewrap-deks" })
    expect(o.ks.state.keks.current?.kekId).toBe(kekId(KEK2))
    for (const id of [S, R]) {
      const key = o.ks.state.sidecar.keys[String(id)]!
      expect(open(KEK2, Buffer.from(key.wrapped, "base64"), key.purpose, id)).toEqual(dek(id & 0xff))
    }
    await o.close()
    // A restart with the old KEK current and the new one next starts with the new one.
    const o2 = await openAt(dir, { next: KEK2 })
    expect(o2.ks.state.keks.current?.kekId).toBe(kekId(KEK2))
    await o2.close()
  })

  it("refuses another next KEK, no next KEK, and a keystore without DEKs", async () => {
    const o = await openAt(tempDir(), { next: KEK2 })
    expect(await failure(rewrapDeks(o.ks.state, kekId(KEK2)))).toMatchObject({
      _tag: "RewrapRefused",
      reason: "NotBootstrapped",
    })
    await dispatch(o, 1, 0, bootstrap(S, R, []))
    expect(await failure(rewrapDeks(o.ks.state, kekId(KEK3)))).toMatchObject({
      _tag: "RewrapRefused",
      reason: "KekNextMismatch",
      loadedNextKekId: kekId(KEK2),
    })
    await o.close()

    const none = await openAt(tempDir())
    await dispatch(none, 1, 0, bootstrap(S, R, []))
    expect(await failure(rewrapDeks(none.ks.state, kekId(KEK2)))).toMatchObject({
      _tag: "RewrapRefused",
      reason: "KekNextMismatch",
      loadedNextKekId: null,
    })
    await none.close()
  })
})
