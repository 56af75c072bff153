// The encryption lifecycle of one consensus node, wired together: the writer
// session, the storage sealer's keys, the raft envelope (leader seals user
// payloads after c; followers open 0x06 at apply), the proposal barrier,
// snapshot attachments/restores (SPEC §4.6), floors (§6) and the start-up
// guards of SPEC §7 that need consensus state.
import { envelopeHeader, fullNodeId, nodeId16, openRaft, sealRaft } from "@ekv/crypto"
import { loadNodeSecret } from "@ekv/keystore"
import { ApiError, RAFT_ENVELOPE_ENTRY_HEADROOM, raftEnvelopeEntryInPlace } from "@ekv/wire"
import { FloorsReply, ProposeReply } from "@ekv/wire/consensus-admin-protocol"
import { EncryptionStateExport } from "@ekv/wire/keystore-protocol"
import type { NatsConnection } from "@nats-io/transport-node"
import { Effect, Result, Schema } from "effect"
import type { Applier, RaftEnvelopeOpener } from "../fsm/applier.ts"
import type { SealerHalt, SealingKeys } from "../fsm/valueSealer.ts"
import { KeystoreClient, type Liveness } from "../keystore/keystoreClient.ts"
import { KeystoreDispatcher } from "../keystore/keystoreDispatcher.ts"
import { forwardRequest } from "../kv/forward.ts"
import type { Log } from "../log.ts"
import type { ConsensusMetrics } from "../metrics.ts"
import { NotLeader, type RaftNode } from "../node/raftNode.ts"
import { applyConfChangeToState, type ConfState, decodeConfChange, type Entry } from "../raft/mod.ts"
import { type EncState, hasDeks } from "./encryptionState.ts"
import { floorsFromRows, raiseFromLog } from "./floors.ts"
import { OwnSeals } from "./ownSeals.ts"
import { EncryptionSession, type Floors, type RegistrationResult } from "./session.ts"

/** SM metadata name of the keystore state a snapshot carries (SPEC §4.6). */
export const KEYSTORE_STATE_META = "keystore_state"

const utf8 = new TextEncoder()
const utf8d = new TextDecoder()
const decodeExport = Schema.decodeUnknownResult(EncryptionStateExport)
const encodeExport = Schema.encodeSync(EncryptionStateExport)

/** A JSON reply decoder for forwardRequest (an undecodable reply throws). */
export const decodeJson =
  <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S) =>
  (b: Uint8Array): Result.Result<S["Type"], never> =>
    Result.succeed(Schema.decodeUnknownSync(schema)(JSON.parse(utf8d.decode(b))) as S["Type"])

/**
 * Every member this node knows of at start: the applied membership and every
 * configuration change in its log after it (on a first start, the bootstrap
 * voters) — a NodeIDCollision must not wait for the change to apply (SPEC §7).
 */
export const knownMembers = (
  applied: ConfState,
  entries: readonly Entry[],
  appliedIndex: number,
): string[] => {
  const all = new Set<string>([...applied.voters, ...applied.learners])
  let c = applied
  for (const e of entries) {
    if (e.index <= appliedIndex || e.type !== "ConfChange") continue
    const cc = decodeConfChange(e.data)
    const r = cc === null ? null : applyConfChangeToState(c, cc)
    if (r?.ok !== true) continue
    c = r.confState
    for (const n of [...c.voters, ...c.learners]) all.add(n)
  }
  return [...all]
}

export interface RuntimeOptions {
  readonly nodeId: string
  readonly prefix: string
  readonly nc: NatsConnection
  readonly applier: Applier
  readonly nodeSecretPath: string
  readonly log: Log
  readonly metrics: ConsensusMetrics
  /** A start-up guard that could only run once the keystore answered refused: exit as a refused start. */
  readonly refuseLate?: (r: RefusedStart) => void
}

export interface RefusedStart {
  readonly code: string
  readonly message: string
}

/** Why a leader cannot seal a log entry now, per sealingKey() answer (the proposer retries elsewhere). */
const RAFT_SEALING_BLOCKED = {
  exhausted: { why: "raft DEK epoch exhausted", reason: "LocalEpochExhausted" },
  wait: { why: "raft DEK registration pending", reason: "RegistrationPending" },
  refused: { why: "this node's raft DEK registration was refused", reason: "RegistrationRefused" },
} as const

