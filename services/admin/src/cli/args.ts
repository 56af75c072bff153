// `ekv` command line → a Command value. Pure: no I/O, no process exit; the
// caller reads files, connects and prints.
import { ClusterOpName, EncryptionOpName } from "@ekv/wire"

export const USAGE = `usage: ekv [options] <command>

commands:
  kv put <key> <value>           write a value (UTF-8 text; --base64: <value> is base64;
                                 --value-file <path>: the file's bytes, <value> omitted)
  kv get <key>                   read a key (--serializable: any node's view)
  kv delete <key>                delete a key
  kv scan                        list keys (--prefix p, --after k, --limit n, --serializable)
  kv batch <op>...               atomic batch; <op> is put:<key>=<value> or delete:<key>
  kv batch --file <path|->       atomic batch from JSON { "ops": [...] } (CONTRACT §2 wire form)
  cluster status                 leader, term, commit index, members
  cluster add-learner <node>     add a node as a learner
  cluster promote <node>         promote a learner to voter
  cluster remove <node>          remove a member
  cluster transfer-leader <node> move leadership to a voter
  cluster snapshot [<node>]      snapshot and compact one node, or every member
  node health <node>             one node's health
  encryption status              phase, keys, per-node figures, writer registry
  encryption capability [<node>] one node's capability, or every member's
  encryption sidecar-state       the leader's sidecar view
  encryption bootstrap           create both DEKs; the batch is discovered from the members
                                 (--file <path|->: JSON { "writers": [...] } instead)
  encryption register-writer <dek_id> <full_node_id> <local_epoch> [--session <id>]
  encryption rotate-dek <storage|raft>
  encryption rewrap-deks         wrap every DEK under the next KEK (EKV_KEK_NEXT_FILE)
  encryption retire-dek <key_id>
  encryption rewrite [--rate <MiB/s>] [--follow]
                                 re-seal stored versions; --follow shows progress until done
  encryption enable-storage-envelope
  encryption enable-raft-envelope
  encryption resync-sidecar <node>
  encryption history             events from the EKV_EVENTS stream
                                 (--node n, --since-index i, --limit n: the most recent n)

options:
  --json                         print the raw JSON reply
  --servers <urls>               NATS servers, comma-separated (default NATS_URL, then 127.0.0.1:4222)
  --user <name> --password <pw>  NATS credentials (default NATS_USER / NATS_PASSWORD)
  --creds-file <path>            JSON { "servers", "user", "pass" } (default data/operator.json if present)
  --subject-prefix <p>           subject prefix (default EKV_PREFIX, then "ekv")
  --timeout <ms>                 request timeout (default 15000)
  -h, --help                     this text`

export interface GlobalOptions {
  readonly json: boolean
  readonly servers: ReadonlyArray<string> | undefined
  readonly user: string | undefined
  readonly password: string | undefined
  readonly credsFile: string | undefined
  readonly subjectPrefix: string | undefined
  readonly timeoutMs: number
}

export type Consistency = "linearizable" | "serializable"

/** A value as typed: text, base64, or a file to read. */
export type ValueSource =
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "base64"; readonly base64: string }
  | { readonly kind: "file"; readonly path: string }

export type BatchOp =
  | { readonly op: "put"; readonly key: string; readonly value: ValueSource }
  | { readonly op: "delete"; readonly key: string }

export type Action =
  | { readonly kind: "help" }
  | { readonly kind: "kv-put"; readonly key: string; readonly value: ValueSource }
  | { readonly kind: "kv-get"; readonly key: string; readonly consistency: Consistency | undefined }
  | { readonly kind: "kv-delete"; readonly key: string }
  | {
      readonly kind: "kv-scan"
      readonly prefix: string | undefined
      readonly after: string | undefined
      readonly limit: number | undefined
      readonly consistency: Consistency | undefined
    }
  | { readonly kind: "kv-batch"; readonly ops: ReadonlyArray<BatchOp> }
  | { readonly kind: "kv-batch-file"; readonly path: string }
  | { readonly kind: "cluster"; readonly op: ClusterOpName; readonly node: string | undefined }
  | { readonly kind: "node-health"; readonly node: string }
  /** `body` is the request in its JSON wire form; the CLI decodes it through wire's encryptionApi. */
  | {
      readonly kind: "encryption"
      readonly op: EncryptionOpName
      readonly body: Readonly<Record<string, unknown>>
      readonly bodyFile?: string | undefined
      readonly follow?: boolean | undefined
    }
  | {
      readonly kind: "encryption-history"
      readonly node: string | undefined
      readonly sinceIndex: number | undefined
      readonly limit: number | undefined
    }

