// A cluster of consensus processes for process-level tests and benchmarks:
// one NATS server (startNats) and N `services/consensus/src/main.ts` child
// processes, each with its own data dir and log file, plus kill -9 /
// restart / wipe helpers and a small request client.
//
//   const c = await startProcessCluster({ nodes: ["n1", "n2", "n3"] })
//   await c.waitForLeader()
//   await c.kv.put("k", bytes)
//   await c.kill("n1")          // SIGKILL
//   await c.start("n1")         // same data dir
//   await c.stopAll()
import { type ChildProcess, spawn } from "node:child_process"
import { createWriteStream, type WriteStream } from "node:fs"
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { connect, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node"
import { type NatsFixture, startNats } from "./natsFixture.ts"

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..")
export const CONSENSUS_MAIN = join(REPO_ROOT, "services", "consensus", "src", "main.ts")

export interface ProcessClusterOptions {
  /** Node ids to run (default n1, n2, n3). */
  readonly nodes?: readonly string[]
  /** EKV_PEERS (default: `nodes`). */
  readonly peers?: readonly string[]
  /** Environment for every node (CONTRACT §6 names). */
  readonly env?: Readonly<Record<string, string>>
  /** Per-node environment on top of `env`. */
  readonly nodeEnv?: Readonly<Record<string, Readonly<Record<string, string>>>>
  readonly prefix?: string
  /** JetStream on the NATS server (default true). */
  readonly jetstream?: boolean
  /** Start the nodes at once (default true). */
  readonly startNodes?: boolean
  /** Keep the data and log directory after stopAll (default: only when EKV_TEST_KEEP is set). */
  readonly keep?: boolean
}

export interface ErrorReplyBody {
  readonly code: string
  readonly message: string
  readonly details?: Record<string, unknown>
}

export type Reply<A> =
  | { readonly ok: true; readonly value: A }
  | { readonly ok: false; readonly error: ErrorReplyBody; readonly status: number }

export interface NodeProcess {
  readonly id: string
  readonly child: ChildProcess
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const enc = new TextEncoder()
const dec = new TextDecoder()
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export const b64 = (s: string | Uint8Array): string =>
  Buffer.from(typeof s === "string" ? enc.encode(s) : s).toString("base64")
export const unb64 = (s: string): string => Buffer.from(s, "base64").toString("utf8")

export class ProcessCluster {
  readonly nats: NatsFixture
  readonly baseDir: string
  readonly nodes: string[]
  readonly prefix: string
  private readonly opts: ProcessClusterOptions
  private readonly procs = new Map<string, NodeProcess>()
  private readonly logs = new Map<string, WriteStream>()
  private nc: NatsConnection | null = null

  constructor(nats: NatsFixture, baseDir: string, opts: ProcessClusterOptions) {
    this.nats = nats
    this.baseDir = baseDir
    this.opts = opts
    this.nodes = [...(opts.nodes ?? ["n1", "n2", "n3"])]
    this.prefix = opts.prefix ?? "ekv"
  }

  get servers(): string[] {
    return this.nats.servers
  }

  dataDir(node: string): string {
    return join(this.baseDir, "data", node)
  }

  logPath(node: string): string {
    return join(this.baseDir, "logs", `${node}.log`)
  }

  async readLog(node: string): Promise<string> {
    return readFile(this.logPath(node), "utf8").catch(() => "")
  }

  /** JSON log lines of `node` whose `msg` equals `message`. */
  async logEntries(node: string, message: string): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = []
    for (const line of (await this.readLog(node)).split("\n")) {
      if (!line.startsWith("{")) continue
      try {
        const o = JSON.parse(line) as Record<string, unknown>
        if (o.msg === message) out.push(o)
      } catch {
        // not a log object
      }
    }
    return out
  }

  isRunning(node: string): boolean {
    return this.procs.has(node)
  }

  running(): string[] {
    return this.nodes.filter((n) => this.procs.has(n))
  }

  /** Starts `node` (a new one joins as a learner when it is not in EKV_PEERS). */
  async start(node: string, extraEnv: Readonly<Record<string, string>> = {}): Promise<NodeProcess> {
    if (this.procs.has(node)) throw new Error(`${node} is already running`)
    if (!this.nodes.includes(node)) this.nodes.push(node)
    await mkdir(join(this.baseDir, "logs"), { recursive: true })
    let log = this.logs.get(node)
    if (log === undefined) {
      log = createWriteStream(this.logPath(node), { flags: "a" })
      this.logs.set(node, log)
    }
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      NATS_URL: this.nats.servers.join(","),
      EKV_PREFIX: this.prefix,
      EKV_NODE_ID: node,
      EKV_PEERS: (this.opts.peers ?? this.opts.nodes ?? ["n1", "n2", "n3"]).join(","),
      EKV_DATA_DIR: this.dataDir(node),
      // setFault() drops the fault file into the data dir
      EKV_TEST_FAULT_FILE: "1",
      ...this.opts.env,
      ...this.opts.nodeEnv?.[node],
      ...extraEnv,
    }
    const child = spawn(process.execPath, [CONSENSUS_MAIN], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
      cwd: REPO_ROOT,
    })
    child.stdout?.pipe(log, { end: false })
    child.stderr?.pipe(log, { end: false })
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
      child.once("exit", (code, signal) => {
        this.procs.delete(node)
        res({ code, signal })
      })
    })
    const p: NodeProcess = { id: node, child, exited }
    this.procs.set(node, p)
    live.add(child)
    void exited.then(() => live.delete(child))
    return p
  }

  /** Sends `signal` (default SIGKILL) and waits for the exit (null when it was not running). */
  async kill(
    node: string,
    signal: NodeJS.Signals = "SIGKILL",
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null } | null> {
    const p = this.procs.get(node)
    if (p === undefined) return null
    p.child.kill(signal)
    const timer = setTimeout(() => p.child.kill("SIGKILL"), 10_000)
    const exit = await p.exited
    clearTimeout(timer)
    return exit
  }

  /** SIGTERM: a clean shutdown. */
  stop(node: string) {
    return this.kill(node, "SIGTERM")
  }

  async restart(node: string, extraEnv?: Readonly<Record<string, string>>): Promise<NodeProcess> {
    await this.kill(node)
    return this.start(node, extraEnv)
  }

  /** Deletes the node's data dir (stop it first). */
  async wipe(node: string): Promise<void> {
    if (this.procs.has(node)) throw new Error(`stop ${node} before wiping it`)
    await rm(this.dataDir(node), { recursive: true, force: true })
  }

  /** Writes (or with null removes) the test-only fault file that halts apply at index ≥ n. */
  async setFault(node: string, index: number | null): Promise<void> {
    const file = join(this.dataDir(node), "consensus", "test-fault-halt-at-index")
    if (index === null) await rm(file, { force: true })
    else {
      await mkdir(dirname(file), { recursive: true })
      await writeFile(file, `${index}\n`)
    }
  }

  async client(): Promise<NatsConnection> {
    if (this.nc === null || this.nc.isClosed()) this.nc = await connect({ servers: this.nats.servers })
    return this.nc
  }

  /** A JSON request; the reply body decoded (error replies as `{ ok: false }`). */
  async request<A = unknown>(subject: string, body: unknown, timeoutMs = 10_000): Promise<Reply<A>> {
    const nc = await this.client()
    const m = await nc.request(
      subject,
      typeof body === "string" ? enc.encode(body) : enc.encode(JSON.stringify(body)),
      {
        timeout: timeoutMs,
      },
    )
    return parseReply<A>(m.headers, m.data)
  }

  /** Like request, but throws on an error reply. */
  async call<A = unknown>(subject: string, body: unknown, timeoutMs = 10_000): Promise<A> {
    const r = await this.request<A>(subject, body, timeoutMs)
    if (!r.ok) throw new Error(`${subject}: ${r.error.code}: ${r.error.message}`)
    return r.value
  }

  health(node: string, timeoutMs = 1_000) {
    return this.request<{
      node: string
      consensus: string
      applied_index: number
      halted?: { index: number; reason: string }
    }>(`${this.prefix}.node.${node}.health`, {}, timeoutMs)
  }

  clusterStatus(node: string, timeoutMs = 3_000) {
    return this.request<ClusterStatusView>(
      `${this.prefix}.internal.${node}.admin.cluster.status`,
      {},
      timeoutMs,
    )
  }

  cluster(node: string, op: string, body: unknown, timeoutMs = 15_000) {
    return this.request(`${this.prefix}.internal.${node}.admin.cluster.${op}`, body, timeoutMs)
  }

  /** Waits until `node` answers its health endpoint; returns the elapsed ms. */
  async waitForHealth(node: string, timeoutMs = 30_000): Promise<number> {
    const t0 = Date.now()
    for (;;) {
      try {
        const r = await this.health(node, 500)
        if (r.ok) return Date.now() - t0
      } catch {
        // not up yet
      }
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`${node} not healthy after ${timeoutMs} ms\n${await this.readLog(node)}`)
      await sleep(50)
    }
  }

  /** Waits until a running node reports a leader that itself reports being leader. */
  async waitForLeader(timeoutMs = 30_000, among: readonly string[] = this.running()): Promise<string> {
    const t0 = Date.now()
    for (;;) {
      for (const n of among) {
        try {
          const r = await this.clusterStatus(n, 1_000)
          if (r.ok && r.value.leader !== null && among.includes(r.value.leader)) {
            const l = await this.clusterStatus(r.value.leader, 1_000)
            if (l.ok && l.value.leader === r.value.leader) return r.value.leader
          }
        } catch {
          // not up yet
        }
      }
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`no leader among ${among.join(",")} after ${timeoutMs} ms`)
      await sleep(100)
    }
  }

  /** Waits until every node in `nodes` applied at least `index`. */
  async waitForApplied(
    index: number,
    nodes: readonly string[] = this.running(),
    timeoutMs = 60_000,
  ): Promise<void> {
    const t0 = Date.now()
    for (;;) {
      let all = true
      for (const n of nodes) {
        const r = await this.health(n, 1_000).catch(() => null)
        if (r === null || !r.ok || r.value.applied_index < index) all = false
      }
      if (all) return
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`not all of ${nodes.join(",")} applied ${index} after ${timeoutMs} ms`)
      await sleep(100)
    }
  }

  readonly kv = {
    put: (key: string, value: string | Uint8Array, timeoutMs?: number) =>
      this.request<{ index: number }>(`${this.prefix}.kv.put`, { key, value: b64(value) }, timeoutMs),
    get: (key: string, consistency?: "linearizable" | "serializable", timeoutMs?: number) =>
      this.request<{ found: boolean; value?: string; version?: number }>(
        `${this.prefix}.kv.get`,
        consistency === undefined ? { key } : { key, consistency },
        timeoutMs,
      ),
    /** A serializable read served by one particular node (its internal forwarding subject). */
    getOn: (node: string, key: string, timeoutMs?: number) =>
      this.request<{ found: boolean; value?: string; version?: number }>(
        `${this.prefix}.internal.${node}.admin.kv.get`,
        { key, consistency: "serializable" },
        timeoutMs,
      ),
    scanOn: (node: string, body: Record<string, unknown>, timeoutMs?: number) =>
      this.request<{ items: { key: string; value: string; version: number }[]; more: boolean }>(
        `${this.prefix}.internal.${node}.admin.kv.scan`,
        { ...body, consistency: "serializable" },
        timeoutMs,
      ),
    delete: (key: string, timeoutMs?: number) =>
      this.request<{ index: number; deleted: boolean }>(`${this.prefix}.kv.delete`, { key }, timeoutMs),
    batch: (ops: unknown[], timeoutMs?: number) =>
      this.request<{ index: number }>(`${this.prefix}.kv.batch`, { ops }, timeoutMs),
    scan: (body: Record<string, unknown>, timeoutMs?: number) =>
      this.request<{ items: { key: string; value: string; version: number }[]; more: boolean }>(
        `${this.prefix}.kv.scan`,
        body,
        timeoutMs,
      ),
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.procs.keys()].map((n) => this.kill(n, "SIGKILL")))
    if (this.nc !== null) await this.nc.close().catch(() => {})
    for (const l of this.logs.values()) l.end()
    await this.nats.stop()
    if (!(this.opts.keep ?? process.env.EKV_TEST_KEEP !== undefined))
      await rm(this.baseDir, { recursive: true, force: true })
  }
}

