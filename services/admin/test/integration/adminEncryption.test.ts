// The admin service as a real process on a nats-server running the §9
// permissions (JetStream on), in front of stand-ins for each node's consensus
// (`<p>.internal.<n>.admin.cluster.status`, `<p>.internal.<n>.admin.encryption.*`)
// and keystore (`<p>.node.<n>.capability`, `<p>.internal.<n>.keystore.resync`):
// the order of checks of CONTRACT.md §1, the leader's gate and the member poll
// (nothing proposed when they refuse), the encryption mutators, membership
// after activation, and `ekv encryption history` against a real JetStream stream.
import type { ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import { fullNodeId } from "@ekv/crypto"
import { decodeEntry, type EntryPayload, encryptionEventMsgId } from "@ekv/wire"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import type { Msg, NatsConnection } from "@nats-io/transport-node"
import { Result } from "effect"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { runCli } from "../../../../test/src/cli.ts"
import { ask as askOver, json, StandInBus } from "./standInBus.ts"

const MEMBERS = ["n1", "n2", "n3"]
/** n4 has credentials and stand-ins but starts outside the cluster. */
const NODES = [...MEMBERS, "n4"]
const CLUSTER_ID = "0123456789abcdef0123456789abcdef"
const KEK = "aaaaaaaaaaaaaaaa"
const NEXT_KEK = "bbbbbbbbbbbbbbbb"
const fid = (n: string) => fullNodeId(n).toString()

type Cap = Record<string, unknown> | "silent"
interface Key {
  key_id: number
  purpose: "storage" | "raft"
  created: string
  retired: boolean
}
interface Row {
  dek_id: number
  node_id16: number
  full_node_id: string
  first_seen_local_epoch: number
  last_seen_local_epoch: number
  raft_index?: number
}
interface World {
  leader: string
  members: Array<{ node: string; role: "voter" | "learner" }>
  leaderCapable: boolean
  caps: Record<string, Cap>
  keys: Key[]
  active: { storage: number; raft: number }
  storageActive: boolean
  storageIndex: number
  cutover: number
  registry: Row[]
  index: number
  versions: Record<string, Record<string, number>>
  /** Rejection the leader records for the next proposal. */
  reject?: { code: string; reason: string }
  /** What else happened in the log before the rejected proposal applied. */
  raced?: () => void
  serveRewrap: boolean
}

const capOf = (node: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  node,
  encryption_capable: true,
  build_sha: "test",
  sidecar_present: true,
  full_node_id: fid(node),
  local_epoch: 3,
  kek_id: KEK,
  next_kek_id: NEXT_KEK,
  ...extra,
})

let world: World
const proposals: EntryPayload[] = []
const calls: string[] = []

const rowFor = (dek: number, node: string, epoch: number, raftIndex: number): Row => ({
  dek_id: dek,
  node_id16: Number(fullNodeId(node) & 0xffffn),
  full_node_id: fid(node),
  first_seen_local_epoch: epoch,
  last_seen_local_epoch: epoch,
  raft_index: raftIndex,
})

const fresh = (): World => ({
  leader: "n1",
  members: MEMBERS.map((node) => ({ node, role: "voter" as const })),
  leaderCapable: true,
  caps: Object.fromEntries(NODES.map((n) => [n, capOf(n)])),
  keys: [],
  active: { storage: 0, raft: 0 },
  storageActive: false,
  storageIndex: 0,
  cutover: 0,
  registry: [],
  index: 20,
  versions: {},
  serveRewrap: true,
})

/** Keys 10 (old storage), 11 (storage) and 12 (raft) with every member registered. */
const bootstrapped = (): World => {
  const w = fresh()
  w.keys = [
    { key_id: 10, purpose: "storage", created: "2026-01-01T00:00:00.000Z", retired: false },
    { key_id: 11, purpose: "storage", created: "2026-01-02T00:00:00.000Z", retired: false },
    { key_id: 12, purpose: "raft", created: "2026-01-02T00:00:00.000Z", retired: false },
  ]
  w.active = { storage: 11, raft: 12 }
  w.registry = [10, 11, 12].flatMap((k) => MEMBERS.map((n) => rowFor(k, n, 2, 5)))
  return w
}

const stateReply = () => ({
  cluster_id: CLUSTER_ID,
  leader: world.leader,
  term: 3,
  applied_index: world.index,
  commit_index: world.index,
  leader_capable: world.leaderCapable,
  storage_envelope_active: world.storageActive,
  active: world.active,
  raft_envelope_cutover_index: world.cutover,
  last_encryption_index: 5,
  last_control_index: 5,
  keys: world.keys,
  registry: world.registry,
  members: world.members.map((m) => ({ ...m, full_node_id: fid(m.node) })),
  ...(world.storageIndex > 0 ? { storage_envelope_index: world.storageIndex } : {}),
})

