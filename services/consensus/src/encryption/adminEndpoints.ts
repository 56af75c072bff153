// The internal encryption subjects this node serves (@ekv/wire/consensus-admin-protocol):
// `<p>.internal.<n>.admin.encryption.<op>` and `<p>.internal.<n>.admin.log.<op>`.
// "Leader" ops reaching a follower are forwarded once to its leader.

import { serveSubject } from "@ekv/bus"
import { envelopeHeader, fullNodeId } from "@ekv/crypto"
import {
  ApiError,
  decodeEntry,
  type EncryptionPayload,
  type RewriteProgress,
  SidecarStateReport,
  Tag,
} from "@ekv/wire"
import {
  FloorsReply,
  FloorsRequest,
  GenerateDekReply,
  GenerateDekRequest,
  NodeStatusReply,
  NodeStatusRequest,
  ProposeReply,
  ProposeRequest,
  RewrapDeksReply,
  RewrapDeksRequest,
  RewriteReply,
  RewriteRequest,
  StateReply,
  StateRequest,
} from "@ekv/wire/consensus-admin-protocol"
import {
  LogEntriesReply,
  LogEntriesRequest,
  LogStateReply,
  LogStateRequest,
  SidecarStateRequest,
} from "@ekv/wire/keystore-protocol"
import type { NatsConnection } from "@nats-io/transport-node"
import { Effect, Result, type Schema } from "effect"
import type { ValueSealer } from "../fsm/valueSealer.ts"
import { FORWARDED_HEADER, forwardRequest } from "../kv/forward.ts"
import { fromPromise } from "../kv/kvEndpoints.ts"
import { NotLeader, type RaftNode } from "../node/raftNode.ts"
import type { Version } from "../stateMachine/mvccStore.ts"
import { encodeStoredValue, EncryptionState as StoredState } from "../stateMachine/valueHeader.ts"
import { kindOfPayload } from "./encryptionState.ts"
import { preValidate } from "./preValidation.ts"
import { decodeJson, type EncryptionRuntime } from "./runtime.ts"

/** In-flight marker while an entry is validated, before it has a log index (one entry at a time, SPEC §2.2). */
const VALIDATING = Number.MAX_SAFE_INTEGER

type Ctx = {
  readonly headers?: { get(k: string): string } | undefined
  readonly msg: { readonly data: Uint8Array }
}

export interface EncryptionEndpointsContext {
  readonly node: RaftNode
  readonly nc: NatsConnection
  readonly prefix: string
  readonly rt: EncryptionRuntime
  readonly sealer: ValueSealer
}

export class EncryptionHandlers {
  private readonly c: EncryptionEndpointsContext
  /** The one 0x03–0x05 entry in flight (SPEC §2.2). */
  private inFlight: number | null = null
  rewriteProgress: typeof RewriteProgress.Type | undefined

  constructor(c: EncryptionEndpointsContext) {
    this.c = c
  }

  /** Runs `local` on the leader; a follower forwards the original body once. */
  async onLeader<A>(
    op: string,
    ctx: Ctx,
    schema: Schema.Top & { readonly DecodingServices: never },
    local: () => Promise<A>,
  ): Promise<A> {
    try {
      if (!this.c.node.isLeader) throw new NotLeader(this.c.node.leader)
      return await local()
    } catch (e) {
      if (!(e instanceof NotLeader)) throw e
      const forwarded = ctx.headers?.get(FORWARDED_HEADER) === "1"
      if (forwarded || e.leader === null || e.leader === this.c.node.id)
        throw new ApiError.Unavailable({
          message: "no leader is known; retry",
          details: { reason: "NoLeader" },
        })
      return (await forwardRequest(
        this.c.nc,
        `${this.c.rt.adminSubject(e.leader)}.${op}`,
        ctx.msg.data,
        decodeJson(schema as never),
        15_000,
      )) as A
    }
  }

  /** The leader's gate (CONTRACT §1 order): EncryptionDisabled, KekNotConfigured, ApplierNotReady. */
  async gate(): Promise<void> {
    const live = await this.c.rt.keystore.liveness().catch(() => null)
    const fp = (reason: ApiError.PreconditionReason, message: string) =>
      new ApiError.FailedPrecondition({ message, details: { reason } })
    if (live === null) throw fp("KekNotConfigured", `the leader ${this.c.node.id}'s keystore does not answer`)
    if (!live.encryption_capable)
      throw fp("EncryptionDisabled", `the leader ${this.c.node.id} is not encryption-capable`)
    if (!live.ready || this.c.rt.session.sessionId === null)
      throw fp("ApplierNotReady", `the leader ${this.c.node.id} has no writer session yet`)
  }

