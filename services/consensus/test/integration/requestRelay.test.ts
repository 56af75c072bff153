// The follower's request relay against a real nats-server: the requester gets
// the leader's reply byte for byte (errors with their headers) plus the
// `Ekv-Leader` hint, and a leader
// that is gone or silent becomes a typed Unavailable — never a bare 503 or a
// request left without an answer.
import { parseErrorReply } from "@ekv/bus"
import { ApiError, LEADER_HINT_HEADER } from "@ekv/wire"
import { connect, headers, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startNats } from "../../../../test/src/mod.ts"
import { RequestRelay } from "../../src/kv/forward.ts"

const fixture = await startNats()
let follower: NatsConnection
let leader: NatsConnection
let client: NatsConnection

beforeAll(async () => {
  const servers = fixture.servers
  follower = await connect({ servers, inboxPrefix: "_INBOX.follower" })
  leader = await connect({ servers })
  client = await connect({ servers })
})

afterAll(async () => {
  await Promise.all([follower, leader, client].map((nc) => nc.close()))
  await fixture.stop()
})

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** A "public" subject on the follower that relays everything to `target`. */
const relaying = async (relay: RequestRelay, subject: string, target: string) => {
  follower.subscribe(subject, {
    callback: (err, m) => {
      if (err === null) relay.relay(target, m, "n7")
    },
  })
  await follower.flush()
}

describe("RequestRelay", () => {
  it("returns the leader's replies unchanged, success and error, with their headers", async () => {
    const relay = new RequestRelay(follower)
    leader.subscribe("leader.kv.put", {
      callback: (_e, m) => {
        if (text(m.data) === "fail") {
          const h = headers()
          h.set("Nats-Service-Error-Code", "400")
          h.set("Nats-Service-Error", "bad")
          m.respond(bytes(`{"code":"InvalidArgument","message":"bad"}`), { headers: h })
        } else m.respond(bytes(`{"echo":${JSON.stringify(text(m.data))}}`))
      },
    })
    await leader.flush()
    await relaying(relay, "public.kv.put.1", "leader.kv.put")
    const ok = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        client.request("public.kv.put.1", bytes(`v${i}`), { timeout: 5_000 }),
      ),
    )
    expect(ok.map((m) => text(m.data))).toEqual(Array.from({ length: 200 }, (_, i) => `{"echo":"v${i}"}`))
    // The one thing added: the node relayed to, so the client can address it next time.
    expect(ok.map((m) => m.headers?.get(LEADER_HINT_HEADER))).toEqual(Array(200).fill("n7"))
    const failed = await client.request("public.kv.put.1", bytes("fail"), { timeout: 5_000 })
    const err = parseErrorReply(failed.headers, failed.data)
    expect(err?._tag).toBe("InvalidArgument")
    expect(err?.message).toBe("bad")
    expect(failed.headers?.get("Nats-Service-Error-Code")).toBe("400")
    expect(failed.headers?.get(LEADER_HINT_HEADER)).toBe("n7")
    expect(relay.pending).toBe(0)
    relay.close()
  })

  it("answers Unavailable (NoResponders) when nobody serves the leader's subject", async () => {
    const relay = new RequestRelay(follower)
    await relaying(relay, "public.kv.put.2", "leader.gone")
    const m = await client.request("public.kv.put.2", bytes("x"), { timeout: 5_000 })
    const err = parseErrorReply(m.headers, m.data)
    expect(err).toBeInstanceOf(ApiError.Unavailable)
    expect((err as ApiError.Unavailable).details).toMatchObject({ reason: "NoResponders" })
    relay.close()
  })

  it("answers Unavailable (Timeout) when the leader stays silent, and ShuttingDown on close", async () => {
    const relay = new RequestRelay(follower, 300)
    leader.subscribe("leader.silent", { callback: () => undefined })
    await leader.flush()
    await relaying(relay, "public.kv.put.3", "leader.silent")
    const m = await client.request("public.kv.put.3", bytes("x"), { timeout: 5_000 })
    expect((parseErrorReply(m.headers, m.data) as ApiError.Unavailable).details).toMatchObject({
      reason: "Timeout",
    })
    const slow = client.request("public.kv.put.3", bytes("y"), { timeout: 5_000 })
    await new Promise((r) => setTimeout(r, 50))
    expect(relay.pending).toBe(1)
    relay.close()
    const closed = await slow
    expect((parseErrorReply(closed.headers, closed.data) as ApiError.Unavailable).details).toMatchObject({
      reason: "ShuttingDown",
    })
  })
})
