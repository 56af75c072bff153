// A whole ekv system as real processes, for end-to-end suites: nats-server
// with the CONTRACT §9 permissions (generated passwords), per node one
// keystore and one consensus process (each with its own bus user, both on
// the node's data dir, where each service keeps its own subdirectory), and
// the admin service. Tests talk to it as the `operator` user only, through
// the public subjects (CONTRACT §2–§5), plus process control and file access.
//
//   const sys = await startSystem({ encryption: true })
//   await sys.waitForLeader()
//   await sys.kv.put("k", "v")
//   await sys.encryption("enable-storage-envelope", {})
//   await sys.kill("consensus-n2")            // SIGKILL one process
//   await sys.restartNode("n2", { EKV_KEK_FILE: sys.kekFile("b") })
//   await sys.stopAll()
//
// Process names: `keystore-<node>`, `consensus-<node>`, `admin`.
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createWriteStream, existsSync, type WriteStream } from "node:fs"
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { busUsers, generatePasswords, literalPasswords, natsServerConfig } from "@ekv/admin"
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream"
import { connect, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node"
import { type NatsFixture, startNats } from "./natsFixture.ts"
import { b64, type ErrorReplyBody, REPO_ROOT, type Reply } from "./processCluster.ts"

export const MAINS = {
  consensus: join(REPO_ROOT, "services", "consensus", "src", "main.ts"),
  keystore: join(REPO_ROOT, "services", "keystore", "src", "main.ts"),
  admin: join(REPO_ROOT, "services", "admin", "src", "main.ts"),
} as const

export type ServiceKind = "consensus" | "keystore" | "admin"
type Env = Readonly<Record<string, string>>

const READY: Record<ServiceKind, RegExp> = {
  consensus: /consensus ready/,
  keystore: /serving on/,
  admin: /ekv-admin ready/,
}

/** Thrown by an `until` probe: what it waits for can no longer happen, so stop now. */
export class StopPolling extends Error {}

export interface SystemOptions {
  /** Initial voters (default n1, n2, n3). */
  readonly nodes?: readonly string[]
  /** More node ids that get bus users (for nodes added later as learners). */
  readonly extraNodes?: readonly string[]
  /** EKV_ENCRYPTION_ENABLED for every node (default true). */
  readonly encryption?: boolean
  /** Pass EKV_KEK_NEXT_FILE (KEK "b") to every keystore (default true when encryption is on). */
  readonly nextKek?: boolean
  readonly electionTimeoutMs?: number
  readonly snapshotEntries?: number
  /** Environment for every process. */
  readonly env?: Env
  /** Per process name (`keystore-n1`, `consensus-n2`, `admin`) on top of `env`. */
  readonly processEnv?: Readonly<Record<string, Env>>
  /** Start everything at once (default true); otherwise call startNode / startAdmin. */
  readonly start?: boolean
  /** Keep the base directory after stopAll (default: EKV_TEST_KEEP set, or a failure was marked). */
  readonly keep?: boolean
  /** A label for the base directory name. */
  readonly name?: string
}

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

interface Proc {
  readonly name: string
  readonly child: ChildProcess
  readonly exited: Promise<Exit>
  paused: boolean
}

export interface HealthView {
  readonly node: string
  readonly consensus: "ok" | "halted" | string
  readonly keystore: "ok" | "down" | string
  readonly applied_index: number
  readonly halted?: { index: number; reason: string }
}

export interface CapabilityReport {
  readonly node: string
  readonly encryption_capable: boolean
  readonly build_sha: string
  readonly sidecar_present: boolean
  readonly full_node_id: string
  readonly local_epoch: number
  readonly kek_id: string | null
  readonly next_kek_id: string | null
}

export interface StatusView {
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

export interface EncryptionStatusView {
  readonly phase: string
  readonly active: { storage: number; raft: number }
  readonly keys: readonly { key_id: number; purpose: string; created: string; retired: boolean }[]
  readonly nodes: readonly Record<string, unknown>[]
  readonly registry: readonly {
    dek_id: number
    node_id16: number
    full_node_id: string
    first_seen_local_epoch: number
    last_seen_local_epoch: number
  }[]
}

export interface EventMsg {
  readonly subject: string
  readonly seq: number
  readonly msgId: string | undefined
  readonly body: Record<string, unknown>
}

const enc = new TextEncoder()
const dec = new TextDecoder()
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const live = new Set<ChildProcess>()
let hooked = false
const hookExit = () => {
  if (hooked) return
  hooked = true
  // An aborted run must not leave processes behind (SIGCONT first: a stopped process ignores nothing but needs to run to die cleanly).
  process.once("exit", () => {
    for (const c of live) {
      c.kill("SIGCONT")
      c.kill("SIGKILL")
    }
  })
}

export const parseReply = <A>(headers: MsgHdrs | undefined, data: Uint8Array): Reply<A> => {
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

/** A 32-byte secret file, mode 0600 whatever the umask. */
export const writeKeyFile = async (path: string, bytes: Uint8Array = randomBytes(32)): Promise<string> => {
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, bytes, { mode: 0o600 })
  await chmod(path, 0o600)
  return path
}

export class EkvSystem {
  readonly nats: NatsFixture
  readonly baseDir: string
  readonly nodes: string[]
  readonly prefix = "ekv"
  readonly passwords: Record<string, string>
  readonly encryptionEnabled: boolean
  /** Set by a test on failure (or by markFailed) so stopAll keeps the directory. */
  failed = false
  private readonly opts: SystemOptions
  private readonly procs = new Map<string, Proc>()
  private readonly logs = new Map<string, WriteStream>()
  /** Persistent per-process environment overrides (setEnv). */
  private readonly overrides = new Map<string, Record<string, string>>()
  private nc: NatsConnection | null = null

  constructor(nats: NatsFixture, baseDir: string, passwords: Record<string, string>, opts: SystemOptions) {
    this.nats = nats
    this.baseDir = baseDir
    this.passwords = passwords
    this.opts = opts
    this.nodes = [...(opts.nodes ?? ["n1", "n2", "n3"])]
    this.encryptionEnabled = opts.encryption ?? true
  }

  // -------------------------------------------------------------------------
  // paths

  dataDir(node: string): string {
    return join(this.baseDir, "data", node)
  }
  consensusDir(node: string): string {
    return join(this.dataDir(node), "consensus")
  }
  /** The state-machine LevelDB (CONTRACT §6 `consensus/state`). */
  stateDir(node: string): string {
    return join(this.consensusDir(node), "state")
  }
  /** The Raft log LevelDB (CONTRACT §6 `consensus/raft`). */
  raftDir(node: string): string {
    return join(this.consensusDir(node), "raft")
  }
  keystoreDir(node: string): string {
    return join(this.dataDir(node), "keystore")
  }
  sidecarPath(node: string): string {
    return join(this.keystoreDir(node), "keys.json")
  }
  /** A KEK file by label ("a" = EKV_KEK_FILE, "b" = EKV_KEK_NEXT_FILE at start; others on demand). */
  kekFile(label: string): string {
    return join(this.baseDir, "keys", `kek-${label}`)
  }
  /** Creates (or replaces) KEK file `label` with fresh random bytes; returns its path. */
  newKekFile(label: string): Promise<string> {
    return writeKeyFile(this.kekFile(label))
  }
  logPath(proc: string): string {
    return join(this.baseDir, "logs", `${proc}.log`)
  }
  copyDir(label: string): string {
    return join(this.baseDir, "copies", label)
  }

  // -------------------------------------------------------------------------
  // logs

  async readLog(proc: string): Promise<string> {
    return readFile(this.logPath(proc), "utf8").catch(() => "")
  }

  /** Every process's log path (what a failing test prints). */
  logPaths(): string[] {
    return [...this.logs.keys()].sort().map((p) => this.logPath(p))
  }

  /** A failure summary: the log paths and the tail of each log. */
  async failureReport(tailChars = 2_000): Promise<string> {
    const parts = [`ekv system at ${this.baseDir} (kept); logs:`]
    for (const p of [...this.logs.keys()].sort()) parts.push(`  ${this.logPath(p)}`)
    for (const p of [...this.logs.keys()].sort()) {
      const text = await this.readLog(p)
      parts.push(`--- ${p} (last ${tailChars} chars)\n${text.slice(-tailChars)}`)
    }
    return parts.join("\n")
  }

  /** JSON log lines of `proc` whose `msg` (or `message`/`event`) equals `message`. */
  async logEntries(proc: string, message: string): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = []
    for (const line of (await this.readLog(proc)).split("\n")) {
      if (!line.startsWith("{")) continue
      try {
        const o = JSON.parse(line) as Record<string, unknown>
        if (o.msg === message || o.message === message || o.event === message) out.push(o)
      } catch {
        // not a log object
      }
    }
    return out
  }

  // -------------------------------------------------------------------------
  // processes

  private kindOf(proc: string): { kind: ServiceKind; node: string | null } {
    if (proc === "admin") return { kind: "admin", node: null }
    const m = /^(consensus|keystore)-(.+)$/.exec(proc)
    if (m === null) throw new Error(`unknown process name ${proc}`)
    return { kind: m[1] as ServiceKind, node: m[2] as string }
  }

  /** The environment `proc` would start with now (before one-off extras). */
  envOf(proc: string): Record<string, string> {
    const { kind, node } = this.kindOf(proc)
    const user = kind === "admin" ? "admin" : `${kind}-${node}`
    const base: Record<string, string> = {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      NATS_URL: this.nats.servers.join(","),
      NATS_USER: user,
      NATS_PASSWORD: this.passwords[user] ?? "",
      EKV_PREFIX: this.prefix,
    }
    if (kind === "admin") base.EKV_PEERS = this.nodes.join(",")
    else {
      const n = node as string
      base.EKV_NODE_ID = n
      base.EKV_DATA_DIR = this.dataDir(n)
      base.EKV_ENCRYPTION_ENABLED = this.encryptionEnabled ? "true" : "false"
      if (kind === "consensus") {
        base.EKV_PEERS = (this.opts.nodes ?? ["n1", "n2", "n3"]).join(",")
        base.EKV_ELECTION_TIMEOUT_MS = String(this.opts.electionTimeoutMs ?? 500)
        // the fault file is how a test halts a node's apply (haltAt)
        base.EKV_TEST_FAULT_FILE = "1"
        if (this.opts.snapshotEntries !== undefined)
          base.EKV_SNAPSHOT_ENTRIES = String(this.opts.snapshotEntries)
      } else if (this.encryptionEnabled) {
        base.EKV_KEK_FILE = this.kekFile("a")
        if (this.opts.nextKek ?? true) base.EKV_KEK_NEXT_FILE = this.kekFile("b")
      }
    }
    const merged: Record<string, string> = {
      ...base,
      ...this.opts.env,
      ...this.opts.processEnv?.[proc],
      ...this.overrides.get(proc),
    }
    // An override of "" removes the variable (e.g. drop EKV_KEK_FILE).
    for (const [k, v] of Object.entries(merged)) if (v === "") delete merged[k]
    return merged
  }

  /** Persistent environment changes for `proc` (applied at its next start; "" removes a variable). */
  setEnv(proc: string, vars: Env): void {
    this.overrides.set(proc, { ...this.overrides.get(proc), ...vars })
  }

  /** setEnv for a node's keystore and consensus at once. */
  setNodeEnv(node: string, vars: Env): void {
    this.setEnv(`keystore-${node}`, vars)
    this.setEnv(`consensus-${node}`, vars)
  }

  isRunning(proc: string): boolean {
    return this.procs.has(proc)
  }

  running(): string[] {
    return [...this.procs.keys()].sort()
  }

  /** Node ids whose consensus process runs. */
  runningNodes(): string[] {
    return this.nodes.filter((n) => this.procs.has(`consensus-${n}`))
  }

  /**
   * Starts `proc`. With `waitReady` (default true) it resolves once the
   * process printed its ready line, and throws (naming the log) if it exits
   * first. The node's secret file is created (0600) when missing so the
   * node's two processes never race to create it.
   */
  async start(
    proc: string,
    opts: { readonly env?: Env; readonly waitReady?: boolean; readonly timeoutMs?: number } = {},
  ): Promise<Proc> {
    if (this.procs.has(proc)) throw new Error(`${proc} is already running`)
    const { kind, node } = this.kindOf(proc)
    if (node !== null) {
      if (!this.nodes.includes(node)) this.nodes.push(node)
      await mkdir(this.dataDir(node), { recursive: true })
      const secret = join(this.dataDir(node), "node.secret")
      if (!existsSync(secret)) await writeKeyFile(secret)
    }
    await mkdir(join(this.baseDir, "logs"), { recursive: true })
    let log = this.logs.get(proc)
    if (log === undefined) {
      log = createWriteStream(this.logPath(proc), { flags: "a" })
      this.logs.set(proc, log)
    }
    log.write(`##### ${new Date().toISOString()} start ${proc}\n`)
    const env = { ...this.envOf(proc), ...opts.env }
    for (const [k, v] of Object.entries(env)) if (v === "") delete env[k]
    const child = spawn(process.execPath, [MAINS[kind]], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
      cwd: REPO_ROOT,
    })
    hookExit()
    live.add(child)
    let ready: (() => void) | null = null
    const readyP = new Promise<void>((r) => {
      ready = r
    })
    let buf = ""
    const onData = (chunk: Buffer) => {
      log.write(chunk)
      if (ready !== null) {
        buf += chunk.toString()
        if (READY[kind].test(buf)) {
          ready()
          ready = null
          buf = ""
        } else if (buf.length > 100_000) buf = buf.slice(-10_000)
      }
    }
    child.stdout?.on("data", onData)
    child.stderr?.on("data", onData)
    const exited = new Promise<Exit>((res) => {
      child.once("exit", (code, signal) => {
        if (this.procs.get(proc)?.child === child) this.procs.delete(proc)
        live.delete(child)
        log.write(`##### ${new Date().toISOString()} ${proc} exited code=${code} signal=${signal}\n`)
        res({ code, signal })
      })
    })
    const p: Proc = { name: proc, child, exited, paused: false }
    this.procs.set(proc, p)
    if (opts.waitReady ?? true) {
      const timeoutMs = opts.timeoutMs ?? 60_000
      let timer: NodeJS.Timeout | undefined
      const outcome = await Promise.race([
        readyP.then(() => "ready" as const),
        exited.then((e) => e),
        new Promise<"timeout">((r) => {
          timer = setTimeout(() => r("timeout"), timeoutMs)
        }),
      ])
      clearTimeout(timer)
      if (outcome === "timeout")
        throw new Error(`${proc} not ready after ${timeoutMs} ms; log ${this.logPath(proc)}`)
      if (outcome !== "ready")
        throw new Error(
          `${proc} exited (code ${outcome.code}, signal ${outcome.signal}) before it was ready; log ${this.logPath(proc)}:\n${(await this.readLog(proc)).slice(-2_000)}`,
        )
    }
    return p
  }

  /** Resolves with `proc`'s exit (null if it is not running). */
  waitExit(proc: string, timeoutMs = 30_000): Promise<Exit | null> {
    const p = this.procs.get(proc)
    if (p === undefined) return Promise.resolve(null)
    return Promise.race([
      p.exited,
      sleep(timeoutMs).then(() => {
        throw new Error(`${proc} still running after ${timeoutMs} ms`)
      }),
    ])
  }

  /** Sends `signal` (default SIGKILL) and waits for the exit (null when it was not running). */
  async kill(proc: string, signal: NodeJS.Signals = "SIGKILL"): Promise<Exit | null> {
    const p = this.procs.get(proc)
    if (p === undefined) return null
    // SIGKILL ends a stopped process as it is (it must not run another instruction);
    // other signals need it running to be handled.
    p.child.kill(signal)
    if (p.paused) {
      p.child.kill("SIGCONT")
      p.paused = false
    }
    const timer = setTimeout(() => p.child.kill("SIGKILL"), 10_000)
    const exit = await p.exited
    clearTimeout(timer)
    return exit
  }

  /** SIGTERM: a clean shutdown. */
  stop(proc: string): Promise<Exit | null> {
    return this.kill(proc, "SIGTERM")
  }

  /** SIGSTOP: the process freezes (its NATS connection stays open, it answers nothing). */
  pause(proc: string): void {
    const p = this.procs.get(proc)
    if (p === undefined) throw new Error(`${proc} is not running`)
    p.child.kill("SIGSTOP")
    p.paused = true
  }

  /** SIGCONT after pause. */
  resume(proc: string): void {
    const p = this.procs.get(proc)
    if (p === undefined) throw new Error(`${proc} is not running`)
    p.child.kill("SIGCONT")
    p.paused = false
  }

  /**
   * Slows `proc` down without stopping it: SIGSTOP for `stopMs`, SIGCONT for
   * `runMs`, repeatedly, until the returned function is called (which leaves
   * it running). Widens windows such as "the keystore is applying entry i".
   */
  throttle(proc: string, runMs: number, stopMs: number): () => void {
    const p = this.procs.get(proc)
    if (p === undefined) throw new Error(`${proc} is not running`)
    let on = true
    const loop = async () => {
      while (on && this.procs.get(proc) === p) {
        p.child.kill("SIGSTOP")
        p.paused = true
        await sleep(stopMs)
        p.child.kill("SIGCONT")
        p.paused = false
        await sleep(runMs)
      }
    }
    void loop()
    return () => {
      on = false
      if (this.procs.get(proc) === p) {
        p.child.kill("SIGCONT")
        p.paused = false
      }
    }
  }

  /** SIGKILL (if running), then start again; `env` is a one-off addition (see setEnv for lasting ones). */
  async restart(
    proc: string,
    opts: { readonly env?: Env; readonly waitReady?: boolean } = {},
  ): Promise<Proc> {
    await this.kill(proc)
    return this.start(proc, opts)
  }

  /** Starts a node: its keystore first, then its consensus. */
  async startNode(node: string, opts: { readonly waitReady?: boolean } = {}): Promise<void> {
    if (!this.procs.has(`keystore-${node}`)) await this.start(`keystore-${node}`, opts)
    if (!this.procs.has(`consensus-${node}`)) await this.start(`consensus-${node}`, opts)
  }

  /** Kills a node's consensus and keystore (SIGKILL by default). */
  async killNode(node: string, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.kill(`consensus-${node}`, signal)
    await this.kill(`keystore-${node}`, signal)
  }

  /** Restarts both processes of a node; `vars` become lasting env changes of both (e.g. a KEK swap). */
  async restartNode(node: string, vars?: Env): Promise<void> {
    await this.killNode(node)
    if (vars !== undefined) this.setNodeEnv(node, vars)
    await this.startNode(node)
  }

  /**
   * Keystores first (consensus opens its session with them), then consensus,
   * then the admin; on a failure everything is stopped and the error carries
   * the failure report.
   */
  async startAll(): Promise<void> {
    try {
      for (const n of this.nodes) await this.start(`keystore-${n}`)
      await Promise.all(this.nodes.map((n) => this.start(`consensus-${n}`)))
      await this.startAdmin()
    } catch (e) {
      this.markFailed()
      const report = await this.failureReport()
      await this.stopAll()
      throw new Error(`${e instanceof Error ? e.message : String(e)}\n${report}`)
    }
  }

  startAdmin(): Promise<Proc> {
    return this.start("admin")
  }

  // -------------------------------------------------------------------------
  // data directories

  /** Deletes a node's whole data dir (both processes must be stopped). */
  async wipeNode(node: string): Promise<void> {
    for (const k of ["consensus", "keystore"])
      if (this.procs.has(`${k}-${node}`)) throw new Error(`stop ${k}-${node} before wiping`)
    await rm(this.dataDir(node), { recursive: true, force: true })
  }

  /** Deletes one service's subdirectory of the node (that process must be stopped). */
  async wipe(proc: string): Promise<void> {
    const { kind, node } = this.kindOf(proc)
    if (node === null) throw new Error("admin has no data")
    if (this.procs.has(proc)) throw new Error(`stop ${proc} before wiping it`)
    await rm(kind === "consensus" ? this.consensusDir(node) : this.keystoreDir(node), {
      recursive: true,
      force: true,
    })
  }

  /** Copies the node's whole data dir to copies/<label> (stop the node first for a consistent copy). */
  async copyDataDir(node: string, label: string): Promise<string> {
    const to = this.copyDir(label)
    await rm(to, { recursive: true, force: true })
    await mkdir(dirname(to), { recursive: true })
    await cp(this.dataDir(node), to, { recursive: true, preserveTimestamps: true })
    return to
  }

  /** Replaces the node's data dir by copies/<label> (the node must be stopped). */
  async restoreDataDir(node: string, label: string): Promise<void> {
    await this.wipeNode(node)
    await cp(this.copyDir(label), this.dataDir(node), { recursive: true, preserveTimestamps: true })
  }

  /** Copies the sidecar keys.json to copies/<label>.keys.json. */
  async copySidecar(node: string, label: string): Promise<string> {
    const to = `${this.copyDir(label)}.keys.json`
    await mkdir(dirname(to), { recursive: true })
    await cp(this.sidecarPath(node), to)
    return to
  }

  /** Puts an older sidecar copy back (keystore must be stopped); mode 0600 kept. */
  async rollbackSidecar(node: string, label: string): Promise<void> {
    if (this.procs.has(`keystore-${node}`)) throw new Error(`stop keystore-${node} first`)
    await cp(`${this.copyDir(label)}.keys.json`, this.sidecarPath(node))
    await chmod(this.sidecarPath(node), 0o600)
  }

  async readSidecar(node: string): Promise<Record<string, unknown>> {
    return JSON.parse(await readFile(this.sidecarPath(node), "utf8")) as Record<string, unknown>
  }

  /** The consensus test-only fault file: halt apply at the first entry ≥ index (null removes it). */
  async setFault(node: string, index: number | null): Promise<void> {
    const file = join(this.consensusDir(node), "test-fault-halt-at-index")
    if (index === null) await rm(file, { force: true })
    else {
      await mkdir(dirname(file), { recursive: true })
      await writeFile(file, `${index}\n`)
    }
  }

  // -------------------------------------------------------------------------
  // the operator's connection

  async client(): Promise<NatsConnection> {
    if (this.nc === null || this.nc.isClosed())
      this.nc = await connect({
        servers: this.nats.servers,
        user: "operator",
        pass: this.passwords.operator ?? "",
        inboxPrefix: "_INBOX.operator",
      })
    return this.nc
  }

  /** A separate operator connection (e.g. one per concurrent client); the caller closes it. */
  operatorConnection(): Promise<NatsConnection> {
    return connect({
      servers: this.nats.servers,
      user: "operator",
      pass: this.passwords.operator ?? "",
      inboxPrefix: "_INBOX.operator",
    })
  }

  /** A JSON request as the operator; the reply decoded (error replies as `{ ok: false }`). */
  async request<A = unknown>(subject: string, body: unknown, timeoutMs = 15_000): Promise<Reply<A>> {
    const nc = await this.client()
    const m = await nc.request(subject, enc.encode(typeof body === "string" ? body : JSON.stringify(body)), {
      timeout: timeoutMs,
    })
    return parseReply<A>(m.headers, m.data)
  }

  /** Like request, but throws on an error reply. */
  async call<A = unknown>(subject: string, body: unknown, timeoutMs = 15_000): Promise<A> {
    const r = await this.request<A>(subject, body, timeoutMs)
    if (!r.ok)
      throw new Error(
        `${subject}: ${r.error.code}: ${r.error.message} ${JSON.stringify(r.error.details ?? {})}`,
      )
    return r.value
  }

  /** `ekv.admin.encryption.<op>` (CONTRACT §3). */
  encryption<A = Record<string, unknown>>(
    op: string,
    body: unknown = {},
    timeoutMs = 30_000,
  ): Promise<Reply<A>> {
    return this.request<A>(`${this.prefix}.admin.encryption.${op}`, body, timeoutMs)
  }

  /** `ekv.admin.cluster.<op>` (CONTRACT §3). */
  cluster<A = Record<string, unknown>>(
    op: string,
    body: unknown = {},
    timeoutMs = 30_000,
  ): Promise<Reply<A>> {
    return this.request<A>(`${this.prefix}.admin.cluster.${op}`, body, timeoutMs)
  }

  status(timeoutMs = 5_000): Promise<Reply<StatusView>> {
    return this.cluster<StatusView>("status", {}, timeoutMs)
  }

  encryptionStatus(timeoutMs = 10_000): Promise<Reply<EncryptionStatusView>> {
    return this.encryption<EncryptionStatusView>("status", {}, timeoutMs)
  }

  health(node: string, timeoutMs = 2_000): Promise<Reply<HealthView>> {
    return this.request<HealthView>(`${this.prefix}.node.${node}.health`, {}, timeoutMs)
  }

  capability(node: string, timeoutMs = 2_000): Promise<Reply<CapabilityReport>> {
    return this.request<CapabilityReport>(`${this.prefix}.node.${node}.capability`, {}, timeoutMs)
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

  /** A put retried on Unavailable / timeouts until `timeoutMs`; throws on any other error. */
  async putRetry(key: string, value: string | Uint8Array, timeoutMs = 30_000): Promise<number> {
    const t0 = Date.now()
    let last = ""
    for (;;) {
      try {
        const r = await this.kv.put(key, value, 5_000)
        if (r.ok) return r.value.index
        if (r.error.code !== "Unavailable" && r.error.code !== "Halted")
          throw new Error(`put ${key}: ${r.error.code}: ${r.error.message}`)
        last = `${r.error.code}: ${r.error.message}`
      } catch (e) {
        if (e instanceof Error && e.message.startsWith(`put ${key}:`)) throw e
        last = e instanceof Error ? e.message : String(e)
      }
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`put ${key} not acknowledged after ${timeoutMs} ms: ${last}`)
      await sleep(100)
    }
  }

  /** Every key under `prefix` with its decoded value (linearizable scan, paged). */
  async scanAll(prefix: string): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    let after: string | undefined
    for (;;) {
      const r = await this.kv.scan(
        after === undefined ? { prefix, limit: 1000 } : { prefix, after, limit: 1000 },
        30_000,
      )
      if (!r.ok) throw new Error(`scan ${prefix}: ${r.error.code}: ${r.error.message}`)
      for (const it of r.value.items) out.set(it.key, Buffer.from(it.value, "base64").toString("utf8"))
      if (!r.value.more || r.value.items.length === 0) return out
      after = r.value.items[r.value.items.length - 1]?.key
    }
  }

  // -------------------------------------------------------------------------
  // waiting

  /** Polls `probe` until it returns a non-undefined value. */
  async until<A>(
    what: string,
    probe: () => Promise<A | undefined>,
    timeoutMs = 60_000,
    everyMs = 200,
  ): Promise<A> {
    const t0 = Date.now()
    let last: unknown
    for (;;) {
      try {
        const v = await probe()
        if (v !== undefined) return v
      } catch (e) {
        if (e instanceof StopPolling) throw new Error(`${what}: ${e.message}`)
        last = e instanceof Error ? e.message : e
      }
      if (Date.now() - t0 > timeoutMs)
        throw new Error(
          `${what}: not after ${timeoutMs} ms${last === undefined ? "" : ` (last error: ${String(last)})`}`,
        )
      await sleep(everyMs)
    }
  }

  /** Waits until cluster status (through admin) names a leader among `among`, which its own health confirms answering. */
  waitForLeader(timeoutMs = 60_000, among?: readonly string[]): Promise<string> {
    return this.until(
      "a leader",
      async () => {
        const s = await this.status(3_000)
        if (!s.ok || s.value.leader === null) return undefined
        const nodes = among ?? this.runningNodes()
        return nodes.includes(s.value.leader) ? s.value.leader : undefined
      },
      timeoutMs,
    )
  }

  /** Waits until `node`'s health answers with consensus ok (and keystore ok unless `keystore` is false). */
  waitForHealthy(node: string, timeoutMs = 60_000, keystore = true): Promise<HealthView> {
    return this.until(
      `${node} healthy`,
      async () => {
        const h = await this.health(node, 1_000)
        if (!h.ok) return undefined
        if (h.value.consensus !== "ok") return undefined
        if (keystore && this.encryptionEnabled && h.value.keystore !== "ok") return undefined
        return h.value
      },
      timeoutMs,
    )
  }

  /** Every running node healthy (and encryption-capable when encryption is on), then a leader. */
  async waitForReady(timeoutMs = 90_000): Promise<string> {
    for (const n of this.runningNodes()) await this.waitForHealthy(n, timeoutMs)
    if (this.encryptionEnabled) for (const n of this.runningNodes()) await this.waitForCapable(n, timeoutMs)
    return this.waitForLeader(timeoutMs)
  }

  /** Waits until `node`'s keystore reports encryption_capable (flag, KEK, sidecar, applier ready). */
  waitForCapable(node: string, timeoutMs = 60_000): Promise<CapabilityReport> {
    return this.until(
      `${node} encryption-capable`,
      async () => {
        const c = await this.capability(node, 1_000)
        return c.ok && c.value.encryption_capable ? c.value : undefined
      },
      timeoutMs,
    )
  }

  /** Waits until every node in `nodes` applied at least `index` (by its health endpoint). */
  async waitForApplied(
    index: number,
    nodes: readonly string[] = this.runningNodes(),
    timeoutMs = 60_000,
  ): Promise<void> {
    const last = new Map<string, unknown>()
    try {
      await this.until(
        `${nodes.join(",")} applied ${index}`,
        async () => {
          let all = true
          for (const n of nodes) {
            const h = await this.health(n, 1_000).catch((e: unknown) =>
              e instanceof Error ? e : new Error(String(e)),
            )
            last.set(n, h instanceof Error ? h.message : h.ok ? h.value : h.error)
            if (h instanceof Error || !h.ok || h.value.applied_index < index) all = false
          }
          return all ? true : undefined
        },
        timeoutMs,
      )
    } catch (e) {
      const seen = [...last].map(([n, h]) => `${n}: ${JSON.stringify(h)}`).join("; ")
      throw new Error(`${e instanceof Error ? e.message : String(e)}; last health: ${seen}`)
    }
  }

  /** Waits until `node` reports halted (on health); returns the halt. */
  waitForHalted(node: string, timeoutMs = 60_000): Promise<{ index: number; reason: string }> {
    return this.until(
      `${node} halted`,
      async () => {
        const h = await this.health(node, 1_000)
        return h.ok ? h.value.halted : undefined
      },
      timeoutMs,
    )
  }

  // -------------------------------------------------------------------------
  // events (CONTRACT §5), read as the operator through an ordered consumer

  /** Every message of EKV_EVENTS so far (optionally only subjects matching `filter`, a NATS wildcard subject). */
  async events(filter?: string): Promise<EventMsg[]> {
    const nc = await this.client()
    const jsm = await jetstreamManager(nc)
    const stream = `${this.prefix.toUpperCase()}_EVENTS`
    const info = await jsm.streams.info(stream).catch(() => null)
    if (info === null || info.state.messages === 0) return []
    const last = info.state.last_seq
    const js = jetstream(nc)
    const consumer = await js.consumers.get(stream, {
      // one subject (a string): nats-server 2.9 has no multi-filter consumers
      ...(filter === undefined ? {} : { filter_subjects: filter }),
      deliver_policy: DeliverPolicy.All,
    })
    const out: EventMsg[] = []
    for (;;) {
      const m = await consumer.next({ expires: 2_000 })
      if (m === null) break
      let body: Record<string, unknown> = {}
      try {
        body = JSON.parse(dec.decode(m.data)) as Record<string, unknown>
      } catch {
        body = { raw: dec.decode(m.data) }
      }
      out.push({ subject: m.subject, seq: m.seq, msgId: m.headers?.get("Nats-Msg-Id"), body })
      if (m.seq >= last) break
    }
    await consumer.delete().catch(() => undefined)
    return out
  }

  /** Calls `onEvent` for every new event (from now on) until the returned stop is called. */
  async watchEvents(onEvent: (e: EventMsg) => void, filter?: string): Promise<() => Promise<void>> {
    const nc = await this.client()
    const js = jetstream(nc)
    const stream = `${this.prefix.toUpperCase()}_EVENTS`
    const consumer = await js.consumers.get(stream, {
      // one subject (a string): nats-server 2.9 has no multi-filter consumers
      ...(filter === undefined ? {} : { filter_subjects: filter }),
      deliver_policy: DeliverPolicy.New,
    })
    const messages = await consumer.consume()
    const loop = (async () => {
      for await (const m of messages) {
        let body: Record<string, unknown> = {}
        try {
          body = JSON.parse(dec.decode(m.data)) as Record<string, unknown>
        } catch {
          body = { raw: dec.decode(m.data) }
        }
        onEvent({ subject: m.subject, seq: m.seq, msgId: m.headers?.get("Nats-Msg-Id"), body })
      }
    })()
    return async () => {
      messages.stop()
      await loop.catch(() => undefined)
    }
  }

  // -------------------------------------------------------------------------

  markFailed(): void {
    this.failed = true
  }

  async stopAll(): Promise<void> {
    // Admin first, then consensus, then keystores, all by SIGKILL (tests need no clean shutdown).
    const order = [...this.procs.keys()].sort((a, b) => rank(a) - rank(b))
    for (const p of order) await this.kill(p, "SIGKILL")
    if (this.nc !== null) await this.nc.close().catch(() => {})
    for (const l of this.logs.values()) l.end()
    await this.nats.stop()
    const keep = this.opts.keep ?? (process.env.EKV_TEST_KEEP !== undefined || this.failed)
    if (!keep) await rm(this.baseDir, { recursive: true, force: true })
  }
}