const clusterStatus = () => ({
  cluster_id: CLUSTER_ID,
  leader: world.leader,
  term: 3,
  commit_index: world.index,
  members: world.members.map((m) => ({ ...m, applied_index: world.index, reachable: true })),
})

const nodeStatus = (node: string) => ({
  node,
  role: "voter",
  sidecar_raft_applied_index: 5,
  local_epochs: { "11": 4 },
  versions_by_key_id: world.versions[node] ?? {},
  cleartext_versions: 0,
  log_entries_by_key_id: {},
  snapshots_by_key_id: {},
})

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64")

/** Applies a proposal to the stand-in world the way a leader would, and describes it. */
const apply = (p: EntryPayload): { kind: string; key_ids: number[]; outcome: string } => {
  world.index++
  switch (p.tag) {
    case 0x03: {
      const r = p.registration
      const node = NODES.find((n) => fullNodeId(n) === r.full_node_id) ?? "n?"
      world.registry.push(rowFor(r.dek_id, node, r.local_epoch, world.index))
      return { kind: "registration", key_ids: [r.dek_id], outcome: "inserted" }
    }
    case 0x04:
      world.keys.push(
        {
          key_id: p.bootstrap.storage.key_id,
          purpose: "storage",
          created: new Date().toISOString(),
          retired: false,
        },
        {
          key_id: p.bootstrap.raft.key_id,
          purpose: "raft",
          created: new Date().toISOString(),
          retired: false,
        },
      )
      world.active = { storage: p.bootstrap.storage.key_id, raft: p.bootstrap.raft.key_id }
      for (const k of [p.bootstrap.storage.key_id, p.bootstrap.raft.key_id])
        for (const w of p.bootstrap.writers) {
          const node = NODES.find((n) => fullNodeId(n) === w.full_node_id) ?? "n?"
          world.registry.push(rowFor(k, node, w.local_epoch, world.index))
        }
      return {
        kind: "bootstrap",
        key_ids: [p.bootstrap.storage.key_id, p.bootstrap.raft.key_id],
        outcome: "applied",
      }
    case 0x05: {
      const c = p.control
      if (c.kind === "enable-storage-envelope") {
        world.storageActive = true
        world.storageIndex = world.index
      }
      if (c.kind === "enable-raft-envelope") world.cutover = world.index
      const keyIds =
        c.kind === "rotate-dek"
          ? [c.dek.key_id]
          : c.kind === "retire-dek"
            ? [c.key_id]
            : c.kind === "rewrap-deks"
              ? c.wraps.map((w) => w.key_id)
              : []
      return { kind: c.kind, key_ids: keyIds, outcome: "applied" }
    }
    default:
      throw new Error(`unexpected proposal tag ${p.tag}`)
  }
}

let bus: StandInBus
let admin: ChildProcess
let operator: NatsConnection
const conns: NatsConnection[] = []

