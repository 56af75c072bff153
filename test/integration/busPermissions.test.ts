// CONTRACT.md §9 / SPEC.md §8 against a real nats-server running the config
// the project ships (services/admin/src/busConfig.ts): who may publish and
// subscribe where. A denied publish arrives as an async `-ERR Permissions
// Violation for Publish to "<subject>"` (nats.js: a `PermissionViolationError`
// on the connection's status, and the rejection of a request on that
// subject); a denied subscription closes the subscription with that error.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { busUsers, generatePasswords, literalPasswords, natsServerConfig } from "@ekv/admin"
import { jetstream, jetstreamManager } from "@nats-io/jetstream"
import {
  connect,
  errors,
  headers,
  type NatsConnection,
  PermissionViolationError,
  type Subscription,
} from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type NatsFixture, startNats } from "../src/mod.ts"

const PREFIX = "ekv"
const NODES = ["n1", "n2", "n3"]
const STREAM = "EKV_EVENTS"

let fixture: NatsFixture
let dir: string
let passwords: Record<string, string>
const open: NatsConnection[] = []
const statusErrors = new Map<NatsConnection, Error[]>()

const text = (b: Uint8Array) => new TextDecoder().decode(b)

/** Connects as `user` with its own inbox prefix, recording the connection's async errors. */
const connectAs = async (user: string): Promise<NatsConnection> => {
  const pass = passwords[user]
  if (pass === undefined) throw new Error(`no such user ${user}`)
  const nc = await connect({ servers: fixture.servers, user, pass, inboxPrefix: `_INBOX.${user}` })
  open.push(nc)
  const errs: Error[] = []
  statusErrors.set(nc, errs)
  void (async () => {
    for await (const s of nc.status()) if (s.type === "error") errs.push(s.error)
  })()
  return nc
}

const violations = (nc: NatsConnection): PermissionViolationError[] =>
  (statusErrors.get(nc) ?? []).filter(
    (e): e is PermissionViolationError => e instanceof PermissionViolationError,
  )

/** Publishes, round-trips to the server (errors are processed in order), and reports a violation if any. */
const publishViolation = async (
  nc: NatsConnection,
  subject: string,
): Promise<PermissionViolationError | undefined> => {
  nc.publish(subject, "x")
  await nc.flush()
  // The -ERR precedes the PONG, but status events reach the iterator asynchronously.
  for (let i = 0; i < 20; i++) {
    const v = violations(nc).find((e) => e.operation === "publish" && e.subject === subject)
    if (v !== undefined) return v
    await new Promise((r) => setTimeout(r, 10))
  }
  return undefined
}

const expectPublishDenied = async (nc: NatsConnection, subject: string) => {
  const v = await publishViolation(nc, subject)
  expect(v, `publish to ${subject} should be denied`).toBeInstanceOf(PermissionViolationError)
}

const expectPublishAllowed = async (nc: NatsConnection, subject: string) => {
  expect(await publishViolation(nc, subject), `publish to ${subject} should be allowed`).toBeUndefined()
}

/** Subscribes and waits for the server's verdict: the close reason, or undefined while still open. */
const subscribeVerdict = async (nc: NatsConnection, subject: string, queue?: string) => {
  const sub: Subscription = nc.subscribe(subject, queue === undefined ? {} : { queue })
  await nc.flush()
  const closed = await Promise.race([sub.closed, new Promise<"open">((r) => setTimeout(() => r("open"), 50))])
  return { sub, closed }
}

const expectSubscribeDenied = async (nc: NatsConnection, subject: string) => {
  const { closed } = await subscribeVerdict(nc, subject)
  expect(closed, `subscription to ${subject} should be denied`).toBeInstanceOf(PermissionViolationError)
  const pe = closed as PermissionViolationError
  expect(pe.operation).toBe("subscription")
  expect(pe.subject).toBe(subject)
}

