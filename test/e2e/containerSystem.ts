// The whole ekv system as containers, from the same images compose uses:
// NATS (`ekv/nats:2.9.10`, the shipped §9 config config/nats/nats.conf with a
// password per user in its environment) and, from the service image
// `ekv/ekv:dev`, three keystores, three consensus nodes and an admin service,
// all on one Testcontainers network. Testcontainers' compose support needs the
// v2 `docker compose` plugin, which this machine does not have, so the
// containers are started one by one (GenericContainer), wired like
// docker-compose.yml: secrets as read-only files owned by the image's uid
// 10001 (mode 0400), one data directory per node shared by its consensus and
// keystore. The data directories are bind mounts of host directories, so a
// test can drop the consensus fault file into them (the images have no shell
// for `docker exec`).
//
// The test talks to the system only as the operator over NATS, and scrapes
// each process's Prometheus endpoint through its mapped port.
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import {
  GenericContainer,
  Network,
  type StartedNetwork,
  type StartedTestContainer,
  Wait,
} from "testcontainers"

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..")
export const SERVICE_IMAGE = process.env.EKV_E2E_IMAGE ?? "ekv/ekv:dev"
export const NATS_IMAGE = process.env.EKV_E2E_NATS_IMAGE ?? "ekv/nats:2.9.10"
/** The image's fixed non-root user (Dockerfile, docker/prepare-image.ts). */
const EKV_UID = 10001
const METRICS_PORT = 9464
const STARTUP_TIMEOUT_MS = 60_000
const UNAVAILABLE_RETRY_MS = 15_000
/** The consensus test fault file (services/consensus/src/main.ts FAULT_FILE), under <data>/consensus/. */
export const FAULT_FILE = "test-fault-halt-at-index"

const run = promisify(execFile)
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export interface SystemOptions {
  readonly nodes?: ReadonlyArray<string>
  readonly encryption?: boolean
  readonly electionTimeoutMs?: number
}

export type Service = "consensus" | "keystore" | "admin"

export interface ErrorBody {
  readonly error: {
    readonly code: string
    readonly message: string
    readonly details?: Record<string, unknown>
  }
}

/** A reply: the body, and the numeric error code header ("" on success). */
export interface Reply<A = Record<string, unknown>> {
  readonly code: string
  readonly body: A & Partial<ErrorBody>
}

export class ReplyError extends Error {
  override readonly name = "ReplyError"
  readonly subject: string
  readonly reply: Reply
  constructor(subject: string, reply: Reply) {
    super(`${subject}: ${reply.code} ${JSON.stringify(reply.body)}`)
    this.subject = subject
    this.reply = reply
  }
}

export interface ClusterStatus {
  cluster_id: string
  leader: string | null
  term: number
  commit_index: number
  members: Array<{
    node: string
    role: "voter" | "learner"
    applied_index: number
    reachable: boolean
    halted?: { index: number; reason: string }
  }>
}

export interface Health {
  node: string
  consensus: "ok" | "halted"
  keystore: "ok" | "down"
  applied_index: number
  halted?: { index: number; reason: string }
}

/** Prometheus text → `name{labels}` → value (labels as printed). */
export type Metrics = ReadonlyMap<string, number>

export const parseMetrics = (text: string): Metrics => {
  const out = new Map<string, number>()
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)/.exec(line)
    if (m) out.set(m[1]!, Number(m[2]))
  }
  return out
}

/** Metric names the text declares (`# TYPE`), with or without samples yet. */
export const declaredMetrics = (text: string): Set<string> =>
  new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!))

/** The series of `name` (any labels). */
export const series = (metrics: Metrics, name: string): Array<[string, number]> =>
  [...metrics].filter(([k]) => k === name || k.startsWith(`${name}{`))

type BindMount = Parameters<GenericContainer["withBindMounts"]>[0][number]

const busUser = (service: Service, node?: string) => (service === "admin" ? "admin" : `${service}-${node}`)
const passVar = (user: string) => `EKV_NATS_PASS_${user.toUpperCase().replace(/-/g, "_")}`

export class ContainerSystem {
  readonly containers = new Map<string, StartedTestContainer>()
  private readonly logs = new Map<string, string[]>()
  private operatorConn: NatsConnection | undefined

  readonly nodes: ReadonlyArray<string>
  readonly dir: string
  readonly network: StartedNetwork
  readonly passwords: Readonly<Record<string, string>>

  constructor(
    nodes: ReadonlyArray<string>,
    dir: string,
    network: StartedNetwork,
    passwords: Readonly<Record<string, string>>,
  ) {
    this.nodes = nodes
    this.dir = dir
    this.network = network
    this.passwords = passwords
  }