  async propose(req: typeof ProposeRequest.Type): Promise<typeof ProposeReply.Type> {
    const d = decodeEntry(req.entry)
    if (Result.isFailure(d)) throw new ApiError.InvalidArgument({ message: d.failure.message })
    const p = d.success
    if (p.tag !== Tag.Registration && p.tag !== Tag.Bootstrap && p.tag !== Tag.Control)
      throw new ApiError.InvalidArgument({ message: `tag 0x0${p.tag} is not an encryption entry` })
    const payload = p as EncryptionPayload
    const node = this.c.node
    await this.gate()
    // VerifyLeader, and the applied state is complete up to the confirmed index.
    await node.readBarrier()
    if (this.inFlight !== null && node.appliedIndex < this.inFlight)
      throw new ApiError.Unavailable(
        this.inFlight === VALIDATING
          ? {
              message: "another encryption entry is being validated; retry",
              details: { reason: "EncryptionEntryInFlight" },
            }
          : {
              message: `encryption entry ${this.inFlight} is still in flight; retry`,
              details: { reason: "EncryptionEntryInFlight", index: this.inFlight },
            },
      )
    this.inFlight = VALIDATING
    try {
      const exp = await node.withApplyPaused(() => this.c.rt.keystore.exportState())
      const err = preValidate(exp, payload, node.core.raft.log.lastIndex() + 1)
      if (err !== null) throw err
      if (!node.isLeader) throw new NotLeader(node.leader)
      const enableRaft = payload.tag === Tag.Control && payload.control.kind === "enable-raft-envelope"
      if (enableRaft) this.c.rt.barrierIndex = VALIDATING
      let waiting: ReturnType<RaftNode["propose"]>
      try {
        waiting = node.propose(req.entry)
      } finally {
        // The entry (if appended) is the log's last one: synchronous since the check above.
        const idx = node.core.raft.log.lastIndex()
        this.inFlight = idx
        if (enableRaft) this.c.rt.barrierIndex = idx
      }
      const o = await waiting
      const info = this.c.rt.dispatcher.lastOutcome(o.index)
      return {
        index: o.index,
        kind: kindOfPayload(payload),
        status: o.kind === "rejected" ? "rejected" : "applied",
        ...(o.kind === "rejected" ? { code: o.code as never, reason: o.reason } : {}),
        ...(info?.outcome === undefined ? {} : { outcome: info.outcome as never }),
        key_ids: (info?.keyIds ?? []) as never,
      }
    } catch (e) {
      if (this.inFlight === VALIDATING) this.inFlight = null
      if (this.c.rt.barrierIndex === VALIDATING) this.c.rt.barrierIndex = 0
      throw e
    }
  }

  async state(): Promise<typeof StateReply.Type> {
    const node = this.c.node
    const st = node.status()
    const live = await this.c.rt.keystore.liveness().catch(() => null)
    const exp = await node.withApplyPaused(() => this.c.rt.keystore.exportState()).catch(() => null)
    const es = this.c.rt.state
    const members = [
      ...st.members.map((m) => ({ node: m.node, role: m.role, full_node_id: fullNodeId(m.node) })),
    ]
    const pending =
      this.inFlight !== null && this.inFlight !== VALIDATING && this.inFlight > st.appliedIndex
        ? this.inFlight
        : undefined
    return {
      cluster_id: st.clusterId as never,
      leader: node.id as never,
      term: st.term,
      applied_index: st.appliedIndex,
      commit_index: st.commitIndex,
      leader_capable: live?.encryption_capable === true && this.c.rt.session.sessionId !== null,
      storage_envelope_active: es.storageEnvelopeActive,
      active: es.active,
      raft_envelope_cutover_index: es.cutoverIndex,
      last_encryption_index: es.lastEncryptionIndex,
      last_control_index: es.lastControlIndex,
      ...(pending === undefined ? {} : { pending_encryption_index: pending }),
      keys: Object.entries(es.keys).map(([id, k]) => ({
        key_id: Number(id),
        purpose: k.purpose,
        created: exp?.keys.find((x) => x.key_id === Number(id))?.created ?? "",
        retired: k.retired,
      })),
      registry: (exp?.writers ?? []).map((w) => ({
        dek_id: w.dek_id,
        node_id16: w.node_id16,
        full_node_id: BigInt(w.full_node_id),
        first_seen_local_epoch: w.first_seen_local_epoch,
        last_seen_local_epoch: w.last_seen_local_epoch,
        raft_index: w.raft_index,
      })) as never,
      members: members as never,
    }
  }

