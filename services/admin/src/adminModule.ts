// The `ekv-admin` micro service is a list of modules, each a group of
// endpoints (cluster now; encryption slots in as one more module).
import { type Endpoint, serveMicro } from "@ekv/bus"
import { subjects } from "@ekv/wire"

export interface AdminModule<R> {
  readonly name: string
  readonly endpoints: ReadonlyArray<Endpoint<R>>
}

export const ADMIN_VERSION = "0.1.0"

/** Serves every module's endpoints as `<p>-admin` (queue group `<p>-admin`, CONTRACT.md §3). */
export const serveAdmin = <R>(prefix: string, modules: ReadonlyArray<AdminModule<R>>) => {
  const name = subjects(prefix).service.admin
  return serveMicro<R>({
    name,
    version: ADMIN_VERSION,
    description: "ekv admin API (cluster membership, snapshots, encryption)",
    queue: name,
    metadata: { modules: modules.map((m) => m.name).join(",") },
    endpoints: modules.flatMap((m) => m.endpoints),
  })
}