const standInConsensus = async (node: string) => {
  const nc = await bus.connectAs(`consensus-${node}`)
  const handle = (msg: Msg) => {
    {
      const op = msg.subject.split(".").slice(4).join(".")
      if (op === "cluster.status") return msg.respond(JSON.stringify(clusterStatus()))
      const isMember = world.members.some((m) => m.node === node)
      if (!isMember) return
      calls.push(`${node}:${op}`)
      const body = json(msg)
      switch (op) {
        case "encryption.state":
          return msg.respond(JSON.stringify(stateReply()))
        case "encryption.node-status":
          return msg.respond(JSON.stringify(nodeStatus(node)))
        case "encryption.generate-dek": {
          const purposes = body.purposes as string[]
          const deks = purposes.map((purpose, i) => ({
            purpose,
            key_id: 100 + world.keys.length + i,
            wrapped: b64(randomBytes(61)),
          }))
          return msg.respond(JSON.stringify({ deks }))
        }
        case "encryption.rewrap-deks": {
          if (!world.serveRewrap) return
          const wraps = world.keys
            .filter((k) => !k.retired)
            .map((k) => ({ key_id: k.key_id, wrapped: b64(randomBytes(61)) }))
          return msg.respond(JSON.stringify({ next_kek_id: body.next_kek_id, wraps }))
        }
        case "encryption.sidecar-state":
          return msg.respond(
            JSON.stringify({
              wrapped_deks_by_id: {},
              active_storage_id: world.active.storage,
              active_raft_id: world.active.raft,
              storage_envelope_active: world.storageActive,
              raft_envelope_cutover_index: world.cutover,
              latest_applied_index: 5,
              writer_registry_for_caller: {},
            }),
          )
        case "encryption.rewrite":
          return msg.respond(JSON.stringify({ started: true }))
        case "encryption.propose": {
          const decoded = decodeEntry(new Uint8Array(Buffer.from(String(body.entry), "base64")))
          if (Result.isFailure(decoded)) throw new Error(decoded.failure.message)
          proposals.push(decoded.success)
          if (world.reject !== undefined) {
            world.index++
            world.raced?.()
            const r = world.reject
            return msg.respond(
              JSON.stringify({
                index: world.index,
                kind: "registration",
                status: "rejected",
                code: r.code,
                reason: r.reason,
                key_ids: [],
              }),
            )
          }
          const { kind, key_ids, outcome } = apply(decoded.success)
          return msg.respond(
            JSON.stringify({ index: world.index, kind, status: "applied", outcome, key_ids }),
          )
        }
        case "cluster.add-learner":
          world.members.push({ node: String(body.node), role: "learner" })
          world.index++
          return msg.respond(JSON.stringify({ index: world.index }))
        case "cluster.promote":
          for (const m of world.members) if (m.node === body.node) m.role = "voter"
          world.index++
          return msg.respond(JSON.stringify({ index: world.index }))
      }
    }
  }
  nc.subscribe(`ekv.internal.${node}.admin.>`, {
    callback: (err, msg) => {
      if (err === null) handle(msg)
    },
  })
  await nc.flush()
  conns.push(nc)
}

const standInKeystore = async (node: string) => {
  const nc = await bus.connectAs(`keystore-${node}`)
  nc.subscribe(`ekv.node.${node}.capability`, {
    callback: (err, msg) => {
      if (err !== null) return
      const cap = world.caps[node]
      if (cap === undefined || cap === "silent") return
      msg.respond(JSON.stringify(cap))
    },
  })
  nc.subscribe(`ekv.internal.${node}.keystore.resync`, {
    callback: (err, msg) => {
      if (err !== null) return
      calls.push(`${node}:keystore.resync:${json(msg).leader}`)
      msg.respond(JSON.stringify({ node, mode: "log-replay", raft_applied_index: 5 }))
    },
  })
  await nc.flush()
  conns.push(nc)
}

const ask = (subject: string, body: unknown) => askOver(operator, subject, body)
const enc = (op: string, body: unknown = {}) => ask(`ekv.admin.encryption.${op}`, body)

beforeAll(async () => {
  bus = await StandInBus.start({ nodes: NODES, tmpPrefix: "ekv-admin-enc-", jetstream: true })
  world = fresh()
  for (const n of NODES) {
    await standInConsensus(n)
    await standInKeystore(n)
  }
  operator = await bus.connectAs("operator")
  admin = await bus.startAdmin({ EKV_ELECTION_TIMEOUT_MS: "300" })
})

afterAll(async () => {
  await operator?.close()
  for (const nc of conns) await nc.close()
  await bus?.stop()
})

beforeEach(() => {
  world = fresh()
  proposals.length = 0
  calls.length = 0
})

const proposedNothing = () => {
  expect(proposals).toEqual([])
  expect(calls.filter((c) => /propose|generate-dek|rewrap-deks|rewrite|resync/.test(c))).toEqual([])
}

/** Every mutator, with a request that passes its target checks on `bootstrapped()`. */
const MUTATORS: ReadonlyArray<readonly [string, unknown]> = [
  ["bootstrap", { discover: true }],
  ["register-writer", { dek_id: 11, full_node_id: fid("n2"), local_epoch: 9 }],
  ["rotate-dek", { purpose: "storage" }],
  ["rewrap-deks", {}],
  ["retire-dek", { key_id: 10 }],
  ["enable-storage-envelope", {}],
  ["enable-raft-envelope", {}],
  ["rewrite", {}],
  ["resync-sidecar", { node: "n3" }],
]

