// The admin service's settings (CONTRACT.md §6): `EKV_PREFIX`, `EKV_PEERS`
// (a seed list of nodes to ask first), `EKV_METRICS_PORT`, `EKV_ELECTION_TIMEOUT_MS`
// (the member poll's bound), and the bus timeouts. NATS connection settings are read by @ekv/bus.
import { parsePrefix } from "@ekv/wire"
import { Result } from "effect"

export interface AdminConfig {
  readonly prefix: string
  /** Nodes to ask first; the rest are found through `$SRV.INFO` and cluster status. */
  readonly peers: ReadonlyArray<string>
  readonly metricsPort: number | undefined
  /** Per request to one node for status (a dead node must not hold a reply long). */
  readonly statusTimeoutMs: number
  /** Per forwarded mutator (commit + apply on the leader, or a leader transfer). */
  readonly mutateTimeoutMs: number
  /** Per node for `cluster.snapshot`: a file of the whole store takes time in proportion to it. */
  readonly snapshotTimeoutMs: number
  /** How long `$SRV.INFO` replies are collected. */
  readonly discoveryWaitMs: number
  /** One election timeout (EKV_ELECTION_TIMEOUT_MS): the member poll's bound (SPEC.md §5). */
  readonly electionTimeoutMs: number
  /** A resync-sidecar runs in the target's keystore and may replay many entries. */
  readonly resyncTimeoutMs: number
}

const NODE_ID = /^[a-z0-9-]{1,64}$/

export class ConfigError extends Error {
  override readonly name = "ConfigError"
}

const positiveInt = (name: string, raw: string | undefined, fallback: number): number => {
  if (raw === undefined || raw.trim() === "") return fallback
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new ConfigError(`${name} must be a positive integer, got ${raw}`)
  return n
}

/** `EKV_PEERS`: comma-separated node ids (empty → discover). */
export const parsePeers = (raw: string | undefined): ReadonlyArray<string> => {
  const peers = (raw ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "")
  for (const p of peers)
    if (!NODE_ID.test(p)) throw new ConfigError(`EKV_PEERS: invalid node id ${JSON.stringify(p)}`)
  return [...new Set(peers)]
}

export const adminConfigFromEnv = (env: Readonly<Record<string, string | undefined>>): AdminConfig => {
  const prefix = parsePrefix(env.EKV_PREFIX)
  if (Result.isFailure(prefix)) throw new ConfigError(prefix.failure.message)
  const portRaw = env.EKV_METRICS_PORT
  let metricsPort: number | undefined
  if (portRaw !== undefined && portRaw.trim() !== "") {
    metricsPort = Number(portRaw)
    if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535)
      throw new ConfigError(`EKV_METRICS_PORT must be a port, got ${portRaw}`)
  }
  return {
    prefix: prefix.success,
    peers: parsePeers(env.EKV_PEERS),
    metricsPort,
    statusTimeoutMs: positiveInt("EKV_ADMIN_STATUS_TIMEOUT_MS", env.EKV_ADMIN_STATUS_TIMEOUT_MS, 2_000),
    mutateTimeoutMs: positiveInt("EKV_ADMIN_REQUEST_TIMEOUT_MS", env.EKV_ADMIN_REQUEST_TIMEOUT_MS, 15_000),
    snapshotTimeoutMs: positiveInt(
      "EKV_ADMIN_SNAPSHOT_TIMEOUT_MS",
      env.EKV_ADMIN_SNAPSHOT_TIMEOUT_MS,
      600_000,
    ),
    discoveryWaitMs: positiveInt("EKV_ADMIN_DISCOVERY_MS", env.EKV_ADMIN_DISCOVERY_MS, 300),
    electionTimeoutMs: positiveInt("EKV_ELECTION_TIMEOUT_MS", env.EKV_ELECTION_TIMEOUT_MS, 1_000),
    resyncTimeoutMs: positiveInt("EKV_ADMIN_RESYNC_TIMEOUT_MS", env.EKV_ADMIN_RESYNC_TIMEOUT_MS, 120_000),
  }
}
