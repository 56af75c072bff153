// Where the CLI connects and as whom: flags first, then a credentials file
// (`--creds-file`, CONTRACT.md §8 JSON `{ servers, user, pass }`), then the
// environment (NATS_URL, NATS_USER / NATS_PASSWORD), then `data/operator.json`
// when it exists and nothing else names a user.
import { DEFAULT_NATS_URL, type NatsOptions } from "@ekv/bus"
import type { GlobalOptions } from "./args.ts"
import { UsageError } from "./args.ts"

export interface CredsFile {
  readonly servers: ReadonlyArray<string>
  readonly user: string
  readonly pass: string
}

export const parseCredsFile = (path: string, text: string): CredsFile => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (e) {
    throw new UsageError(`${path}: not JSON (${e instanceof Error ? e.message : e})`)
  }
  const o = json as Record<string, unknown>
  const ok =
    typeof json === "object" &&
    json !== null &&
    Array.isArray(o.servers) &&
    o.servers.every((s) => typeof s === "string") &&
    typeof o.user === "string" &&
    typeof o.pass === "string"
  if (!ok) throw new UsageError(`${path}: expected { "servers": string[], "user": string, "pass": string }`)
  return { servers: o.servers as string[], user: o.user as string, pass: o.pass as string }
}

export interface ConnectionSources {
  readonly env: Readonly<Record<string, string | undefined>>
  /** The file's text, or undefined when it does not exist. */
  readonly readFile: (path: string) => string | undefined
  /** `data/operator.json` candidates, first existing one wins. */
  readonly defaultCredsFiles: ReadonlyArray<string>
}

export interface ResolvedConnection {
  readonly options: NatsOptions
  /** Where the credentials came from, for messages. */
  readonly source: string
}

const list = (raw: string | undefined): ReadonlyArray<string> | undefined => {
  const l = (raw ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
  return l.length === 0 ? undefined : l
}

const nonEmpty = (s: string | undefined) => (s === undefined || s === "" ? undefined : s)

export const resolveConnection = (g: GlobalOptions, src: ConnectionSources): ResolvedConnection => {
  let creds: CredsFile | undefined
  let source = "flags/environment"
  if (g.credsFile !== undefined) {
    const text = src.readFile(g.credsFile)
    if (text === undefined) throw new UsageError(`--creds-file ${g.credsFile}: no such file`)
    creds = parseCredsFile(g.credsFile, text)
    source = g.credsFile
  } else if (g.user === undefined && nonEmpty(src.env.NATS_USER) === undefined) {
    for (const path of src.defaultCredsFiles) {
      const text = src.readFile(path)
      if (text === undefined) continue
      creds = parseCredsFile(path, text)
      source = path
      break
    }
  }
  const servers = g.servers ?? creds?.servers ?? list(src.env.NATS_URL) ?? [DEFAULT_NATS_URL]
  const user = g.user ?? creds?.user ?? nonEmpty(src.env.NATS_USER)
  const pass = g.password ?? creds?.pass ?? nonEmpty(src.env.NATS_PASSWORD)
  return {
    options: {
      servers: [...servers],
      ...(user === undefined ? {} : { user }),
      ...(pass === undefined ? {} : { pass }),
      name: "ekv-cli",
      timeoutMs: 5_000,
    },
    source,
  }
}