  async nodeStatus(): Promise<typeof NodeStatusReply.Type> {
    const node = this.c.node
    // Taken before the store is counted: a rewrite reported done finished before the count began.
    const rewrite = this.rewriteProgress
    const versions: Record<string, number> = {}
    let cleartext = 0
    for await (const v of node.store.iterateVersions()) {
      if (v.header.tombstone) continue
      if (v.header.encryptionState === StoredState.Cleartext) cleartext++
      else {
        const h = envelopeHeader(v.payload)
        if (Result.isSuccess(h))
          versions[String(h.success.keyId)] = (versions[String(h.success.keyId)] ?? 0) + 1
      }
    }
    const logCounts: Record<string, number> = {}
    const log = node.core.raft.log
    for (let i = log.snapshot.index + 1; i <= log.lastIndex(); i++) {
      const e = log.entry(i)
      if (e === undefined || e.type !== "Normal" || e.data[0] !== Tag.RaftEnvelope) continue
      const h = envelopeHeader(e.data.subarray(1))
      if (Result.isSuccess(h))
        logCounts[String(h.success.keyId)] = (logCounts[String(h.success.keyId)] ?? 0) + 1
    }
    const live = await this.c.rt.keystore.liveness().catch(() => null)
    const st = node.status()
    const h = node.haltInfo
    const localEpochs: Record<string, number> = {}
    for (const k of this.c.rt.session.keys.values()) localEpochs[String(k.keyId)] = k.epoch
    // Snapshots ship stored bytes as they are: every kept snapshot holds what the store held then.
    const snapshots: Record<string, number> = {}
    if (st.snapshotIndex > 0) for (const id of Object.keys(versions)) snapshots[id] = 1
    return {
      node: node.id as never,
      role: st.members.find((m) => m.node === node.id)?.role ?? "voter",
      sidecar_raft_applied_index: live?.raft_applied_index ?? 0,
      local_epochs: localEpochs as never,
      versions_by_key_id: versions as never,
      cleartext_versions: cleartext,
      log_entries_by_key_id: logCounts as never,
      snapshots_by_key_id: snapshots as never,
      ...(rewrite === undefined ? {} : { rewrite }),
      ...(h === null ? {} : { halted: { index: h.index as never, reason: h.reason } }),
    }
  }

  /** Started and neither done nor stopped by an error. */
  private get rewriteRunning(): boolean {
    const p = this.rewriteProgress
    return p !== undefined && !p.done && p.error === undefined
  }

  /** Re-seals cleartext / non-active-DEK versions in place at a bounded rate (SPEC §2.4). */
  rewrite(req: typeof RewriteRequest.Type): { started: boolean } {
    if (this.rewriteRunning) return { started: false }
    // A node behind the leader's `as_of_index` checks once it got there (the leader checked already).
    const asOfIndex = req.as_of_index ?? 0
    if (asOfIndex <= this.c.node.appliedIndex && !this.c.rt.state.storageEnvelopeActive)
      throw new ApiError.FailedPrecondition({
        message: "the storage envelope is not active",
        details: { reason: "StorageEnvelopeNotActive" },
      })
    const rate = Math.max(0.01, req.rate_mib_s ?? 8) * 1024 * 1024
    this.rewriteProgress = { done: false, progress: 0 }
    void this.runRewrite(rate, asOfIndex).catch((e: unknown) => {
      const error = e instanceof Error ? e.message : String(e)
      this.c.rt.o.log.error("rewrite stopped", { error })
      this.rewriteProgress = { done: false, progress: this.rewriteProgress?.progress ?? 0, error }
    })
    return { started: true }
  }

