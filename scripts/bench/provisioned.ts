// Runs scripts/setup.sh (node_modules, nats-server) unless `--no-setup` or
// `--help`, then loads the script: the bench entry points' modules import
// packages that only exist after setup. No dependencies of its own.
import { spawnSync } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..")

export const runProvisioned = async (name: string, load: () => Promise<unknown>): Promise<void> => {
  const argv = process.argv
  if (!argv.includes("--no-setup") && !argv.includes("--help") && !argv.includes("-h")) {
    const setup = spawnSync("bash", [join(root, "scripts", "setup.sh")], { stdio: "inherit" })
    if (setup.status !== 0) {
      console.error(`${name}: scripts/setup.sh failed`)
      process.exit(1)
    }
  }
  await load()
}
