// The local ekv system on loopback, shared by `npm run up` (scripts/up.ts) and
// `npm run bench` (scripts/bench): the NATS configuration with the CONTRACT §9
// permissions, the process plan (NATS, keystores, consensus nodes, admin), a
// supervisor that starts processes in order on their ready line and stops them
// in reverse order, and a wait for a Raft leader as the operator.
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { busUsers, generatePasswords, literalPasswords, natsServerConfig } from "@ekv/admin"
import { connect } from "@nats-io/transport-node"

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")

export const NODES = ["n1", "n2", "n3"] as const
export const PREFIX = "ekv"

const READY_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 10_000

export const mains = {
  consensus: join(root, "services/consensus/src/main.ts"),
  keystore: join(root, "services/keystore/src/main.ts"),
  admin: join(root, "services/admin/src/main.ts"),
}

export interface ProcessSpec {
  readonly name: string
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  /** A line on stdout or stderr that says the process is ready. */
  readonly ready: RegExp
}

/** A file holding `content`, mode 0600 whatever the umask (it holds secrets). */
export const writeSecret = (path: string, content: string | Uint8Array): void => {
  writeFileSync(path, content, { mode: 0o600 })
  chmodSync(path, 0o600)
}

/** The bus passwords, generated once and kept (0600) so restarts reuse them. */
const busPasswords = (natsDir: string): Record<string, string> => {
  const file = join(natsDir, "passwords.json")
  const users = busUsers(NODES)
  if (existsSync(file)) {
    try {
      const kept = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>
      if (users.every((u) => typeof kept[u] === "string" && kept[u] !== "")) {
        chmodSync(file, 0o600)
        return kept as Record<string, string>
      }
    } catch {
      // unreadable: generate a new set below
    }
  }
  const fresh = generatePasswords(users)
  writeSecret(file, `${JSON.stringify(fresh, null, 2)}\n`)
  return fresh
}

/** A 32-byte key file (KEK), created once, mode 0600 (SPEC §4.1 refuses anything looser). */
const keyFile = (path: string): string => {
  if (!existsSync(path)) writeSecret(path, randomBytes(32))
  chmodSync(path, 0o600)
  return path
}

export interface BusSetup {
  readonly url: string
  readonly passwords: Record<string, string>
  readonly natsConfigFile: string
}

/**
 * Writes `<dataDir>/nats/nats.conf` (the §9 permissions, JetStream in
 * `<dataDir>/nats/jetstream`) and `<dataDir>/operator.json` (CONTRACT §8).
 */
export const prepareBus = (options: {
  readonly dataDir: string
  readonly natsPort: number
  readonly comment: string
}): BusSetup => {
  const natsDir = join(options.dataDir, "nats")
  mkdirSync(natsDir, { recursive: true, mode: 0o700 })
  const passwords = busPasswords(natsDir)
  const natsConfigFile = join(natsDir, "nats.conf")
  writeSecret(
    natsConfigFile,
    natsServerConfig({
      prefix: PREFIX,
      nodes: NODES,
      password: literalPasswords(passwords),
      listen: `127.0.0.1:${options.natsPort}`,
      jetstream: { storeDir: natsDir },
      comment: [options.comment],
    }),
  )
  const url = `nats://127.0.0.1:${options.natsPort}`
  writeSecret(
    join(options.dataDir, "operator.json"),
    `${JSON.stringify({ servers: [url], user: "operator", pass: passwords.operator }, null, 2)}\n`,
  )
  return { url, passwords, natsConfigFile }
}

const busEnv = (setup: BusSetup, user: string): Record<string, string> => ({
  NATS_URL: setup.url,
  NATS_USER: user,
  NATS_PASSWORD: setup.passwords[user] ?? "",
  EKV_PREFIX: PREFIX,
})

