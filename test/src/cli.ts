// The `ekv` CLI (services/admin/src/cli/main.ts) run as a child process, as an
// operator runs it: its exit code and what it printed.
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const CLI = fileURLToPath(new URL("../../services/admin/src/cli/main.ts", import.meta.url))

export interface CliRun {
  readonly code: number | null
  readonly out: string
  readonly err: string
}

/** Runs `ekv <args>` against `servers` as `user`. */
export const runCli = (
  servers: ReadonlyArray<string>,
  user: string,
  password: string,
  args: ReadonlyArray<string>,
): Promise<CliRun> =>
  new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [CLI, "--servers", servers.join(","), "--user", user, "--password", password, ...args],
      { stdio: ["ignore", "pipe", "pipe"] },
    )
    let out = ""
    let err = ""
    child.stdout.on("data", (d) => (out += d))
    child.stderr.on("data", (d) => (err += d))
    child.once("exit", (code) => resolve({ code, out, err }))
  })
