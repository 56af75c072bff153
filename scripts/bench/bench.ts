// `npm run bench`: a benchmark script, not a test (docs/benchmarks.md). It
// provisions first — scripts/setup.sh (node_modules, nats-server; the etcd
// target installs Debian's etcd-server itself) — and only then loads the
// benchmark (run.ts), whose imports need node_modules.
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
    console.error("bench: scripts/setup.sh failed")
    process.exit(1)
  }
}
await import("./run.ts")