describe("the leader's gate", () => {
  const cases: ReadonlyArray<readonly [string, (w: World) => void, string]> = [
    [
      "encryption disabled",
      (w) =>
        (w.caps.n1 = capOf("n1", {
          encryption_capable: false,
          full_node_id: "0",
          kek_id: null,
          next_kek_id: null,
        })),
      "EncryptionDisabled",
    ],
    ["the leader's keystore silent (no KEK)", (w) => (w.caps.n1 = "silent"), "KekNotConfigured"],
    ["the leader's applier not ready", (w) => (w.leaderCapable = false), "ApplierNotReady"],
  ]
  for (const [what, setup, reason] of cases) {
    it(`${what}: every mutator is FailedPrecondition ${reason} and proposes nothing`, async () => {
      for (const [op, body] of MUTATORS) {
        world = bootstrapped()
        setup(world)
        proposals.length = 0
        calls.length = 0
        const r = await enc(op, body)
        expect(r.code, op).toBe("412")
        expect(r.body, op).toMatchObject({ error: { code: "FailedPrecondition", details: { reason } } })
        proposedNothing()
      }
    })
  }

  it("without DEKs, the disabled gate comes before NotBootstrapped", async () => {
    world.caps.n1 = capOf("n1", {
      encryption_capable: false,
      kek_id: null,
      next_kek_id: null,
      full_node_id: "0",
    })
    for (const op of ["rotate-dek", "enable-raft-envelope", "enable-storage-envelope"]) {
      const r = await enc(op, op === "rotate-dek" ? { purpose: "raft" } : {})
      expect(r.body, op).toMatchObject({ error: { details: { reason: "EncryptionDisabled" } } })
    }
    const s = await enc("status")
    expect(s.body.phase).toBe("disabled")
    proposedNothing()
  })
})

describe("the member poll", () => {
  it("CapabilityCheckFailed names every failing member; nothing proposed", async () => {
    world = bootstrapped()
    world.caps.n2 = "silent"
    world.caps.n3 = capOf("n3", { encryption_capable: false })
    for (const [op, body] of MUTATORS.filter(([op]) =>
      ["rotate-dek", "rewrap-deks", "retire-dek", "enable-storage-envelope"].includes(op),
    )) {
      proposals.length = 0
      calls.length = 0
      const r = await enc(op, body)
      expect(r.code, op).toBe("412")
      expect(r.body, op).toMatchObject({ error: { code: "CapabilityCheckFailed" } })
      const nodes = (r.body.error as { details: { nodes: Array<{ node: string; reason: string }> } }).details
        .nodes
      expect(nodes.map((n) => n.node)).toEqual(["n2", "n3"])
      expect(nodes[1]?.reason).toBe("NotEncryptionCapable")
      proposedNothing()
    }
  })

  it("bootstrap polls too", async () => {
    world.caps.n3 = "silent"
    const r = await enc("bootstrap", { discover: true })
    expect(r.body).toMatchObject({
      error: { code: "CapabilityCheckFailed", details: { nodes: [{ node: "n3" }] } },
    })
    proposedNothing()
  })
})

describe("order of checks", () => {
  it("schema, LocalEpochOutOfRange and duplicate ids come first", async () => {
    const unknown = await enc("rotate-dek", { purpose: "storage", force: true })
    expect(unknown.body).toMatchObject({ error: { code: "InvalidArgument" } })
    const epoch = await enc("register-writer", { dek_id: 999, full_node_id: fid("n9"), local_epoch: 70000 })
    expect(epoch).toMatchObject({ code: "400", body: { error: { code: "LocalEpochOutOfRange" } } })
    const dup = await enc("bootstrap", {
      writers: [
        { full_node_id: fid("n1"), local_epoch: 0 },
        { full_node_id: fid("n1"), local_epoch: 1 },
      ],
    })
    expect(dup.body).toMatchObject({ error: { code: "InvalidArgument" } })
    proposedNothing()
  })

  it("NotFound for unknown key ids and nodes, even with the gate closed", async () => {
    world = bootstrapped()
    world.caps.n1 = "silent"
    const reg = await enc("register-writer", { dek_id: 999, full_node_id: fid("n2"), local_epoch: 1 })
    expect(reg).toMatchObject({ code: "404", body: { error: { code: "NotFound" } } })
    const retire = await enc("retire-dek", { key_id: 999 })
    expect(retire).toMatchObject({ code: "404", body: { error: { code: "NotFound" } } })
    const resync = await enc("resync-sidecar", { node: "n9" })
    expect(resync).toMatchObject({ code: "404", body: { error: { code: "NotFound" } } })
    const cap = await enc("capability", { node: "n9" })
    expect(cap).toMatchObject({ code: "404", body: { error: { code: "NotFound" } } })
    proposedNothing()
  })

  it("NotAMember for a register-writer target or bootstrap writer outside the cluster", async () => {
    world = bootstrapped()
    world.caps.n1 = "silent"
    const reg = await enc("register-writer", { dek_id: 11, full_node_id: fid("n9"), local_epoch: 1 })
    expect(reg.body).toMatchObject({
      error: { code: "FailedPrecondition", details: { reason: "NotAMember" } },
    })
    world = fresh()
    world.caps.n1 = "silent"
    const boot = await enc("bootstrap", {
      writers: [...MEMBERS, "n9"].map((n) => ({ full_node_id: fid(n), local_epoch: 0 })),
    })
    expect(boot.body).toMatchObject({
      error: { code: "FailedPrecondition", details: { reason: "NotAMember" } },
    })
    proposedNothing()
  })

  it("MemberNotRegistered for an explicit batch missing a member", async () => {
    const r = await enc("bootstrap", {
      writers: ["n1", "n2"].map((n) => ({ full_node_id: fid(n), local_epoch: 0 })),
    })
    expect(r.body).toMatchObject({
      error: { code: "FailedPrecondition", details: { reason: "MemberNotRegistered", nodes: ["n3"] } },
    })
    proposedNothing()
  })

  it("registry verdicts (409) before the gate", async () => {
    world = bootstrapped()
    world.caps.n1 = "silent"
    const rollback = await enc("register-writer", { dek_id: 11, full_node_id: fid("n2"), local_epoch: 1 })
    expect(rollback).toMatchObject({ code: "409", body: { error: { code: "LocalEpochRollback" } } })
    // A row under n2's node_id16 held by another full_node_id.
    world.registry = world.registry.map((r) =>
      r.full_node_id === fid("n2") && r.dek_id === 11 ? { ...r, full_node_id: "123" } : r,
    )
    const collision = await enc("register-writer", { dek_id: 11, full_node_id: fid("n2"), local_epoch: 9 })
    expect(collision).toMatchObject({ code: "409", body: { error: { code: "NodeIDCollision" } } })
    proposedNothing()
  })
})

