// The ekv cluster of `npm run bench:scale`: started exactly like the bench's
// ekv target (targets/ekv.ts on scripts/localCluster.ts, a fresh run
// directory, process output in <dir>/logs/<process>.log), plus what the scale
// figures need and the bench does not: the consensus JSON log lines that
// matter (snapshots taken, sent, installed; "consensus ready"), stopping and
// restarting one process of the plan on its own, wiping a node's data
// directory, VmRSS per process, and the admin/health subjects as the operator.
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { type BusSetup, clusterPlan, NODES, PREFIX, type ProcessSpec, root } from "../../localCluster.ts"
import { type EkvPhase, startEkv } from "../targets/ekv.ts"
import { logToFiles, PortAllocator, type RunningTarget, sleep } from "../targets/target.ts"

/** Consensus log messages kept in memory (every other line only goes to the log file). */
const KEPT = new Set([
  "snapshot taken",
  "log compacted",
  "snapshot file written to send",
  "snapshot installed",
  "sending snapshot",
  "snapshot sent",
  "receiving snapshot",
  "snapshot received and verified",
  "consensus ready",
  "shutting down",
])
const MAX_PROBLEMS = 500

export interface LogEvent {
  /** Process name, e.g. consensus-n2. */
  readonly process: string
  /** performance.now() when the line arrived. */
  readonly at: number
  readonly msg: string
  readonly fields: Readonly<Record<string, unknown>>
}

export interface ClusterStatus {
  readonly leader: string | null
  readonly term: number
  readonly commit_index: number
  readonly members: ReadonlyArray<{ node: string; role: string; applied_index: number; reachable: boolean }>
}

export interface Health {
  readonly consensus?: string
  readonly keystore?: string
  readonly applied_index?: number
}

const dec = new TextDecoder()
const enc = new TextEncoder()

/** VmRSS of a process in MiB (NaN when it is gone). */
export const rssMiB = (pid: number): number => {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return m === null ? Number.NaN : Number(m[1]) / 1024
  } catch {
    return Number.NaN
  }
}

const gone = (pid: number): boolean => {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"))
  } catch {
    return true
  }
}

export class ScaleCluster {
  readonly dir: string
  readonly target: RunningTarget
  readonly nc: NatsConnection
  /** Kept log events, in arrival order. */
  readonly events: LogEvent[]
  /** warn/error lines of any process (first MAX_PROBLEMS). */
  readonly problems: LogEvent[]
  private readonly specs: ReadonlyArray<ProcessSpec>
  private readonly onLine: (name: string, line: string) => void
  /** Processes this script started again after stopping the supervisor's copy. */
  private readonly own = new Map<string, ChildProcess>()
  private readonly stoppedOnPurpose: Set<string>
  /** Restarted children being stopped on purpose (their exit is not news). */
  private readonly stopping = new WeakSet<ChildProcess>()
  private readonly closeLogs: () => void

  private constructor(o: {
    dir: string
    target: RunningTarget
    nc: NatsConnection
    specs: ReadonlyArray<ProcessSpec>
    onLine: (name: string, line: string) => void
    stoppedOnPurpose: Set<string>
    events: LogEvent[]
    problems: LogEvent[]
    closeLogs: () => void
  }) {
    this.dir = o.dir
    this.target = o.target
    this.nc = o.nc
    this.specs = o.specs
    this.onLine = o.onLine
    this.stoppedOnPurpose = o.stoppedOnPurpose
    this.events = o.events
    this.problems = o.problems
    this.closeLogs = o.closeLogs
  }