/** What runs, in order (NATS, keystores, consensus nodes, admin), and what had to be left out. */
export const clusterPlan = (options: {
  readonly dataDir: string
  readonly encryption: boolean
  readonly setup: BusSetup
  /** Extra environment for every ekv service (not NATS). */
  readonly env?: Readonly<Record<string, string>>
}): { specs: ReadonlyArray<ProcessSpec>; missing: string[] } => {
  const { dataDir, setup } = options
  const extra = options.env ?? {}
  const specs: ProcessSpec[] = [
    { name: "nats", command: "nats-server", args: ["-c", setup.natsConfigFile], ready: /Server is ready/ },
  ]
  const missing: string[] = []
  const node = process.execPath
  const peers = NODES.join(",")
  if (existsSync(mains.keystore)) {
    const kek: Record<string, string> = options.encryption
      ? {
          EKV_ENCRYPTION_ENABLED: "true",
          EKV_KEK_FILE: keyFile(join(dataDir, "kek")),
          EKV_KEK_NEXT_FILE: keyFile(join(dataDir, "kek.next")),
        }
      : { EKV_ENCRYPTION_ENABLED: "false" }
    for (const n of NODES) {
      specs.push({
        name: `keystore-${n}`,
        command: node,
        args: [mains.keystore],
        env: {
          ...busEnv(setup, `keystore-${n}`),
          EKV_NODE_ID: n,
          EKV_DATA_DIR: join(dataDir, n),
          ...kek,
          ...extra,
        },
        ready: /serving on/,
      })
    }
  } else missing.push("keystore (services/keystore/src/main.ts)")
  if (existsSync(mains.consensus)) {
    for (const n of NODES) {
      specs.push({
        name: `consensus-${n}`,
        command: node,
        args: [mains.consensus],
        env: {
          ...busEnv(setup, `consensus-${n}`),
          EKV_NODE_ID: n,
          EKV_PEERS: peers,
          EKV_DATA_DIR: join(dataDir, n),
          EKV_ENCRYPTION_ENABLED: options.encryption ? "true" : "false",
          ...extra,
        },
        ready: /consensus ready/,
      })
    }
  } else missing.push("consensus (services/consensus/src/main.ts)")
  specs.push({
    name: "admin",
    command: node,
    args: [mains.admin],
    env: { ...busEnv(setup, "admin"), EKV_PEERS: peers, ...extra },
    ready: /ekv-admin ready/,
  })
  return { specs, missing }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Asks `ekv.admin.cluster.status` as the operator until it names a leader. */
export const waitForLeader = async (setup: BusSetup, timeoutMs: number): Promise<string> => {
  const nc = await connect({
    servers: setup.url,
    user: "operator",
    pass: setup.passwords.operator ?? "",
    inboxPrefix: "_INBOX.operator",
  })
  try {
    const deadline = Date.now() + timeoutMs
    let last = "no answer yet"
    while (Date.now() < deadline) {
      try {
        const m = await nc.request(`${PREFIX}.admin.cluster.status`, "{}", { timeout: 5_000 })
        const body = JSON.parse(new TextDecoder().decode(m.data)) as {
          leader?: string | null
          error?: { message: string }
        }
        if (typeof body.leader === "string") return body.leader
        last = body.error?.message ?? "no leader yet"
      } catch (e) {
        last = e instanceof Error ? e.message : String(e)
      }
      await sleep(250)
    }
    throw new Error(`no leader within ${timeoutMs / 1000}s (${last})`)
  } finally {
    await nc.close()
  }
}

export interface SupervisorOptions {
  /** Every output line of a process (default: printed with a `[name]` prefix). */
  readonly onLine?: (name: string, line: string) => void
  /** A process exited while nothing was stopping it. */
  readonly onUnexpectedExit?: (name: string, how: string) => void
  /** Progress messages (default: console.log). */
  readonly log?: (message: string) => void
  readonly cwd?: string
}

/**
 * Starts processes, each waiting for its ready line, and stops them in
 * reverse order (SIGTERM, then SIGKILL after 10 s). `start` may be called
 * concurrently for processes that become ready only together (an etcd cluster).
 */
export class Supervisor {
  private readonly running: Array<{ spec: ProcessSpec; child: ChildProcess }> = []
  private stopping = false
  private readonly options: SupervisorOptions

  constructor(options: SupervisorOptions = {}) {
    this.options = options
  }

  /** The pid of every started process that is still running, by name. */
  pids(): ReadonlyArray<{ name: string; pid: number }> {
    return this.running
      .filter(({ child }) => child.exitCode === null && child.signalCode === null && child.pid !== undefined)
      .map(({ spec, child }) => ({ name: spec.name, pid: child.pid as number }))
  }

  async start(spec: ProcessSpec): Promise<void> {
    const onLine = this.options.onLine ?? ((name: string, line: string) => console.log(`[${name}] ${line}`))
    const child = spawn(spec.command, [...spec.args], {
      cwd: this.options.cwd ?? root,
      env: { ...process.env, ...spec.env },
      stdio: ["ignore", "pipe", "pipe"],
      // Own process group: a terminal's Ctrl-C reaches only this supervisor,
      // which then stops the processes in reverse order.
      detached: true,
    })
    this.running.push({ spec, child })
    await new Promise<void>((resolveReady, rejectReady) => {
      const timer = setTimeout(
        () => rejectReady(new Error(`${spec.name} was not ready within ${READY_TIMEOUT_MS / 1000}s`)),
        READY_TIMEOUT_MS,
      )
      const line = (text: string) => {
        onLine(spec.name, text)
        if (spec.ready.test(text)) {
          clearTimeout(timer)
          resolveReady()
        }
      }
      for (const stream of [child.stdout, child.stderr]) {
        if (stream) createInterface({ input: stream }).on("line", line)
      }
      child.once("error", (error) => {
        clearTimeout(timer)
        rejectReady(new Error(`${spec.name} failed to start: ${error.message}`))
      })
      child.once("exit", (code, signal) => {
        clearTimeout(timer)
        const how = signal ?? `code ${code}`
        rejectReady(new Error(`${spec.name} exited before it was ready (${how})`))
        if (!this.stopping) this.options.onUnexpectedExit?.(spec.name, how)
      })
    })
  }

  /** Last resort when this process exits without stopping them. */
  killAll(): void {
    for (const { child } of this.running) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    }
  }

  /** Stops every process in reverse start order; a second call waits for nothing. */
  async stopAll(): Promise<void> {
    if (this.stopping) return
    this.stopping = true
    const log = this.options.log ?? ((m: string) => console.log(m))
    for (const { spec, child } of [...this.running].reverse()) {
      if (child.exitCode !== null || child.signalCode !== null) continue
      const exited = new Promise<void>((done) => child.once("exit", () => done()))
      child.kill("SIGTERM")
      const timer = setTimeout(() => {
        log(`${spec.name} did not stop within ${STOP_TIMEOUT_MS / 1000}s; killing it`)
        child.kill("SIGKILL")
      }, STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
      log(`stopped ${spec.name}`)
    }
  }
}
