// The keystore's endpoints over a real nats-server with JetStream: capability
// (micro), session, generate-dek, dispatch with hand-over and replay, Halted
// errors for node-local failures, and one event per applied index.

import { acquireNats, Nats, request, serveSubject } from "@ekv/bus"
import { generateHandoverKeyPair, openHandover } from "@ekv/crypto"
import { type NatsFixture, startNats } from "@ekv/test"
import {
  type ApiError,
  type EntryPayload,
  encodeEntry,
  NodeCapabilityReply,
  NodeCapabilityRequest,
  subjects,
} from "@ekv/wire"
import {
  DispatchReply,
  DispatchRequest,
  GenerateDekReply,
  GenerateDekRequest,
  LogEntriesReply,
  LogEntriesRequest,
  LogStateReply,
  LogStateRequest,
  ResyncReply,
  ResyncRequest,
  SessionReply,
  SessionRequest,
} from "@ekv/wire/keystore-protocol"
import { jetstreamManager } from "@nats-io/jetstream"
import { Effect, Exit, Result, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { exportState } from "../../src/encryptionState.ts"
import { serveKeystore } from "../../src/server.ts"
import { KEK, KEK2, N2, NODE, openAt, SECRET, SELF, tempDir, wrap } from "../unit/harness.ts"

const S = subjects("ekv")
const ks = S.internal(NODE).keystore
const CLUSTER = "c".repeat(32)
const opts = { timeoutMs: 10_000 }

describe("keystore over NATS", () => {
  let nats: NatsFixture
  beforeAll(async () => {
    nats = await startNats({ jetstream: true })
  })
  afterAll(async () => {
    await nats?.stop()
  })

  it("serves session, generate-dek, dispatch and capability; publishes events once", async () => {
    const o = await openAt(tempDir())
    const scope = Scope.makeUnsafe()
    const run = <A, E>(e: Effect.Effect<A, E, Nats | Scope.Scope>) =>
      Effect.runPromise(
        Effect.gen(function* () {
          const nc = yield* acquireNats({ servers: nats.servers })
          return yield* e.pipe(Effect.provideService(Nats, nc))
        }).pipe(Scope.provide(scope)),
      )
    const runExit = <A, E>(e: Effect.Effect<A, E, Nats>) =>
      Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const nc = yield* acquireNats({ servers: nats.servers })
            return yield* Effect.exit(e.pipe(Effect.provideService(Nats, nc)))
          }),
        ),
      )
    try {
      await run(serveKeystore(o.ks, { subjects: S, buildSha: "test", version: "0.0.0" }))

      const cap = await run(
        request(S.node(NODE).capability, NodeCapabilityRequest, NodeCapabilityReply, {}, opts),
      )
      expect(cap).toMatchObject({ node: NODE, encryption_capable: true, full_node_id: SELF, local_epoch: 0 })

      const kp = generateHandoverKeyPair()
      const sessionId = "5".repeat(32)
      const sess = await run(
        request(
          ks.session,
          SessionRequest,
          SessionReply,
          {
            session_id: sessionId,
            public_key: kp.publicKey,
            floors: {},
            floors_as_of_index: 2,
          },
          opts,
        ),
      )
      expect(sess.key_ids).toEqual([])

      const gen = await run(
        request(
          ks.generateDek,
          GenerateDekRequest,
          GenerateDekReply,
          { purposes: ["storage", "raft"] },
          opts,
        ),
      )
      const [st, rf] = gen.deks as [(typeof gen.deks)[number], (typeof gen.deks)[number]]
      const entry = encodeEntry({
        tag: 0x04,
        bootstrap: {
          storage: { key_id: st.key_id, wrapped: st.wrapped },
          raft: { key_id: rf.key_id, wrapped: rf.wrapped },
          writers: [
            { full_node_id: SELF, local_epoch: 0 },
            { full_node_id: N2, local_epoch: 0 },
          ],
        },
      } as unknown as EntryPayload)
      const dispatchReq = {
        index: 3,
        prev_encryption_index: 0,
        entry,
        session: { session_id: sessionId, public_key: kp.publicKey },
        cluster_id: CLUSTER,
      }
      const first = await run(request(ks.dispatch, DispatchRequest, DispatchReply, dispatchReq, opts))
      expect(first).toMatchObject({ status: "applied", kind: "bootstrap", replay: false })
      if (first.status !== "applied" || first.handover === undefined) throw new Error("expected a hand-over")
      const opened = openHandover({
        privateKey: kp.privateKey,
        nodeSecret: SECRET,
        nodeId: NODE,
        sessionId,
        sealed: first.handover.sealed,
      })
      expect(Result.isSuccess(opened)).toBe(true)
      if (Result.isSuccess(opened)) {
        expect(opened.success.map((k) => [k.keyId, k.purpose, k.localEpoch])).toEqual([
          [st.key_id, "storage", 0],
          [rf.key_id, "raft", 0],
        ])
      }
      const replay = await run(request(ks.dispatch, DispatchRequest, DispatchReply, dispatchReq, opts))
      expect(replay).toMatchObject({ status: "applied", replay: true })

      const reg = encodeEntry({
        tag: 0x03,
        registration: { dek_id: st.key_id, full_node_id: N2, local_epoch: 1 },
      } as unknown as EntryPayload)
      expect(
        await run(
          request(
            ks.dispatch,
            DispatchRequest,
            DispatchReply,
            { index: 4, prev_encryption_index: 3, entry: reg },
            opts,
          ),
        ),
      ).toMatchObject({ status: "applied", outcome: "advanced" })

      // Node-local failures: Halted with the halt code.
      const bad = encodeEntry({
        tag: 0x05,
        control: {
          kind: "rotate-dek",
          purpose: "storage",
          dek: { key_id: 77, wrapped: wrap(KEK2, new Uint8Array(32), "storage", 77) },
          writers: [],
        },
      } as unknown as EntryPayload)
      const e1 = await runExit(
        request(
          ks.dispatch,
          DispatchRequest,
          DispatchReply,
          { index: 6, prev_encryption_index: 4, entry: bad },
          opts,
        ),
      )
      expect(Exit.isFailure(e1)).toBe(true)
      if (Exit.isFailure(e1)) {
        const f = e1.cause.reasons.find((r) => r._tag === "Fail")
        const err = f?._tag === "Fail" ? (f.error as ApiError.ApiError) : undefined
        expect(err?._tag).toBe("Halted")
        expect(err?.details).toMatchObject({ reason: "KekMismatch", index: 6 })
      }
      const e2 = await runExit(
        request(
          ks.dispatch,
          DispatchRequest,
          DispatchReply,
          { index: 9, prev_encryption_index: 8, entry: reg },
          opts,
        ),
      )
      if (Exit.isFailure(e2)) {
        const f = e2.cause.reasons.find((r) => r._tag === "Fail")
        expect(f?._tag === "Fail" && (f.error as ApiError.ApiError).details).toMatchObject({
          reason: "SidecarBehindRaftLog",
        })
      } else throw new Error("expected Halted")

      // Events: one per applied index, ids <cluster>:<node>:<index>, replays add nothing.
      const nc = await run(acquireNats({ servers: nats.servers }))
      const jsm = await jetstreamManager(nc)
      let count = 0
      for (let i = 0; i < 50 && count < 2; i++) {
        await new Promise((r) => setTimeout(r, 100))
        count = (await jsm.streams.info(S.events.stream)).state.messages
      }
      await new Promise((r) => setTimeout(r, 300))
      const info = await jsm.streams.info(S.events.stream)
      expect(info.state.messages).toBe(2)
      const m1 = await jsm.streams.getMessage(S.events.stream, { seq: 1 })
      const m2 = await jsm.streams.getMessage(S.events.stream, { seq: 2 })
      expect(m1?.subject).toBe(S.events.encryption(NODE))
      expect(m1?.header.get("Nats-Msg-Id")).toBe(`${CLUSTER}:${NODE}:3`)
      expect(m1?.json()).toMatchObject({
        cluster_id: CLUSTER,
        node: NODE,
        index: 3,
        kind: "bootstrap",
        outcome: "applied",
        key_ids: [st.key_id, rf.key_id],
      })
      expect(m2?.json()).toMatchObject({ index: 4, kind: "registration", outcome: "advanced" })
      expect(await run(o.ks.state.store.lastPublishedIndex)).toBe(4)
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await o.close()
    }
  })

  it("resync: log-replay from the leader's entries, full-state once compacted", async () => {
    const leader = await openAt(tempDir())
    const entries = [
      {
        index: 2,
        prev: 0,
        payload: {
          tag: 0x04,
          bootstrap: {
            storage: { key_id: 61, wrapped: wrap(KEK, new Uint8Array(32).fill(1), "storage", 61) },
            raft: { key_id: 62, wrapped: wrap(KEK, new Uint8Array(32).fill(2), "raft", 62) },
            writers: [{ full_node_id: SELF, local_epoch: 0 }],
          },
        },
      },
      {
        index: 4,
        prev: 2,
        payload: { tag: 0x03, registration: { dek_id: 61, full_node_id: N2, local_epoch: 3 } },
      },
    ]
    for (const e of entries) {
      await Effect.runPromise(
        leader.ks.applier.dispatch({
          index: e.index,
          prevEncryptionIndex: e.prev,
          payload: e.payload as never,
          session: undefined,
        }),
      )
    }
    const compactedBelow = 0
    const scope = Scope.makeUnsafe()
    const run = <A, E>(e: Effect.Effect<A, E, Nats | Scope.Scope>) =>
      Effect.runPromise(
        Effect.gen(function* () {
          const nc = yield* acquireNats({ servers: nats.servers })
          return yield* e.pipe(Effect.provideService(Nats, nc))
        }).pipe(Scope.provide(scope)),
      )
    const follower = await openAt(tempDir())
    try {
      const log = S.internal("n9").admin.log
      await run(
        serveSubject({
          subject: log.op("entries"),
          request: LogEntriesRequest,
          reply: LogEntriesReply,
          handler: (req) =>
            Effect.succeed(
              req.after < compactedBelow
                ? { compacted: true, entries: [] }
                : {
                    compacted: false,
                    entries: entries
                      .filter((e) => e.index > req.after)
                      .map((e) => ({
                        index: e.index,
                        prev_encryption_index: e.prev,
                        entry: encodeEntry(e.payload as unknown as EntryPayload),
                      })),
                  },
            ),
        }),
      )
      await run(
        serveSubject({
          subject: log.op("state"),
          request: LogStateRequest,
          reply: LogStateReply,
          handler: () => exportState(leader.ks.state).pipe(Effect.orDie),
        }),
      )
      await run(serveKeystore(follower.ks, { subjects: S, buildSha: "test", version: "0.0.0" }))
      const r1 = await run(request(ks.resync, ResyncRequest, ResyncReply, { leader: "n9" as never }, opts))
      expect(r1).toEqual({ node: NODE, mode: "log-replay", raft_applied_index: 2 })
      expect((await run(follower.ks.state.store.row(61, Number(N2 & 0xffffn))))?.last_seen_local_epoch).toBe(
        3,
      )

      const fresh = await openAt(tempDir())
      const { resync } = await import("../../src/resync.ts")
      const { ResyncFailed } = await import("../../src/resync.ts")
      const r2 = await Effect.runPromise(
        resync(fresh.ks, {
          entriesAfter: () => Effect.succeed("compacted" as const),
          fullState: exportState(leader.ks.state).pipe(
            Effect.mapError((e) => new ResyncFailed({ message: e.message })),
          ),
        }),
      )
      expect(r2.mode).toBe("full-state")
      await fresh.close()
    } finally {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await follower.close()
      await leader.close()
    }
  })
})