  static async start(dir: string, phase: EkvPhase, say: (m: string) => void): Promise<ScaleCluster> {
    const logs = logToFiles(dir, say)
    const events: LogEvent[] = []
    const problems: LogEvent[] = []
    const stoppedOnPurpose = new Set<string>()
    const onLine = (name: string, line: string) => {
      logs.onLine?.(name, line)
      if (!line.startsWith("{")) return
      let o: Record<string, unknown>
      try {
        o = JSON.parse(line) as Record<string, unknown>
      } catch {
        return
      }
      const msg = typeof o.msg === "string" ? o.msg : ""
      const e: LogEvent = { process: name, at: performance.now(), msg, fields: o }
      if (KEPT.has(msg)) events.push(e)
      if ((o.level === "warn" || o.level === "error") && problems.length < MAX_PROBLEMS) problems.push(e)
    }
    const target = await startEkv(
      {
        dir,
        ports: new PortAllocator(),
        supervisor: {
          ...logs,
          onLine,
          onUnexpectedExit: (name, how) => {
            if (!stoppedOnPurpose.has(name)) logs.onUnexpectedExit?.(name, how)
          },
        },
        say,
      },
      phase,
      "queue", // the scale script sends its own requests; the target's client is not used
    )
    if (target.client.kind !== "ekv") throw new Error("not an ekv target")
    const url = target.client.servers[0] ?? ""
    const passwords = JSON.parse(readFileSync(join(dir, "nats", "passwords.json"), "utf8")) as Record<
      string,
      string
    >
    const setup: BusSetup = { url, passwords, natsConfigFile: join(dir, "nats", "nats.conf") }
    // The same plan startEkv ran: the specs to start a stopped process again.
    const { specs } = clusterPlan({ dataDir: dir, encryption: phase !== "plaintext", setup })
    const nc = await connect({
      servers: url,
      user: "operator",
      pass: passwords.operator ?? "",
      inboxPrefix: "_INBOX.operator",
    })
    return new ScaleCluster({
      dir,
      target,
      nc,
      specs,
      onLine,
      stoppedOnPurpose,
      events,
      problems,
      closeLogs: () => logs.close(),
    })
  }

  /** Every running server process (supervisor's and restarted ones) by name. */
  pids(): ReadonlyArray<{ name: string; pid: number }> {
    const mine = [...this.own.entries()]
      .filter(([, c]) => c.exitCode === null && c.signalCode === null && c.pid !== undefined)
      .map(([name, c]) => ({ name, pid: c.pid as number }))
    const names = new Set(mine.map((p) => p.name))
    return [...this.target.serverProcesses().filter((p) => !names.has(p.name)), ...mine]
  }

  pid(name: string): number | undefined {
    return this.pids().find((p) => p.name === name)?.pid
  }

  /** VmRSS in MiB of every running process, by name. */
  rss(): Record<string, number> {
    return Object.fromEntries(this.pids().map((p) => [p.name, Math.round(rssMiB(p.pid) * 10) / 10]))
  }

  /** Kept events since `since` (performance.now()), optionally of one message. */
  eventsSince(since: number, msg?: string): LogEvent[] {
    return this.events.filter((e) => e.at >= since && (msg === undefined || e.msg === msg))
  }

  /** A request as the operator: the JSON reply, or an Error naming the service error. */
  async request<A = Record<string, unknown>>(subject: string, body: unknown, timeoutMs: number): Promise<A> {
    // A string body is sent as it is (already JSON).
    const data = enc.encode(typeof body === "string" ? body : JSON.stringify(body))
    const m = await this.nc.request(`${PREFIX}.${subject}`, data, {
      timeout: timeoutMs,
    })
    const code = m.headers?.get("Nats-Service-Error-Code") ?? ""
    const text = dec.decode(m.data)
    if (code !== "")
      throw new Error(`${subject}: ${code} ${m.headers?.get("Nats-Service-Error") ?? ""} ${text}`)
    return JSON.parse(text) as A
  }

  status(timeoutMs = 5_000): Promise<ClusterStatus> {
    return this.request<ClusterStatus>("admin.cluster.status", {}, timeoutMs)
  }

  health(node: string, timeoutMs = 1_000): Promise<Health> {
    return this.request<Health>(`node.${node}.health`, {}, timeoutMs)
  }

  /** The current leader and a follower (the last node in order that does not lead). */
  async roles(): Promise<{ leader: string; follower: string }> {
    for (let i = 0; ; i++) {
      try {
        const s = await this.status()
        if (s.leader !== null) {
          const follower = [...NODES].reverse().find((n) => n !== s.leader) as string
          return { leader: s.leader, follower }
        }
      } catch (e) {
        if (i > 120) throw e
      }
      await sleep(250)
    }
  }