describe("mutators", () => {
  it("bootstrap discover: both DEKs from the leader, every member at epoch 0", async () => {
    const r = await enc("bootstrap", { discover: true })
    expect(r.code).toBe("")
    expect(r.body).toMatchObject({ index: 21, storage_key_id: 100, raft_key_id: 101 })
    expect(r.body.writers).toEqual(
      MEMBERS.map((n) => ({
        node: n,
        full_node_id: fid(n),
        node_id16: Number(fullNodeId(n) & 0xffffn),
        local_epoch: 0,
      })),
    )
    expect(proposals).toHaveLength(1)
    expect(proposals[0]?.tag).toBe(0x04)
    const again = await enc("bootstrap", { discover: true })
    expect(again.body).toMatchObject({ error: { details: { reason: "AlreadyBootstrapped" } } })
    expect(proposals).toHaveLength(1)
  })

  it("an explicit batch keeps its epochs", async () => {
    const r = await enc("bootstrap", {
      writers: MEMBERS.map((n, i) => ({ full_node_id: fid(n), local_epoch: i + 1 })),
    })
    expect(r.code).toBe("")
    const p = proposals[0]
    expect(p?.tag === 0x04 && p.bootstrap.writers.map((w) => w.local_epoch)).toEqual([1, 2, 3])
  })

  it("register-writer: advanced proposes a 0x03; unchanged proposes nothing and returns the row's index", async () => {
    world = bootstrapped()
    const adv = await enc("register-writer", { dek_id: 11, full_node_id: fid("n2"), local_epoch: 9 })
    expect(adv).toMatchObject({ code: "", body: { index: 21 } })
    expect(proposals.map((p) => p.tag)).toEqual([0x03])
    proposals.length = 0
    const same = await enc("register-writer", { dek_id: 12, full_node_id: fid("n3"), local_epoch: 2 })
    expect(same).toEqual({ code: "", body: { index: 5, outcome: "unchanged" } })
    expect(proposals).toEqual([])
  })

  it("a rejection recorded at apply comes back with its code", async () => {
    world = bootstrapped()
    world.reject = { code: "LocalEpochRollback", reason: "raced" }
    const r = await enc("register-writer", { dek_id: 11, full_node_id: fid("n2"), local_epoch: 9 })
    expect(r).toMatchObject({ code: "409", body: { error: { code: "LocalEpochRollback" } } })
  })

  it("rotate-dek: NotBootstrapped before DEKs; then a new DEK with every member at epoch 0", async () => {
    const before = await enc("rotate-dek", { purpose: "raft" })
    expect(before.body).toMatchObject({ error: { details: { reason: "NotBootstrapped" } } })
    proposedNothing()
    world = bootstrapped()
    const r = await enc("rotate-dek", { purpose: "raft" })
    expect(r).toEqual({ code: "", body: { index: 21, key_id: 103 } })
    const p = proposals[0]
    expect(p?.tag).toBe(0x05)
    if (p?.tag !== 0x05 || p.control.kind !== "rotate-dek") throw new Error("expected rotate-dek")
    expect(p.control.purpose).toBe("raft")
    expect(p.control.writers).toEqual(MEMBERS.map((n) => ({ full_node_id: fullNodeId(n), local_epoch: 0 })))
  })

  it("rewrap-deks: KekNextMismatch unless every member reports the same next KEK", async () => {
    world = bootstrapped()
    world.caps.n3 = capOf("n3", { next_kek_id: "cccccccccccccccc" })
    const mismatch = await enc("rewrap-deks")
    expect(mismatch.body).toMatchObject({ error: { details: { reason: "KekNextMismatch" } } })
    world.caps.n3 = capOf("n3", { next_kek_id: null })
    const missing = await enc("rewrap-deks")
    expect(missing.body).toMatchObject({ error: { details: { reason: "KekNextMismatch" } } })
    proposedNothing()
    world.caps.n3 = capOf("n3")
    const ok = await enc("rewrap-deks")
    expect(ok).toEqual({ code: "", body: { index: 21, key_ids: [10, 11, 12] } })
    const p = proposals[0]
    if (p?.tag !== 0x05 || p.control.kind !== "rewrap-deks") throw new Error("expected rewrap-deks")
    expect(p.control.next_kek_id).toBe(NEXT_KEK)
    expect(p.control.wraps.map((w) => w.key_id)).toEqual([10, 11, 12])
  })

  it("retire-dek: ActiveKey, RetireCriteriaUnmet with the unmet criteria, then retired", async () => {
    world = bootstrapped()
    const active = await enc("retire-dek", { key_id: 11 })
    expect(active.body).toMatchObject({ error: { details: { reason: "ActiveKey" } } })
    world.versions.n2 = { "10": 5 }
    const unmet = await enc("retire-dek", { key_id: 10 })
    expect(unmet.body).toMatchObject({
      error: {
        details: {
          reason: "RetireCriteriaUnmet",
          unmet: [{ node: "n2", criterion: "stored-versions", count: 5 }],
        },
      },
    })
    proposedNothing()
    world.versions = {}
    const ok = await enc("retire-dek", { key_id: 10 })
    expect(ok).toEqual({ code: "", body: { index: 21 } })
  })

  it("enable-storage-envelope bootstraps first, then is idempotent", async () => {
    const r = await enc("enable-storage-envelope")
    expect(r).toEqual({ code: "", body: { index: 22, bootstrapped: true } })
    expect(proposals.map((p) => p.tag)).toEqual([0x04, 0x05])
    const again = await enc("enable-storage-envelope")
    expect(again).toEqual({ code: "", body: { index: 22, bootstrapped: false } })
    expect(proposals).toHaveLength(2)
  })

  it("enable-storage-envelope: MemberNotRegistered while a member has no row", async () => {
    world = bootstrapped()
    world.registry = world.registry.filter((r) => r.full_node_id !== fid("n3"))
    const r = await enc("enable-storage-envelope")
    expect(r.body).toMatchObject({ error: { details: { reason: "MemberNotRegistered", nodes: ["n3"] } } })
    proposedNothing()
  })

  it("enable-raft-envelope: NotBootstrapped, StorageEnvelopeNotActive, then the cutover, then idempotent", async () => {
    const none = await enc("enable-raft-envelope")
    expect(none.body).toMatchObject({ error: { details: { reason: "NotBootstrapped" } } })
    world = bootstrapped()
    const noStorage = await enc("enable-raft-envelope")
    expect(noStorage.body).toMatchObject({ error: { details: { reason: "StorageEnvelopeNotActive" } } })
    proposedNothing()
    world.storageActive = true
    const ok = await enc("enable-raft-envelope")
    expect(ok).toEqual({ code: "", body: { index: 21, cutover_index: 21 } })
    const again = await enc("enable-raft-envelope")
    expect(again).toEqual({ code: "", body: { index: 21, cutover_index: 21 } })
    expect(proposals).toHaveLength(1)
  })

  it("rewrite fans out to every member; resync-sidecar calls the node's keystore with the leader", async () => {
    world = bootstrapped()
    world.storageActive = true
    const r = await enc("rewrite", { rate_mib_s: 4 })
    expect(r).toEqual({ code: "", body: { started: MEMBERS } })
    const s = await enc("resync-sidecar", { node: "n3" })
    expect(s).toEqual({ code: "", body: { node: "n3", mode: "log-replay", raft_applied_index: 5 } })
    expect(calls).toContain("n3:keystore.resync:n1")
  })
})