  private async runRewrite(bytesPerSec: number, asOfIndex: number): Promise<void> {
    const node = this.c.node
    const log = this.c.rt.o.log
    const active = await this.untilEverythingNewIsSealedUnderActive(asOfIndex)
    // The versions to re-seal, found first so progress has a denominator; each is re-read
    // against its expected bytes when rewritten (an apply or GC meanwhile wins).
    const todo: Version[] = []
    for await (const v of node.store.iterateVersions()) {
      if (v.header.tombstone) continue
      if (v.header.encryptionState === StoredState.StorageEnvelope) {
        const h = envelopeHeader(v.payload)
        if (Result.isSuccess(h) && h.success.keyId === active) continue
      }
      todo.push({
        key: v.key,
        version: v.index,
        header: v.header,
        payload: v.payload,
        storageKey: v.storageKey,
      })
    }
    let done = 0
    let skipped = 0
    const t0 = Date.now()
    let bytes = 0
    for (const v of todo) {
      let value: Uint8Array
      try {
        // Opened with its own storage key as AAD, exactly as a read opens it.
        value = this.c.sealer.open(v)
      } catch (e) {
        // A version that does not open stays as it is (reads report it as IntegrityError).
        skipped++
        log.warn("rewrite skips a version that does not open", {
          key: v.key,
          version: v.version,
          error: String(e),
        })
        done++
        continue
      }
      const h = this.c.sealer.prepare === undefined ? null : await this.c.sealer.prepare()
      if (h !== null) throw new Error(h.message)
      // A rotation during the rewrite: re-seal onto the newest DEK (a later rewrite finishes its job).
      await this.untilSealingUnderActiveStorageDek()
      const next = this.c.sealer.seal(v.key, v.version, value)
      await node.store.rewriteInPlace(v.key, v.version, next, {
        expected: encodeStoredValue(v.header.encryptionState, v.payload),
      })
      done++
      bytes += next.length
      this.rewriteProgress = { done: false, progress: done / todo.length }
      const ahead = bytes / bytesPerSec - (Date.now() - t0) / 1000
      if (ahead > 0) await new Promise((r) => setTimeout(r, ahead * 1000))
    }
    log.info("rewrite done", { versions: todo.length, skipped, bytes, ms: Date.now() - t0 })
    this.rewriteProgress = { done: true, progress: 1 }
  }

  /**
   * The point after which this node stores nothing under a DEK other than the
   * active storage one, so that one scan finds every version to re-seal. First
   * it applies what the leader had committed when the operator asked
   * (`asOfIndex`: a rotation just before the rewrite is one it re-seals onto).
   * Then it waits until it seals under the active DEK itself, which follows its
   * own registration of that DEK (SPEC §6; until then new versions go under the
   * previous one), and until every entry it may have sealed before that moment
   * — all were committed by then — is in the store. A rotation meanwhile starts
   * the wait over. Returns the active storage DEK's id.
   */
  private async untilEverythingNewIsSealedUnderActive(asOfIndex: number): Promise<number> {
    await this.untilApplied(asOfIndex)
    if (!this.c.rt.state.storageEnvelopeActive)
      throw new Error(`the storage envelope is not active at index ${this.c.node.appliedIndex}`)
    for (;;) {
      await this.untilSealingUnderActiveStorageDek()
      const active = this.c.rt.state.active.storage
      await this.untilApplied(this.c.node.core.raft.log.committed)
      if (this.c.rt.state.active.storage === active) return active
    }
  }

  /** Waits until this node applied `index`, however long catching up takes, unless it halts. */
  private async untilApplied(index: number): Promise<void> {
    const node = this.c.node
    while (node.appliedIndex < index) {
      const h = node.haltInfo
      if (h !== null)
        throw new Error(`this node halted at ${h.index} (${h.reason}) before it applied ${index}`)
      // Bounded per try (the apply waiters' timeout); the halt check runs between tries.
      // Any other failure (the node shutting down) ends the rewrite.
      await node.untilApplied(index).catch((e: unknown) => {
        if (!(e instanceof ApiError.Unavailable && e.details?.reason === "Timeout")) throw e
      })
    }
  }