export interface Command {
  readonly global: GlobalOptions
  readonly action: Action
}

export class UsageError extends Error {
  override readonly name = "UsageError"
}

export const DEFAULT_TIMEOUT_MS = 15_000

// Options that take a value; every other `--x` is a boolean flag.
const VALUED = new Set([
  "--servers",
  "--user",
  "--password",
  "--creds-file",
  "--subject-prefix",
  "--timeout",
  "--prefix",
  "--after",
  "--limit",
  "--file",
  "--value-file",
  "--session",
  "--rate",
  "--node",
  "--since-index",
])
const FLAGS = new Set(["--json", "--base64", "--serializable", "--follow", "--help", "-h"])

interface Split {
  readonly positional: ReadonlyArray<string>
  readonly values: ReadonlyMap<string, string>
  readonly flags: ReadonlySet<string>
}

const split = (argv: ReadonlyArray<string>): Split => {
  const positional: string[] = []
  const values = new Map<string, string>()
  const flags = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === "--") {
      positional.push(...argv.slice(i + 1))
      break
    }
    if (arg.startsWith("-") && arg !== "-") {
      const eq = arg.indexOf("=")
      const name = eq > 0 ? arg.slice(0, eq) : arg
      if (VALUED.has(name)) {
        const value = eq > 0 ? arg.slice(eq + 1) : argv[++i]
        if (value === undefined) throw new UsageError(`${name} needs a value`)
        if (values.has(name)) throw new UsageError(`${name} given twice`)
        values.set(name, value)
      } else if (FLAGS.has(name) && eq < 0) flags.add(name)
      else throw new UsageError(`unknown option ${arg}`)
    } else positional.push(arg)
  }
  return { positional, values, flags }
}

const NODE_ID = /^[a-z0-9-]{1,64}$/
const nodeArg = (what: string, v: string | undefined): string => {
  if (v === undefined) throw new UsageError(`${what}: missing <node>`)
  if (!NODE_ID.test(v))
    throw new UsageError(`${what}: invalid node id ${JSON.stringify(v)} (expected [a-z0-9-]{1,64})`)
  return v
}

const intArg = (name: string, v: string | undefined, min: number): number | undefined => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min)
    throw new UsageError(`${name} must be an integer ≥ ${min}, got ${v}`)
  return n
}

const exactly = (what: string, args: ReadonlyArray<string>, n: number): void => {
  if (args.length > n) throw new UsageError(`${what}: unexpected argument ${JSON.stringify(args[n])}`)
  if (args.length < n) throw new UsageError(`${what}: missing argument`)
}

/** `put:<key>=<value>` (value text, or base64 with --base64) or `delete:<key>`. */
export const parseBatchOp = (spec: string, base64: boolean): BatchOp => {
  if (spec.startsWith("delete:")) {
    const key = spec.slice("delete:".length)
    if (key === "") throw new UsageError(`batch op ${JSON.stringify(spec)}: empty key`)
    return { op: "delete", key }
  }
  if (spec.startsWith("put:")) {
    const rest = spec.slice("put:".length)
    const eq = rest.indexOf("=")
    if (eq <= 0) throw new UsageError(`batch op ${JSON.stringify(spec)}: expected put:<key>=<value>`)
    const value = rest.slice(eq + 1)
    return {
      op: "put",
      key: rest.slice(0, eq),
      value: base64 ? { kind: "base64", base64: value } : { kind: "text", text: value },
    }
  }
  throw new UsageError(`batch op ${JSON.stringify(spec)}: expected put:<key>=<value> or delete:<key>`)
}

