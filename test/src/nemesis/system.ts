// The ekv system for nemesis runs: EkvSystem (test/src/system.ts) on a
// three-server NATS cluster (natsCluster.ts), each node's consensus and
// keystore pinned to their own server through NATS_URL; admin and the
// operator's connections get every server.
import { mkdtemp } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { busUsers, generatePasswords } from "@ekv/admin"
import { EkvSystem, type SystemOptions, writeKeyFile } from "../system.ts"
import { NatsCluster } from "./natsCluster.ts"

export interface NemesisSystem {
  readonly sys: EkvSystem
  readonly nats: NatsCluster
}

export const startNemesisSystem = async (opts: SystemOptions = {}): Promise<NemesisSystem> => {
  const nodes = opts.nodes ?? ["n1", "n2", "n3"]
  const all = [...nodes, ...(opts.extraNodes ?? [])]
  const baseDir = await mkdtemp(join(tmpdir(), `ekv-sys-${opts.name ?? "nemesis"}-`))
  const passwords = generatePasswords(busUsers(all))
  const nats = await NatsCluster.start({ dir: join(baseDir, "nats"), nodes, userNodes: all, passwords })
  const processEnv: Record<string, Record<string, string>> = {}
  for (const n of nodes) {
    processEnv[`consensus-${n}`] = { NATS_URL: nats.urlOf(n), ...opts.processEnv?.[`consensus-${n}`] }
    processEnv[`keystore-${n}`] = { NATS_URL: nats.urlOf(n), ...opts.processEnv?.[`keystore-${n}`] }
  }
  const sys = new EkvSystem(nats, baseDir, passwords, { ...opts, processEnv })
  await writeKeyFile(sys.kekFile("a"))
  await writeKeyFile(sys.kekFile("b"))
  await sys.startAll()
  return { sys, nats }
}
