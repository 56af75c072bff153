// Every NATS subject of CONTRACT.md §2–§5 and the internal ones under
// `<prefix>.internal.<node>.>`, built from one prefix (`EKV_PREFIX`). The
// layout follows the permission matrix of CONTRACT.md §9: everything a node's
// keystore serves is under `<p>.internal.<n>.keystore.>`, and only `.resync`
// there is meant for the admin user.
import { Result, Schema } from "effect"
import { InvalidArgument } from "./apiError.ts"

export const DEFAULT_PREFIX = "ekv"

/**
 * Set on a KV reply that a follower relayed to the leader: the leader's node
 * id, so a client can send its next requests to `<p>.kv.node.<leader>.<op>`
 * (CONTRACT.md §2). Absent when the node that answered is the leader.
 */
export const LEADER_HINT_HEADER = "Ekv-Leader"
/** CONTRACT.md §6. */
export const PREFIX_PATTERN = /^[a-z][a-z0-9-]{0,31}$/
export const Prefix = Schema.String.check(Schema.isPattern(PREFIX_PATTERN))

/** Node ids and other subject tokens: `[a-z0-9-]{1,64}` (CONTRACT.md §1). */
const TOKEN = /^[a-z0-9-]{1,64}$/

/** `EKV_PREFIX` as read from the environment: unset or empty means "ekv". */
export const parsePrefix = (raw: string | undefined): Result.Result<string, InvalidArgument> =>
  raw === undefined || raw === ""
    ? Result.succeed(DEFAULT_PREFIX)
    : PREFIX_PATTERN.test(raw)
      ? Result.succeed(raw)
      : Result.fail(
          new InvalidArgument({
            message: `EKV_PREFIX must match [a-z][a-z0-9-]{0,31}, got ${JSON.stringify(raw)}`,
          }),
        )

// A node id or op reaching a subject builder unchecked would let "a.b" or "*"
// widen a subject, so the builders refuse it (a programming error: callers
// hold decoded NodeIds).
const token = (what: string, value: string): string => {
  if (!TOKEN.test(value)) throw new Error(`invalid ${what} for a subject token: ${JSON.stringify(value)}`)
  return value
}

/** The keystore's internal endpoints (SPEC.md §4). */
export const KeystoreOp = {
  session: "session",
  dispatch: "dispatch",
  liveness: "liveness",
  export: "export",
  restore: "restore",
  generateDek: "generate-dek",
  rewrap: "rewrap",
  sidecarState: "sidecar-state",
  resync: "resync",
} as const
export type KeystoreOp = (typeof KeystoreOp)[keyof typeof KeystoreOp]

/** Subject tokens of the KV API (CONTRACT.md §2). */
export const KvOpName = ["put", "get", "delete", "batch", "scan"] as const
export type KvOpName = (typeof KvOpName)[number]

/** Subject tokens of `<p>.admin.encryption.*` (CONTRACT.md §3). */
export const EncryptionOpName = [
  "status",
  "capability",
  "sidecar-state",
  "bootstrap",
  "register-writer",
  "rotate-dek",
  "rewrap-deks",
  "retire-dek",
  "enable-storage-envelope",
  "enable-raft-envelope",
  "resync-sidecar",
  "rewrite",
] as const
export type EncryptionOpName = (typeof EncryptionOpName)[number]

/** Subject tokens of `<p>.admin.cluster.*` (CONTRACT.md §3). */
export const ClusterOpName = [
  "status",
  "add-learner",
  "promote",
  "remove",
  "transfer-leader",
  "snapshot",
] as const
export type ClusterOpName = (typeof ClusterOpName)[number]

/** Subject tokens of `<p>.node.<n>.*` (CONTRACT.md §4). */
export const NodeOpName = ["health", "capability"] as const
export type NodeOpName = (typeof NodeOpName)[number]