const action = (s: Split): Action => {
  const [group, verb, ...rest] = s.positional
  const base64 = s.flags.has("--base64")
  const consistency: Consistency | undefined = s.flags.has("--serializable") ? "serializable" : undefined
  const allowOnly = (what: string, allowed: ReadonlyArray<string>) => {
    for (const name of [...s.values.keys(), ...s.flags]) {
      if (GLOBAL.has(name) || allowed.includes(name)) continue
      throw new UsageError(`${what}: option ${name} does not apply`)
    }
  }
  if (group === undefined || s.flags.has("--help") || s.flags.has("-h") || group === "help")
    return { kind: "help" }
  const what = `${group} ${verb ?? ""}`.trim()
  switch (group) {
    case "kv":
      switch (verb) {
        case "put": {
          const file = s.values.get("--value-file")
          allowOnly(what, ["--base64", "--value-file"])
          if (file !== undefined) {
            if (base64) throw new UsageError("kv put: --base64 and --value-file exclude each other")
            exactly(what, rest, 1)
            return { kind: "kv-put", key: rest[0] as string, value: { kind: "file", path: file } }
          }
          exactly(what, rest, 2)
          const v = rest[1] as string
          return {
            kind: "kv-put",
            key: rest[0] as string,
            value: base64 ? { kind: "base64", base64: v } : { kind: "text", text: v },
          }
        }
        case "get":
          allowOnly(what, ["--serializable"])
          exactly(what, rest, 1)
          return { kind: "kv-get", key: rest[0] as string, consistency }
        case "delete":
          allowOnly(what, [])
          exactly(what, rest, 1)
          return { kind: "kv-delete", key: rest[0] as string }
        case "scan":
          allowOnly(what, ["--prefix", "--after", "--limit", "--serializable"])
          exactly(what, rest, 0)
          return {
            kind: "kv-scan",
            prefix: s.values.get("--prefix"),
            after: s.values.get("--after"),
            limit: intArg("--limit", s.values.get("--limit"), 1),
            consistency,
          }
        case "batch": {
          const file = s.values.get("--file")
          allowOnly(what, ["--file", "--base64"])
          if (file !== undefined) {
            if (rest.length > 0) throw new UsageError("kv batch: give ops or --file, not both")
            return { kind: "kv-batch-file", path: file }
          }
          if (rest.length === 0)
            throw new UsageError("kv batch: no ops (put:<key>=<value>, delete:<key>, or --file)")
          return { kind: "kv-batch", ops: rest.map((r) => parseBatchOp(r, base64)) }
        }
        default:
          throw new UsageError(`unknown command kv ${verb ?? ""}`.trim())
      }
    case "cluster": {
      if (verb === undefined || !(ClusterOpName as ReadonlyArray<string>).includes(verb))
        throw new UsageError(`unknown command cluster ${verb ?? ""}`.trim())
      allowOnly(what, [])
      const op = verb as ClusterOpName
      if (op === "status") {
        exactly(what, rest, 0)
        return { kind: "cluster", op, node: undefined }
      }
      if (op === "snapshot") {
        if (rest.length > 1) throw new UsageError(`${what}: unexpected argument ${JSON.stringify(rest[1])}`)
        return { kind: "cluster", op, node: rest[0] === undefined ? undefined : nodeArg(what, rest[0]) }
      }
      exactly(what, rest, 1)
      return { kind: "cluster", op, node: nodeArg(what, rest[0]) }
    }
    case "encryption":
      return encryptionAction(s, verb, rest, allowOnly)
    case "node":
      if (verb !== "health") throw new UsageError(`unknown command node ${verb ?? ""}`.trim())
      allowOnly(what, [])
      exactly(what, rest, 1)
      return { kind: "node-health", node: nodeArg(what, rest[0]) }
    default:
      throw new UsageError(`unknown command ${group}`)
  }
}

const numberArg = (what: string, v: string | undefined): number => {
  const n = Number(v)
  if (v === undefined || v.trim() === "" || !Number.isFinite(n))
    throw new UsageError(`${what}: expected a number, got ${JSON.stringify(v)}`)
  return n
}

