// A node-local halt on an encryption entry (SPEC §2.2): this node's keystore
// is frozen while the node applies a rotation and then SIGKILLed; that node
// halts at the entry (health, ekv_apply_halted, `halted` event) while the
// others go on; once the keystore is back it resumes by itself and ends with
// the same registry and sidecar as the others.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { readSidecarFile, replicatedSidecar } from "../../../../test/src/audit.ts"
import { freePort } from "../../../../test/src/natsFixture.ts"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"
import { InternalAdminClient, replicatedExport, writersAt0 } from "./internalAdminClient.ts"

let sys: EkvSystem
let admin: InternalAdminClient
const ports: Record<string, number> = {}

/** `ekv.events.cluster.<node>` events (filtered here: the harness's filter needs nats-server ≥ 2.10). */
const clusterEvents = async (node: string) =>
  (await sys.events()).filter((e) => e.subject === `ekv.events.cluster.${node}`)

const metric = async (node: string, name: string): Promise<number | undefined> => {
  const text = await fetch(`http://127.0.0.1:${ports[node]}/metrics`).then((r) => r.text())
  for (const line of text.split("\n"))
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) return Number(line.split(" ").at(-1))
  return undefined
}

beforeAll(async () => {
  for (const n of ["n1", "n2", "n3"]) ports[n] = await freePort()
  sys = await startSystem({
    name: "consensus-enc-halt",
    electionTimeoutMs: 500,
    processEnv: Object.fromEntries(
      Object.entries(ports).map(([n, p]) => [`consensus-${n}`, { EKV_METRICS_PORT: String(p) }]),
    ),
  })
  admin = await InternalAdminClient.connect(sys)
}, 120_000)

afterAll(async () => {
  await admin?.close()
  await sys?.stopAll()
})

describe("halt and resume on this node's keystore", () => {
  it("halts only the node whose keystore dies during an encryption entry; it resumes by itself", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const leader = await sys.waitForLeader()
    for (const n of sys.nodes) await sys.waitForHealthy(n)
    const { bootstrap: boot, storageEnvelope } = await admin.bootstrapWithStorageEnvelope(leader, sys.nodes)
    expect(boot.status).toBe("applied")
    expect(storageEnvelope.status).toBe("applied")
    const before = await sys.putRetry("halt/before", "value-before")
    await sys.waitForApplied(before)
    for (const n of sys.nodes) await sys.waitForHealthy(n)

    const f = sys.nodes.find((n) => n !== leader)!
    const others = sys.nodes.filter((n) => n !== f)
    expect(await metric(f, "ekv_apply_halted")).toBe(0)

    // Freeze f's keystore, then rotate: f's dispatch of the rotation never gets an answer.
    sys.pause(`keystore-${f}`)
    const { dek: rot, proposed: r } = await admin.rotateDek(leader, "storage", writersAt0(sys.nodes))
    expect(r.status).toBe("applied")
    // The keystore dies while f is applying the entry.
    await new Promise((res) => setTimeout(res, 1_000))
    await sys.kill(`keystore-${f}`)

    const halted = await sys.waitForHalted(f, 30_000)
    expect(halted).toEqual({ index: r.index, reason: "KeystoreUnavailable" })
    expect(await metric(f, "ekv_apply_halted")).toBe(1)
    const ev = await sys.until(
      "halted event",
      async () => (await clusterEvents(f)).find((e) => e.body.kind === "halted" && e.body.index === r.index),
      20_000,
      500,
    )
    expect(ev.body.code).toBe("KeystoreUnavailable")

    // The others go on: writes commit and apply there, f stays at the entry before.
    const during: number[] = []
    for (let i = 0; i < 5; i++) during.push(await sys.putRetry(`halt/during/${i}`, `during-${i}`))
    await sys.waitForApplied(during.at(-1)!, others)
    const hf = await sys.health(f)
    expect(hf.ok && hf.value.applied_index).toBe(r.index - 1)
    expect(hf.ok && hf.value.keystore).toBe("down")

    // The keystore comes back: f resumes by itself.
    await sys.start(`keystore-${f}`)
    await sys.waitForApplied(during.at(-1)!, [f], 60_000)
    await sys.until("f no longer halted", async () => {
      const h = await sys.health(f)
      return h.ok && h.value.halted === undefined ? true : undefined
    })
    expect(await metric(f, "ekv_apply_halted")).toBe(0)
    const resumed = await sys.until(
      "resumed event",
      async () => (await clusterEvents(f)).find((e) => e.body.kind === "resumed" && e.body.index === r.index),
      20_000,
      500,
    )
    expect(resumed.body.node).toBe(f)

    // Registry and sidecar identical to the others'.
    const after = await sys.putRetry("halt/after", "value-after")
    await sys.waitForApplied(after)
    const exports = await Promise.all(sys.nodes.map((n) => admin.logState(n)))
    const mine = replicatedExport(exports[sys.nodes.indexOf(f)]!)
    expect(mine.active).toEqual({
      storage: (rot("storage") as { key_id: number }).key_id,
      raft: expect.any(Number),
    })
    for (const e of exports) expect(replicatedExport(e)).toEqual(mine)
    const sidecars = await Promise.all(sys.nodes.map((n) => readSidecarFile(sys.sidecarPath(n))))
    for (const s of sidecars) expect(replicatedSidecar(s!)).toEqual(replicatedSidecar(sidecars[0]!))
    expect(sidecars[0]!.raft_applied_index).toBe(r.index)
  }, 120_000)
})