  /** Host directory bind-mounted as node `n`'s /data. */
  dataDir(node: string): string {
    return join(this.dir, node)
  }

  container(name: string): StartedTestContainer {
    const c = this.containers.get(name)
    if (c === undefined) throw new Error(`no container ${name}`)
    return c
  }

  natsUrl(): string {
    const nats = this.container("nats")
    return `nats://${nats.getHost()}:${nats.getMappedPort(4222)}`
  }

  async operator(): Promise<NatsConnection> {
    if (this.operatorConn === undefined || this.operatorConn.isClosed()) {
      this.operatorConn = await connect({
        servers: this.natsUrl(),
        user: "operator",
        pass: this.passwords.operator ?? "",
        inboxPrefix: "_INBOX.operator",
        maxReconnectAttempts: -1,
      })
    }
    return this.operatorConn
  }

  /** A JSON request as the operator; never throws on an error reply. */
  async ask<A = Record<string, unknown>>(
    subject: string,
    body: unknown,
    timeout = 20_000,
  ): Promise<Reply<A>> {
    const nc = await this.operator()
    const m = await nc.request(subject, JSON.stringify(body), { timeout })
    return {
      code: m.headers?.get("Nats-Service-Error-Code") ?? "",
      body: JSON.parse(new TextDecoder().decode(m.data)) as A & Partial<ErrorBody>,
    }
  }

  /**
   * A JSON request as the operator; an error reply throws ReplyError.
   * `Unavailable` (no leader yet, a new leader's first commit pending) is
   * retried for up to 15 s: CONTRACT §1 calls it safe to retry.
   */
  async call<A = Record<string, unknown>>(subject: string, body: unknown, timeout = 20_000): Promise<A> {
    const deadline = Date.now() + UNAVAILABLE_RETRY_MS
    for (;;) {
      const r = await this.ask<A>(subject, body, timeout)
      if (r.code === "" && r.body.error === undefined) return r.body
      if (r.body.error?.code !== "Unavailable" || Date.now() > deadline)
        throw new ReplyError(subject, r as Reply)
      await sleep(200)
    }
  }

  status(): Promise<ClusterStatus> {
    return this.call<ClusterStatus>("ekv.admin.cluster.status", {})
  }

  health(node: string): Promise<Health> {
    return this.call<Health>(`ekv.node.${node}.health`, {}, 5_000)
  }

  async put(key: string, value: string): Promise<number> {
    const r = await this.call<{ index: number }>("ekv.kv.put", {
      key,
      value: Buffer.from(value).toString("base64"),
    })
    return r.index
  }

  async get(key: string): Promise<string | undefined> {
    const r = await this.call<{ found: boolean; value?: string }>("ekv.kv.get", { key })
    return r.found ? Buffer.from(r.value ?? "", "base64").toString("utf8") : undefined
  }

  /** GET /metrics of one process (e.g. "consensus-n1", "keystore-n2", "admin"), as text. */
  async metricsText(name: string): Promise<string> {
    const c = this.container(name)
    const res = await fetch(`http://${c.getHost()}:${c.getMappedPort(METRICS_PORT)}/metrics`, {
      signal: AbortSignal.timeout(5_000),
    })
    if (res.status !== 200) throw new Error(`${name} /metrics: HTTP ${res.status}`)
    return res.text()
  }

  /** GET /metrics of one process, parsed. */
  async metrics(name: string): Promise<Metrics> {
    return parseMetrics(await this.metricsText(name))
  }

  /** Runs the image's healthcheck in the container (`docker exec`, exec form: no shell needed). */
  async healthcheck(name: string): Promise<{ exitCode: number; output: string }> {
    const r = await this.container(name).exec(["node", "/app/docker/healthcheck/check.ts"])
    return { exitCode: r.exitCode, output: r.output.trim() }
  }

  /** Docker's view of the image's HEALTHCHECK: "starting", "healthy" or "unhealthy". */
  async dockerHealth(name: string): Promise<string> {
    const { stdout } = await run("docker", [
      "inspect",
      "--format",
      "{{.State.Health.Status}}",
      this.container(name).getId(),
    ])
    return stdout.trim()
  }

  /** `docker kill` (SIGKILL): no shutdown at all. */
  async kill(name: string): Promise<void> {
    await run("docker", ["kill", this.container(name).getId()])
  }

  /** `docker stop`: SIGTERM, up to 10 s for a clean shutdown. The container stays (start it again with start). */
  async stopContainer(name: string): Promise<void> {
    await run("docker", ["stop", "-t", "10", this.container(name).getId()])
  }