describe("reads", () => {
  it("status: phase, keys, nodes and registry", async () => {
    world = bootstrapped()
    world.storageActive = true
    const s = await enc("status")
    expect(s.code).toBe("")
    expect(s.body).toMatchObject({ phase: "storage-envelope", active: { storage: 11, raft: 12 } })
    expect((s.body.nodes as unknown[]).length).toBe(3)
    expect((s.body.registry as unknown[]).length).toBe(9)
    world = fresh()
    expect((await enc("status")).body.phase).toBe("capable")
  })

  it("capability of one node, or of every member", async () => {
    const one = await enc("capability", { node: "n2" })
    expect(one.body).toMatchObject({ node: "n2", encryption_capable: true })
    world.caps.n3 = "silent"
    const all = await enc("capability")
    const members = all.body.members as Array<{ node: string; report?: unknown; error?: { code: string } }>
    expect(members.map((m) => m.node)).toEqual(MEMBERS)
    expect(members[2]?.error?.code).toBe("Unavailable")
    const sc = await enc("sidecar-state")
    expect(sc.body).toMatchObject({ active_storage_id: 0, latest_applied_index: 5 })
  })
})

describe("membership after activation", () => {
  it("before bootstrap add-learner is not gated", async () => {
    world.caps.n4 = "silent"
    const r = await ask("ekv.admin.cluster.add-learner", { node: "n4" })
    expect(r).toEqual({ code: "", body: { index: 21 } })
    expect(proposals).toEqual([])
  })

  it("PeerNotEncryptionCapable: nothing proposed, no change", async () => {
    world = bootstrapped()
    world.caps.n4 = capOf("n4", { encryption_capable: false })
    const r = await ask("ekv.admin.cluster.add-learner", { node: "n4" })
    expect(r.body).toMatchObject({ error: { details: { reason: "PeerNotEncryptionCapable" } } })
    expect(world.members.map((m) => m.node)).toEqual(MEMBERS)
    proposedNothing()
  })

  it("a capable candidate is registered under every unretired DEK before the change", async () => {
    world = bootstrapped()
    const r = await ask("ekv.admin.cluster.add-learner", { node: "n4" })
    expect(r).toEqual({ code: "", body: { index: 24 } })
    // Placeholder rows at epoch 0 without a session: its capability report's epoch (3) is the
    // epoch of its live writer session, which registers it itself (SPEC §6).
    expect(
      proposals.map((p) =>
        p.tag === 0x03
          ? [p.registration.dek_id, p.registration.local_epoch, p.registration.session_id]
          : p.tag,
      ),
    ).toEqual([
      [10, 0, undefined],
      [11, 0, undefined],
      [12, 0, undefined],
    ])
    expect(calls.indexOf("n1:cluster.add-learner")).toBeGreaterThan(
      calls.lastIndexOf("n1:encryption.propose"),
    )
    const promote = await ask("ekv.admin.cluster.promote", { node: "n4" })
    expect(promote).toEqual({ code: "", body: { index: 25 } })
    expect(proposals).toHaveLength(3)
  })

  it("a candidate with rows is not registered again, even below its session's epoch", async () => {
    // A wiped node re-added: rows of its earlier life at epoch 2 under every DEK, a new writer
    // session at 3 (its report) whose own 0x03 has not applied yet. Advancing the rows to 3
    // without a session would make that session's 0x03 "same epoch, another session": refused,
    // and the node halts (seed 2002 of the nemesis).
    world = bootstrapped()
    world.registry.push(...[10, 11, 12].map((k) => rowFor(k, "n4", 2, 6)))
    world.members.push({ node: "n4", role: "learner" })
    const r = await ask("ekv.admin.cluster.promote", { node: "n4" })
    expect(r.code).toBe("")
    proposedNothing()
  })

  it("a candidate whose own session registered first (LocalEpochRollback) is admitted", async () => {
    world = bootstrapped()
    world.registry.push(...[11, 12].map((k) => rowFor(k, "n4", 3, 20)))
    // Its session's 0x03 under DEK 10 applies just before the placeholder, which is refused.
    world.reject = { code: "LocalEpochRollback", reason: "local_epoch 0 is below the registered 3" }
    world.raced = () => world.registry.push(rowFor(10, "n4", 3, world.index - 1))
    const r = await ask("ekv.admin.cluster.add-learner", { node: "n4" })
    expect(r.code).toBe("")
    expect(proposals.map((p) => (p.tag === 0x03 ? p.registration.dek_id : p.tag))).toEqual([10])
    expect(world.members.map((m) => m.node)).toContain("n4")
  })

  it("PeerNotEncryptionRegistered when the registration is rejected", async () => {
    world = bootstrapped()
    world.reject = { code: "PreconditionFailed", reason: "no" }
    const r = await ask("ekv.admin.cluster.add-learner", { node: "n4" })
    expect(r.body).toMatchObject({ error: { details: { reason: "PeerNotEncryptionRegistered" } } })
    expect(world.members.map((m) => m.node)).toEqual(MEMBERS)
  })
})

