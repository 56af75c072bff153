// rewrap-deks relay (SPEC.md §4.4, §5): consensus serves
// `<p>.internal.<n>.admin.encryption.rewrap-deks` as a leader op — a follower
// forwards it once — by calling its keystore's `rewrap`; the admin's
// `ekv.admin.encryption.rewrap-deks` then proposes the 0x05 entry from those
// wraps and every member switches to the next KEK. Real processes, NATS §9 auth.
import { readFile } from "node:fs/promises"
import { kekId, unwrapDek } from "@ekv/crypto"
import { Result } from "effect"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"
import { InternalAdminClient } from "./internalAdminClient.ts"

let sys: EkvSystem
let admin: InternalAdminClient

beforeAll(async () => {
  sys = await startSystem({ name: "rewrap-relay", electionTimeoutMs: 500 })
  admin = await InternalAdminClient.connect(sys)
}, 120_000)

afterAll(async () => {
  await admin?.close()
  await sys?.stopAll()
})

describe("rewrap-deks relay", () => {
  it("a follower forwards to the leader's keystore; the admin's rewrap-deks switches every member's KEK", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const leader = await sys.waitForReady()
    const kekA = new Uint8Array(await readFile(sys.kekFile("a")))
    const kekB = new Uint8Array(await readFile(sys.kekFile("b")))
    const boot = await sys.encryption<{ storage_key_id: number; raft_key_id: number }>("bootstrap", {
      discover: true,
    })
    if (!boot.ok) throw new Error(`bootstrap: ${JSON.stringify(boot.error)}`)
    const sidecar = await sys.encryption<{ wrapped_deks_by_id: Record<string, string> }>("sidecar-state", {})
    if (!sidecar.ok) throw new Error("sidecar-state")

    const follower = sys.nodes.find((n) => n !== leader)!
    const subject = `ekv.internal.${follower}.admin.encryption.rewrap-deks`
    const wrong = await admin.reply(subject, { next_kek_id: "00".repeat(8) })
    expect(wrong.code).toBe("412")
    expect(wrong.json).toMatchObject({
      error: { code: "FailedPrecondition", details: { reason: "KekNextMismatch" } },
    })

    const r = await admin.reply(subject, { next_kek_id: kekId(kekB) })
    expect(r.code).toBe("")
    const wraps = r.json.wraps as { key_id: number; wrapped: string }[]
    expect(r.json.next_kek_id).toBe(kekId(kekB))
    const ids = [boot.value.storage_key_id, boot.value.raft_key_id]
    expect(wraps.map((w) => w.key_id).sort()).toEqual([...ids].sort())
    for (const w of wraps) {
      const purpose = w.key_id === boot.value.storage_key_id ? "storage" : "raft"
      const fresh = unwrapDek({
        kek: kekB,
        wrapped: Buffer.from(w.wrapped, "base64"),
        purpose,
        keyId: w.key_id,
      })
      const old = unwrapDek({
        kek: kekA,
        wrapped: Buffer.from(sidecar.value.wrapped_deks_by_id[String(w.key_id)]!, "base64"),
        purpose,
        keyId: w.key_id,
      })
      expect(Result.isSuccess(fresh) && Result.isSuccess(old)).toBe(true)
      if (Result.isSuccess(fresh) && Result.isSuccess(old)) expect(fresh.success).toEqual(old.success)
    }

    // End to end through the admin service.
    const rewrap = await sys.encryption<{ index: number; key_ids: number[] }>("rewrap-deks", {})
    if (!rewrap.ok) throw new Error(`rewrap-deks: ${JSON.stringify(rewrap.error)}`)
    expect([...rewrap.value.key_ids].sort()).toEqual([...ids].sort())
    await sys.waitForApplied(rewrap.value.index)
    for (const n of sys.nodes) {
      const cap = await sys.capability(n)
      expect(cap.ok && cap.value.kek_id, `${n} current KEK`).toBe(kekId(kekB))
    }
  }, 120_000)
})