  /**
   * Rewrite re-seals under the ACTIVE storage DEK only. Right after a rotation
   * this node may still seal under the previous DEK until its own registration
   * of the new one commits (SPEC §6); re-sealing then would only move versions
   * from one old DEK to another, so wait (bounded) until the active one is usable.
   */
  private async untilSealingUnderActiveStorageDek(timeoutMs = 60_000): Promise<void> {
    const session = this.c.rt.session
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const active = this.c.rt.state.active.storage
      const k = session.sealingKey("storage")
      if (typeof k === "object" && k.keyId === active) return
      if (Date.now() > deadline)
        throw new Error(`this node cannot seal under the active storage DEK ${active} (not registered yet)`)
      await session.changed(250)
    }
  }

  logEntries(after: number): typeof LogEntriesReply.Type {
    const node = this.c.node
    const log = node.core.raft.log
    const committed = log.committed
    if (after < log.snapshot.index) return { compacted: true, entries: [] }
    const entries: { index: number; prev_encryption_index: number; entry: Uint8Array }[] = []
    // prev_encryption_index of the first entry after `after` is the last encryption entry at or below it.
    let prev = after
    for (let i = after + 1; i <= committed; i++) {
      const e = log.entry(i)
      if (e === undefined) return { compacted: true, entries: [] }
      if (e.type !== "Normal" || e.data.length === 0) continue
      const t = e.data[0]!
      if (t < Tag.Registration || t > Tag.Control) continue
      entries.push({ index: i, prev_encryption_index: prev, entry: e.data })
      prev = i
    }
    return { compacted: false, entries }
  }
}

export const serveEncryption = (c: EncryptionEndpointsContext) =>
  Effect.gen(function* () {
    const h = new EncryptionHandlers(c)
    const base = c.rt.adminSubject(c.node.id)
    const logBase = `${c.prefix}.internal.${c.node.id}.admin.log`
    const serve = <Req, Rep>(
      subject: string,
      request: Schema.Codec<Req, unknown>,
      reply: Schema.Codec<Rep, unknown>,
      f: (req: Req, ctx: Ctx) => Promise<Rep>,
    ) =>
      serveSubject({
        subject,
        request,
        reply,
        maxConcurrent: 64,
        handler: (req: Req, ctx) => fromPromise(() => f(req, ctx as unknown as Ctx)),
      })
    yield* serve(`${base}.propose`, ProposeRequest, ProposeReply, (req, ctx) =>
      h.onLeader("propose", ctx, ProposeReply, () => h.propose(req)),
    )
    yield* serve(`${base}.generate-dek`, GenerateDekRequest, GenerateDekReply, (req, ctx) =>
      h.onLeader("generate-dek", ctx, GenerateDekReply, () => c.rt.keystore.generateDek(req.purposes)),
    )
    yield* serve(`${base}.rewrap-deks`, RewrapDeksRequest, RewrapDeksReply, (req, ctx) =>
      h.onLeader("rewrap-deks", ctx, RewrapDeksReply, () => c.rt.keystore.rewrap(req.next_kek_id)),
    )
    yield* serve(`${base}.state`, StateRequest, StateReply, (_req, ctx) =>
      h.onLeader("state", ctx, StateReply, () => h.state()),
    )
    yield* serve(`${base}.floors`, FloorsRequest, FloorsReply, (req, ctx) =>
      h.onLeader("floors", ctx, FloorsReply, async () => {
        const f = await c.rt.floorsFor(BigInt(req.full_node_id))
        return { floors: f.floors as never, as_of_index: f.asOfIndex }
      }),
    )
    yield* serve(`${base}.sidecar-state`, SidecarStateRequest, SidecarStateReport, (req, ctx) =>
      h.onLeader("sidecar-state", ctx, SidecarStateReport, () =>
        c.rt.keystore.sidecarState(req.caller_full_node_id),
      ),
    )
    yield* serve(`${base}.node-status`, NodeStatusRequest, NodeStatusReply, () => h.nodeStatus())
    yield* serve(`${base}.rewrite`, RewriteRequest, RewriteReply, async (req) => h.rewrite(req))
    yield* serve(`${logBase}.entries`, LogEntriesRequest, LogEntriesReply, async (req) =>
      h.logEntries(req.after),
    )
    // The export under paused apply is the state as of this node's applied index (SPEC §4.6).
    yield* serve(`${logBase}.state`, LogStateRequest, LogStateReply, () =>
      c.node.withApplyPaused(() => c.rt.keystore.exportState()),
    )
    return h
  })
