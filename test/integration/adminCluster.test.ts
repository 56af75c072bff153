// `ekv.admin.cluster.*` end to end, as the operator user, over real
// processes: nats-server with the shipped §9 permissions, three consensus
// nodes (`services/consensus/src/main.ts`, each with its own bus user) and
// the admin service (`services/admin/src/main.ts`).
import { type ChildProcess, spawn } from "node:child_process"
import { chmod, mkdtemp, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { busUsers, generatePasswords, literalPasswords, natsServerConfig } from "@ekv/admin"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startNats } from "../src/natsFixture.ts"
import { ProcessCluster, REPO_ROOT } from "../src/processCluster.ts"

const NODES = ["n1", "n2", "n3"]
const ALL = [...NODES, "n4"]

interface Member {
  node: string
  role: "voter" | "learner"
  applied_index: number
  reachable: boolean
}
interface Status {
  cluster_id: string
  leader: string | null
  term: number
  commit_index: number
  members: Member[]
}
type Reply = { code: string; body: Record<string, unknown> }

let cluster: ProcessCluster
let passwords: Record<string, string>
let admin: ChildProcess
let operator: NatsConnection
let adminLog = ""

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const ask = async (op: string, body: unknown, timeout = 20_000): Promise<Reply> => {
  const m = await operator.request(
    `ekv.admin.cluster.${op}`,
    typeof body === "string" ? body : JSON.stringify(body),
    { timeout },
  )
  return {
    code: m.headers?.get("Nats-Service-Error-Code") ?? "",
    body: JSON.parse(new TextDecoder().decode(m.data)) as Record<string, unknown>,
  }
}

const status = async (): Promise<Status> => {
  const r = await ask("status", {})
  if (r.code !== "") throw new Error(`status: ${JSON.stringify(r.body)}`)
  return r.body as unknown as Status
}

/** Polls status until `ok` holds (or fails with the last status and the logs). */
const until = async (what: string, ok: (s: Status) => boolean, timeoutMs = 60_000): Promise<Status> => {
  const t0 = Date.now()
  let last: unknown
  for (;;) {
    try {
      const s = await status()
      if (ok(s)) return s
      last = s
    } catch (e) {
      last = e instanceof Error ? e.message : e
    }
    if (Date.now() - t0 > timeoutMs) {
      const logs = await Promise.all(
        cluster.running().map(async (n) => `--- ${n}\n${(await cluster.readLog(n)).slice(-3000)}`),
      )
      throw new Error(
        `${what}: not after ${timeoutMs} ms; last ${JSON.stringify(last)}\n--- admin\n${adminLog.slice(-3000)}\n${logs.join("\n")}`,
      )
    }
    await sleep(200)
  }
}

const voters = (s: Status) =>
  s.members
    .filter((m) => m.role === "voter")
    .map((m) => m.node)
    .sort()
const learners = (s: Status) =>
  s.members
    .filter((m) => m.role === "learner")
    .map((m) => m.node)
    .sort()

const credsOf = (node: string) => ({
  NATS_USER: `consensus-${node}`,
  NATS_PASSWORD: passwords[`consensus-${node}`] ?? "",
})

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), "ekv-admin-cluster-"))
  passwords = generatePasswords(busUsers(ALL))
  const configFile = join(dir, "nats.conf")
  await writeFile(
    configFile,
    natsServerConfig({ prefix: "ekv", nodes: ALL, password: literalPasswords(passwords), jetstream: false }),
  )
  await chmod(configFile, 0o600)
  const nats = await startNats({ configFile, jetstream: true })
  cluster = new ProcessCluster(nats, dir, {
    nodes: NODES,
    env: { EKV_ELECTION_TIMEOUT_MS: "500" },
    nodeEnv: Object.fromEntries(ALL.map((n) => [n, credsOf(n)])),
  })
  for (const n of NODES) await cluster.start(n)

  admin = spawn(process.execPath, [join(REPO_ROOT, "services/admin/src/main.ts")], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      NATS_URL: nats.servers.join(","),
      NATS_USER: "admin",
      NATS_PASSWORD: passwords.admin ?? "",
      EKV_PEERS: NODES.join(","),
    },
    stdio: ["ignore", "pipe", "pipe"],
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`admin not ready:\n${adminLog}`)), 20_000)
    for (const s of [admin.stdout, admin.stderr]) {
      if (s === null) continue
      createInterface({ input: s }).on("line", (line) => {
        adminLog += `${line}\n`
        if (/ekv-admin ready/.test(line)) {
          clearTimeout(timer)
          resolve()
        }
      })
    }
    admin.once("exit", (code) => reject(new Error(`admin exited ${code}:\n${adminLog}`)))
  })
  operator = await connect({
    servers: nats.servers,
    user: "operator",
    pass: passwords.operator ?? "",
    inboxPrefix: "_INBOX.operator",
  })
})

