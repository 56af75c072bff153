// The key-value API of CONTRACT §2: micro service `ekv-kv` (queue group
// `ekv-kv`) on `<p>.kv.put|get|delete|batch|scan`, served by every node.
// Writes and linearizable reads run on the leader: a follower that knows the
// leader relays the request as it came (not decoded) to
// `<p>.internal.<leader>.admin.kv.<op>` and the leader's reply back as it
// came (`RequestRelay`), adding `Ekv-Leader: <leader>`; the leader never
// forwards again. Every node also serves `<p>.kv.node.<n>.<op>`, the same API
// under its own name, so a client that follows that hint reaches the leader
// without a relay (TiKV and CockroachDB clients route to the leader the
// same way; a hint gone stale only costs the relay again). A follower that
// knows no leader answers itself (InvalidArgument or NoLeader). Writes are acknowledged after
// commit and apply on the leader; reads are linearizable through ReadIndex
// unless `serializable` (local state).
import { laneEndpoint, type Nats, serveMicro, serveSubjectLane } from "@ekv/bus"
import {
  ApiError,
  encodeEntry,
  type KvBatchReply,
  type KvDeleteReply,
  type KvGetReply,
  type KvOp,
  type KvOpName,
  type KvPutReply,
  type KvScanReply,
  kvApi,
  MAX_REQUEST_BYTES,
  type RaftIndex,
  subjects,
  Tag,
} from "@ekv/wire"
import type { Msg, NatsConnection } from "@nats-io/transport-node"
import { Effect, type Result } from "effect"
import type { EntryOutcome } from "../fsm/applier.ts"
import { OpenFailure, type ValueSealer } from "../fsm/valueSealer.ts"
import { NotLeader, type RaftNode } from "../node/raftNode.ts"
import { forwardRequest, internalAdminSubject, RequestRelay } from "./forward.ts"

type Req<Op extends KvOpName> = (typeof kvApi)[Op]["request"]["Type"]

/** Scan replies stop before their JSON would pass CONTRACT's 3 MiB. */
const SCAN_READ_BYTES = 2 * 1024 * 1024

export interface KvContext {
  readonly node: RaftNode
  readonly nc: NatsConnection
  readonly prefix: string
  readonly sealer: ValueSealer
  /** The leader's user payload as appended (raft envelope after the cutover, SPEC §2.5). */
  readonly wrapPayload?: (payload: Uint8Array) => Uint8Array
}

/** Runs a promise-returning handler: ApiErrors fail typed, anything else is a defect (Internal). */
export const fromPromise = <A>(f: () => Promise<A>): Effect.Effect<A, ApiError.ApiError> =>
  Effect.flatMap(
    Effect.promise(() =>
      f().then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      ),
    ),
    (r) =>
      r.ok
        ? Effect.succeed(r.value)
        : ApiError.isApiError(r.error)
          ? Effect.fail(r.error)
          : Effect.die(r.error),
  )

const noLeader = () =>
  new ApiError.Unavailable({ message: "no leader is known; retry", details: { reason: "NoLeader" } })

const integrity = (e: OpenFailure) =>
  new ApiError.IntegrityError({
    message: e.message,
    details: { key: e.key, version: e.version, reason: e.reason },
  })

/** Local read failures of the state machine as CONTRACT §1 errors. */
const readError = (e: unknown): unknown => {
  if (e instanceof OpenFailure) return integrity(e)
  const tag = (e as { _tag?: unknown } | null)?._tag
  if (tag === "StoreUnavailable" || tag === "IncompleteInstall" || tag === "VersionCompacted")
    return new ApiError.Unavailable({
      message: `local state is not readable right now: ${(e as Error).message}`,
      details: { reason: String(tag) },
    })
  if (tag === "ValueHeaderError" || tag === "CorruptRecord")
    return new ApiError.IntegrityError({
      message: (e as Error).message,
      details: { reason: String(tag) },
    })
  return e
}

const rejectedWrite = (o: EntryOutcome) =>
  new ApiError.Internal({
    message: `the write was rejected at apply (${o.kind === "rejected" ? o.code : "?"})`,
    details: { index: o.index, ...(o.kind === "rejected" ? { code: o.code, reason: o.reason } : {}) },
  })

export class KvHandlers {
  private readonly c: KvContext
  constructor(c: KvContext) {
    this.c = c
  }