export class EncryptionRuntime {
  readonly o: RuntimeOptions
  readonly keystore: KeystoreClient
  readonly fullNodeId: bigint
  readonly session: EncryptionSession
  readonly dispatcher: KeystoreDispatcher
  private node: RaftNode | null = null
  /** This leader's raft envelopes until they apply: opened without a second AES-GCM pass. */
  private readonly ownSeals = new OwnSeals()
  /** Index of an appended, unapplied enable-raft-envelope entry (SPEC §2.5 proposal barrier). */
  barrierIndex = 0
  private pendingRestore: typeof EncryptionStateExport.Type | null = null
  /** Start-up guards not run yet because the keystore did not answer at start. */
  private deferredGuards: { readonly lastLogIndex: number } | null = null
  private rotateOnStartup: { requested: boolean; done: boolean } = { requested: false, done: true }

  constructor(o: RuntimeOptions) {
    this.o = o
    this.keystore = new KeystoreClient(o.nc, o.prefix, o.nodeId)
    this.fullNodeId = fullNodeId(o.nodeId)
    this.session = new EncryptionSession({
      nodeId: o.nodeId,
      fullNodeId: this.fullNodeId,
      nodeSecret: () => Effect.runPromise(loadNodeSecret(o.nodeSecretPath)),
      keystore: this.keystore,
      state: () => this.state,
      floors: () => this.floorsForSelf(),
      register: (payload) => this.register(payload),
      log: o.log.child("session"),
      onKeysChanged: () => this.refreshMetrics(),
    })
    this.dispatcher = new KeystoreDispatcher(this.keystore, this.session, this.fullNodeId)
    this.dispatcher.onLatency = (s) => o.metrics.keystoreApplySeconds.observe(s)
  }

  get state(): EncState {
    return this.o.applier.encState
  }

  attach(node: RaftNode): void {
    this.node = node
  }

  close(): void {
    this.session.close()
  }

  private requireNode(): RaftNode {
    if (this.node === null)
      throw new ApiError.Unavailable({ message: "node is starting", details: { reason: "Starting" } })
    return this.node
  }

  // ------------------------------------------------------------- health / startup

  /** Health reports ok only after the start-up registration (and a requested rotation) committed (CONTRACT §4). */
  get healthReady(): boolean {
    // A requested rotation holds health only where it can happen: on the leader.
    if (!this.rotateOnStartup.done && this.node?.isLeader === true) return false
    // A capable keystore answered: ok only once the session is open (before bootstrap too).
    if (this.session.awaitingOpen) return false
    return !hasDeks(this.state) || this.session.ready
  }

  /** Starts the session loop in the background (needs the node attached). */
  startSession(): void {
    void this.session.start()
  }

  requestRotateOnStartup(): void {
    this.rotateOnStartup = { requested: true, done: false }
  }

  get rotateRequested(): { readonly requested: boolean; readonly done: boolean } {
    return this.rotateOnStartup
  }

  markRotated(): void {
    this.rotateOnStartup = { requested: true, done: true }
  }

  /**
   * SPEC §7 guards needing consensus state, against the keystore's liveness.
   * A keystore that does not answer while the cluster has no DEKs is plaintext operation.
   */
  async startupGuards(lastLogIndex: number, members: readonly string[]): Promise<RefusedStart | null> {
    for (const m of members)
      if (m !== this.o.nodeId && nodeId16(fullNodeId(m)) === nodeId16(this.fullNodeId))
        return {
          code: "NodeIDCollision",
          message: `member ${m} shares node_id16 ${nodeId16(this.fullNodeId)} with this node ${this.o.nodeId}`,
        }
    const st = this.state
    let live: Awaited<ReturnType<KeystoreClient["liveness"]>> | null = null
    const deadline = Date.now() + (hasDeks(st) ? 3_000 : 500)
    while (live === null && Date.now() < deadline) live = await this.keystore.liveness().catch(() => null)
    if (live === null) {
      this.o.log.warn("keystore not answering at start", { has_deks: hasDeks(st) })
      // The sidecar checks run before the first apply instead (beforeApply), once it answers.
      if (hasDeks(st)) this.deferredGuards = { lastLogIndex }
      return null
    }
    return this.sidecarGuards(live, lastLogIndex)
  }

