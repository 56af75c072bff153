// `npm run up` (via scripts/up.sh, which provisions first and runs this with
// Node 24): starts the local system on loopback and supervises it until
// Ctrl-C / SIGTERM (CONTRACT §8).
//
// What runs, in this order: NATS (JetStream, the CONTRACT §9 permissions, one
// generated password per user kept in data/nats/passwords.json, mode 0600),
// the keystores n1..n3 (encryption on: data/kek and data/kek.next, 0600),
// the consensus nodes n1..n3 (data under data/<node>), and one admin service.
// A service whose main module does not exist yet is left out, and the runner
// says so. Processes are started in order, each waiting for its ready line;
// their output is prefixed with their name; on a signal, or when one of them
// exits on its own, all are stopped in reverse order (SIGTERM, then SIGKILL).
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { busUsers, generatePasswords, literalPasswords, natsServerConfig } from "@ekv/admin"
import { connect } from "@nats-io/transport-node"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const dataDir = join(root, "data")

const READY_TIMEOUT_MS = 30_000
const LEADER_TIMEOUT_MS = 60_000
const NODES = ["n1", "n2", "n3"] as const
const PREFIX = "ekv"

const mains = {
  consensus: join(root, "services/consensus/src/main.ts"),
  keystore: join(root, "services/keystore/src/main.ts"),
  admin: join(root, "services/admin/src/main.ts"),
}
const STOP_TIMEOUT_MS = 10_000

interface Options {
  readonly fresh: boolean
  readonly encryption: boolean
  readonly natsPort: number
}

interface ProcessSpec {
  readonly name: string
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  /** A line on stdout or stderr that says the process is ready. */
  readonly ready: RegExp
}

const usage = `usage: npm run up [-- --fresh] [-- --no-encryption]
  --fresh          wipe ./data first
  --no-encryption  start the cluster with encryption disabled (no KEK files are passed)
  EKV_NATS_PORT    port of the local NATS server (default 4222)`

const parseOptions = (argv: ReadonlyArray<string>): Options => {
  let fresh = false
  let encryption = true
  for (const arg of argv) {
    if (arg === "--fresh") fresh = true
    else if (arg === "--no-encryption") encryption = false
    else if (arg === "--help" || arg === "-h") {
      console.log(usage)
      process.exit(0)
    } else {
      console.error(`up: unknown argument ${arg}\n${usage}`)
      process.exit(2)
    }
  }
  const portText = process.env.EKV_NATS_PORT ?? "4222"
  const natsPort = Number(portText)
  if (!Number.isInteger(natsPort) || natsPort < 1 || natsPort > 65535) {
    console.error(`up: EKV_NATS_PORT must be a port number, not ${portText}`)
    process.exit(2)
  }
  return { fresh, encryption, natsPort }
}

/** A file holding `content`, mode 0600 whatever the umask (it holds secrets). */
const writeSecret = (path: string, content: string | Uint8Array): void => {
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

interface Setup {
  readonly url: string
  readonly passwords: Record<string, string>
  readonly natsConfigFile: string
}

const prepare = (options: Options): Setup => {
  const natsDir = join(dataDir, "nats")
  mkdirSync(natsDir, { recursive: true, mode: 0o700 })
  const passwords = busPasswords(natsDir)
  const natsConfigFile = join(natsDir, "nats.conf")
  // nats-server keeps JetStream in `<store_dir>/jetstream`, i.e. data/nats/jetstream.
  writeSecret(
    natsConfigFile,
    natsServerConfig({
      prefix: PREFIX,
      nodes: NODES,
      password: literalPasswords(passwords),
      listen: `127.0.0.1:${options.natsPort}`,
      jetstream: { storeDir: natsDir },
      comment: ["Generated by scripts/up.ts (npm run up); rewritten at every start."],
    }),
  )
  const url = `nats://127.0.0.1:${options.natsPort}`
  // CONTRACT §8: the operator's credentials for the CLI and tools.
  writeSecret(
    join(dataDir, "operator.json"),
    `${JSON.stringify({ servers: [url], user: "operator", pass: passwords.operator }, null, 2)}\n`,
  )
  return { url, passwords, natsConfigFile }
}

const busEnv = (setup: Setup, user: string): Record<string, string> => ({
  NATS_URL: setup.url,
  NATS_USER: user,
  NATS_PASSWORD: setup.passwords[user] ?? "",
  EKV_PREFIX: PREFIX,
})

/** What `npm run up` starts, in order, and what it had to leave out. */
const plan = (options: Options, setup: Setup): { specs: ReadonlyArray<ProcessSpec>; missing: string[] } => {
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
        env: { ...busEnv(setup, `keystore-${n}`), EKV_NODE_ID: n, EKV_DATA_DIR: join(dataDir, n), ...kek },
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
        },
        ready: /consensus ready/,
      })
    }
  } else missing.push("consensus (services/consensus/src/main.ts)")
  specs.push({
    name: "admin",
    command: node,
    args: [mains.admin],
    env: { ...busEnv(setup, "admin"), EKV_PEERS: peers },
    ready: /ekv-admin ready/,
  })
  return { specs, missing }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Asks `ekv.admin.cluster.status` as the operator until it names a leader. */