const build = (p: string) => {
  const kv = (op: KvOpName) => `${p}.kv.${op}`
  const enc = (op: EncryptionOpName) => `${p}.admin.encryption.${op}`
  const cl = (op: ClusterOpName) => `${p}.admin.cluster.${op}`
  return {
    prefix: p,
    kv: {
      all: `${p}.kv.>`,
      op: kv,
      put: kv("put"),
      get: kv("get"),
      delete: kv("delete"),
      batch: kv("batch"),
      scan: kv("scan"),
      /**
       * `<p>.kv.node.<n>.<op>`: node n's own copy of the KV API (CONTRACT.md
       * §2), same semantics as `<p>.kv.<op>`, for clients that follow the
       * leader (`LEADER_HINT_HEADER`) and so skip a follower's relay.
       */
      node: (node: string) => {
        const n = token("node id", node)
        return { op: (op: KvOpName) => `${p}.kv.node.${n}.${op}` }
      },
    },
    admin: {
      all: `${p}.admin.>`,
      encryption: {
        all: `${p}.admin.encryption.>`,
        op: enc,
        status: enc("status"),
        capability: enc("capability"),
        sidecarState: enc("sidecar-state"),
        bootstrap: enc("bootstrap"),
        registerWriter: enc("register-writer"),
        rotateDek: enc("rotate-dek"),
        rewrapDeks: enc("rewrap-deks"),
        retireDek: enc("retire-dek"),
        enableStorageEnvelope: enc("enable-storage-envelope"),
        enableRaftEnvelope: enc("enable-raft-envelope"),
        resyncSidecar: enc("resync-sidecar"),
        rewrite: enc("rewrite"),
      },
      cluster: {
        all: `${p}.admin.cluster.>`,
        op: cl,
        status: cl("status"),
        addLearner: cl("add-learner"),
        promote: cl("promote"),
        remove: cl("remove"),
        transferLeader: cl("transfer-leader"),
        snapshot: cl("snapshot"),
      },
    },
    /** `<p>.node.<n>.*` (CONTRACT.md §4). */
    node: (node: string) => {
      const n = token("node id", node)
      return {
        all: `${p}.node.${n}.>`,
        health: `${p}.node.${n}.health`,
        capability: `${p}.node.${n}.capability`,
      }
    },
    /** Wildcards over every node, for permissions and discovery. */
    nodes: {
      all: `${p}.node.*.>`,
      health: `${p}.node.*.health`,
      capability: `${p}.node.*.capability`,
    },
    events: {
      all: `${p}.events.>`,
      /** JetStream stream holding `events.all` (CONTRACT.md §5). */
      stream: `${p.toUpperCase()}_EVENTS`,
      encryption: (node: string) => `${p}.events.encryption.${token("node id", node)}`,
      cluster: (node: string) => `${p}.events.cluster.${token("node id", node)}`,
    },
    internal: (node: string) => {
      const n = token("node id", node)
      const base = `${p}.internal.${n}`
      const ks = (op: KeystoreOp) => `${base}.keystore.${op}`
      return {
        all: `${base}.>`,
        /** Raft traffic addressed to this node: `<p>.internal.<n>.raft.<kind>`. */
        raft: {
          all: `${base}.raft.>`,
          kind: (kind: string) => `${base}.raft.${token("raft message kind", kind)}`,
        },
        /** This node's keystore; only this node's consensus calls it, except `resync` (admin). */
        keystore: {
          all: `${base}.keystore.>`,
          op: ks,
          session: ks("session"),
          dispatch: ks("dispatch"),
          liveness: ks("liveness"),
          export: ks("export"),
          restore: ks("restore"),
          generateDek: ks("generate-dek"),
          rewrap: ks("rewrap"),
          sidecarState: ks("sidecar-state"),
          resync: ks("resync"),
        },
        /** What this node's consensus serves to the admin service (and forwarding peers). */
        admin: {
          all: `${base}.admin.>`,
          op: (op: string) => `${base}.admin.${token("admin op", op)}`,
          /** Encryption-entry and full-state reads for resync-sidecar (SPEC.md §5). */
          log: {
            all: `${base}.admin.log.>`,
            op: (op: string) => `${base}.admin.log.${token("admin log op", op)}`,
          },
        },
      }
    },
    /** Wildcards over every node's internal subjects (CONTRACT.md §9). */
    internalAny: {
      all: `${p}.internal.>`,
      raft: `${p}.internal.*.raft.>`,
      admin: `${p}.internal.*.admin.>`,
      adminLog: `${p}.internal.*.admin.log.>`,
      keystoreResync: `${p}.internal.*.keystore.resync`,
    },
    /** NATS micro service names; each is also its endpoints' queue group (CONTRACT.md §1). */
    service: {
      kv: `${p}-kv`,
      admin: `${p}-admin`,
      node: `${p}-node`,
    },
  } as const
}

export type Subjects = ReturnType<typeof build>

/**
 * The subjects under `prefix` (default "ekv"). Throws on a prefix that fails
 * `PREFIX_PATTERN`; read `EKV_PREFIX` with `parsePrefix` first.
 */
export const subjects = (prefix: string = DEFAULT_PREFIX): Subjects => {
  if (!PREFIX_PATTERN.test(prefix)) throw new Error(`invalid subject prefix ${JSON.stringify(prefix)}`)
  return build(prefix)
}

/** A user's private inbox prefix (`_INBOX.<user>`, CONTRACT.md §9). */
export const inboxPrefix = (user: string): string => `_INBOX.${user}`
