// A node-local halt on an encryption entry (SPEC §2.2): this node's keystore
// is frozen while the node applies a rotation and then SIGKILLed; that node
// halts at the entry (health, ekv_apply_halted, `halted` event) while the
// others go on; once the keystore is back it resumes by itself and ends with
// the same registry and sidecar as the others.
import { createServer } from "node:net"
import { fullNodeId } from "@ekv/crypto"
import { encodeEntry, Tag } from "@ekv/wire"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { readSidecarFile, replicatedSidecar } from "../../../../test/src/audit.ts"
import { type EkvSystem, startSystem } from "../../../../test/src/system.ts"

let sys: EkvSystem
let nc: NatsConnection
const ports: Record<string, number> = {}
const enc = new TextEncoder()
const dec = new TextDecoder()

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const a = s.address()
      s.close(() => resolve(typeof a === "object" && a !== null ? a.port : 0))
    })
  })

const internal = async (node: string, sub: string, body: unknown, timeout = 20_000) => {
  const m = await nc.request(`ekv.internal.${node}.admin.${sub}`, enc.encode(JSON.stringify(body)), {
    timeout,
  })
  const err = m.headers?.get("Nats-Service-Error-Code")
  const json = JSON.parse(dec.decode(m.data)) as Record<string, unknown>
  if (err !== undefined && err !== "") throw new Error(`${sub}: ${err} ${JSON.stringify(json)}`)
  return json
}

/** Proposes through `leader`, retrying while its writer session opens (ApplierNotReady) or it is unavailable. */
const propose = async (leader: string, entry: Uint8Array): Promise<{ index: number; status: string }> => {
  const body = { entry: Buffer.from(entry).toString("base64") }
  for (let i = 0; ; i++) {
    try {
      return (await internal(leader, "encryption.propose", body, 60_000)) as { index: number; status: string }
    } catch (e) {
      if (i > 50 || !/ApplierNotReady|503/.test(String(e))) throw e
      await new Promise((r) => setTimeout(r, 200))
    }
  }
}

const generate = async (leader: string, purposes: ("storage" | "raft")[]) => {
  const g = (await internal(leader, "encryption.generate-dek", { purposes })) as {
    deks: { purpose: string; key_id: number; wrapped: string }[]
  }
  return (p: string) => {
    const d = g.deks.find((x) => x.purpose === p)!
    return { key_id: d.key_id as never, wrapped: Buffer.from(d.wrapped, "base64") }
  }
}

const writersAt0 = () => sys.nodes.map((n) => ({ full_node_id: fullNodeId(n), local_epoch: 0 as never }))

/** The replicated part of a keystore export (`log.state`): everything but `created`. */
const replicatedExport = (e: Record<string, unknown>): Record<string, unknown> => {
  const keys = (e.keys as { key_id: number; purpose: string; wrapped: string; retired: boolean }[])
    .map((k) => ({ key_id: k.key_id, purpose: k.purpose, wrapped: k.wrapped, retired: k.retired }))
    .sort((a, b) => a.key_id - b.key_id)
  const writers = [...(e.writers as { dek_id: number; node_id16: number }[])].sort(
    (a, b) => a.dek_id - b.dek_id || a.node_id16 - b.node_id16,
  )
  return { ...e, keys, writers }
}

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
  nc = await connect({
    servers: sys.nats.servers,
    user: "admin",
    pass: sys.passwords.admin ?? "",
    inboxPrefix: "_INBOX.admin",
  })
}, 120_000)

afterAll(async () => {
  await nc?.close()
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
    const dek = await generate(leader, ["storage", "raft"])
    const boot = await propose(
      leader,
      encodeEntry({
        tag: Tag.Bootstrap,
        bootstrap: { storage: dek("storage"), raft: dek("raft"), writers: writersAt0() },
      }),
    )
    expect(boot.status).toBe("applied")
    expect(
      (await propose(leader, encodeEntry({ tag: Tag.Control, control: { kind: "enable-storage-envelope" } })))
        .status,
    ).toBe("applied")
    const before = await sys.putRetry("halt/before", "value-before")
    await sys.waitForApplied(before)
    for (const n of sys.nodes) await sys.waitForHealthy(n)

    const f = sys.nodes.find((n) => n !== leader)!
    const others = sys.nodes.filter((n) => n !== f)
    expect(await metric(f, "ekv_apply_halted")).toBe(0)

    // Freeze f's keystore, then rotate: f's dispatch of the rotation never gets an answer.
    sys.pause(`keystore-${f}`)
    const rot = await generate(leader, ["storage"])
    const r = await propose(
      leader,
      encodeEntry({
        tag: Tag.Control,
        control: { kind: "rotate-dek", purpose: "storage", dek: rot("storage"), writers: writersAt0() },
      }),
    )
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
    const exports = await Promise.all(sys.nodes.map((n) => internal(n, "log.state", {})))
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