const encryptionAction = (
  s: Split,
  verb: string | undefined,
  rest: ReadonlyArray<string>,
  allowOnly: (what: string, allowed: ReadonlyArray<string>) => void,
): Action => {
  const what = `encryption ${verb ?? ""}`.trim()
  if (verb === "history") {
    allowOnly(what, ["--node", "--since-index", "--limit"])
    exactly(what, rest, 0)
    const node = s.values.get("--node")
    return {
      kind: "encryption-history",
      node: node === undefined ? undefined : nodeArg(what, node),
      sinceIndex: intArg("--since-index", s.values.get("--since-index"), 0),
      limit: intArg("--limit", s.values.get("--limit"), 1),
    }
  }
  if (verb === undefined || !(EncryptionOpName as ReadonlyArray<string>).includes(verb))
    throw new UsageError(`unknown command ${what}`)
  const op = verb as EncryptionOpName
  const simple = (body: Readonly<Record<string, unknown>> = {}, n = 0): Action => {
    allowOnly(what, [])
    exactly(what, rest, n)
    return { kind: "encryption", op, body }
  }
  switch (op) {
    case "status":
    case "sidecar-state":
    case "rewrap-deks":
    case "enable-storage-envelope":
    case "enable-raft-envelope":
      return simple()
    case "capability":
      allowOnly(what, [])
      if (rest.length > 1) throw new UsageError(`${what}: unexpected argument ${JSON.stringify(rest[1])}`)
      return { kind: "encryption", op, body: rest[0] === undefined ? {} : { node: nodeArg(what, rest[0]) } }
    case "bootstrap": {
      allowOnly(what, ["--file"])
      exactly(what, rest, 0)
      const file = s.values.get("--file")
      return { kind: "encryption", op, body: { discover: true }, bodyFile: file }
    }
    case "register-writer": {
      allowOnly(what, ["--session"])
      exactly(what, rest, 3)
      const session = s.values.get("--session")
      return {
        kind: "encryption",
        op,
        body: {
          dek_id: numberArg("<dek_id>", rest[0]),
          full_node_id: rest[1] as string,
          local_epoch: numberArg("<local_epoch>", rest[2]),
          ...(session === undefined ? {} : { session_id: session }),
        },
      }
    }
    case "rotate-dek":
      allowOnly(what, [])
      exactly(what, rest, 1)
      if (rest[0] !== "storage" && rest[0] !== "raft")
        throw new UsageError(`${what}: expected storage or raft, got ${JSON.stringify(rest[0])}`)
      return { kind: "encryption", op, body: { purpose: rest[0] } }
    case "retire-dek":
      allowOnly(what, [])
      exactly(what, rest, 1)
      return { kind: "encryption", op, body: { key_id: numberArg("<key_id>", rest[0]) } }
    case "rewrite": {
      allowOnly(what, ["--rate", "--follow"])
      exactly(what, rest, 0)
      const rate = s.values.get("--rate")
      return {
        kind: "encryption",
        op,
        body: rate === undefined ? {} : { rate_mib_s: numberArg("--rate", rate) },
        follow: s.flags.has("--follow"),
      }
    }
    case "resync-sidecar":
      allowOnly(what, [])
      exactly(what, rest, 1)
      return { kind: "encryption", op, body: { node: nodeArg(what, rest[0]) } }
  }
}

const GLOBAL = new Set([
  "--json",
  "--servers",
  "--user",
  "--password",
  "--creds-file",
  "--subject-prefix",
  "--timeout",
])

/** Parses `argv` (without node and script); throws UsageError. */
export const parseCommand = (argv: ReadonlyArray<string>): Command => {
  const s = split(argv)
  const servers = s.values.get("--servers")
  return {
    global: {
      json: s.flags.has("--json"),
      servers:
        servers === undefined
          ? undefined
          : servers
              .split(",")
              .map((x) => x.trim())
              .filter((x) => x !== ""),
      user: s.values.get("--user"),
      password: s.values.get("--password"),
      credsFile: s.values.get("--creds-file"),
      subjectPrefix: s.values.get("--subject-prefix"),
      timeoutMs: intArg("--timeout", s.values.get("--timeout"), 1) ?? DEFAULT_TIMEOUT_MS,
    },
    action: action(s),
  }
}