const waitForLeader = async (setup: Setup): Promise<string> => {
  const nc = await connect({
    servers: setup.url,
    user: "operator",
    pass: setup.passwords.operator ?? "",
    inboxPrefix: "_INBOX.operator",
  })
  try {
    const deadline = Date.now() + LEADER_TIMEOUT_MS
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
    throw new Error(`no leader within ${LEADER_TIMEOUT_MS / 1000}s (${last})`)
  } finally {
    await nc.close()
  }
}

class Supervisor {
  private readonly running: Array<{ spec: ProcessSpec; child: ChildProcess }> = []
  private stopping = false

  async start(spec: ProcessSpec): Promise<void> {
    const child = spawn(spec.command, [...spec.args], {
      cwd: root,
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
      const onLine = (line: string) => {
        console.log(`[${spec.name}] ${line}`)
        if (spec.ready.test(line)) {
          clearTimeout(timer)
          resolveReady()
        }
      }
      for (const stream of [child.stdout, child.stderr]) {
        if (stream) createInterface({ input: stream }).on("line", onLine)
      }
      child.once("error", (error) => {
        clearTimeout(timer)
        rejectReady(new Error(`${spec.name} failed to start: ${error.message}`))
      })
      child.once("exit", (code, signal) => {
        clearTimeout(timer)
        rejectReady(new Error(`${spec.name} exited before it was ready (${signal ?? `code ${code}`})`))
        if (!this.stopping) {
          console.error(`up: ${spec.name} exited (${signal ?? `code ${code}`}); stopping everything`)
          void this.stopAll(1)
        }
      })
    })
  }

  /** Last resort when this process exits without stopping them. */
  killAll(): void {
    for (const { child } of this.running) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    }
  }

  async stopAll(exitCode: number): Promise<never> {
    if (!this.stopping) {
      this.stopping = true
      for (const { spec, child } of [...this.running].reverse()) {
        if (child.exitCode !== null || child.signalCode !== null) continue
        const exited = new Promise<void>((done) => child.once("exit", () => done()))
        child.kill("SIGTERM")
        const timer = setTimeout(() => {
          console.error(`up: ${spec.name} did not stop within ${STOP_TIMEOUT_MS / 1000}s; killing it`)
          child.kill("SIGKILL")
        }, STOP_TIMEOUT_MS)
        await exited
        clearTimeout(timer)
        console.log(`up: stopped ${spec.name}`)
      }
    }
    process.exit(exitCode)
  }
}

const main = async (): Promise<void> => {
  const options = parseOptions(process.argv.slice(2))
  if (spawnSync("nats-server", ["--version"]).status !== 0) {
    console.error("up: nats-server is not installed (run: bash scripts/setup.sh)")
    process.exit(1)
  }
  if (options.fresh) {
    rmSync(dataDir, { recursive: true, force: true })
    console.log(`up: --fresh: wiped ${relative(root, dataDir)}/`)
  }
  mkdirSync(dataDir, { recursive: true })

  const supervisor = new Supervisor()
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => void supervisor.stopAll(0))
  }
  process.once("exit", () => supervisor.killAll())

  const setup = prepare(options)
  const { specs, missing } = plan(options, setup)
  try {
    for (const spec of specs) await supervisor.start(spec)
  } catch (error) {
    console.error(`up: ${error instanceof Error ? error.message : String(error)}`)
    await supervisor.stopAll(1)
  }

  const rel = (p: string) => relative(root, p)
  const lines = [""]
  if (existsSync(mains.consensus)) {
    try {
      const leader = await waitForLeader(setup)
      lines.push(`ekv ready leader=${leader}`)
    } catch (error) {
      console.error(`up: ${error instanceof Error ? error.message : String(error)}`)
      await supervisor.stopAll(1)
    }
  } else {
    lines.push("up: no ekv cluster runs: there is no leader, only the bus and the admin service are up.")
  }
  for (const m of missing) lines.push(`up: not started (not built yet): ${m}`)
  lines.push(
    `NATS        ${setup.url}  (JetStream store ${rel(dataDir)}/nats/jetstream; every user needs a password)`,
    `operator    user "operator", password "${setup.passwords.operator}"`,
    `            also in ${rel(join(dataDir, "operator.json"))} (the ekv CLI reads it by default)`,
    `encryption  ${
      options.encryption
        ? `enabled: KEK ${rel(join(dataDir, "kek"))}, next KEK ${rel(join(dataDir, "kek.next"))} (mode 0600)`
        : "disabled (--no-encryption)"
    }`,
    "try:",
    "  npm run ekv -- cluster status",
    "  npm run ekv -- kv put hello world",
    "  npm run ekv -- kv get hello",
    "  npm run ekv -- kv scan --json",
    "  npm run ekv -- node health n1",
    "Ctrl-C stops it.",
  )
  console.log(lines.join("\n"))
}

await main()