const expectSubscribeAllowed = async (nc: NatsConnection, subject: string, queue?: string) => {
  const { sub, closed } = await subscribeVerdict(nc, subject, queue)
  expect(closed, `subscription to ${subject} should be allowed`).toBe("open")
  sub.unsubscribe()
}

/** A request the server refuses to route: a RequestError caused by the publish violation. */
const expectRequestDenied = async (nc: NatsConnection, subject: string) => {
  const e = await nc.request(subject, "{}", { timeout: 2_000 }).then(
    () => undefined,
    (err: unknown) => err,
  )
  expect(e, `request on ${subject} should be denied`).toBeInstanceOf(errors.RequestError)
  const cause = (e as Error).cause
  expect(cause).toBeInstanceOf(PermissionViolationError)
  expect((cause as PermissionViolationError).operation).toBe("publish")
  expect((cause as PermissionViolationError).subject).toBe(subject)
}

const expectRequestAnswered = async (nc: NatsConnection, subject: string, expected: string) => {
  const reply = await nc.request(subject, "{}", { timeout: 2_000 })
  expect(text(reply.data)).toBe(expected)
}

/** A responder as `nc` on `subject` that answers with its own name and the subject. */
const echo = async (nc: NatsConnection, name: string, subject: string, queue?: string) => {
  const sub = nc.subscribe(subject, {
    ...(queue === undefined ? {} : { queue }),
    callback: (err, msg) => {
      if (err === null) msg.respond(`${name}:${msg.subject}`)
    },
  })
  await nc.flush()
  return sub
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ekv-busperm-"))
  passwords = generatePasswords(busUsers(NODES))
  const configFile = join(dir, "nats.conf")
  await writeFile(
    configFile,
    natsServerConfig({
      prefix: PREFIX,
      nodes: NODES,
      password: literalPasswords(passwords),
      jetstream: false,
    }),
  )
  await chmod(configFile, 0o600)
  fixture = await startNats({ configFile, jetstream: true })
})

