// A nats-server running the CONTRACT §9 permissions for `nodes` (generated
// passwords) with the admin service as a real process on it. The tests answer
// the nodes' subjects with stand-ins of their own, connected through
// `connectAs`.
import { type ChildProcess, spawn } from "node:child_process"
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { type NatsFixture, startNats } from "@ekv/test"
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node"
import { busUsers, generatePasswords, literalPasswords, natsServerConfig } from "../../src/busConfig.ts"

const root = join(dirname(fileURLToPath(import.meta.url)), "../../../..")

export const json = (m: Msg): Record<string, unknown> => JSON.parse(new TextDecoder().decode(m.data))

/** A request over `nc`: the JSON reply and its service error code ("" on success). */
export const ask = async (nc: NatsConnection, subject: string, body: unknown) => {
  const m = await nc.request(subject, typeof body === "string" ? body : JSON.stringify(body), {
    timeout: 10_000,
  })
  return { code: m.headers?.get("Nats-Service-Error-Code") ?? "", body: json(m) }
}

export class StandInBus {
  readonly dir: string
  readonly passwords: Record<string, string>
  readonly fixture: NatsFixture
  private admin: ChildProcess | undefined

  private constructor(dir: string, passwords: Record<string, string>, fixture: NatsFixture) {
    this.dir = dir
    this.passwords = passwords
    this.fixture = fixture
  }

  /** Starts nats-server in a fresh temporary directory named `tmpPrefix…` (JetStream stored there when on). */
  static async start(p: {
    readonly nodes: readonly string[]
    readonly tmpPrefix: string
    readonly jetstream: boolean
  }): Promise<StandInBus> {
    const dir = await mkdtemp(join(tmpdir(), p.tmpPrefix))
    try {
      const passwords = generatePasswords(busUsers(p.nodes))
      const configFile = join(dir, "nats.conf")
      await writeFile(
        configFile,
        natsServerConfig({
          prefix: "ekv",
          nodes: p.nodes,
          password: literalPasswords(passwords),
          jetstream: p.jetstream ? { storeDir: join(dir, "js") } : false,
        }),
      )
      await chmod(configFile, 0o600)
      return new StandInBus(dir, passwords, await startNats({ configFile }))
    } catch (e) {
      await rm(dir, { recursive: true, force: true })
      throw e
    }
  }

  connectAs(user: string): Promise<NatsConnection> {
    return connect({
      servers: this.fixture.servers,
      user,
      pass: this.passwords[user] ?? "",
      inboxPrefix: `_INBOX.${user}`,
    })
  }

  /** Spawns `services/admin/src/main.ts` (EKV_PEERS n1,n2, short timeouts, plus `env`) and waits for it to be ready. */
  async startAdmin(env: Record<string, string> = {}): Promise<ChildProcess> {
    const child = spawn(process.execPath, [join(root, "services/admin/src/main.ts")], {
      env: {
        ...process.env,
        NATS_URL: this.fixture.servers.join(","),
        NATS_USER: "admin",
        NATS_PASSWORD: this.passwords.admin ?? "",
        EKV_PEERS: "n1,n2",
        EKV_ADMIN_REQUEST_TIMEOUT_MS: "1000",
        EKV_ADMIN_SNAPSHOT_TIMEOUT_MS: "1000",
        EKV_ADMIN_STATUS_TIMEOUT_MS: "500",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    })
    this.admin = child
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("admin not ready")), 15_000)
      for (const s of [child.stdout, child.stderr]) {
        if (s === null) continue
        createInterface({ input: s }).on("line", (line) => {
          if (process.env.EKV_TEST_VERBOSE) console.log(`[admin] ${line}`)
          if (/ekv-admin ready/.test(line)) {
            clearTimeout(timer)
            resolve()
          }
        })
      }
      child.once("exit", (code) => reject(new Error(`admin exited ${code}`)))
    })
    return child
  }

  /** Kills the admin process, stops nats-server and removes the directory. */
  async stop(): Promise<void> {
    if (this.admin !== undefined && this.admin.exitCode === null) this.admin.kill("SIGKILL")
    await this.fixture.stop()
    await rm(this.dir, { recursive: true, force: true })
  }
}
