// `npm run bench:aead`: what encryption costs a put (aeadCostRun.ts). Like
// bench.ts it provisions first (scripts/setup.sh: node_modules) and only then
// loads the script, whose imports need node_modules.
import { runProvisioned } from "./provisioned.ts"

await runProvisioned("bench:aead", () => import("./aeadCostRun.ts"))
