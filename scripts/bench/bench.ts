// `npm run bench`: a benchmark script, not a test (docs/benchmarks.md). It
// provisions first — scripts/setup.sh (node_modules, nats-server; the etcd
// target installs Debian's etcd-server itself) — and only then loads the
// benchmark (run.ts), whose imports need node_modules.
import { runProvisioned } from "./provisioned.ts"

await runProvisioned("bench", () => import("./run.ts"))
