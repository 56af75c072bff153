// Forwarding a request to the leader over `<p>.internal.<leader>.admin.<group>.<op>`
// with the same JSON body as the public subject; the reply (success or
// CONTRACT §1 error) comes back as is.
import { parseErrorReply, requestFailure } from "@ekv/bus"
import { ApiError, type RequestError, subjects } from "@ekv/wire"
import { headers, type NatsConnection } from "@nats-io/transport-node"
import { Result } from "effect"

export const FORWARD_TIMEOUT_MS = 12_000

/** Set on a request one node forwards to another, so the receiver never forwards it again. */
export const FORWARDED_HEADER = "Ekv-Forwarded"

/** `<p>.internal.<node>.admin.<group>.<op>` (group: "kv" or "cluster"). */
export const internalAdminSubject = (
  prefix: string,
  node: string,
  group: "kv" | "cluster" | "node",
  op: string,
): string => `${subjects(prefix).internal(node).admin.op(group)}.${op}`

export const forwardRequest = async <A>(
  nc: NatsConnection,
  subject: string,
  body: Uint8Array,
  decodeReply: (bytes: Uint8Array) => Result.Result<A, RequestError>,
  timeoutMs = FORWARD_TIMEOUT_MS,
): Promise<A> => {
  let msg: Awaited<ReturnType<NatsConnection["request"]>>
  try {
    const h = headers()
    h.set(FORWARDED_HEADER, "1")
    msg = await nc.request(subject, body, { timeout: timeoutMs, headers: h })
  } catch (e) {
    throw requestFailure(subject, e)
  }
  const err: ApiError.ApiError | undefined = parseErrorReply(msg.headers, msg.data)
  if (err !== undefined) throw err
  const r = decodeReply(msg.data)
  if (Result.isFailure(r))
    throw new ApiError.Internal({ message: `undecodable reply on ${subject}: ${r.failure.message}` })
  return r.success
}