export interface ClusterStatusView {
  readonly cluster_id: string
  readonly leader: string | null
  readonly term: number
  readonly commit_index: number
  readonly members: readonly {
    node: string
    role: "voter" | "learner"
    applied_index: number
    match_index?: number
    reachable: boolean
    halted?: { index: number; reason: string }
  }[]
}

const parseReply = <A>(headers: MsgHdrs | undefined, data: Uint8Array): Reply<A> => {
  const text = dec.decode(data)
  if (headers?.has("Nats-Service-Error-Code") === true) {
    const status = Number(headers.get("Nats-Service-Error-Code"))
    try {
      const body = JSON.parse(text) as { error: ErrorReplyBody }
      return { ok: false, error: body.error, status }
    } catch {
      return { ok: false, error: { code: "Unknown", message: headers.get("Nats-Service-Error") }, status }
    }
  }
  return { ok: true, value: JSON.parse(text) as A }
}

const live = new Set<ChildProcess>()
let hooked = false

export const startProcessCluster = async (opts: ProcessClusterOptions = {}): Promise<ProcessCluster> => {
  if (!hooked) {
    hooked = true
    // An aborted run must not leave consensus processes behind.
    process.once("exit", () => {
      for (const c of live) c.kill("SIGKILL")
    })
  }
  const nats = await startNats({ jetstream: opts.jetstream ?? true })
  const baseDir = await mkdtemp(join(tmpdir(), "ekv-cluster-"))
  const c = new ProcessCluster(nats, baseDir, opts)
  if (opts.startNodes ?? true) for (const n of c.nodes) await c.start(n)
  return c
}
