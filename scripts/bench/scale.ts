// `npm run bench:scale`: scale figures for ekv (see docs/performance.md, ## Scale):
// puts with the store empty vs. N keys, RSS, restart and catch-up times.
// Like bench.ts it provisions first (scripts/setup.sh: node_modules,
// nats-server) and only then loads the script (scale/run.ts), whose imports
// need node_modules.
import { spawnSync } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

if (
  !process.argv.includes("--no-setup") &&
  !process.argv.includes("--help") &&
  !process.argv.includes("-h")
) {
  const setup = spawnSync("bash", [join(root, "scripts", "setup.sh")], { stdio: "inherit" })
  if (setup.status !== 0) {
    console.error("bench:scale: scripts/setup.sh failed")
    process.exit(1)
  }
}
await import("./scale/run.ts")