  /** Starts a killed or stopped container again and waits for its ready line. */
  async start(name: string): Promise<void> {
    await this.container(name).restart()
  }

  /** `docker restart`: SIGTERM, up to 10 s to stop cleanly, then start; waits for the ready line. */
  async restart(name: string): Promise<void> {
    await this.container(name).restart({ timeout: 10_000 })
  }

  /** Writes the consensus fault file of `node`: its apply halts at the first entry ≥ index. */
  injectHalt(node: string, index: number): void {
    const file = join(this.dataDir(node), "consensus", FAULT_FILE)
    writeFileSync(file, `${index}\n`, { mode: 0o644 })
    chmodSync(file, 0o644)
  }

  clearHalt(node: string): void {
    rmSync(join(this.dataDir(node), "consensus", FAULT_FILE), { force: true })
  }

  /** The last lines each container printed (for failure reports). */
  logTail(lines = 40): string {
    const out: string[] = []
    for (const [name, log] of this.logs) out.push(`--- ${name}`, ...log.slice(-lines))
    return out.join("\n")
  }

  recordLogs(name: string, stream: NodeJS.ReadableStream): void {
    const log: string[] = []
    this.logs.set(name, log)
    let partial = ""
    stream.on("data", (chunk: Buffer | string) => {
      const lines = (partial + chunk.toString()).split("\n")
      partial = lines.pop() ?? ""
      log.push(...lines)
      if (log.length > 2_000) log.splice(0, log.length - 1_000)
    })
  }