  /** The guards comparing the keystore's sidecar with this node's state machine and log. */
  private async sidecarGuards(live: Liveness, lastLogIndex: number): Promise<RefusedStart | null> {
    const st = this.state
    this.o.metrics.sidecarIndex.set(live.raft_applied_index)
    // A snapshot installed before a crash whose keystore restore did not happen yet.
    const attached = await this.o.applier.store.getMeta(KEYSTORE_STATE_META)
    if (attached !== undefined && live.applied_index < st.lastEncryptionIndex) {
      const d = decodeExport(JSON.parse(utf8d.decode(attached)))
      if (
        Result.isSuccess(d) &&
        Math.max(d.success.raft_applied_index, d.success.last_registry_index) > live.applied_index
      ) {
        this.pendingRestore = d.success
        this.o.log.info("a snapshot's keystore state is restored before apply resumes")
        return null
      }
    }
    if (live.raft_applied_index < st.lastControlIndex)
      return {
        code: "SidecarBehindRaftLog",
        message: `the sidecar's raft_applied_index ${live.raft_applied_index} is below the state machine's last 0x04/0x05 index ${st.lastControlIndex}; recover with resync-sidecar`,
      }
    if (live.raft_applied_index > lastLogIndex)
      return {
        code: "SidecarAheadOfRaftLog",
        message: `the sidecar's raft_applied_index ${live.raft_applied_index} is beyond this node's last log index ${lastLogIndex}`,
      }
    if (
      live.raft_applied_index === st.lastControlIndex &&
      live.raft_envelope_cutover_index !== st.cutoverIndex
    )
      return {
        code: "EnvelopeCutoverDivergence",
        message: `the sidecar's cutover index ${live.raft_envelope_cutover_index} differs from the state machine's ${st.cutoverIndex}`,
      }
    if (live.epoch_below_registry_key_ids.length > 0)
      return {
        code: "LocalEpochRollback",
        message: `the sidecar's local_epoch of key ids ${live.epoch_below_registry_key_ids.join(", ")} is below this node's registry row`,
      }
    return null
  }

  // ------------------------------------------------------------- floors / registration

  /** Floors for `full` from this (leader) node's applied registry and its whole log (SPEC §6). */
  async floorsFor(full: bigint): Promise<Floors> {
    const node = this.requireNode()
    const from = this.o.applier.appliedIndex
    const exp = await this.keystore.exportState()
    const floors = floorsFromRows(exp.writers, full)
    const log = node.core.raft.log
    const last = log.lastIndex()
    const payloads: Uint8Array[] = []
    for (let i = Math.max(from, log.snapshot.index) + 1; i <= last; i++) {
      const e = log.entry(i)
      if (e !== undefined && e.type === "Normal") payloads.push(e.data)
    }
    return { floors: raiseFromLog(floors, payloads, full), asOfIndex: last }
  }

  private async floorsForSelf(): Promise<Floors> {
    const node = this.requireNode()
    if (node.isLeader) return this.floorsFor(this.fullNodeId)
    const leader = node.leader
    if (leader === null) throw new Error("no leader known for floors")
    const r = await forwardRequest(
      this.o.nc,
      `${this.adminSubject(leader)}.floors`,
      utf8.encode(JSON.stringify({ full_node_id: this.fullNodeId.toString() })),
      decodeJson(FloorsReply),
      5_000,
    )
    return { floors: r.floors as Record<string, number>, asOfIndex: r.as_of_index }
  }

  adminSubject(node: string): string {
    return `${this.o.prefix}.internal.${node}.admin.encryption`
  }

  private async register(payload: Uint8Array): Promise<RegistrationResult> {
    const node = this.requireNode()
    if (node.isLeader) {
      await node.proposeCommitted(payload, { bypassApplyBarrier: true })
      return { _tag: "Committed" }
    }
    const leader = node.leader
    if (leader === null) throw new NotLeader(null)
    const r = await forwardRequest(
      this.o.nc,
      `${this.adminSubject(leader)}.propose`,
      utf8.encode(JSON.stringify({ entry: Buffer.from(payload).toString("base64") })),
      decodeJson(ProposeReply),
      15_000,
    )
    return r.status === "rejected"
      ? { _tag: "Rejected", code: r.code ?? "PreconditionFailed", reason: r.reason ?? "" }
      : { _tag: "Committed" }
  }

  // ------------------------------------------------------------- sealing

