// A 3-server NATS cluster (nats-server 2.9, routes on loopback, JetStream on
// each with its own store directory) and a JetStream KV bucket with 3
// replicas. NATS 2.9 acknowledges a write once a quorum of replicas has it,
// without an fsync per write (`sync_interval` arrived in 2.10).
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Kvm } from "@nats-io/kv"
import { connect } from "@nats-io/transport-node"
import { type ProcessSpec, Supervisor } from "../../localCluster.ts"
import { ensureCommand, type RunningTarget, sleep, type TargetContext, versionLine } from "./target.ts"

const SERVERS = ["s1", "s2", "s3"] as const
export const BUCKET = "bench"
const BUCKET_TIMEOUT_MS = 60_000

export const startNatsKv = async (ctx: TargetContext): Promise<RunningTarget> => {
  ensureCommand("nats-server", ["nats-server"], ctx.say)
  const ports = await Promise.all(
    SERVERS.map(async (name) => ({ name, client: await ctx.ports.next(), route: await ctx.ports.next() })),
  )
  const routes = ports.map((p) => `"nats-route://127.0.0.1:${p.route}"`).join(", ")
  const specs: ProcessSpec[] = ports.map((p) => {
    const dir = join(ctx.dir, p.name)
    mkdirSync(dir, { recursive: true })
    const config = join(dir, "nats.conf")
    writeFileSync(
      config,
      [
        `server_name: ${p.name}`,
        `listen: "127.0.0.1:${p.client}"`,
        `jetstream { store_dir: ${JSON.stringify(dir)} }`,
        `cluster { name: "ekv-bench", listen: "127.0.0.1:${p.route}", routes: [ ${routes} ] }`,
        "",
      ].join("\n"),
    )
    return { name: `nats-${p.name}`, command: "nats-server", args: ["-c", config], ready: /Server is ready/ }
  })
  const supervisor = new Supervisor(ctx.supervisor)
  const servers = ports.map((p) => `nats://127.0.0.1:${p.client}`)
  try {
    await Promise.all(specs.map((s) => supervisor.start(s)))
    // JetStream needs a meta leader before a replicated stream can be created.
    const nc = await connect({ servers })
    try {
      const deadline = Date.now() + BUCKET_TIMEOUT_MS
      for (;;) {
        try {
          await new Kvm(nc).create(BUCKET, { replicas: 3, history: 1, allow_direct: false, timeout: 10_000 })
          break
        } catch (e) {
          if (Date.now() > deadline) throw new Error(`could not create the KV bucket: ${String(e)}`)
          await sleep(500)
        }
      }
    } finally {
      await nc.close()
    }
  } catch (e) {
    await supervisor.stopAll()
    throw e
  }
  return {
    name: "nats-kv",
    description: "NATS 3-server cluster on loopback, JetStream KV bucket with 3 replicas, @nats-io/kv client",
    durability:
      "no fsync per write: acknowledged once a quorum of replicas has appended it (page cache); nats-server 2.9 has no sync_interval, files are synced periodically",
    version: versionLine("nats-server", ["--version"]),
    facts: { bucket: BUCKET, replicas: "3", allow_direct: "false (gets go to the stream leader)" },
    client: { kind: "nats-kv", servers, bucket: BUCKET },
    serverProcesses: () => supervisor.pids(),
    stop: () => supervisor.stopAll(),
  }
}
