// A real NATS server for tests. `EKV_TEST_NATS` picks how it runs:
//   process   (default) a local `nats-server` child on a free loopback port
//   container the `ekv/nats:2.9.10` image through Testcontainers
// Container mode never falls back: without Docker or the image it throws, so
// CI fails instead of silently testing something else.
import { type ChildProcess, spawn } from "node:child_process"
import { accessSync, constants } from "node:fs"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"

export interface StartNatsOptions {
  /** Enable JetStream (file store in a temporary directory). */
  readonly jetstream?: boolean
  /** A nats-server config file to run with (auth, permissions); port and store dir are still set here. */
  readonly configFile?: string
}

export interface NatsFixture {
  readonly servers: string[]
  readonly mode: "process" | "container"
  stop(): Promise<void>
}

export type NatsTestMode = "process" | "container"

export const DEFAULT_NATS_IMAGE = "ekv/nats:2.9.10"

/** CONTRACT §2: 4 MiB so a 1 MiB value (base64, in JSON) fits in one request. */
const MAX_PAYLOAD = "4MB"

export const natsTestMode = (
  env: Readonly<Record<string, string | undefined>> = process.env,
): NatsTestMode => {
  const v = (env.EKV_TEST_NATS ?? "").trim()
  if (v === "" || v === "process") return "process"
  if (v === "container") return "container"
  throw new Error(`EKV_TEST_NATS must be "process" or "container", got "${v}"`)
}

export const startNats = (opts: StartNatsOptions = {}): Promise<NatsFixture> =>
  natsTestMode() === "container" ? startContainer(opts) : startProcess(opts)

// ---------------------------------------------------------------------------
// process mode

/** `EKV_NATS_SERVER`, else `nats-server` on PATH, else Debian's /usr/sbin/nats-server. */
export const natsServerBinary = (env: Readonly<Record<string, string | undefined>> = process.env): string => {
  if (env.EKV_NATS_SERVER) return env.EKV_NATS_SERVER
  const dirs = [
    ...(env.PATH ?? "").split(delimiter),
    "/usr/sbin",
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/bin",
  ]
  for (const dir of dirs) {
    if (dir === "") continue
    const candidate = join(dir, "nats-server")
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {
      // keep looking
    }
  }
  throw new Error(
    "nats-server not found (install it with `apt-get install -y nats-server` or set EKV_NATS_SERVER)",
  )
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address()
      const port = typeof addr === "object" && addr !== null ? addr.port : 0
      srv.close(() => resolve(port))
    })
  })

const generatedConfig = (storeDir: string | undefined): string =>
  [
    `max_payload: ${MAX_PAYLOAD}`,
    ...(storeDir === undefined ? [] : [`jetstream {`, `  store_dir: ${JSON.stringify(storeDir)}`, `}`]),
    "",
  ].join("\n")

const READY = /Server is ready/
const START_TIMEOUT_MS = 15_000

const live = new Set<ChildProcess>()
let exitHookInstalled = false
const installExitHook = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // A crashed or aborted test run must not leave servers behind.
  process.once("exit", () => {
    for (const child of live) child.kill("SIGKILL")
  })
}

const startProcess = async (opts: StartNatsOptions, attempt = 1): Promise<NatsFixture> => {
  const binary = natsServerBinary()
  const dir = await mkdtemp(join(tmpdir(), "ekv-nats-"))
  const storeDir = opts.jetstream ? join(dir, "jetstream") : undefined
  let configPath = opts.configFile
  if (configPath === undefined) {
    configPath = join(dir, "nats.conf")
    await writeFile(configPath, generatedConfig(storeDir))
  }
  const port = await freePort()
  const args = ["-c", configPath, "-a", "127.0.0.1", "-p", String(port)]
  if (opts.configFile !== undefined && storeDir !== undefined) args.push("-js", "-sd", storeDir)

  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] })
  installExitHook()
  live.add(child)
  let log = ""
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`nats-server not ready after ${START_TIMEOUT_MS} ms:\n${log}`)),
      START_TIMEOUT_MS,
    )
    const onData = (chunk: Buffer) => {
      log += chunk.toString()
      if (READY.test(log)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout?.on("data", onData)
    child.stderr?.on("data", onData)
    child.once("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`nats-server exited (${code ?? signal}) before it was ready:\n${log}`))
    })
  })

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000)
      await exited
      clearTimeout(timer)
    }
    live.delete(child)
    await rm(dir, { recursive: true, force: true })
  }

  try {
    await ready
  } catch (e) {
    await stop()
    // The free port may have been taken between probing and binding.
    if (attempt < 3 && /address already in use/i.test(String(e))) return startProcess(opts, attempt + 1)
    throw e
  }
  // Keep draining output so a chatty server never blocks on a full pipe.
  child.stdout?.resume()
  child.stderr?.resume()
  return { servers: [`nats://127.0.0.1:${port}`], mode: "process", stop }
}

// ---------------------------------------------------------------------------
// container mode

const CONTAINER_CONFIG = "/etc/nats/nats.conf"
const CONTAINER_STORE = "/data/jetstream"

const startContainer = async (opts: StartNatsOptions): Promise<NatsFixture> => {
  // The reaper image cannot be pulled on machines without a registry; the
  // fixture stops its own containers.
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true"
  const image = process.env.EKV_TEST_NATS_IMAGE ?? DEFAULT_NATS_IMAGE
  const { GenericContainer, ImageName, Wait, getContainerRuntimeClient } = await import("testcontainers")

  let client: Awaited<ReturnType<typeof getContainerRuntimeClient>>
  try {
    client = await getContainerRuntimeClient()
  } catch (e) {
    throw new Error(
      `EKV_TEST_NATS=container but Docker is not reachable (${e instanceof Error ? e.message : e}); ` +
        "start the engine (scripts/setup-docker.sh) or unset EKV_TEST_NATS to use a local nats-server",
    )
  }
  if (!(await client.image.exists(ImageName.fromString(image)))) {
    throw new Error(
      `EKV_TEST_NATS=container but image ${image} is not present; build it with scripts/setup-docker.sh`,
    )
  }

  const config =
    opts.configFile === undefined
      ? generatedConfig(opts.jetstream ? CONTAINER_STORE : undefined)
      : await readFile(opts.configFile, "utf8")
  const command = ["-c", CONTAINER_CONFIG, "-p", "4222"]
  if (opts.configFile !== undefined && opts.jetstream) command.push("-js", "-sd", CONTAINER_STORE)

  const container = await new GenericContainer(image)
    .withExposedPorts(4222)
    .withCopyContentToContainer([{ content: config, target: CONTAINER_CONFIG }])
    .withCommand(command)
    .withWaitStrategy(Wait.forLogMessage(READY))
    .withStartupTimeout(START_TIMEOUT_MS * 2)
    .start()
  return {
    servers: [`nats://${container.getHost()}:${container.getMappedPort(4222)}`],
    mode: "container",
    stop: async () => {
      await container.stop({ remove: true, removeVolumes: true })
    },
  }
}
