// A 3-member etcd cluster (Debian's etcd-server, 3.4) on loopback, driven by
// the etcd3 gRPC client. etcd fsyncs its WAL before a write is acknowledged,
// on the leader and a quorum of members.
import { join } from "node:path"
import { type ProcessSpec, Supervisor } from "../../localCluster.ts"
import { ensureCommand, type RunningTarget, type TargetContext, versionLine } from "./target.ts"

const MEMBERS = ["e1", "e2", "e3"] as const

export const startEtcd = async (ctx: TargetContext): Promise<RunningTarget> => {
  ensureCommand("etcd", ["etcd-server", "etcd-client"], ctx.say)
  const ports = await Promise.all(
    MEMBERS.map(async (name) => ({ name, client: await ctx.ports.next(), peer: await ctx.ports.next() })),
  )
  const initialCluster = ports.map((p) => `${p.name}=http://127.0.0.1:${p.peer}`).join(",")
  const specs: ProcessSpec[] = ports.map((p) => ({
    name: `etcd-${p.name}`,
    command: "etcd",
    args: [
      `--name=${p.name}`,
      `--data-dir=${join(ctx.dir, p.name)}`,
      `--listen-client-urls=http://127.0.0.1:${p.client}`,
      `--advertise-client-urls=http://127.0.0.1:${p.client}`,
      `--listen-peer-urls=http://127.0.0.1:${p.peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${p.peer}`,
      `--initial-cluster=${initialCluster}`,
      "--initial-cluster-state=new",
      "--initial-cluster-token=ekv-bench",
      "--logger=zap",
      "--log-outputs=stderr",
    ],
    // zap logs "serving client traffic ..." once the member serves clients (capnslog: "ready to serve").
    ready: /serving client traffic|ready to serve client requests/,
  }))
  const supervisor = new Supervisor(ctx.supervisor)
  try {
    // A member is ready only once the cluster has a leader: start all three at once.
    await Promise.all(specs.map((s) => supervisor.start(s)))
  } catch (e) {
    await supervisor.stopAll()
    throw e
  }
  return {
    name: "etcd",
    description: "etcd 3-member cluster on loopback, etcd3 gRPC client (all endpoints)",
    durability: "fsync: the WAL is fsynced on a quorum before a write is acknowledged",
    version: versionLine("etcd", ["--version"]),
    facts: {},
    client: { kind: "etcd", endpoints: ports.map((p) => `http://127.0.0.1:${p.client}`) },
    serverProcesses: () => supervisor.pids(),
    stop: () => supervisor.stopAll(),
  }
}