const rank = (p: string) => (p === "admin" ? 0 : p.startsWith("consensus-") ? 1 : 2)

// AckPolicy is re-exported for suites that build their own consumers.
export { AckPolicy }

/** Starts NATS (§9 auth, JetStream) and, unless `start: false`, every node (keystore then consensus) and admin. */
export const startSystem = async (opts: SystemOptions = {}): Promise<EkvSystem> => {
  hookExit()
  const nodes = opts.nodes ?? ["n1", "n2", "n3"]
  const all = [...nodes, ...(opts.extraNodes ?? [])]
  const baseDir = await mkdtemp(join(tmpdir(), `ekv-sys-${opts.name ?? "e2e"}-`))
  const passwords = generatePasswords(busUsers(all))
  const configFile = join(baseDir, "nats.conf")
  await writeFile(
    configFile,
    natsServerConfig({ prefix: "ekv", nodes: all, password: literalPasswords(passwords), jetstream: false }),
    { mode: 0o600 },
  )
  const nats = await startNats({ configFile, jetstream: true })
  const sys = new EkvSystem(nats, baseDir, passwords, opts)
  await writeKeyFile(sys.kekFile("a"))
  await writeKeyFile(sys.kekFile("b"))
  if (opts.start ?? true) {
    await sys.startAll()
  }
  return sys
}
