// `<p>.admin.encryption.*` (CONTRACT.md §3): each request decoded through
// wire's encryptionApi (schema → LocalEpochOutOfRange → ids inside the
// request), then the operation of encryptionFlows.ts.
import { endpoint } from "@ekv/bus"
import { type ApiError, type EncryptionOpName, encryptionApi, type RequestError, subjects } from "@ekv/wire"
import { Effect, type Result } from "effect"
import type { AdminModule } from "../adminModule.ts"
import type { AdminConfig } from "../config.ts"
import * as Flow from "./encryptionFlows.ts"

type Api = typeof encryptionApi
type Key = keyof Api
type Req<K extends Key> = Api[K]["request"]["Type"]
type Rep<K extends Key> = Api[K]["reply"]["Type"]

const opName = {
  status: "status",
  capability: "capability",
  sidecarState: "sidecar-state",
  bootstrap: "bootstrap",
  registerWriter: "register-writer",
  rotateDek: "rotate-dek",
  rewrapDeks: "rewrap-deks",
  retireDek: "retire-dek",
  enableStorageEnvelope: "enable-storage-envelope",
  enableRaftEnvelope: "enable-raft-envelope",
  resyncSidecar: "resync-sidecar",
  rewrite: "rewrite",
} as const satisfies Record<Key, EncryptionOpName>

const encryptionEndpoint = <K extends Key>(
  prefix: string,
  key: K,
  handler: (request: Req<K>) => Effect.Effect<Rep<K>, ApiError.ApiError, Flow.Services>,
) => {
  const ep = encryptionApi[key]
  const decode = ep.decodeRequest as (bytes: Uint8Array) => Result.Result<Req<K>, RequestError>
  return endpoint<Req<K>, Rep<K>, Flow.Services>({
    name: `encryption-${opName[key]}`,
    subject: subjects(prefix).admin.encryption.op(opName[key]),
    request: (data: Uint8Array) => Effect.fromResult(decode(data)),
    reply: ep.encodeReply as (value: Rep<K>) => Uint8Array,
    handler: (req) => handler(req).pipe(Effect.withSpan(`encryption.${opName[key]}`)),
  })
}

/** The twelve encryption endpoints, for the `ekv-admin` micro service. */
export const encryptionModule = (config: AdminConfig): AdminModule<Flow.Services> => {
  const p = config.prefix
  return {
    name: "encryption",
    endpoints: [
      encryptionEndpoint(p, "status", () => Flow.status(config)),
      encryptionEndpoint(p, "capability", (r) => Flow.capability(r.node, config)),
      encryptionEndpoint(p, "sidecarState", (r) => Flow.sidecarState(r.caller_full_node_id)),
      encryptionEndpoint(p, "bootstrap", (r) => Flow.bootstrap(r, config)),
      encryptionEndpoint(p, "registerWriter", (r) => Flow.registerWriter(r, config)),
      encryptionEndpoint(p, "rotateDek", (r) => Flow.rotateDek(r.purpose, config)),
      encryptionEndpoint(p, "rewrapDeks", () => Flow.rewrapDeks(config)),
      encryptionEndpoint(p, "retireDek", (r) => Flow.retireDek(r.key_id, config)),
      encryptionEndpoint(p, "enableStorageEnvelope", () => Flow.enableStorageEnvelope(config)),
      encryptionEndpoint(p, "enableRaftEnvelope", () => Flow.enableRaftEnvelope(config)),
      encryptionEndpoint(p, "resyncSidecar", (r) => Flow.resyncSidecar(r.node, config)),
      encryptionEndpoint(p, "rewrite", (r) => Flow.rewrite(r.rate_mib_s, config)),
    ],
  }
}
