// `npm run bench:scale`: scale figures for ekv (see docs/performance.md, ## Scale):
// puts with the store empty vs. N keys, RSS, restart and catch-up times.
// Like bench.ts it provisions first (scripts/setup.sh: node_modules,
// nats-server) and only then loads the script (scale/run.ts), whose imports
// need node_modules.
import { runProvisioned } from "./provisioned.ts"

await runProvisioned("bench:scale", () => import("./scale/run.ts"))
