// The client side of each target, as the load generator's worker processes
// use it: one connection per worker process, shared by all its concurrent
// requests. Every operation either resolves or throws; latency is measured by
// the caller.
import { LeaderRoute } from "@ekv/bus"
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node"

export type ClientConfig =
  | { readonly kind: "etcd"; readonly endpoints: ReadonlyArray<string> }
  | { readonly kind: "nats-kv"; readonly servers: ReadonlyArray<string>; readonly bucket: string }
  | {
      readonly kind: "ekv"
      readonly servers: ReadonlyArray<string>
      readonly user: string
      readonly pass: string
      readonly prefix: string
      /** "leader": follow the Ekv-Leader hint (LeaderRoute); "queue": always the queue group. */
      readonly routing: "leader" | "queue"
    }

export interface Client {
  put(key: string, value: Uint8Array): Promise<void>
  /** A linearizable read of a key that exists; throws when it is missing. */
  get(key: string): Promise<void>
  close(): Promise<void>
}

const REQUEST_TIMEOUT_MS = 10_000

const etcdClient = async (endpoints: ReadonlyArray<string>): Promise<Client> => {
  const { Etcd3 } = await import("etcd3")
  const etcd = new Etcd3({
    hosts: [...endpoints],
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + REQUEST_TIMEOUT_MS }),
  })
  return {
    put: async (key, value) => {
      await etcd.put(key).value(Buffer.from(value.buffer, value.byteOffset, value.byteLength))
    },
    // etcd's range requests are linearizable unless `serializable` is set.
    get: async (key) => {
      const v = await etcd.get(key).buffer()
      if (v === null) throw new Error(`etcd: ${key} not found`)
    },
    close: async () => etcd.close(),
  }
}

const natsKvClient = async (servers: ReadonlyArray<string>, bucket: string): Promise<Client> => {
  const { Kvm } = await import("@nats-io/kv")
  const nc = await connect({ servers: [...servers] })
  // allow_direct off: gets go to the stream leader ($JS.API.STREAM.MSG.GET),
  // not to any replica — the closest JetStream KV has to a linearizable read.
  const kv = await new Kvm(nc).open(bucket, { allow_direct: false, timeout: REQUEST_TIMEOUT_MS })
  return {
    put: async (key, value) => {
      await kv.put(key, value)
    },
    get: async (key) => {
      const e = await kv.get(key)
      if (e === null || e.operation !== "PUT") throw new Error(`nats-kv: ${key} not found`)
    },
    close: async () => nc.close(),
  }
}

const enc = new TextEncoder()
const dec = new TextDecoder()

const ekvClient = async (config: Extract<ClientConfig, { kind: "ekv" }>): Promise<Client> => {
  const nc: NatsConnection = await connect({
    servers: [...config.servers],
    user: config.user,
    pass: config.pass,
    inboxPrefix: `_INBOX.${config.user}`,
  })
  let encoded: { value: Uint8Array; base64: string } | null = null
  const base64 = (value: Uint8Array): string => {
    // The generator sends one value buffer per worker; encode it once.
    if (encoded === null || encoded.value !== value)
      encoded = { value, base64: Buffer.from(value).toString("base64") }
    return encoded.base64
  }
  const route = new LeaderRoute(config.prefix)
  const request = async (op: "put" | "get", body: unknown): Promise<Record<string, unknown>> => {
    const subject = config.routing === "leader" ? route.subject(op) : `${config.prefix}.kv.${op}`
    let m: Msg
    try {
      m = await nc.request(subject, enc.encode(JSON.stringify(body)), { timeout: REQUEST_TIMEOUT_MS })
    } catch (e) {
      route.onUnanswered()
      throw e
    }
    route.onReply(m.headers)
    const code = m.headers?.get("Nats-Service-Error-Code") ?? ""
    if (code !== "") {
      if (code === "503") route.onUnanswered()
      throw new Error(`ekv ${subject}: ${code} ${m.headers?.get("Nats-Service-Error") ?? ""}`)
    }
    return JSON.parse(dec.decode(m.data)) as Record<string, unknown>
  }
  return {
    put: async (key, value) => {
      await request("put", { key, value: base64(value) })
    },
    get: async (key) => {
      const r = await request("get", { key, consistency: "linearizable" })
      if (r.found !== true) throw new Error(`ekv: ${key} not found`)
    },
    close: async () => nc.close(),
  }
}

export const makeClient = (config: ClientConfig): Promise<Client> => {
  switch (config.kind) {
    case "etcd":
      return etcdClient(config.endpoints)
    case "nats-kv":
      return natsKvClient(config.servers, config.bucket)
    case "ekv":
      return ekvClient(config)
  }
}
