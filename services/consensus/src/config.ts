// The consensus process's configuration (CONTRACT §6): environment variables,
// each with an equal `--flag` (`--nats-url`, `--ekv-node-id`, `--node-id`, ...;
// a flag wins over the environment). Invalid configuration is one clear line
// and a non-zero exit (main.ts).
import * as path from "node:path"
import { type NatsOptions, natsOptionsFromEnv } from "@ekv/bus"
import { PREFIX_PATTERN } from "@ekv/wire"

export interface ConsensusConfig {
  readonly nats: NatsOptions
  readonly prefix: string
  readonly nodeId: string
  /** Initial voters (required on first start when this node founds the cluster). */
  readonly peers: readonly string[]
  readonly dataDir: string
  readonly raftDir: string
  readonly stateDir: string
  readonly snapshotDir: string
  readonly snapshotEntries: number
  readonly electionTimeoutMs: number
  readonly metricsPort: number | undefined
  /** Test only: halt apply at the first entry ≥ this index (EKV_TEST_FAULT_HALT_AT_INDEX). */
  readonly faultHaltAtIndex: number | undefined
  /**
   * Test only: EKV_TEST_FAULT_FILE=1 makes every apply batch look for the fault
   * file <data dir>/consensus/test-fault-halt-at-index (fsm/halt.ts); off by
   * default, so production pays no file read per batch.
   */
  readonly faultFileEnabled: boolean
  /** Test only: every apply batch waits this long before its state write (EKV_TEST_FAULT_APPLY_WRITE_DELAY_MS). */
  readonly faultApplyWriteDelayMs: number
  /** EKV_NODE_SECRET_FILE (SPEC §4.3), default <data dir>/node.secret. */
  readonly nodeSecretPath: string
  /** EKV_ROTATE_ON_STARTUP: one rotation per purpose when leader during this process load. */
  readonly rotateOnStartup: boolean
  /**
   * EKV_SCRUB_BYTES_PER_SEC: read rate of the background check of the state
   * database's tables (stateMachine/scrubber.ts), default 8 MiB/s; 0 = off.
   */
  readonly scrubBytesPerSec: number
  /**
   * EKV_LEVELDB_WRITE_BUFFER_MB: the write buffer (memtable) of each of the
   * node's two LevelDB databases, the Raft log and the state, default 32 MiB.
   */
  readonly writeBufferBytes: number
}

export class ConfigError extends Error {
  override readonly name = "ConfigError"
}

const NODE_ID = /^[a-z0-9-]{1,64}$/

// LevelDB's own default write buffer is 4 MiB: every few seconds of 4 KiB
// puts it flushed a small level-0 table and compacted, which cost more CPU
// than the puts' own work (docs/performance.md, change 16). RocksDB, under
// etcd-like stores, defaults to 64 MiB.
const DEFAULT_WRITE_BUFFER_MB = 32
const MAX_WRITE_BUFFER_MB = 1024

const VARS = [
  "NATS_URL",
  "NATS_USER",
  "NATS_PASSWORD",
  "NATS_CREDS",
  "EKV_PREFIX",
  "EKV_NODE_ID",
  "EKV_PEERS",
  "EKV_DATA_DIR",
  "EKV_SNAPSHOT_ENTRIES",
  "EKV_ELECTION_TIMEOUT_MS",
  "EKV_METRICS_PORT",
  "EKV_TEST_FAULT_HALT_AT_INDEX",
  "EKV_TEST_FAULT_APPLY_WRITE_DELAY_MS",
  "EKV_TEST_FAULT_FILE",
  "EKV_NODE_SECRET_FILE",
  "EKV_ROTATE_ON_STARTUP",
  "EKV_ENCRYPTION_ENABLED",
  "EKV_SCRUB_BYTES_PER_SEC",
  "EKV_LEVELDB_WRITE_BUFFER_MB",
] as const

/** `--nats-url x` / `--nats-url=x` → NATS_URL; `--node-id` is accepted for EKV_NODE_ID too. */
const flagToVar = (flag: string): string | undefined => {
  const name = flag.replace(/^--/, "").toUpperCase().replace(/-/g, "_")
  if ((VARS as readonly string[]).includes(name)) return name
  if ((VARS as readonly string[]).includes(`EKV_${name}`)) return `EKV_${name}`
  return undefined
}

