// Consensus mechanics of the encryption lifecycle with real keystore
// processes, driven over the internal subjects as the admin user: bootstrap
// through `propose`, the storage envelope (values sealed at rest, reads
// decrypt), and the raft cutover under concurrent writers.
import { readdir, readFile } from "node:fs/promises"
import { join } from "node:path"
import { fullNodeId } from "@ekv/crypto"
import { encodeEntry, Tag } from "@ekv/wire"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"

let sys: EkvSystem
let nc: NatsConnection
const enc = new TextEncoder()
const dec = new TextDecoder()

const internal = async (node: string, op: string, body: unknown, timeout = 20_000) => {
  const m = await nc.request(
    `ekv.internal.${node}.admin.encryption.${op}`,
    enc.encode(JSON.stringify(body)),
    {
      timeout,
    },
  )
  const err = m.headers?.get("Nats-Service-Error-Code")
  const json = JSON.parse(dec.decode(m.data)) as Record<string, unknown>
  if (err !== undefined && err !== "") throw new Error(`${op}: ${err} ${JSON.stringify(json)}`)
  return json
}

const propose = (leader: string, entry: Uint8Array) =>
  internal(leader, "propose", { entry: Buffer.from(entry).toString("base64") })

const filesContain = async (dir: string, needle: Buffer): Promise<boolean> => {
  for (const f of await readdir(dir, { recursive: true }).catch(() => [] as string[])) {
    const b = await readFile(join(dir, f)).catch(() => null)
    if (b?.includes(needle)) return true
  }
  return false
}

beforeAll(async () => {
  sys = await startSystem({ name: "consensus-enc", electionTimeoutMs: 500 })
  const s = sys as unknown as { passwords: Record<string, string>; nats: { servers: string[] } }
  nc = await connect({
    servers: s.nats.servers,
    user: "admin",
    pass: s.passwords.admin ?? "",
    inboxPrefix: "_INBOX.admin",
  })
}, 120_000)

afterAll(async () => {
  await nc?.close()
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

    const gen = (await internal(leader, "generate-dek", { purposes: ["storage", "raft"] })) as {
      deks: { purpose: string; key_id: number; wrapped: string }[]
    }
    const dek = (p: string) => {
      const d = gen.deks.find((x) => x.purpose === p)!
      return { key_id: d.key_id as never, wrapped: Buffer.from(d.wrapped, "base64") }
    }
    const writers = sys.nodes.map((n) => ({ full_node_id: fullNodeId(n), local_epoch: 0 as never }))
    const boot = await propose(
      leader,
      encodeEntry({ tag: Tag.Bootstrap, bootstrap: { storage: dek("storage"), raft: dek("raft"), writers } }),
    )
    expect(boot.status).toBe("applied")
    // A second bootstrap is refused by pre-validation and appends nothing.
    await expect(
      propose(
        leader,
        encodeEntry({
          tag: Tag.Bootstrap,
          bootstrap: { storage: dek("storage"), raft: dek("raft"), writers },
        }),
      ),
    ).rejects.toThrow(/AlreadyBootstrapped/)

    const es = await propose(
      leader,
      encodeEntry({ tag: Tag.Control, control: { kind: "enable-storage-envelope" } }),
    )
    expect(es.status).toBe("applied")
    const state = (await internal(leader, "state", {})) as { storage_envelope_active: boolean }
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
      const st = (await internal(n, "node-status", {})) as {
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
    const cut = await propose(
      leader,
      encodeEntry({ tag: Tag.Control, control: { kind: "enable-raft-envelope" } }),
    )
    expect(cut.status).toBe("applied")
    await new Promise((r) => setTimeout(r, 1_000))
    stop = true
    await Promise.all(writers)
    expect(ok).toBeGreaterThan(0)
    const st = (await internal(leader, "state", {})) as { raft_envelope_cutover_index: number }
    expect(st.raft_envelope_cutover_index).toBe(cut.index)
    const after = await sys.putRetry("cut/after", "secret-after-cutover-XYZ")
    expect(after).toBeGreaterThan(st.raft_envelope_cutover_index)
    // No node rejected an unsealed entry after c, and the log files hold no plaintext of later writes.
    for (const n of sys.nodes) {
      await sys.waitForApplied(after, [n])
      const ns = (await internal(n, "node-status", {})) as { log_entries_by_key_id: Record<string, number> }
      expect(Object.values(ns.log_entries_by_key_id).reduce((a, b) => a + b, 0)).toBeGreaterThan(0)
      expect(await filesContain(sys.raftDir(n), Buffer.from("secret-after-cutover-XYZ"))).toBe(false)
    }
    void failed
  }, 120_000)
})
