// A three-server NATS cluster on loopback for partition faults: one server
// per ekv node (its consensus and keystore connect only to it), routes
// between them, the CONTRACT §9 users and permissions on every server, and
// `no_advertise` so no client learns (and fails over to) another server.
//
// Cutting node i off: server i is restarted with its cluster listener on a
// fresh port and its one route to an unused port (the others keep dialling
// the old port in vain);
// its clients reconnect to it within a second and from then on reach only
// each other. Healing restarts it with its original cluster port and routes.
//
// JetStream runs clustered (server_name, cluster name, routes; each server
// its own store dir) so the events stream (CONTRACT §5) exists; while a
// server is cut off, JetStream is unavailable on it (no meta quorum), which is
// what a real partition does too. Event publishing is best effort in every
// service.
import { type ChildProcess, spawn } from "node:child_process"
import { mkdir, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { literalPasswords, natsServerConfig } from "@ekv/admin"
import type { NatsFixture } from "../natsFixture.ts"
import { freePort, natsServerBinary } from "../natsFixture.ts"

const live = new Set<ChildProcess>()
let hooked = false
const hook = () => {
  if (hooked) return
  hooked = true
  process.once("exit", () => {
    for (const c of live) c.kill("SIGKILL")
  })
}

interface Server {
  readonly name: string
  readonly clientPort: number
  readonly clusterPort: number
  child: ChildProcess | null
  isolated: boolean
}

export interface NatsClusterOptions {
  readonly dir: string
  readonly nodes: readonly string[]
  /** Users with bus credentials (nodes plus extra nodes). */
  readonly userNodes: readonly string[]
  readonly passwords: Readonly<Record<string, string>>
  readonly prefix?: string
}

export class NatsCluster implements NatsFixture {
  readonly mode = "process" as const
  readonly servers: string[]
  private readonly byNode = new Map<string, Server>()
  private readonly opts: NatsClusterOptions

  private constructor(opts: NatsClusterOptions, servers: Map<string, Server>) {
    this.opts = opts
    this.byNode = servers
    this.servers = [...servers.values()].map((s) => `nats://127.0.0.1:${s.clientPort}`)
  }

  static async start(opts: NatsClusterOptions): Promise<NatsCluster> {
    hook()
    const servers = new Map<string, Server>()
    for (const n of opts.nodes)
      servers.set(n, {
        name: `nats-${n}`,
        clientPort: await freePort(),
        clusterPort: await freePort(),
        child: null,
        isolated: false,
      })
    const c = new NatsCluster(opts, servers)
    await Promise.all(opts.nodes.map((n) => c.launch(n, true)))
    return c
  }

  /** The client URL of `node`'s server. */
  urlOf(node: string): string {
    const s = this.byNode.get(node)
    if (s === undefined) throw new Error(`no NATS server for ${node}`)
    return `nats://127.0.0.1:${s.clientPort}`
  }

  isIsolated(node: string): boolean {
    return this.byNode.get(node)?.isolated ?? false
  }

  isolated(): string[] {
    return [...this.byNode].filter(([, s]) => s.isolated).map(([n]) => n)
  }

  /** Cuts `node`'s server off from the others (its clients stay connected to it). */
  async isolate(node: string): Promise<void> {
    await this.kill(node)
    await this.launch(node, false)
  }

  /** Restores `node`'s routes. */
  async heal(node: string): Promise<void> {
    await this.kill(node)
    await this.launch(node, true)
  }

  async healAll(): Promise<void> {
    for (const n of this.isolated()) await this.heal(n)
  }

  async stop(): Promise<void> {
    for (const n of this.byNode.keys()) await this.kill(n)
  }

  private async kill(node: string): Promise<void> {
    const s = this.byNode.get(node)
    const child = s?.child
    if (s === undefined || child === null || child === undefined) return
    s.child = null
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((r) => child.once("exit", () => r()))
    child.kill("SIGKILL")
    await exited
    live.delete(child)
  }

  private async launch(node: string, routed: boolean): Promise<void> {
    const s = this.byNode.get(node)
    if (s === undefined) throw new Error(`no NATS server for ${node}`)
    const dir = join(this.opts.dir, s.name)
    await mkdir(dir, { recursive: true })
    const clusterPort = routed ? s.clusterPort : await freePort()
    const routes = routed
      ? [...this.byNode.values()]
          .filter((o) => o !== s)
          .map((o) => JSON.stringify(`nats-route://127.0.0.1:${o.clusterPort}`))
      : // JetStream clustering needs configured routes: one to a port nobody listens on.
        [JSON.stringify(`nats-route://127.0.0.1:${await freePort()}`)]
    const config = [
      natsServerConfig({
        prefix: this.opts.prefix ?? "ekv",
        nodes: this.opts.userNodes,
        password: literalPasswords(this.opts.passwords),
        jetstream: { storeDir: join(dir, "jetstream") },
        serverName: s.name,
        listen: `127.0.0.1:${s.clientPort}`,
      }),
      "cluster {",
      '  name: "ekv-nemesis"',
      `  listen: "127.0.0.1:${clusterPort}"`,
      "  no_advertise: true",
      `  routes: [${routes.join(", ")}]`,
      "}",
      "",
    ].join("\n")
    const file = join(dir, routed ? "nats.conf" : "nats-isolated.conf")
    await writeFile(file, config, { mode: 0o600 })
    const child = spawn(natsServerBinary(), ["-c", file], { stdio: ["ignore", "pipe", "pipe"] })
    live.add(child)
    let log = ""
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${s.name} not ready:\n${log}`)), 15_000)
      const onData = (b: Buffer) => {
        log += b.toString()
        if (log.length > 50_000) log = log.slice(-20_000)
        if (/Server is ready/.test(log)) {
          clearTimeout(timer)
          resolve()
        }
      }
      child.stdout?.on("data", onData)
      child.stderr?.on("data", onData)
      child.once("exit", (code, sig) => {
        clearTimeout(timer)
        reject(new Error(`${s.name} exited (${code ?? sig}) before it was ready:\n${log}`))
      })
    })
    child.stdout?.resume()
    child.stderr?.resume()
    child.stdout?.removeAllListeners("data")
    child.stderr?.removeAllListeners("data")
    child.stdout?.on("data", () => {})
    child.stderr?.on("data", () => {})
    s.child = child
    s.isolated = !routed
  }
}