afterAll(async () => {
  for (const nc of open) await nc.close().catch(() => undefined)
  await fixture?.stop()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe("bus permissions (CONTRACT §9)", () => {
  it("refuses a client without credentials, and one with a wrong password", async () => {
    const anon = await connect({ servers: fixture.servers, reconnect: false, timeout: 3_000 }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(anon).toBeInstanceOf(errors.AuthorizationError)
    const wrong = await connect({
      servers: fixture.servers,
      user: "operator",
      pass: "not-the-password",
      reconnect: false,
      timeout: 3_000,
    }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(wrong).toBeInstanceOf(errors.AuthorizationError)
    // A user that is not in the config at all.
    const stranger = await connect({
      servers: fixture.servers,
      user: "root",
      pass: passwords.operator ?? "",
      reconnect: false,
      timeout: 3_000,
    }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(stranger).toBeInstanceOf(errors.AuthorizationError)
  })

  it("the operator can neither publish nor subscribe under ekv.internal.>", async () => {
    const op = await connectAs("operator")
    await expectPublishDenied(op, "ekv.internal.n1.raft.append")
    await expectPublishDenied(op, "ekv.internal.n1.keystore.session")
    await expectRequestDenied(op, "ekv.internal.n1.admin.cluster.status")
    await expectRequestDenied(op, "ekv.internal.n1.keystore.resync")
    await expectSubscribeDenied(op, "ekv.internal.>")
    await expectSubscribeDenied(op, "ekv.internal.n1.raft.>")
  })

  it("the operator cannot subscribe to _INBOX.> or another user's inbox, only its own", async () => {
    const op = await connectAs("operator")
    await expectSubscribeDenied(op, "_INBOX.>")
    await expectSubscribeDenied(op, "_INBOX.admin.>")
    await expectSubscribeDenied(op, "_INBOX.consensus-n1.>")
    await expectSubscribeAllowed(op, "_INBOX.operator.>")
  })

  it("the operator cannot impersonate a service or forge events", async () => {
    const op = await connectAs("operator")
    await expectSubscribeDenied(op, "ekv.kv.>")
    await expectSubscribeDenied(op, "ekv.admin.>")
    await expectSubscribeDenied(op, "ekv.node.n1.health")
    await expectPublishDenied(op, "ekv.events.cluster.n1")
    await expectPublishDenied(op, "ekv.events.encryption.n1")
  })

  it("only consensus-<n> reaches node <n>'s keystore session/dispatch; admin may call resync", async () => {
    const ks1 = await connectAs("keystore-n1")
    await echo(ks1, "keystore-n1", "ekv.internal.n1.keystore.>")
    const c1 = await connectAs("consensus-n1")
    const c2 = await connectAs("consensus-n2")
    const admin = await connectAs("admin")
    const op = await connectAs("operator")
    for (const op_ of ["session", "dispatch"]) {
      const subject = `ekv.internal.n1.keystore.${op_}`
      await expectRequestAnswered(c1, subject, `keystore-n1:${subject}`)
      await expectRequestDenied(c2, subject)
      await expectRequestDenied(admin, subject)
      await expectRequestDenied(op, subject)
    }
    await expectRequestAnswered(
      admin,
      "ekv.internal.n1.keystore.resync",
      "keystore-n1:ekv.internal.n1.keystore.resync",
    )
    await expectRequestDenied(c2, "ekv.internal.n1.keystore.resync")
    // Another node's keystore cannot stand in for n1's.
    const ks2 = await connectAs("keystore-n2")
    await expectSubscribeDenied(ks2, "ekv.internal.n1.keystore.>")
    await expectSubscribeDenied(ks2, "ekv.node.n1.capability")
    await expectSubscribeAllowed(ks2, "ekv.internal.n2.keystore.>")
    // Raft traffic goes to any node; consensus-n2 cannot receive n1's raft or admin traffic.
    await expectPublishAllowed(c2, "ekv.internal.n1.raft.append")
    await expectPublishDenied(admin, "ekv.internal.n1.raft.append")
    await expectSubscribeDenied(c2, "ekv.internal.n1.raft.>")
    await expectSubscribeDenied(c2, "ekv.internal.n1.admin.>")
  })

  it("the operator can call ekv.kv.*, ekv.admin.*, ekv.node.*.health|capability and $SRV discovery", async () => {
    const c1 = await connectAs("consensus-n1")
    await echo(c1, "consensus-n1", "ekv.kv.>", "ekv-kv")
    await echo(c1, "consensus-n1", "ekv.node.n1.health")
    const ks1 = await connectAs("keystore-n1")
    await echo(ks1, "keystore-n1", "ekv.node.n1.capability")
    const admin = await connectAs("admin")
    await echo(admin, "admin", "ekv.admin.>", "ekv-admin")
    await echo(admin, "admin", "$SRV.PING")
    const op = await connectAs("operator")
    await expectRequestAnswered(op, "ekv.kv.put", "consensus-n1:ekv.kv.put")
    await expectRequestAnswered(op, "ekv.kv.scan", "consensus-n1:ekv.kv.scan")
    // A node's own copy of the KV API, for clients that follow the Ekv-Leader hint (CONTRACT §2).
    await expectRequestAnswered(op, "ekv.kv.node.n1.put", "consensus-n1:ekv.kv.node.n1.put")
    await expectRequestAnswered(op, "ekv.admin.cluster.status", "admin:ekv.admin.cluster.status")
    await expectRequestAnswered(op, "ekv.admin.encryption.status", "admin:ekv.admin.encryption.status")
    await expectRequestAnswered(op, "ekv.node.n1.health", "consensus-n1:ekv.node.n1.health")
    await expectRequestAnswered(op, "ekv.node.n1.capability", "keystore-n1:ekv.node.n1.capability")
    await expectRequestAnswered(op, "$SRV.PING", "admin:$SRV.PING")
    // The admin service reaches a node's internal admin subjects and its health.
    await echo(c1, "consensus-n1", "ekv.internal.n1.admin.>")
    await expectRequestAnswered(
      admin,
      "ekv.internal.n1.admin.cluster.status",
      "consensus-n1:ekv.internal.n1.admin.cluster.status",
    )
    await expectRequestAnswered(admin, "ekv.node.n1.health", "consensus-n1:ekv.node.n1.health")
    // A consensus node forwards to another node's internal admin subjects.
    const c2 = await connectAs("consensus-n2")
    await expectRequestAnswered(
      c2,
      "ekv.internal.n1.admin.cluster.promote",
      "consensus-n1:ekv.internal.n1.admin.cluster.promote",
    )
  })

  it("the operator reads EKV_EVENTS (info, consumer) but cannot delete or purge it", async () => {
    // The keystore creates the stream and publishes an event (its JetStream rights).
    const ks1 = await connectAs("keystore-n1")
    const ksm = await jetstreamManager(ks1)
    await ksm.streams.add({ name: STREAM, subjects: ["ekv.events.>"], storage: "file" })
    const h = headers()
    h.set("Nats-Msg-Id", "cid:n1:7")
    const ack = await jetstream(ks1).publish("ekv.events.encryption.n1", '{"index":7}', { headers: h })
    expect(ack.stream).toBe(STREAM)
    // consensus publishes cluster events for its own node only.
    const c1 = await connectAs("consensus-n1")
    const ack2 = await jetstream(c1).publish("ekv.events.cluster.n1", '{"kind":"leader"}', {
      msgID: "cid:n1:leader:1",
    })
    expect(ack2.seq).toBe(2)
    await expectPublishDenied(c1, "ekv.events.cluster.n2")
    await expectPublishDenied(c1, "ekv.events.encryption.n1")

    const op = await connectAs("operator")
    const jsm = await jetstreamManager(op)
    const info = await jsm.streams.info(STREAM)
    expect(info.state.messages).toBe(2)
    // An ordered consumer: CONSUMER.CREATE + MSG.NEXT, replies on the operator's inbox.
    const consumer = await jetstream(op).consumers.get(STREAM)
    const first = await consumer.next({ expires: 5_000 })
    expect(first?.subject).toBe("ekv.events.encryption.n1")
    expect(first?.string()).toBe('{"index":7}')
    const second = await consumer.next({ expires: 5_000 })
    expect(second?.subject).toBe("ekv.events.cluster.n1")
    // A durable consumer too (the events tail of an operator tool).
    await jsm.consumers.add(STREAM, { durable_name: "op-tail", ack_policy: "explicit" })
    const durable = await jetstream(op).consumers.get(STREAM, "op-tail")
    const m = await durable.next({ expires: 5_000 })
    expect(m?.seq).toBe(1)
    m?.ack()
    await op.flush()

    const del = await jsm.streams.delete(STREAM).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(del).toBeInstanceOf(Error)
    const purge = await jsm.streams.purge(STREAM).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(purge).toBeInstanceOf(Error)
    const denied = violations(op).map((v) => v.subject)
    expect(denied).toContain(`$JS.API.STREAM.DELETE.${STREAM}`)
    expect(denied).toContain(`$JS.API.STREAM.PURGE.${STREAM}`)
    await expectPublishDenied(op, `$JS.API.STREAM.UPDATE.${STREAM}`)
    await expectPublishDenied(op, `$JS.API.STREAM.MSG.DELETE.${STREAM}`)
    await expectPublishDenied(op, `$JS.API.CONSUMER.DELETE.${STREAM}.op-tail`)
    await expectPublishDenied(op, "$JS.API.STREAM.CREATE.OTHER")
    // Nor can the operator inject events through JetStream.
    await expectPublishDenied(op, "ekv.events.cluster.n1")
    const after = await ksm.streams.info(STREAM)
    expect(after.state.messages).toBe(2)
  })
})
