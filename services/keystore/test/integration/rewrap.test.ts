// KEK rotation's wraps over the bus (SPEC.md §4.4, §5 rewrap-deks): a real
// keystore process on a real nats-server, called on its internal subjects as
// its consensus would. `rewrap` wraps every unretired DEK under the next KEK
// (same key bytes as under the current KEK), refuses another next KEK with
// FailedPrecondition KekNextMismatch, and the 0x05 entry built from its wraps
// applies and makes the next KEK current — also across a restart. And no
// plaintext DEK byte ever crosses the bus: every message on `>` is recorded
// through a whole key life (sessions, bootstrap, rotation, rewrap) and scanned.
import { type ChildProcess, spawn } from "node:child_process"
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { acquireNats, Nats, request } from "@ekv/bus"
import { fullNodeId, generateHandoverKeyPair, kekId, openHandover, unwrapDek } from "@ekv/crypto"
import { type NatsFixture, startNats } from "@ekv/test"
import {
  type EntryPayload,
  encodeEntry,
  NodeCapabilityReply,
  NodeCapabilityRequest,
  SidecarStateReport,
  subjects,
} from "@ekv/wire"
import {
  DispatchReply,
  DispatchRequest,
  GenerateDekReply,
  GenerateDekRequest,
  RewrapReply,
  RewrapRequest,
  SessionReply,
  SessionRequest,
  SidecarStateRequest,
} from "@ekv/wire/keystore-protocol"
import { connect } from "@nats-io/transport-node"
import { Effect, Exit, Result, type Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url))
const NODE = "n1"
const S = subjects("ekv")
const ks = S.internal(NODE).keystore
const KEK_A = new Uint8Array(32).fill(0xa1)
const KEK_B = new Uint8Array(32).fill(0xb2)
const KEK_C = new Uint8Array(32).fill(0xc3)

const kekFile = (dir: string, name: string, bytes: Uint8Array) => {
  const p = join(dir, name)
  writeFileSync(p, bytes, { mode: 0o600 })
  chmodSync(p, 0o600)
  return p
}

const unwrap = (kek: Uint8Array, wrapped: Uint8Array, purpose: "storage" | "raft", keyId: number) => {
  const r = unwrapDek({ kek, wrapped, purpose, keyId })
  if (Result.isFailure(r)) throw new Error(`unwrap ${keyId}: ${r.failure.message}`)
  return r.success
}

