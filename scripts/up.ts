// `npm run up` (via scripts/up.sh, which provisions first and runs this with
// Node 24): starts the local system on loopback and supervises it until
// Ctrl-C / SIGTERM (CONTRACT §8).
//
// Processes are started in order, each waiting for its ready line; their
// output is prefixed with their name; on a signal, or when one of them exits
// on its own, all are stopped in reverse order (SIGTERM, then SIGKILL).
//
// Today only NATS runs: the consensus, keystore and admin services are not
// built yet. They are added as further `ProcessSpec`s in `plan()`.
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const dataDir = join(root, "data")

// CONTRACT §2: the shipped NATS configurations raise max_payload to 4 MiB.
const MAX_PAYLOAD = 4 * 1024 * 1024
const READY_TIMEOUT_MS = 30_000
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
  --no-encryption  start the cluster with encryption disabled (once the services exist)
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

const natsConfig = (port: number, storeDir: string): string =>
  [
    `listen: "127.0.0.1:${port}"`,
    `max_payload: ${MAX_PAYLOAD}`,
    `jetstream {`,
    `  store_dir: ${JSON.stringify(storeDir)}`,
    `}`,
    "",
  ].join("\n")

const natsSpec = (options: Options): ProcessSpec => {
  const natsDir = join(dataDir, "nats")
  mkdirSync(natsDir, { recursive: true })
  const configFile = join(natsDir, "nats.conf")
  // nats-server keeps JetStream in `<store_dir>/jetstream`, i.e. data/nats/jetstream.
  writeFileSync(configFile, natsConfig(options.natsPort, natsDir))
  return { name: "nats", command: "nats-server", args: ["-c", configFile], ready: /Server is ready/ }
}

/** What `npm run up` starts, in order. */
const plan = (options: Options): ReadonlyArray<ProcessSpec> => [natsSpec(options)]

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

  try {
    for (const spec of plan(options)) await supervisor.start(spec)
  } catch (error) {
    console.error(`up: ${error instanceof Error ? error.message : String(error)}`)
    await supervisor.stopAll(1)
  }

  const url = `nats://127.0.0.1:${options.natsPort}`
  console.log("")
  console.log(`up: NATS is ready at ${url} (JetStream store ${relative(root, dataDir)}/nats/jetstream)`)
  console.log(
    "up: the consensus, keystore and admin services are not built yet, so no ekv cluster runs and " +
      "there is no leader; only the bus is up.",
  )
  if (!options.encryption) console.log("up: --no-encryption noted; it takes effect once the services exist.")
  console.log("up: Ctrl-C stops it.")
}

await main()