  /** SIGTERM to a running process and the wait for its exit (SIGKILL after `timeoutMs`); ms taken. */
  async stopProcess(name: string, timeoutMs = 60_000): Promise<{ ms: number; killed: boolean }> {
    const pid = this.pid(name)
    if (pid === undefined) throw new Error(`${name} is not running`)
    this.stoppedOnPurpose.add(name)
    const mine = this.own.get(name)
    const exited = (): boolean =>
      mine !== undefined && mine.pid === pid ? mine.exitCode !== null || mine.signalCode !== null : gone(pid)
    if (mine !== undefined) this.stopping.add(mine)
    const t0 = performance.now()
    process.kill(pid, "SIGTERM")
    let killed = false
    // Gone from /proc (or a zombie) and also seen to exit by its parent here (pids() lists it no more).
    while (!exited() || this.pid(name) === pid) {
      if (!killed && performance.now() - t0 > timeoutMs) {
        process.kill(pid, "SIGKILL")
        killed = true
      }
      await sleep(20)
    }
    return { ms: performance.now() - t0, killed }
  }

  /**
   * Starts a process of the plan again (as the supervisor would, but with a
   * longer ready timeout). Resolves with the spawn time once the process is
   * spawned; `ready` resolves at its ready line (ms since spawn).
   */
  spawnProcess(name: string, readyTimeoutMs: number): { spawnedAt: number; ready: Promise<number> } {
    const spec = this.specs.find((s) => s.name === name)
    if (spec === undefined) throw new Error(`no process ${name} in the plan`)
    const spawnedAt = performance.now()
    const child = spawn(spec.command, [...spec.args], {
      cwd: root,
      env: { ...process.env, ...spec.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    })
    this.own.set(name, child)
    const ready = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name} was not ready within ${readyTimeoutMs / 1000}s`)),
        readyTimeoutMs,
      )
      const line = (text: string) => {
        this.onLine(name, text)
        if (spec.ready.test(text)) {
          clearTimeout(timer)
          resolve(performance.now() - spawnedAt)
        }
      }
      for (const stream of [child.stdout, child.stderr]) {
        if (stream) createInterface({ input: stream }).on("line", line)
      }
      child.once("error", (e) => {
        clearTimeout(timer)
        reject(new Error(`${name} failed to start: ${e.message}`))
      })
      child.once("exit", (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`${name} exited before it was ready (${signal ?? `code ${code}`})`))
        if (!this.stopping.has(child)) console.log(`scale: ${name} exited (${signal ?? `code ${code}`})`)
      })
    })
    ready.catch(() => undefined)
    return { spawnedAt, ready }
  }

  /** A node's data directory (consensus and keystore share it, as in localCluster). */
  dataDir(node: string): string {
    return join(this.dir, node)
  }

  /** Deletes a stopped node's data directory. */
  wipe(node: string): void {
    for (const k of ["consensus", "keystore"])
      if (this.pid(`${k}-${node}`) !== undefined) throw new Error(`stop ${k}-${node} before wiping`)
    if (existsSync(this.dataDir(node))) rmSync(this.dataDir(node), { recursive: true, force: true })
  }

  /** Stops the restarted processes, then everything the supervisor started; closes the logs. */
  async stop(): Promise<void> {
    await this.nc.close().catch(() => undefined)
    const order = [...this.own.keys()].sort(
      (a, b) => (a.startsWith("consensus") ? -1 : 0) - (b.startsWith("consensus") ? -1 : 0),
    )
    for (const name of order) {
      const c = this.own.get(name)
      if (c === undefined || c.exitCode !== null || c.signalCode !== null) continue
      await this.stopProcess(name, 10_000).catch(() => undefined)
    }
    await this.target.stop()
    this.closeLogs()
  }

  /** Last resort on exit. */
  killAll(): void {
    for (const c of this.own.values()) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
  }
}
