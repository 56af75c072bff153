// nats-server configuration enforcing the bus permission matrix of
// CONTRACT.md §9 (SPEC.md §8): one user per role, each allowed exactly the
// subjects of `busPermissions` (libs/wire), its own inbox, and replies through
// allowed responses. Used by the local runner (generated passwords) and for
// the static compose config in config/nats/ (passwords from the environment).
import { randomBytes } from "node:crypto"
import { type BusRole, busPermissions, busUser } from "@ekv/wire"

/** CONTRACT.md §2: 4 MiB so a 1 MiB value (base64, in JSON) fits in one request. */
export const MAX_PAYLOAD_BYTES = 4 * 1024 * 1024

/** Every role of a cluster with these nodes: operator, admin, then consensus/keystore per node. */
export const busRoles = (nodes: ReadonlyArray<string>): ReadonlyArray<BusRole> => [
  { kind: "operator" },
  { kind: "admin" },
  ...nodes.flatMap(
    (node): ReadonlyArray<BusRole> => [
      { kind: "consensus", node },
      { kind: "keystore", node },
    ],
  ),
]

/** The NATS user names of `busRoles(nodes)`. */
export const busUsers = (nodes: ReadonlyArray<string>): ReadonlyArray<string> => busRoles(nodes).map(busUser)

/**
 * The environment variable holding a user's password in configs that do not
 * embed it: `EKV_NATS_PASS_<USER>` with `-` → `_`, upper-cased
 * (`consensus-n1` → `EKV_NATS_PASS_CONSENSUS_N1`).
 */
export const passwordEnvVar = (user: string): string =>
  `EKV_NATS_PASS_${user.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`

/** A password written into the config, or a reference resolved by nats-server from its environment. */
export type PasswordSource =
  | { readonly kind: "literal"; readonly value: string }
  | { readonly kind: "env"; readonly variable: string }

/** 32 hex characters (128 bits) from the CSPRNG: safe inside a quoted config string. */
/**
 * 128 random bits, hex, after a letter prefix: nats-server parses `$VAR`
 * values as config values, so a password that starts with a digit would be
 * read as a number (or refused) when it comes from the environment.
 */
export const generatePassword = (): string => `ekv${randomBytes(16).toString("hex")}`

/** A fresh password per user. */
export const generatePasswords = (users: ReadonlyArray<string>): Record<string, string> =>
  Object.fromEntries(users.map((u) => [u, generatePassword()]))

export interface NatsConfigOptions {
  /** Subject prefix (`EKV_PREFIX`). */
  readonly prefix: string
  /** Node ids; each gets a `consensus-<n>` and a `keystore-<n>` user. */
  readonly nodes: ReadonlyArray<string>
  readonly password: (user: string) => PasswordSource
  /** `host:port` to listen on; omitted → nats-server's default (or its `-a`/`-p` flags). */
  readonly listen?: string | undefined
  /** JetStream: a store directory, `true` for the server's default one, `false` to leave it off. */
  readonly jetstream?: { readonly storeDir: string } | boolean | undefined
  /** Server name (JetStream keeps it in its metadata). */
  readonly serverName?: string | undefined
  /** Monitoring port (`http`), off when unset. */
  readonly httpPort?: number | undefined
  readonly maxPayload?: number | undefined
  /** A header comment (lines without `#`). */
  readonly comment?: ReadonlyArray<string> | undefined
}

// Every string is emitted as a JSON string: nats-server's config parser
// accepts them, and quoting keeps `$SRV.>` / `$JS.API.>` from being read as
// variable references.
const q = (s: string): string => JSON.stringify(s)

const list = (items: ReadonlyArray<string>, indent: string): string =>
  items.length === 0 ? "[]" : `[\n${items.map((i) => `${indent}  ${q(i)}`).join(",\n")}\n${indent}]`

const passwordValue = (p: PasswordSource): string => {
  if (p.kind === "literal") {
    if (p.value === "") throw new Error("empty NATS password")
    return q(p.value)
  }
  // An unquoted `$NAME` is a variable: nats-server resolves it from its environment.
  if (!/^[A-Z_][A-Z0-9_]*$/.test(p.variable)) throw new Error(`invalid variable name ${p.variable}`)
  return `$${p.variable}`
}

const userBlock = (prefix: string, role: BusRole, password: PasswordSource): string => {
  const perms = busPermissions(prefix, role)
  const i = "      "
  return [
    `    {`,
    `      user: ${q(perms.user)}`,
    `      password: ${passwordValue(password)}`,
    `      permissions: {`,
    `        publish: { allow: ${list(perms.publish, `${i}  `)} }`,
    `        subscribe: { allow: ${list(perms.subscribe, `${i}  `)} }`,
    ...(perms.allowResponses ? [`        allow_responses: true`] : []),
    `      }`,
    `    }`,
  ].join("\n")
}

/**
 * The nats-server config text. There is no `no_auth_user` and no default
 * permission: a client without a listed user's credentials is refused.
 */
export const natsServerConfig = (options: NatsConfigOptions): string => {
  const seen = new Set<string>()
  for (const node of options.nodes) {
    if (seen.has(node)) throw new Error(`duplicate node id ${node}`)
    seen.add(node)
  }
  const lines: string[] = []
  for (const c of options.comment ?? []) lines.push(c === "" ? "#" : `# ${c}`)
  if (options.comment !== undefined && options.comment.length > 0) lines.push("")
  if (options.serverName !== undefined) lines.push(`server_name: ${q(options.serverName)}`)
  if (options.listen !== undefined) lines.push(`listen: ${q(options.listen)}`)
  if (options.httpPort !== undefined) lines.push(`http: ${options.httpPort}`)
  lines.push(`max_payload: ${options.maxPayload ?? MAX_PAYLOAD_BYTES}`)
  const js = options.jetstream ?? true
  if (js === true) lines.push("jetstream: enabled")
  else if (js !== false) lines.push(`jetstream {`, `  store_dir: ${q(js.storeDir)}`, `}`)
  lines.push("")
  lines.push("authorization {")
  lines.push("  users = [")
  lines.push(
    busRoles(options.nodes)
      .map((role) => userBlock(options.prefix, role, options.password(busUser(role))))
      .join("\n"),
  )
  lines.push("  ]")
  lines.push("}")
  lines.push("")
  return lines.join("\n")
}

/** Literal passwords from a user → password map (throws when one is missing). */
export const literalPasswords =
  (passwords: Readonly<Record<string, string>>) =>
  (user: string): PasswordSource => {
    const value = passwords[user]
    if (value === undefined) throw new Error(`no password for NATS user ${user}`)
    return { kind: "literal", value }
  }

/** Passwords resolved by nats-server from `EKV_NATS_PASS_<USER>` (see `passwordEnvVar`). */
export const envPasswords = (user: string): PasswordSource => ({
  kind: "env",
  variable: passwordEnvVar(user),
})