afterAll(async () => {
  await operator?.close().catch(() => undefined)
  if (admin !== undefined && admin.exitCode === null) {
    const exited = new Promise<void>((r) => admin.once("exit", () => r()))
    admin.kill("SIGTERM")
    await Promise.race([exited, sleep(10_000)])
    if (admin.exitCode === null) admin.kill("SIGKILL")
  }
  await cluster?.stopAll()
})

describe("ekv.admin.cluster.* over real consensus processes", () => {
  it("status shows three voters and a leader", async () => {
    // The first leader writes cluster_id once it has applied its term's first entry (SPEC §2): a
    // status right after the election may still show it empty.
    const s = await until(
      "a leader, 3 voters and the cluster_id",
      (s) => s.leader !== null && voters(s).length === 3 && s.cluster_id !== "",
    )
    expect(voters(s)).toEqual(NODES)
    expect(learners(s)).toEqual([])
    expect(NODES).toContain(s.leader)
    expect(s.cluster_id).toMatch(/^[0-9a-f]{32}$/)
  })

  it("transfer-leader moves leadership", async () => {
    const before = await until("a leader", (s) => s.leader !== null)
    const target = NODES.find((n) => n !== before.leader) as string
    const r = await ask("transfer-leader", { node: target })
    expect(r).toEqual({ code: "", body: { leader: target } })
    const after = await until(`leader ${target}`, (s) => s.leader === target)
    expect(after.term).toBeGreaterThan(before.term)
  })

  it("adds a 4th node as a learner, promotes it, removes it", async () => {
    await cluster.start("n4")
    const added = await ask("add-learner", { node: "n4" })
    expect(added.code).toBe("")
    expect(added.body.index).toEqual(expect.any(Number))
    const s1 = await until("n4 a learner", (s) => learners(s).includes("n4"))
    expect(voters(s1)).toEqual(NODES)

    // A learner catches up before it can vote (its own health says how far it applied).
    const t0 = Date.now()
    for (;;) {
      const h = await operator.request("ekv.node.n4.health", "{}", { timeout: 2_000 }).catch(() => undefined)
      const applied =
        h === undefined ? -1 : (JSON.parse(new TextDecoder().decode(h.data)).applied_index ?? -1)
      if (applied >= (added.body.index as number)) break
      if (Date.now() - t0 > 30_000) throw new Error(`n4 did not catch up: applied ${applied}`)
      await sleep(100)
    }
    const promoted = await ask("promote", { node: "n4" })
    expect(promoted.code, JSON.stringify(promoted.body)).toBe("")
    expect(promoted.body.index as number).toBeGreaterThan(added.body.index as number)
    const s2 = await until("n4 a voter", (s) => voters(s).includes("n4"))
    expect(voters(s2)).toEqual(ALL)

    const removed = await ask("remove", { node: "n4" })
    expect(removed.code, JSON.stringify(removed.body)).toBe("")
    expect(removed.body.index as number).toBeGreaterThan(promoted.body.index as number)
    const s3 = await until("n4 gone", (s) => !s.members.some((m) => m.node === "n4"))
    expect(voters(s3)).toEqual(NODES)
    await cluster.stop("n4")
  })

  it("snapshot returns an index per member", async () => {
    const s = await until("a leader", (s) => s.leader !== null)
    const r = await ask("snapshot", {})
    expect(r.code, JSON.stringify(r.body)).toBe("")
    const snaps = r.body.snapshots as Array<{ node: string; index: number }>
    expect(snaps.map((x) => x.node).sort()).toEqual(NODES)
    for (const x of snaps) expect(x.index).toBeGreaterThan(0)
    expect(Math.max(...snaps.map((x) => x.index))).toBeLessThanOrEqual((await status()).commit_index)
    const one = await ask("snapshot", { node: s.leader })
    expect(one.code).toBe("")
    expect(one.body).toEqual({ snapshots: [{ node: s.leader, index: expect.any(Number) }] })
  })

  it("bad requests get typed errors and propose nothing", async () => {
    const before = await until("a settled leader", (s) => s.leader !== null)
    const unknownField = await ask("add-learner", { node: "n5", force: true })
    expect(unknownField.code).toBe("400")
    expect(unknownField.body).toMatchObject({ error: { code: "InvalidArgument" } })
    const badNode = await ask("promote", { node: "N5!" })
    expect(badNode.body).toMatchObject({ error: { code: "InvalidArgument" } })
    const statusField = await ask("status", { verbose: true })
    expect(statusField.body).toMatchObject({ error: { code: "InvalidArgument" } })
    const notJson = await ask("remove", "{")
    expect(notJson.body).toMatchObject({ error: { code: "InvalidArgument" } })
    for (const op of ["promote", "remove", "transfer-leader", "snapshot"]) {
      const r = await ask(op, { node: "n9" })
      expect(r.code, op).toBe("404")
      expect(r.body).toMatchObject({ error: { code: "NotFound", details: { node: "n9" } } })
    }
    const after = await status()
    expect(after.term).toBe(before.term)
    expect(after.commit_index).toBe(before.commit_index)
  })
})