  /** On a follower, sends the request to the leader; on a forwarded request, never forwards again. */
  private async leaderOr<A, Op extends KvOpName>(
    op: Op,
    req: Req<Op>,
    forwarded: boolean,
    local: () => Promise<A>,
  ): Promise<A> {
    try {
      return await local()
    } catch (e) {
      if (!(e instanceof NotLeader)) throw e
      if (forwarded || e.leader === null || e.leader === this.c.node.id) throw noLeader()
      const api = kvApi[op]
      const body = (api.encodeRequest as (r: Req<Op>) => Uint8Array)(req)
      return (await forwardRequest(
        this.c.nc,
        internalAdminSubject(this.c.prefix, e.leader, "kv", op),
        body,
        api.decodeReply as (b: Uint8Array) => Result.Result<A, never>,
      )) as A
    }
  }

  private async write(payload: Uint8Array): Promise<EntryOutcome> {
    const o = await this.c.node.propose(
      this.c.wrapPayload === undefined ? payload : this.c.wrapPayload(payload),
    )
    if (o.kind !== "write") throw rejectedWrite(o)
    return o
  }

  private requireNotHalted(): void {
    const h = this.c.node.haltInfo
    if (h !== null)
      throw new ApiError.Halted({
        message: `this node halted apply at ${h.index} (${h.reason}); its local state is stale`,
        details: { index: h.index, reason: h.reason },
      })
  }

  put(req: Req<"put">, forwarded: boolean): Promise<KvPutReply> {
    return this.leaderOr("put", req, forwarded, async () => {
      const o = await this.write(
        encodeEntry({ tag: Tag.KvOp, op: { op: "put", key: req.key, value: req.value } }),
      )
      return { index: o.index as RaftIndex }
    })
  }

  delete(req: Req<"delete">, forwarded: boolean): Promise<KvDeleteReply> {
    return this.leaderOr("delete", req, forwarded, async () => {
      const o = await this.write(encodeEntry({ tag: Tag.KvOp, op: { op: "delete", key: req.key } }))
      return { index: o.index as RaftIndex, deleted: o.kind === "write" && o.deleted }
    })
  }

  batch(req: Req<"batch">, forwarded: boolean): Promise<KvBatchReply> {
    return this.leaderOr("batch", req, forwarded, async () => {
      const ops: KvOp[] = req.ops.map((o) =>
        o.op === "put" ? { op: "put", key: o.key, value: o.value } : { op: "delete", key: o.key },
      )
      const o = await this.write(encodeEntry({ tag: Tag.KvBatch, ops }))
      return { index: o.index as RaftIndex }
    })
  }

  get(req: Req<"get">, forwarded: boolean): Promise<KvGetReply> {
    if (req.consistency === "serializable") return this.serializable(() => this.getLocal(req.key))
    return this.leaderOr("get", req, forwarded, async () => {
      await this.c.node.readBarrier()
      return this.getLocal(req.key)
    })
  }

  scan(req: Req<"scan">, forwarded: boolean): Promise<KvScanReply> {
    if (req.consistency === "serializable") return this.serializable(() => this.scanLocal(req))
    return this.leaderOr("scan", req, forwarded, async () => {
      await this.c.node.readBarrier()
      return this.scanLocal(req)
    })
  }

  /**
   * A serializable read: this node's state, once every write it answered is
   * written (RaftNode.answerWrites). A linearizable read needs no such wait:
   * its read index is at or past every answered write, and it waits for that.
   */
  private async serializable<A>(read: () => Promise<A>): Promise<A> {
    try {
      await this.c.node.answeredWritten()
    } catch (e) {
      throw readError(e)
    }
    return read()
  }

  private async getLocal(key: string): Promise<KvGetReply> {
    try {
      this.requireNotHalted()
      const r = await this.c.node.store.get(key)
      if (!r.found) return { found: false }
      return { found: true, value: this.c.sealer.open(r), version: r.version as RaftIndex }
    } catch (e) {
      throw readError(e)
    }
  }

  private async scanLocal(req: Req<"scan">): Promise<KvScanReply> {
    try {
      this.requireNotHalted()
      return await this.scanStore(req)
    } catch (e) {
      throw readError(e)
    }
  }