  /** The storage sealer's view of this node's keys (one per runtime: it sits on the apply path). */
  sealingKeys(): SealingKeys {
    this.keysView ??= this.makeSealingKeys()
    return this.keysView
  }

  private keysView: SealingKeys | undefined
  /** What sealingKey() hands out per session key, made once per key. */
  private readonly sealingKeyViews = new WeakMap<
    object,
    { readonly keyId: number; readonly dek: Uint8Array; readonly next: () => Uint8Array }
  >()

  private makeSealingKeys(): SealingKeys {
    const m = this.o.metrics
    return {
      active: () => this.state.storageEnvelopeActive,
      sealingKey: () => {
        const k = this.session.sealingKey("storage")
        if (typeof k === "string") {
          if (k === "wait") this.session.reconcile()
          return k
        }
        let view = this.sealingKeyViews.get(k)
        if (view === undefined) {
          view = { keyId: k.keyId, dek: k.dek, next: () => k.counter.next() }
          this.sealingKeyViews.set(k, view)
        }
        return view
      },
      dek: (id) => (this.state.keys[String(id)]?.retired === true ? undefined : this.session.dek(id)),
      refusal: () => this.session.refusal,
      sessionOpen: () => this.session.keysLoaded,
      changed: (ms) => this.session.changed(ms),
      onSealed: (id) => m.writesPerDek.inc({ key_id: String(id) }),
      onOpenFailure: (reason) => m.decryptFailures.inc({ reason }),
    }
  }

  /** Followers open 0x06 at apply (SPEC §2.5); a failure to open is node-local. One per runtime. */
  raftOpener(): RaftEnvelopeOpener {
    this.opener ??= this.makeRaftOpener()
    return this.opener
  }

  private opener: RaftEnvelopeOpener | undefined

  private makeRaftOpener(): RaftEnvelopeOpener {
    const openWith = (envelope: Uint8Array, dek: Uint8Array | undefined): Uint8Array | SealerHalt => {
      const own = this.ownSeals.take(envelope, dek)
      if (own !== undefined) return own
      const r = openRaft(envelope, (id) => this.session.dek(id))
      if (Result.isFailure(r)) {
        this.o.metrics.decryptFailures.inc({ reason: r.failure._tag })
        return {
          reason: "RaftEnvelopeOpenFailed",
          message: `raft envelope does not open: ${r.failure.message}`,
          transient: false,
        }
      }
      return r.success.plaintext
    }
    // No session yet, or a DEK of the replicated state it lacks: both are this node's to fix.
    const pending = (keyId: number) =>
      this.session.dek(keyId) === undefined &&
      (this.session.sessionId === null || this.session.missingKeyIds().includes(keyId))
    const afterWaiting = async (envelope: Uint8Array, keyId: number): Promise<Uint8Array | SealerHalt> => {
      const deadline = Date.now() + 5_000
      while (pending(keyId) && Date.now() < deadline) {
        this.session.reconcile()
        await this.session.changed(250)
      }
      if (pending(keyId))
        return {
          reason: "KeystoreUnavailable",
          message:
            this.session.sessionId === null
              ? "no keystore session to open raft envelopes"
              : `raft DEK ${keyId} not handed over to this node's session yet (new session pending)`,
          transient: true,
        }
      // Held now, or not a key this node should have (then the open fails: a node-local halt).
      return openWith(envelope, this.session.dek(keyId))
    }
    return {
      open: (envelope) => {
        const h = envelopeHeader(envelope)
        const keyId = Result.isSuccess(h) ? h.success.keyId : 0
        const dek = this.session.dek(keyId)
        // The key at hand: open now, no promise (the common case at apply).
        if (dek !== undefined) return openWith(envelope, dek)
        return afterWaiting(envelope, keyId)
      },
    }
  }