describe("ekv encryption history", () => {
  const cli = (args: ReadonlyArray<string>) =>
    runCli(bus.fixture.servers, "operator", bus.passwords.operator ?? "", args)

  it("reads the EKV_EVENTS stream read-only, with filters", async () => {
    const empty = await cli(["encryption", "history"])
    expect(empty.code).toBe(0)
    expect(empty.out).toMatch(/no events/)
    const ks = await bus.connectAs("keystore-n1")
    const jsm = await jetstreamManager(ks)
    await jsm.streams.add({ name: "EKV_EVENTS", subjects: ["ekv.events.>"], storage: "file" })
    const js = jetstream(ks)
    const at = "2026-11-22T10:00:00.000Z"
    for (const [i, kind, outcome] of [
      [6, "bootstrap", "applied"],
      [7, "registration", "inserted"],
      [9, "rotate-dek", "rejected"],
    ] as const) {
      const body = {
        cluster_id: CLUSTER_ID,
        node: "n1",
        index: i,
        kind,
        key_ids: [11],
        outcome,
        ...(outcome === "rejected" ? { code: "PreconditionFailed" } : {}),
        at,
      }
      await js.publish("ekv.events.encryption.n1", JSON.stringify(body), {
        msgID: encryptionEventMsgId(CLUSTER_ID, "n1", i),
      })
    }
    const ks2 = await bus.connectAs("keystore-n2")
    await jetstream(ks2).publish(
      "ekv.events.cluster.n2",
      JSON.stringify({
        cluster_id: CLUSTER_ID,
        node: "n2",
        kind: "halted",
        index: 8,
        code: "KekMismatch",
        at,
      }),
    )
    const all = await cli(["encryption", "history"])
    expect(all.code).toBe(0)
    expect(all.out).toMatch(/KIND\s+NODE\s+INDEX\s+OUTCOME\s+CODE/)
    expect(all.out).toMatch(/bootstrap\s+n1\s+6\s+applied/)
    expect(all.out).toMatch(/halted\s+n2\s+8\s+-\s+KekMismatch/)
    expect(all.out).toMatch(/rotate-dek\s+n1\s+9\s+rejected\s+PreconditionFailed/)
    const n1 = await cli([
      "encryption",
      "history",
      "--node",
      "n1",
      "--since-index",
      "7",
      "--limit",
      "1",
      "--json",
    ])
    expect(n1.code).toBe(0)
    const events = JSON.parse(n1.out) as { events: Array<{ index: number; kind: string }> }
    expect(events.events.map((e) => [e.index, e.kind])).toEqual([[9, "rotate-dek"]])
    // enable-storage-envelope on an active cluster whose leader does not say
    // at which index: the admin service finds it in the stream.
    await js.publish(
      "ekv.events.encryption.n1",
      JSON.stringify({
        cluster_id: CLUSTER_ID,
        node: "n1",
        index: 15,
        kind: "enable-storage-envelope",
        key_ids: [],
        outcome: "applied",
        at,
      }),
      { msgID: encryptionEventMsgId(CLUSTER_ID, "n1", 15) },
    )
    world = bootstrapped()
    world.storageActive = true
    const again = await enc("enable-storage-envelope")
    expect(again).toEqual({ code: "", body: { index: 15, bootstrapped: false } })
    expect(proposals).toEqual([])
    // The operator may not delete what it reads.
    const opJsm = await jetstreamManager(operator)
    await expect(opJsm.streams.delete("EKV_EVENTS")).rejects.toThrow()
    await ks.close()
    await ks2.close()
  })
})

describe("process", () => {
  it("stops cleanly on SIGTERM", async () => {
    const exited = new Promise<number | null>((r) => admin.once("exit", (code) => r(code)))
    admin.kill("SIGTERM")
    expect(await exited).toBe(0)
  })
})