describe("keystore rewrap (process, real NATS)", () => {
  let nats: NatsFixture
  const children: ChildProcess[] = []
  beforeAll(async () => {
    nats = await startNats({ jetstream: true })
  })
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL")
    await nats?.stop()
  })

  const call = <Req, Rep>(
    subject: string,
    req: Schema.Codec<Req, unknown>,
    rep: Schema.Decoder<Rep>,
    body: Req,
  ) =>
    Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const nc = yield* acquireNats({ servers: nats.servers })
          return yield* Effect.exit(
            request(subject, req, rep, body, { timeoutMs: 5_000 }).pipe(Effect.provideService(Nats, nc)),
          )
        }),
      ),
    )
  const ok = async <Rep>(p: Promise<Exit.Exit<Rep, unknown>>): Promise<Rep> => {
    const exit = await p
    if (Exit.isFailure(exit)) throw new Error(`request failed: ${String(exit.cause)}`)
    return exit.value
  }
  const capability = () => ok(call(S.node(NODE).capability, NodeCapabilityRequest, NodeCapabilityReply, {}))

  const start = async (env: Record<string, string>) => {
    const child = spawn(process.execPath, [MAIN], { env, stdio: ["ignore", "ignore", "pipe"] })
    children.push(child)
    let stderr = ""
    child.stderr?.on("data", (d) => {
      stderr += String(d)
    })
    const deadline = Date.now() + 20_000
    for (;;) {
      if (child.exitCode !== null) throw new Error(`keystore exited ${child.exitCode}: ${stderr}`)
      const exit = await call(S.node(NODE).capability, NodeCapabilityRequest, NodeCapabilityReply, {})
      if (Exit.isSuccess(exit) && exit.value.encryption_capable) return child
      if (Date.now() > deadline) throw new Error(`keystore not capable in time: ${stderr}`)
      await new Promise((r) => setTimeout(r, 200))
    }
  }
  const stop = (child: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve()
      child.once("exit", () => resolve())
      child.kill("SIGTERM")
    })

  it("wraps every DEK under the next KEK; the 0x05 entry from them switches KEKs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ekv-rewrap-"))
    const base: Record<string, string> = {}
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith("EKV_")) base[k] = v
    const env = {
      ...base,
      EKV_NODE_ID: NODE,
      EKV_DATA_DIR: join(dir, "data"),
      NATS_URL: nats.servers.join(","),
      EKV_ENCRYPTION_ENABLED: "true",
      EKV_KEK_FILE: kekFile(dir, "kek", KEK_A),
      EKV_KEK_NEXT_FILE: kekFile(dir, "kek-next", KEK_B),
    }
    let child = await start(env)
    expect(await capability()).toMatchObject({ kek_id: kekId(KEK_A), next_kek_id: kekId(KEK_B) })

    // Bootstrap as the leader's consensus would: generate-dek, then dispatch the 0x04.
    const gen = await ok(
      call(ks.generateDek, GenerateDekRequest, GenerateDekReply, { purposes: ["storage", "raft"] }),
    )
    const [st, rf] = gen.deks as [(typeof gen.deks)[number], (typeof gen.deks)[number]]
    const boot = encodeEntry({
      tag: 0x04,
      bootstrap: {
        storage: { key_id: st.key_id, wrapped: st.wrapped },
        raft: { key_id: rf.key_id, wrapped: rf.wrapped },
        writers: [{ full_node_id: fullNodeId(NODE), local_epoch: 0 }],
      },
    } as unknown as EntryPayload)
    expect(
      await ok(
        call(ks.dispatch, DispatchRequest, DispatchReply, {
          index: 1,
          prev_encryption_index: 0,
          entry: boot,
        }),
      ),
    ).toMatchObject({ status: "applied", kind: "bootstrap" })

    // Another next KEK is refused, with the loaded one named.
    const wrong = await call(ks.rewrap, RewrapRequest, RewrapReply, { next_kek_id: kekId(KEK_C) })
    expect(Exit.isFailure(wrong)).toBe(true)
    if (Exit.isFailure(wrong)) {
      const f = wrong.cause.reasons.find((r) => r._tag === "Fail")
      expect(f?._tag === "Fail" ? f.error : undefined).toMatchObject({
        _tag: "FailedPrecondition",
        details: { reason: "KekNextMismatch", next_kek_id: kekId(KEK_C), loaded_next_kek_id: kekId(KEK_B) },
      })
    }

    const rewrap = await ok(call(ks.rewrap, RewrapRequest, RewrapReply, { next_kek_id: kekId(KEK_B) }))
    expect(rewrap.next_kek_id).toBe(kekId(KEK_B))
    expect(rewrap.wraps.map((w) => w.key_id).sort((a, b) => a - b)).toEqual(
      [st.key_id, rf.key_id].sort((a, b) => a - b),
    )
    for (const d of [st, rf]) {
      const w = rewrap.wraps.find((x) => x.key_id === d.key_id)!
      expect(unwrap(KEK_B, w.wrapped, d.purpose, d.key_id)).toEqual(
        unwrap(KEK_A, d.wrapped, d.purpose, d.key_id),
      )
      expect(
        Result.isFailure(unwrapDek({ kek: KEK_A, wrapped: w.wrapped, purpose: d.purpose, keyId: d.key_id })),
      ).toBe(true)
    }

    // The admin's 0x05 rewrap-deks entry from those wraps, dispatched as consensus applies it.
    const entry = encodeEntry({
      tag: 0x05,
      control: { kind: "rewrap-deks", next_kek_id: rewrap.next_kek_id, wraps: rewrap.wraps },
    } as unknown as EntryPayload)
    expect(
      await ok(
        call(ks.dispatch, DispatchRequest, DispatchReply, { index: 2, prev_encryption_index: 1, entry }),
      ),
    ).toMatchObject({ status: "applied", kind: "rewrap-deks" })
    expect((await capability()).kek_id).toBe(kekId(KEK_B))
    const report = await ok(call(ks.sidecarState, SidecarStateRequest, SidecarStateReport, {}))
    for (const w of rewrap.wraps)
      expect(Buffer.from(report.wrapped_deks_by_id[String(w.key_id)]!).equals(Buffer.from(w.wrapped))).toBe(
        true,
      )

    // A restart after the rewrap starts with the next KEK as current (SPEC.md §7 KekMismatch note).
    await stop(child)
    child = await start(env)
    expect((await capability()).kek_id).toBe(kekId(KEK_B))
    await stop(child)
  }, 60_000)

  it("never puts a plaintext DEK on any subject (every message on `>` scanned)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ekv-wiretap-"))
    const base: Record<string, string> = {}
    for (const [k, v] of Object.entries(process.env))
      if (v !== undefined && !k.startsWith("EKV_")) base[k] = v
    const nodeSecret = new Uint8Array(32).fill(0x5e)
    const env = {
      ...base,
      EKV_NODE_ID: NODE,
      EKV_DATA_DIR: join(dir, "data"),
      NATS_URL: nats.servers.join(","),
      EKV_ENCRYPTION_ENABLED: "true",
      EKV_KEK_FILE: kekFile(dir, "kek", KEK_A),
      EKV_KEK_NEXT_FILE: kekFile(dir, "kek-next", KEK_B),
      EKV_NODE_SECRET_FILE: kekFile(dir, "node.secret", nodeSecret),
    }
    // The tap: every message on every subject, headers included, from before the keystore starts.
    const tap = await connect({ servers: nats.servers })
    const seen: Uint8Array[] = []
    const sub = tap.subscribe(">")
    const recording = (async () => {
      for await (const m of sub) {
        seen.push(m.data)
        if (m.headers !== undefined)
          for (const [k, vs] of m.headers) seen.push(new TextEncoder().encode(`${k}: ${vs.join(",")}`))
      }
    })()
    await tap.flush()
    const child = await start(env)

    const openSession = async (sessionId: string, floors: Record<string, number>) => {
      const kp = generateHandoverKeyPair()
      const r = await ok(
        call(ks.session, SessionRequest, SessionReply, {
          session_id: sessionId,
          public_key: kp.publicKey,
          floors,
          floors_as_of_index: 0,
        }),
      )
      return { kp, sessionId, sealed: r.sealed }
    }
    const opened = (
      kp: ReturnType<typeof generateHandoverKeyPair>,
      sessionId: string,
      sealed: Uint8Array,
    ) => {
      const r = openHandover({ privateKey: kp.privateKey, nodeSecret, nodeId: NODE, sessionId, sealed })
      if (Result.isFailure(r)) throw new Error(`hand-over did not open: ${r.failure.message}`)
      return r.success
    }

    const first = await openSession("a".repeat(32), {})
    const gen = await ok(
      call(ks.generateDek, GenerateDekRequest, GenerateDekReply, { purposes: ["storage", "raft"] }),
    )
    const [st, rf] = gen.deks as [(typeof gen.deks)[number], (typeof gen.deks)[number]]
    const boot = await ok(
      call(ks.dispatch, DispatchRequest, DispatchReply, {
        index: 1,
        prev_encryption_index: 0,
        entry: encodeEntry({
          tag: 0x04,
          bootstrap: {
            storage: { key_id: st.key_id, wrapped: st.wrapped },
            raft: { key_id: rf.key_id, wrapped: rf.wrapped },
            writers: [{ full_node_id: fullNodeId(NODE), local_epoch: 0 }],
          },
        } as unknown as EntryPayload),
        session: { session_id: first.sessionId, public_key: first.kp.publicKey },
      }),
    )
    if (boot.status !== "applied" || boot.handover === undefined) throw new Error("expected a hand-over")
    const handedOver = opened(first.kp, first.sessionId, boot.handover.sealed)
    expect(handedOver.map((k) => k.keyId).sort()).toEqual([st.key_id, rf.key_id].sort())

    const rot = (
      await ok(call(ks.generateDek, GenerateDekRequest, GenerateDekReply, { purposes: ["storage"] }))
    ).deks[0]!
    expect(
      await ok(
        call(ks.dispatch, DispatchRequest, DispatchReply, {
          index: 2,
          prev_encryption_index: 1,
          entry: encodeEntry({
            tag: 0x05,
            control: {
              kind: "rotate-dek",
              purpose: "storage",
              dek: { key_id: rot.key_id, wrapped: rot.wrapped },
              writers: [{ full_node_id: fullNodeId(NODE), local_epoch: 0 }],
            },
          } as unknown as EntryPayload),
          session: { session_id: first.sessionId, public_key: first.kp.publicKey },
        }),
      ),
    ).toMatchObject({ status: "applied", kind: "rotate-dek" })
    const rewrap = await ok(call(ks.rewrap, RewrapRequest, RewrapReply, { next_kek_id: kekId(KEK_B) }))
    const second = await openSession("b".repeat(32), { [String(st.key_id)]: 1 })
    const all = opened(second.kp, second.sessionId, second.sealed)
    expect(all.map((k) => k.keyId).sort()).toEqual([st.key_id, rf.key_id, rot.key_id].sort())

    await tap.flush()
    sub.unsubscribe()
    await recording
    await tap.close()
    await stop(child)

    const deks = [
      ...all.map((k) => k.dek),
      unwrap(KEK_A, rot.wrapped, "storage", rot.key_id),
      unwrap(KEK_A, st.wrapped, "storage", st.key_id),
    ]
    const text = seen.map((b) => Buffer.from(b).toString("latin1"))
    const hits: string[] = []
    for (const dek of deks) {
      const b = Buffer.from(dek)
      const forms = [b.toString("latin1"), b.toString("base64"), b.toString("base64url"), b.toString("hex")]
      // Also the base64 of the DEK at any of the three alignments inside a longer base64 string.
      for (const shift of [1, 2])
        forms.push(
          Buffer.concat([Buffer.alloc(shift), b])
            .toString("base64")
            .slice(4),
        )
      for (const f of forms) for (const t of text) if (t.includes(f.slice(0, 40))) hits.push(f.slice(0, 12))
    }
    expect(hits).toEqual([])
    // The tap did see the key traffic: the wrapped forms and the sealed hand-overs crossed it.
    const sawWrapped = text.some((t) => t.includes(Buffer.from(rewrap.wraps[0]!.wrapped).toString("base64")))
    const sawSealed = text.some((t) => t.includes(Buffer.from(second.sealed).toString("base64").slice(0, 40)))
    expect(sawWrapped && sawSealed).toBe(true)
    expect(seen.length).toBeGreaterThan(10)
  }, 60_000)
})