  /**
   * The leader's user payload as appended (SPEC §2.5): as is before the
   * cutover, sealed as 0x06 after it; Unavailable under the proposal barrier
   * or while this node has no registered raft epoch. Synchronous, so the
   * check and the append cannot be separated by an enable-raft-envelope.
   */
  wrapUserPayload(payload: Uint8Array): Uint8Array {
    const st = this.state
    if (this.barrierIndex > 0) {
      if (this.o.applier.appliedIndex >= this.barrierIndex) this.barrierIndex = 0
      else
        throw new ApiError.Unavailable({
          message: "the raft envelope is being enabled; retry",
          details: { reason: "CutoverBarrier", index: this.barrierIndex },
        })
    }
    if (st.cutoverIndex === 0) return payload
    const k = this.session.sealingKey("raft")
    if (k === "wait") this.session.reconcile()
    if (typeof k === "string")
      throw new ApiError.Unavailable({
        message: `this leader cannot seal log entries (${RAFT_SEALING_BLOCKED[k].why}); retry`,
        details: { reason: RAFT_SEALING_BLOCKED[k].reason },
      })
    // Sealed in place after the entry's tag byte: the array is the 0x06 payload.
    const entry = sealRaft({
      dek: k.dek,
      keyId: k.keyId,
      nonce: k.counter.next(),
      plaintext: payload,
      headroom: RAFT_ENVELOPE_ENTRY_HEADROOM,
    })
    this.ownSeals.remember(entry.subarray(RAFT_ENVELOPE_ENTRY_HEADROOM), payload, k.dek)
    this.o.metrics.writesPerDek.inc({ key_id: String(k.keyId) })
    return raftEnvelopeEntryInPlace(entry)
  }

  // ------------------------------------------------------------- snapshots (SPEC §4.6)

  async snapshotAttachments(): Promise<ReadonlyMap<string, Uint8Array> | undefined> {
    const st = this.state
    let exp: typeof EncryptionStateExport.Type
    try {
      exp = await this.keystore.exportState()
    } catch (e) {
      if (!hasDeks(st) && st.lastEncryptionIndex === 0) return undefined
      throw new Error(`the keystore's encryption state is needed for a snapshot: ${String(e)}`)
    }
    return new Map([[KEYSTORE_STATE_META, utf8.encode(JSON.stringify(encodeExport(exp)))]])
  }

  /**
   * After a snapshot install: the keystore gets the snapshot's state now, not
   * at the next apply — an idle cluster has no next apply, and the node would
   * stay without a writer session (health `Registering`) until someone wrote.
   * If the keystore cannot take it now, the next apply tries again.
   */
  async onSnapshotInstalled(): Promise<void> {
    const b = await this.o.applier.store.getMeta(KEYSTORE_STATE_META)
    if (b === undefined) return
    const d = decodeExport(JSON.parse(utf8d.decode(b)))
    if (Result.isFailure(d)) return
    this.pendingRestore = d.success
    const halt = await this.restorePending()
    if (halt !== null) this.o.log.warn("keystore state not restored yet; the next apply retries", { ...halt })
  }

  /** Before apply: deferred start-up guards, a pending keystore restore, then a new session (SPEC §4.6, §6, §7). */
  async beforeApply(): Promise<SealerHalt | null> {
    const g = this.deferredGuards
    if (g !== null) {
      const live = await this.keystore.liveness().catch(() => null)
      if (live === null)
        return {
          reason: "KeystoreUnavailable",
          message: "the keystore has not answered since this process started; its sidecar is not checked yet",
          transient: true,
        }
      const refused = await this.sidecarGuards(live, g.lastLogIndex)
      this.deferredGuards = null
      if (refused !== null) {
        this.o.refuseLate?.(refused)
        return {
          reason: "SidecarBehindRaftLog",
          message: `${refused.code}: ${refused.message}`,
          transient: false,
        }
      }
    }
    return this.restorePending()
  }

  /** Hands a snapshot's keystore state to the keystore, then opens a new session. */
  private async restorePending(): Promise<SealerHalt | null> {
    const r = this.pendingRestore
    if (r === null) return null
    try {
      await this.keystore.restore(r)
    } catch (e) {
      return {
        reason: "KeystoreUnavailable",
        message: `restoring the snapshot's keystore state failed: ${String(e)}`,
        transient: true,
      }
    }
    this.pendingRestore = null
    this.o.log.info("keystore state restored from snapshot", { raft_applied_index: r.raft_applied_index })
    void this.session.start()
    return null
  }

  refreshMetrics(): void {
    const st = this.state
    const m = this.o.metrics
    m.activeKeyId.set(st.active.storage, { purpose: "storage" })
    m.activeKeyId.set(st.active.raft, { purpose: "raft" })
    for (const k of this.session.keys.values()) m.localEpoch.set(k.epoch, { key_id: String(k.keyId) })
  }
}
