// Consensus mechanics of the encryption lifecycle with real keystore
// processes, driven over the internal subjects as the admin user: bootstrap
// through `propose`, the storage envelope (values sealed at rest, reads
// decrypt), and the raft cutover under concurrent writers.
import { readdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { encodeEntry, Tag } from "@ekv/wire"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"
import { InternalAdminClient, writersAt0 } from "./internalAdminClient.ts"

let sys: EkvSystem
let admin: InternalAdminClient

const filesContain = async (dir: string, needle: Buffer): Promise<boolean> => {
  for (const f of await readdir(dir, { recursive: true }).catch(() => [] as string[])) {
    const b = await readFile(join(dir, f)).catch(() => null)
    if (b?.includes(needle)) return true
  }
  return false
}

beforeAll(async () => {
  sys = await startSystem({ name: "consensus-enc", electionTimeoutMs: 500 })
  admin = await InternalAdminClient.connect(sys)
}, 120_000)

afterAll(async () => {
  await admin?.close()
  await sys?.stopAll()
})

describe("encryption lifecycle (consensus mechanics)", () => {
  it("bootstraps through propose, seals values at rest after enable-storage-envelope, reads decrypt", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const leader = await sys.waitForLeader()
    for (const n of sys.nodes) await sys.waitForHealthy(n)
    const before = "plain-before-envelope-0123456789"
    await sys.putRetry("enc/before", before)

    const dek = await admin.generate(leader, ["storage", "raft"])
    const writers = writersAt0(sys.nodes)
    const boot = await admin.proposeOnce(
      leader,
      encodeEntry({ tag: Tag.Bootstrap, bootstrap: { storage: dek("storage"), raft: dek("raft"), writers } }),
    )
    expect(boot.status).toBe("applied")
    // A second bootstrap is refused by pre-validation and appends nothing.
    await expect(
      admin.proposeOnce(
        leader,
        encodeEntry({
          tag: Tag.Bootstrap,
          bootstrap: { storage: dek("storage"), raft: dek("raft"), writers },
        }),
      ),
    ).rejects.toThrow(/AlreadyBootstrapped/)

    const es = await admin.proposeOnce(
      leader,
      encodeEntry({ tag: Tag.Control, control: { kind: "enable-storage-envelope" } }),
    )
    expect(es.status).toBe("applied")
    const state = (await admin.internal(leader, "encryption.state", {})) as {
      storage_envelope_active: boolean
    }
    expect(state.storage_envelope_active).toBe(true)

    const secret = "sealed-at-rest-secret-value-ABCDEFGHIJKLMNOP"
    const idx = await sys.putRetry("enc/after", secret)
    expect(idx).toBeGreaterThan(0)
    const got = await sys.kv.get("enc/after")
    expect(got.ok && got.value.found).toBe(true)
    if (got.ok && got.value.found) expect(Buffer.from(got.value.value!, "base64").toString()).toBe(secret)
    const old = await sys.kv.get("enc/before")
    expect(old.ok && old.value.found).toBe(true)

    // Every node applied it; its state files never hold the plaintext value.
    for (const n of sys.nodes) {
      await sys.waitForApplied(idx, [n])
      const st = (await admin.internal(n, "encryption.node-status", {})) as {
        versions_by_key_id: Record<string, number>
        cleartext_versions: number
      }
      expect(Object.values(st.versions_by_key_id).reduce((a, b) => a + b, 0)).toBeGreaterThan(0)
      expect(await filesContain(sys.stateDir(n), Buffer.from(secret))).toBe(false)
    }
  }, 120_000)

  it("raft cutover under concurrent writers: no unsealed entry after c", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const leader = await sys.waitForLeader()
    let stop = false
    let ok = 0
    let failed = 0
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const r = await sys.kv.put(`cut/${w}/${i}`, `v${i}`).catch(() => null)
        if (r?.ok === true) ok++
        else failed++
      }
    })
    await new Promise((r) => setTimeout(r, 300))
    const cut = await admin.proposeOnce(
      leader,
      encodeEntry({ tag: Tag.Control, control: { kind: "enable-raft-envelope" } }),
    )
    expect(cut.status).toBe("applied")
    await new Promise((r) => setTimeout(r, 1_000))
    stop = true
    await Promise.all(writers)
    expect(ok).toBeGreaterThan(0)
    const st = (await admin.internal(leader, "encryption.state", {})) as {
      raft_envelope_cutover_index: number
    }
    expect(st.raft_envelope_cutover_index).toBe(cut.index)
    const after = await sys.putRetry("cut/after", "secret-after-cutover-XYZ")
    expect(after).toBeGreaterThan(st.raft_envelope_cutover_index)
    // No node rejected an unsealed entry after c, and the log files hold no plaintext of later writes.
    for (const n of sys.nodes) {
      await sys.waitForApplied(after, [n])
      const ns = (await admin.internal(n, "encryption.node-status", {})) as {
        log_entries_by_key_id: Record<string, number>
      }
      expect(Object.values(ns.log_entries_by_key_id).reduce((a, b) => a + b, 0)).toBeGreaterThan(0)
      expect(await filesContain(sys.raftDir(n), Buffer.from("secret-after-cutover-XYZ"))).toBe(false)
    }
    void failed
  }, 120_000)
})
