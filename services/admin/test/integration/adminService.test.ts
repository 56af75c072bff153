// The admin service as a real process (`node services/admin/src/main.ts`) on a
// nats-server running the §9 permissions, in front of scripted stand-ins for
// the consensus nodes (their `<p>.internal.<n>.admin.cluster.*` subjects):
// leader discovery, forwarding, the one retry, NotFound, fan-out, errors.
import type { ChildProcess } from "node:child_process"
import type { NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { ask as askOver, json, StandInBus } from "./standInBus.ts"

const NODES = ["n1", "n2", "n3"]

type Role = "voter" | "learner"
interface Cluster {
  leader: string | null
  term: number
  commit: number
  members: Array<{ node: string; role: Role }>
  /** Nodes whose stand-in does not answer mutators (a leader that just lost its role). */
  silentMutators: Set<string>
  /** Runs before a mutator is answered (or ignored). */
  onMutator?: (node: string, op: string) => void
}

let bus: StandInBus
let admin: ChildProcess
let operator: NatsConnection
const stand: Map<string, NatsConnection> = new Map()
const calls: Array<{ node: string; op: string; body: unknown }> = []
let cluster: Cluster

const reset = () => {
  cluster = {
    leader: "n1",
    term: 2,
    commit: 10,
    members: NODES.map((node) => ({ node, role: "voter" as Role })),
    silentMutators: new Set(),
  }
  calls.length = 0
}

const statusOf = (node: string) => ({
  cluster_id: "0123456789abcdef0123456789abcdef",
  leader: cluster.leader,
  term: cluster.term,
  // A follower's view lags, so the leader's view is recognizable.
  commit_index: node === cluster.leader ? cluster.commit : cluster.commit - 1,
  members: cluster.members.map((m) => ({
    node: m.node,
    role: m.role,
    applied_index: cluster.commit,
    reachable: true,
  })),
})

/** A stand-in for node `n`'s consensus internal admin subjects. */
const standIn = async (node: string) => {
  const nc = await bus.connectAs(`consensus-${node}`)
  nc.subscribe(`ekv.internal.${node}.admin.cluster.*`, {
    callback: (err, msg) => {
      if (err !== null) return
      const op = msg.subject.split(".").pop() ?? ""
      const body = json(msg)
      if (op === "status") {
        msg.respond(JSON.stringify(statusOf(node)))
        return
      }
      calls.push({ node, op, body })
      cluster.onMutator?.(node, op)
      if (cluster.silentMutators.has(node)) return
      const target = String(body.node)
      switch (op) {
        case "add-learner":
          cluster.members.push({ node: target, role: "learner" })
          break
        case "promote":
          for (const m of cluster.members) if (m.node === target) m.role = "voter"
          break
        case "remove":
          cluster.members = cluster.members.filter((m) => m.node !== target)
          break
        case "transfer-leader":
          cluster.leader = target
          cluster.term++
          msg.respond(JSON.stringify({ leader: target }))
          return
        case "snapshot":
          msg.respond(JSON.stringify({ snapshots: [{ node, index: cluster.commit - NODES.indexOf(node) }] }))
          return
      }
      cluster.commit++
      msg.respond(JSON.stringify({ index: cluster.commit }))
    },
  })
  // Before bootstrap (no DEKs) membership changes are not gated by encryption.
  nc.subscribe(`ekv.internal.${node}.admin.encryption.state`, {
    callback: (err, msg) => {
      if (err !== null || cluster.leader === null) return
      msg.respond(
        JSON.stringify({
          cluster_id: "0123456789abcdef0123456789abcdef",
          leader: cluster.leader,
          term: cluster.term,
          applied_index: cluster.commit,
          commit_index: cluster.commit,
          leader_capable: false,
          storage_envelope_active: false,
          active: { storage: 0, raft: 0 },
          raft_envelope_cutover_index: 0,
          last_encryption_index: 0,
          last_control_index: 0,
          keys: [],
          registry: [],
          members: cluster.members.map((m) => ({ node: m.node, role: m.role, full_node_id: "1" })),
        }),
      )
    },
  })
  await nc.flush()
  stand.set(node, nc)
}

const ask = (subject: string, body: unknown) => askOver(operator, subject, body)

beforeAll(async () => {
  bus = await StandInBus.start({ nodes: NODES, tmpPrefix: "ekv-admin-svc-", jetstream: false })
  reset()
  for (const n of NODES) await standIn(n)
  operator = await bus.connectAs("operator")
  admin = await bus.startAdmin()
})

afterAll(async () => {
  await operator?.close()
  for (const nc of stand.values()) await nc.close()
  await bus?.stop()
})

beforeEach(() => reset())

describe("ekv-admin over stand-in consensus nodes", () => {
  it("answers status from the leader's view", async () => {
    const r = await ask("ekv.admin.cluster.status", {})
    expect(r.code).toBe("")
    expect(r.body).toEqual(statusOf("n1"))
  })

  it("forwards add-learner and promote to the leader", async () => {
    const a = await ask("ekv.admin.cluster.add-learner", { node: "n4" })
    expect(a).toEqual({ code: "", body: { index: 11 } })
    const p = await ask("ekv.admin.cluster.promote", { node: "n4" })
    expect(p).toEqual({ code: "", body: { index: 12 } })
    expect(calls).toEqual([
      { node: "n1", op: "add-learner", body: { node: "n4" } },
      { node: "n1", op: "promote", body: { node: "n4" } },
    ])
  })

  it("follows a leader transfer", async () => {
    const t = await ask("ekv.admin.cluster.transfer-leader", { node: "n3" })
    expect(t).toEqual({ code: "", body: { leader: "n3" } })
    const s = await ask("ekv.admin.cluster.status", {})
    expect(s.body.leader).toBe("n3")
    expect(s.body.commit_index).toBe(cluster.commit)
    await ask("ekv.admin.cluster.remove", { node: "n2" })
    expect(calls.map((c) => `${c.node}:${c.op}`)).toEqual(["n1:transfer-leader", "n3:remove"])
  })

  it("retries a mutator once against a fresh leader when the first is Unavailable", async () => {
    // n1 takes the request but loses leadership to n2 before answering.
    cluster.silentMutators.add("n1")
    cluster.onMutator = (node) => {
      if (node === "n1") {
        cluster.leader = "n2"
        cluster.term++
      }
    }
    const r = await ask("ekv.admin.cluster.remove", { node: "n3" })
    expect(r).toEqual({ code: "", body: { index: 11 } })
    expect(calls.map((c) => `${c.node}:${c.op}`)).toEqual(["n1:remove", "n2:remove"])
  })

  it("gives up after the one retry", async () => {
    cluster.silentMutators = new Set(NODES)
    const r = await ask("ekv.admin.cluster.promote", { node: "n2" })
    expect(r.code).toBe("503")
    expect(r.body).toMatchObject({ error: { code: "Unavailable" } })
    expect(calls.map((c) => `${c.node}:${c.op}`)).toEqual(["n1:promote", "n1:promote"])
  })

  it("rejects unknown fields and unknown nodes without proposing", async () => {
    const u = await ask("ekv.admin.cluster.add-learner", { node: "n4", force: true })
    expect(u.code).toBe("400")
    expect(u.body).toMatchObject({ error: { code: "InvalidArgument" } })
    const bad = await ask("ekv.admin.cluster.status", "[1]")
    expect(bad.code).toBe("400")
    const notJson = await ask("ekv.admin.cluster.promote", "{nope")
    expect(notJson.body).toMatchObject({ error: { code: "InvalidArgument" } })
    for (const op of ["promote", "remove", "transfer-leader", "snapshot"]) {
      const r = await ask(`ekv.admin.cluster.${op}`, { node: "n9" })
      expect(r.code, op).toBe("404")
      expect(r.body).toMatchObject({ error: { code: "NotFound", details: { node: "n9" } } })
    }
    expect(calls).toEqual([])
    expect(cluster.commit).toBe(10)
  })

  it("snapshots every member, or one", async () => {
    const all = await ask("ekv.admin.cluster.snapshot", {})
    expect(all).toEqual({
      code: "",
      body: {
        snapshots: [
          { node: "n1", index: 10 },
          { node: "n2", index: 9 },
          { node: "n3", index: 8 },
        ],
      },
    })
    const one = await ask("ekv.admin.cluster.snapshot", { node: "n2" })
    expect(one.body).toEqual({ snapshots: [{ node: "n2", index: 9 }] })
    expect(calls.filter((c) => c.node === "n2")).toEqual([
      { node: "n2", op: "snapshot", body: { node: "n2" } },
      { node: "n2", op: "snapshot", body: { node: "n2" } },
    ])
  })

  it("reports a partial snapshot fan-out as Unavailable naming the node", async () => {
    cluster.silentMutators.add("n3")
    const r = await ask("ekv.admin.cluster.snapshot", {})
    expect(r.code).toBe("503")
    expect(r.body).toMatchObject({
      error: { code: "Unavailable", details: { nodes: [{ node: "n3", code: "Unavailable" }] } },
    })
  })

  it("without a leader: status says leader null, mutators are Unavailable", async () => {
    cluster.leader = null
    const s = await ask("ekv.admin.cluster.status", {})
    expect(s.code).toBe("")
    expect(s.body.leader).toBeNull()
    const m = await ask("ekv.admin.cluster.add-learner", { node: "n5" })
    expect(m.code).toBe("503")
    expect(calls).toEqual([])
  })

  it("finds nodes beyond its seeds through cluster membership", async () => {
    // Seeds are n1,n2; n3 leads and the seeds are gone.
    cluster.leader = "n3"
    await stand.get("n1")?.close()
    await stand.get("n2")?.close()
    stand.delete("n1")
    stand.delete("n2")
    const s = await ask("ekv.admin.cluster.status", {})
    expect(s.code).toBe("")
    expect(s.body.leader).toBe("n3")
    await standIn("n1")
    await standIn("n2")
  })

  it("stops cleanly on SIGTERM", async () => {
    const exited = new Promise<number | null>((r) => admin.once("exit", (code) => r(code)))
    admin.kill("SIGTERM")
    expect(await exited).toBe(0)
  })
})