  async stop(): Promise<void> {
    await this.operatorConn?.close().catch(() => undefined)
    // Reverse order: admin, consensus, keystores, NATS.
    for (const [, c] of [...this.containers].reverse())
      await c.stop({ timeout: 5_000 }).catch(() => undefined)
    await this.network.stop().catch(() => undefined)
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Polls `f` until it returns without throwing and `ok` holds. */
export const eventually = async <A>(
  what: string,
  f: () => Promise<A>,
  ok: (a: A) => boolean = () => true,
  timeoutMs = 60_000,
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown = "never ran"
  while (Date.now() < deadline) {
    try {
      const a = await f()
      if (ok(a)) return a
      last = a
    } catch (e) {
      last = e instanceof Error ? e.message : e
    }
    await sleep(250)
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000}s; last: ${JSON.stringify(last)}`)
}

const isRoot = () => process.getuid?.() === 0

/** Gives a tree the host wrote into a node's data directory back to the image's user. */
export const chownToImageUser = (path: string): void => {
  chownSync(path, EKV_UID, EKV_UID)
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const child = join(path, entry.name)
    if (entry.isDirectory()) chownToImageUser(child)
    else chownSync(child, EKV_UID, EKV_UID)
  }
}

/** A file the image's user can read and nobody else: 0400, owned by uid 10001 (as compose-setup.sh does). */
const secretFile = (path: string, content: string | Uint8Array): void => {
  writeFileSync(path, content, { mode: 0o400 })
  chmodSync(path, 0o400)
  chownSync(path, EKV_UID, EKV_UID)
}

/**
 * One retry: on a loaded machine the engine sometimes takes longer than
 * Testcontainers' fixed 10 s to report a new container's port bindings.
 */
const startWithRetry = async (
  name: string,
  start: () => Promise<StartedTestContainer>,
): Promise<StartedTestContainer> => {
  try {
    return await start()
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    if (!/ports to be bound/.test(message)) throw new Error(`${name}: ${message}`)
    console.warn(`${name}: ${message}; retrying once`)
    return await start().catch((e2: unknown) => {
      throw new Error(`${name}: ${e2 instanceof Error ? e2.message : String(e2)}`)
    })
  }
}

/** Brings the system up (NATS, keystores, consensus nodes, admin) and waits until a leader is known. */
export const startContainerSystem = async (opts: SystemOptions = {}): Promise<ContainerSystem> => {
  // Secrets owned by another uid need root here, as in compose-setup.sh.
  if (!isRoot()) throw new Error("the e2e suite runs as root (it gives files to the image's uid 10001)")
  const nodes = opts.nodes ?? ["n1", "n2", "n3"]
  const encryption = opts.encryption ?? true
  const dir = mkdtempSync(join(tmpdir(), "ekv-e2e-"))
  const secrets = join(dir, "secrets")
  mkdirSync(secrets, { mode: 0o700 })
  secretFile(join(secrets, "kek"), randomBytes(32))
  secretFile(join(secrets, "kek-next"), randomBytes(32))
  for (const n of nodes) {
    secretFile(join(secrets, `node-${n}`), randomBytes(32))
    mkdirSync(join(dir, n), { mode: 0o700 })
    chownSync(join(dir, n), EKV_UID, EKV_UID)
  }
  const users = ["operator", "admin", ...nodes.flatMap((n) => [`consensus-${n}`, `keystore-${n}`])]
  // nats-server parses a password from its environment as a config value: start it with a letter.
  const passwords = Object.fromEntries(users.map((u) => [u, `ekv${randomBytes(18).toString("hex")}`]))

  const network = await new Network().start()
  const system = new ContainerSystem(nodes, dir, network, passwords)
  try {
    const natsContainer = new GenericContainer(NATS_IMAGE)
      .withLabels({ "ekv.e2e": "nats" })
      .withNetwork(network)
      .withNetworkAliases("nats")
      .withCopyFilesToContainer([
        { source: join(REPO_ROOT, "config", "nats", "nats.conf"), target: "/etc/nats/nats.conf" },
      ])
      .withEnvironment(Object.fromEntries(users.map((u) => [passVar(u), passwords[u]!])))
      .withCommand(["-c", "/etc/nats/nats.conf"])
      .withExposedPorts(4222)
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .withStartupTimeout(STARTUP_TIMEOUT_MS)
      .withLogConsumer((s) => system.recordLogs("nats", s))
    const nats = await startWithRetry("nats", () => natsContainer.start())
    system.containers.set("nats", nats)

    const service = (name: string, command: Service, node: string | undefined, ready: RegExp) => {
      const user = busUser(command, node)
      const mounts: BindMount[] = [
        { source: join(secrets, `nats-${user}`), target: "/run/secrets/nats-password", mode: "ro" },
      ]
      secretFile(join(secrets, `nats-${user}`), passwords[user]!)
      const env: Record<string, string> = {
        NATS_URL: "nats://nats:4222",
        NATS_USER: user,
        NATS_PASSWORD_FILE: "/run/secrets/nats-password",
        EKV_PREFIX: "ekv",
        EKV_METRICS_PORT: String(METRICS_PORT),
        EKV_PEERS: nodes.join(","),
      }
      if (node !== undefined) {
        Object.assign(env, {
          EKV_NODE_ID: node,
          EKV_DATA_DIR: "/data",
          EKV_ENCRYPTION_ENABLED: encryption ? "true" : "false",
          EKV_NODE_SECRET_FILE: "/run/secrets/node-secret",
          EKV_ELECTION_TIMEOUT_MS: String(opts.electionTimeoutMs ?? 1000),
        })
        // the fault file (FAULT_FILE below) is how a test halts a node's apply
        if (command === "consensus") env.EKV_TEST_FAULT_FILE = "1"
        mounts.push(
          { source: join(dir, node), target: "/data", mode: "rw" },
          { source: join(secrets, `node-${node}`), target: "/run/secrets/node-secret", mode: "ro" },
        )
        if (command === "keystore" && encryption) {
          env.EKV_KEK_FILE = "/run/secrets/kek"
          env.EKV_KEK_NEXT_FILE = "/run/secrets/kek-next"
          mounts.push(
            { source: join(secrets, "kek"), target: "/run/secrets/kek", mode: "ro" },
            { source: join(secrets, "kek-next"), target: "/run/secrets/kek-next", mode: "ro" },
          )
        }
      }
      const container = new GenericContainer(SERVICE_IMAGE)
        .withLabels({ "ekv.e2e": name })
        .withNetwork(network)
        .withNetworkAliases(name)
        .withCommand([command])
        .withEnvironment(env)
        .withBindMounts(mounts)
        .withExposedPorts(METRICS_PORT)
        .withWaitStrategy(Wait.forLogMessage(ready))
        .withStartupTimeout(STARTUP_TIMEOUT_MS)
        .withLogConsumer((s) => system.recordLogs(name, s))
      return startWithRetry(name, () => container.start()).then((c) => {
        system.containers.set(name, c)
        return c
      })
    }

    await Promise.all(nodes.map((n) => service(`keystore-${n}`, "keystore", n, /serving on/)))
    await Promise.all(nodes.map((n) => service(`consensus-${n}`, "consensus", n, /consensus ready/)))
    await service("admin", "admin", undefined, /ekv-admin ready/)
    await eventually(
      "a leader",
      () => system.status(),
      (s) => s.leader !== null,
    )
    return system
  } catch (e) {
    const tail = system.logTail()
    await system.stop()
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${tail}`)
  }
}