/** The environment with `--flags` applied on top. */
export const mergeFlags = (
  env: Readonly<Record<string, string | undefined>>,
  argv: readonly string[],
): Record<string, string | undefined> => {
  const out: Record<string, string | undefined> = {}
  for (const v of VARS) out[v] = env[v]
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith("--")) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}`)
    const eq = arg.indexOf("=")
    const flag = eq === -1 ? arg : arg.slice(0, eq)
    const name = flagToVar(flag)
    if (name === undefined) throw new ConfigError(`unknown flag ${flag}`)
    let value: string | undefined
    if (eq !== -1) value = arg.slice(eq + 1)
    else {
      value = argv[i + 1]
      if (value === undefined) throw new ConfigError(`flag ${flag} needs a value`)
      i++
    }
    out[name] = value
  }
  return out
}

const positiveInt = (
  name: string,
  raw: string | undefined,
  dflt: number,
  min = 1,
  max = Number.MAX_SAFE_INTEGER,
): number => {
  if (raw === undefined || raw.trim() === "") return dflt
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new ConfigError(
      max === Number.MAX_SAFE_INTEGER
        ? `${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`
        : `${name} must be an integer in ${min}..${max}, got ${JSON.stringify(raw)}`,
    )
  return n
}

/** A switch variable: on for 1, true, yes or on (any case), off otherwise. */
const isOn = (v: string | undefined): boolean => /^(1|true|yes|on)$/i.test((v ?? "").trim())

/** Parses and validates; throws ConfigError with one line naming the problem. */
export const loadConfig = (
  env: Readonly<Record<string, string | undefined>>,
  argv: readonly string[] = [],
): ConsensusConfig => {
  const e = mergeFlags(env, argv)
  const nodeId = (e.EKV_NODE_ID ?? "").trim()
  if (nodeId === "") throw new ConfigError("EKV_NODE_ID is required")
  if (!NODE_ID.test(nodeId))
    throw new ConfigError(`EKV_NODE_ID must match [a-z0-9-]{1,64}, got ${JSON.stringify(nodeId)}`)
  const prefix = e.EKV_PREFIX === undefined || e.EKV_PREFIX === "" ? "ekv" : e.EKV_PREFIX
  if (!PREFIX_PATTERN.test(prefix))
    throw new ConfigError(`EKV_PREFIX must match [a-z][a-z0-9-]{0,31}, got ${JSON.stringify(prefix)}`)
  const peers = (e.EKV_PEERS ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
  for (const p of peers)
    if (!NODE_ID.test(p)) throw new ConfigError(`EKV_PEERS holds an invalid node id ${JSON.stringify(p)}`)
  if (new Set(peers).size !== peers.length) throw new ConfigError("EKV_PEERS lists a node twice")
  const dataDir = path.resolve(
    e.EKV_DATA_DIR === undefined || e.EKV_DATA_DIR === "" ? path.join("data", nodeId) : e.EKV_DATA_DIR,
  )
  const snapshotEntries = positiveInt("EKV_SNAPSHOT_ENTRIES", e.EKV_SNAPSHOT_ENTRIES, 10_000)
  const electionTimeoutMs = positiveInt("EKV_ELECTION_TIMEOUT_MS", e.EKV_ELECTION_TIMEOUT_MS, 1000, 50)
  const scrubBytesPerSec = positiveInt("EKV_SCRUB_BYTES_PER_SEC", e.EKV_SCRUB_BYTES_PER_SEC, 8 << 20, 0)
  const writeBufferMb = positiveInt(
    "EKV_LEVELDB_WRITE_BUFFER_MB",
    e.EKV_LEVELDB_WRITE_BUFFER_MB,
    DEFAULT_WRITE_BUFFER_MB,
    1,
    MAX_WRITE_BUFFER_MB,
  )
  let metricsPort: number | undefined
  const mp = e.EKV_METRICS_PORT
  if (mp !== undefined && mp.trim() !== "") {
    const n = Number(mp)
    if (!Number.isInteger(n) || n < 0 || n > 65535)
      throw new ConfigError(`EKV_METRICS_PORT must be a TCP port, got ${JSON.stringify(mp)}`)
    metricsPort = n
  }
  const fault = e.EKV_TEST_FAULT_HALT_AT_INDEX
  const faultHaltAtIndex =
    fault === undefined || fault === "" ? undefined : positiveInt("EKV_TEST_FAULT_HALT_AT_INDEX", fault, 1)
  if (e.NATS_CREDS !== undefined && e.NATS_CREDS !== "" && e.NATS_USER !== undefined && e.NATS_USER !== "")
    throw new ConfigError("NATS_CREDS and NATS_USER are mutually exclusive")
  const nats = natsOptionsFromEnv(e, { name: `consensus-${nodeId}` })
  const stateDir = path.join(dataDir, "consensus", "state")
  return {
    nats,
    prefix,
    nodeId,
    peers,
    dataDir,
    raftDir: path.join(dataDir, "consensus", "raft"),
    stateDir,
    snapshotDir: path.join(stateDir, "snapshots"),
    snapshotEntries,
    electionTimeoutMs,
    metricsPort,
    faultHaltAtIndex,
    faultFileEnabled: isOn(e.EKV_TEST_FAULT_FILE),
    faultApplyWriteDelayMs: positiveInt(
      "EKV_TEST_FAULT_APPLY_WRITE_DELAY_MS",
      e.EKV_TEST_FAULT_APPLY_WRITE_DELAY_MS,
      0,
      0,
    ),
    nodeSecretPath:
      e.EKV_NODE_SECRET_FILE === undefined || e.EKV_NODE_SECRET_FILE === ""
        ? path.join(dataDir, "node.secret")
        : path.resolve(e.EKV_NODE_SECRET_FILE),
    rotateOnStartup: isOn(e.EKV_ROTATE_ON_STARTUP),
    scrubBytesPerSec,
    writeBufferBytes: writeBufferMb << 20,
  }
}
