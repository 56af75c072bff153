// The image's entry point: `node /app/docker/run.ts <command> [args...]`
// selects what the container runs (the image has no shell).
//
//   consensus | keystore | admin   one ekv service (configuration: CONTRACT §6 environment)
//   ekv <args>                     the operator CLI (`ekv --help`)
//
// `NATS_PASSWORD_FILE` names a file holding the service's bus password (a
// compose secret); it fills NATS_PASSWORD unless that is set already.
import { readFileSync } from "node:fs"

const COMMANDS: Readonly<Record<string, string>> = {
  consensus: "../services/consensus/src/main.ts",
  keystore: "../services/keystore/src/main.ts",
  admin: "../services/admin/src/main.ts",
  ekv: "../services/admin/src/cli/main.ts",
}

const [command, ...args] = process.argv.slice(2)
const target = command === undefined ? undefined : COMMANDS[command]
if (target === undefined) {
  process.stderr.write(
    `usage: <image> ${Object.keys(COMMANDS).join(" | ")} [args...]${command === undefined ? "" : ` (got ${JSON.stringify(command)})`}\n`,
  )
  process.exit(2)
}

const passwordFile = process.env.NATS_PASSWORD_FILE
delete process.env.NATS_PASSWORD_FILE
if (passwordFile !== undefined && passwordFile !== "" && (process.env.NATS_PASSWORD ?? "") === "") {
  try {
    process.env.NATS_PASSWORD = readFileSync(passwordFile, "utf8").trim()
  } catch (e) {
    process.stderr.write(`ekv: NATS_PASSWORD_FILE: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exit(2)
  }
}

const main = new URL(target, import.meta.url)
if (command === "ekv") {
  // The CLI runs only as a main module; call it directly.
  const cli = (await import(main.href)) as { run: (argv: ReadonlyArray<string>) => Promise<number> }
  process.exitCode = await cli.run(args)
} else {
  // A service runs when imported and parses its own flags from process.argv.slice(2).
  process.argv = [process.argv[0] ?? "node", main.pathname, ...args]
  await import(main.href)
}