  private async scanStore(req: Req<"scan">): Promise<KvScanReply> {
    const r = await this.c.node.store.scan({
      ...(req.prefix === undefined ? {} : { prefix: req.prefix }),
      ...(req.after === undefined ? {} : { after: req.after }),
      limit: req.limit ?? 100,
      maxBytes: SCAN_READ_BYTES,
    })
    const items: { key: string; value: Uint8Array; version: RaftIndex }[] = []
    let more = r.more
    let size = 32
    for (const v of r.items) {
      const value = this.c.sealer.open(v)
      // JSON size of the item: escaped key, base64 value, field names.
      const cost = JSON.stringify(v.key).length + Math.ceil(value.length / 3) * 4 + 48
      if (items.length > 0 && size + cost > MAX_REQUEST_BYTES) {
        more = true
        break
      }
      size += cost
      items.push({ key: v.key, value, version: v.version as RaftIndex })
    }
    return { items, more }
  }
}

const OPS: readonly KvOpName[] = ["put", "get", "delete", "batch", "scan"]

/** Whether a request must be answered by the leader (writes; reads unless serializable). */
const needsLeader = (op: KvOpName, data: Uint8Array): boolean => {
  if (op === "put" || op === "delete" || op === "batch") return true
  // A malformed body is answered here (InvalidArgument); `JSON.parse` throws and the router declines.
  const body = JSON.parse(textDecoder.decode(data)) as { consistency?: unknown } | null
  return body?.consistency !== "serializable"
}

const textDecoder = new TextDecoder()

/**
 * The follower's router: relays a leader-bound request to the known leader
 * as bytes (`RequestRelay`), so no decoding or re-encoding here.
 */
const forwardToLeader = (c: KvContext, relay: RequestRelay, op: KvOpName) => {
  const subjectOf = new Map<string, string>()
  return (msg: Msg): boolean => {
    const leader = c.node.leader
    if (leader === null || leader === c.node.id || msg.reply === undefined || msg.reply === "") return false
    if (!needsLeader(op, msg.data)) return false
    let subject = subjectOf.get(leader)
    if (subject === undefined) {
      subject = internalAdminSubject(c.prefix, leader, "kv", op)
      subjectOf.set(leader, subject)
    }
    relay.relay(subject, msg, leader)
    return true
  }
}

/** Serves `ekv-kv` and the leader-side forwarding subjects for the lifetime of the scope. */
export const serveKv = (c: KvContext) =>
  Effect.gen(function* () {
    const s = subjects(c.prefix)
    const h = new KvHandlers(c)
    const relay = yield* Effect.acquireRelease(
      Effect.sync(() => new RequestRelay(c.nc)),
      (r) => Effect.sync(() => r.close()),
    )
    const handle = (op: KvOpName, forwarded: boolean) => (req: never) =>
      (h[op] as (r: unknown, f: boolean) => Promise<unknown>).call(h, req, forwarded)
    const decode = (op: KvOpName) =>
      kvApi[op].decodeRequest as (b: Uint8Array) => Result.Result<never, ApiError.ApiError>
    const encode = (op: KvOpName) => kvApi[op].encodeReply as (v: unknown) => Uint8Array
    yield* serveMicro({
      name: s.service.kv,
      version: "0.1.0",
      description: "ekv key-value API (CONTRACT §2)",
      queue: s.service.kv,
      maxConcurrent: 1024,
      // Each op twice: the queue-group subject every node serves, and this
      // node's own subject (`<p>.kv.node.<n>.<op>`) for clients that follow
      // the leader hint; both relay to the leader when this node is not it.
      endpoints: OPS.flatMap((op) => {
        const route = forwardToLeader(c, relay, op)
        return [
          { name: op, subject: s.kv.op(op) },
          { name: `node-${op}`, subject: s.kv.node(c.node.id).op(op) },
        ].map(({ name, subject }) =>
          laneEndpoint({
            name,
            subject,
            decode: decode(op),
            encode: encode(op),
            handle: handle(op, false),
            route,
          }),
        )
      }),
    })
    for (const op of OPS) {
      yield* serveSubjectLane({
        subject: internalAdminSubject(c.prefix, c.node.id, "kv", op),
        label: `internal kv ${op}`,
        maxConcurrent: 1024,
        decode: decode(op),
        encode: encode(op),
        handle: handle(op, true),
      })
    }
  })

export type { Nats }
