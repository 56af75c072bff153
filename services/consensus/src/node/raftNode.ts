// The driver loop of one consensus node (SPEC §2): owns the Raft core, the
// log store, the state machine, time and the transport.
//
// Per Ready, in order (rawNode.ts): persist snapshot + entries + hard state in
// ONE synchronous RaftLogStore batch (proposals arriving meanwhile go into
// the next Ready: group commit), then send messages, then hand committed
// entries to the apply pipeline, then serve read states, then advance.
// The apply pipeline applies in log order, many entries per state-machine
// batch, reports appliedTo, answers proposal waiters, takes automatic
// snapshots (and compacts), and halts on node-local faults without blocking
// the Raft loop (the node keeps storing entries as a follower).
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { ApiError, encodeEntry, type HaltCode, Tag } from "@ekv/wire"
import type { NatsConnection } from "@nats-io/transport-node"
import type { ClusterEvents } from "../events.ts"
import type { Applier, EntryOutcome } from "../fsm/applier.ts"
import { type HaltInfo, haltRetryDelayMs } from "../fsm/halt.ts"
import type { Log } from "../log.ts"
import type { ConsensusMetrics } from "../metrics.ts"
import {
  type ConfChange,
  type ConfState,
  type Entry,
  entrySize,
  type Message,
  type NodeId,
  RawNode,
  type Ready,
  Role,
  type SnapshotMeta,
  type SnapshotRequest,
  type SoftState,
} from "../raft/mod.ts"
import type { RaftLogStore } from "../raftLog/logStore.ts"
import type { MvccStore } from "../stateMachine/mvccStore.ts"
import { snapshotFileName } from "../stateMachine/snapshotDir.ts"
import { openNatsTransport, type RaftTransport } from "../transport/natsTransport.ts"
import { SnapshotReceiver, SnapshotSender } from "../transport/snapshotTransfer.ts"
import { Serial } from "./serial.ts"
import { type OpenedStorage, snapshotMark, toStored } from "./storage.ts"
import { AppliedWaiters, ProposalWaiters, ReadRounds, unavailable } from "./waiters.ts"

/** The request reached a node that is not the leader; `leader` is where to forward (if known). */
export class NotLeader extends Error {
  override readonly name = "NotLeader"
  readonly leader: NodeId | null
  constructor(leader: NodeId | null) {
    super(leader === null ? "no leader is known" : `the leader is ${leader}`)
    this.leader = leader
  }
}

export interface RaftNodeOptions {
  readonly nodeId: NodeId
  readonly prefix: string
  readonly electionTimeoutMs: number
  readonly snapshotEntries: number
  /** Also snapshot when the log since the last snapshot passes this many bytes. */
  readonly snapshotBytes?: number
  readonly snapshotDir: string
  readonly incomingDir: string
  readonly storage: OpenedStorage
  readonly applier: Applier
  readonly nc: NatsConnection
  readonly metrics: ConsensusMetrics
  readonly events: ClusterEvents
  readonly log: Log
  /** A node-local failure the loop cannot survive (the Raft log cannot be written). */
  readonly onFatal: (e: unknown) => void
  /**
   * Extra records a snapshot carries as of its index (the keystore's
   * encryption state, SPEC §4.6); runs with apply paused. Throwing skips the snapshot.
   */
  readonly snapshotAttachments?: () => Promise<ReadonlyMap<string, Uint8Array> | undefined>
  /** After a received snapshot was installed (apply paused): e.g. restore the keystore, new session. */
  readonly onSnapshotInstalled?: (index: number) => Promise<void>
  /**
   * Checks the state database's files right before a snapshot file is written
   * from them (scrubber.ts): a description of the damage, or null.
   */
  readonly verifyStateFiles?: () => Promise<string | null>
}

export interface MemberView {
  readonly node: NodeId
  readonly role: "voter" | "learner"
  readonly match?: number
  readonly recentActive?: boolean
}

export interface NodeStatus {
  readonly node: NodeId
  readonly clusterId: string
  readonly leader: NodeId | null
  readonly role: Role
  readonly term: number
  readonly commitIndex: number
  readonly appliedIndex: number
  readonly lastIndex: number
  readonly snapshotIndex: number
  readonly halted: { readonly index: number; readonly reason: HaltCode } | null
  readonly members: readonly MemberView[]
}

const PROPOSAL_TIMEOUT_MS = 10_000
const READ_TIMEOUT_MS = 5_000
const APPLY_BATCH_ENTRIES = 1024
const APPLY_BATCH_BYTES = 8 << 20
const DEFAULT_SNAPSHOT_BYTES = 64 << 20

export class RaftNode {
  readonly id: NodeId
  readonly core: RawNode
  private readonly o: RaftNodeOptions
  private readonly logStore: RaftLogStore
  private readonly sm: MvccStore
  private readonly applier: Applier
  private readonly log: Log
  private readonly metrics: ConsensusMetrics
  private readonly persistSerial = new Serial()
  private readonly smSerial = new Serial()
  private readonly proposals = new ProposalWaiters(PROPOSAL_TIMEOUT_MS)
  private readonly appliedWaiters: AppliedWaiters
  private readonly reads: ReadRounds
  private transport: RaftTransport | null = null
  private sender: SnapshotSender | null = null
  private receiver: SnapshotReceiver | null = null
  private ticker: ReturnType<typeof setInterval> | null = null
  private wake: (() => void) | null = null
  private loopDone: Promise<void> = Promise.resolve()
  private closed = false
  private soft: SoftState

  // apply pipeline
  private applyQueue: Entry[] = []
  private applyGen = 0
  private applyRunning: Promise<void> | null = null
  private halt: HaltInfo | null = null
  /** A halt for damage in this node's own files: it never resumes and nothing is exported (haltOnDamage). */
  private damage: HaltInfo | null = null
  private haltAttempts = 0
  private haltTimer: ReturnType<typeof setTimeout> | null = null
  private lastSnapshotIndex: number
  private bytesSinceSnapshot = 0
  private clusterIdProposedTerm = -1

  constructor(o: RaftNodeOptions) {
    this.o = o
    this.id = o.nodeId
    this.logStore = o.storage.log
    this.sm = o.storage.sm
    this.applier = o.applier
    this.log = o.log
    this.metrics = o.metrics
    this.core = new RawNode({
      id: o.nodeId,
      electionTick: 10,
      heartbeatTick: 1,
      random: Math.random,
      storage: o.storage.persisted,
      checkQuorum: true,
      preVote: true,
    })
    this.soft = this.core.status().softState
    this.lastSnapshotIndex = o.storage.persisted.snapshotMeta.index
    this.appliedWaiters = new AppliedWaiters(o.storage.persisted.applied, READ_TIMEOUT_MS)
    this.reads = new ReadRounds(o.nodeId, READ_TIMEOUT_MS, (ctx) => {
      const r = this.core.readIndex(ctx)
      this.kick()
      if (r.ok) return null
      return r.reason === "NotLeader"
        ? new NotLeader(r.leader)
        : unavailable(`read index refused: ${r.reason}`, r.reason)
    })
  }

  // ---------------------------------------------------------------- lifecycle

  start(): void {
    const o = this.o
    this.transport = openNatsTransport(o.nc, o.prefix, this.id, (msgs) => this.stepAll(msgs), {
      dropped: (reason) => this.metrics.transportDropped.inc({ reason }),
    })
    const tlog = this.log.child("snapshot-transfer")
    this.sender = new SnapshotSender(
      o.nc,
      o.prefix,
      (meta) => this.prepareSnapshot(meta),
      (to, ok) => {
        this.core.reportSnapshot(to, ok)
        this.kick()
      },
      tlog,
    )
    this.receiver = new SnapshotReceiver(
      o.nc,
      o.prefix,
      this.id,
      o.incomingDir,
      o.snapshotDir,
      async (m) => this.stepAll([m]),
      tlog,
    )
    const tickMs = Math.max(5, Math.floor(o.electionTimeoutMs / 10))
    this.ticker = setInterval(() => {
      this.core.tick()
      this.kick()
    }, tickMs)
    this.loopDone = this.loop()
    this.metrics.applyHalted.set(0)
    this.metrics.appliedIndex.set(this.applier.appliedIndex)
    this.updateMetrics()
    this.kick()
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.ticker !== null) clearInterval(this.ticker)
    if (this.haltTimer !== null) clearTimeout(this.haltTimer)
    this.sender?.abortAll()
    await this.transport?.close()
    await this.receiver?.close()
    this.kick()
    await this.loopDone
    await this.applyRunning
    await this.snapshotRunning?.catch(() => undefined)
    const err = unavailable("node is shutting down", "ShuttingDown")
    this.proposals.failAll(err)
    this.reads.failAll(err)
    this.appliedWaiters.failAll(err)
  }

  // ---------------------------------------------------------------- queries

  get isLeader(): boolean {
    return this.soft.role === Role.Leader
  }

  get leader(): NodeId | null {
    return this.soft.leader
  }

  get appliedIndex(): number {
    return this.applier.appliedIndex
  }

  get clusterId(): string {
    return this.applier.clusterId
  }

  get haltInfo(): HaltInfo | null {
    return this.halt
  }

  get store(): MvccStore {
    return this.sm
  }

  status(): NodeStatus {
    const st = this.core.status()
    const members: MemberView[] = []
    const isLeader = st.softState.role === Role.Leader
    const view = (node: NodeId, role: "voter" | "learner"): MemberView => {
      const pr = isLeader ? st.progress.get(node) : undefined
      return pr === undefined
        ? { node, role }
        : { node, role, match: pr.match, recentActive: pr.recentActive }
    }
    for (const v of st.confState.voters) members.push(view(v, "voter"))
    for (const l of st.confState.learners) members.push(view(l, "learner"))
    return {
      node: this.id,
      clusterId: this.applier.clusterId,
      leader: st.softState.leader,
      role: st.softState.role,
      term: st.hardState.term,
      commitIndex: st.hardState.commit,
      appliedIndex: this.applier.appliedIndex,
      lastIndex: st.lastIndex,
      snapshotIndex: st.firstIndex - 1,
      halted: this.halt === null ? null : { index: this.halt.index, reason: this.halt.reason },
      members,
    }
  }

  // ---------------------------------------------------------------- requests

  /** Proposes a state-machine payload; resolves when it applied here (the leader). */
  propose(data: Uint8Array): Promise<EntryOutcome> {
    if (this.closed) return Promise.reject(unavailable("node is shutting down", "ShuttingDown"))
    const r = this.core.propose(data)
    if (r._tag === "ProposalDropped") {
      this.metrics.proposals.inc({ outcome: r.reason })
      if (r.reason === "NotLeader") return Promise.reject(new NotLeader(r.leader))
      return Promise.reject(
        unavailable(
          `proposal not accepted: ${r.reason}${r.detail === undefined ? "" : ` (${r.detail})`}`,
          r.reason,
        ),
      )
    }
    this.metrics.proposals.inc({ outcome: "accepted" })
    const p = this.proposals.wait(r.index, r.term)
    this.kick()
    return p
  }

  /** A membership change; resolves with its index once applied here (the leader). */
  async proposeConfChange(cc: ConfChange): Promise<number> {
    if (this.closed) throw unavailable("node is shutting down", "ShuttingDown")
    const r = this.core.proposeConfChange(cc)
    if (r._tag === "ProposalDropped") {
      if (r.reason === "NotLeader") throw new NotLeader(r.leader)
      if (r.reason === "InvalidConfChange")
        throw new ApiError.FailedPrecondition({
          message: `membership change refused: ${r.detail ?? "invalid"}`,
          details: { reason: "NotAMember" },
        })
      throw unavailable(
        `membership change not accepted: ${r.reason}${r.detail === undefined ? "" : ` (${r.detail})`}`,
        r.reason,
      )
    }
    const p = this.proposals.wait(r.index, r.term)
    this.kick()
    await p
    return r.index
  }

  /**
   * Proposes `data` and resolves once it is COMMITTED (not applied: SPEC §6,
   * a registration must not wait for this node's own apply backlog). The
   * leader's own session registration bypasses the new-term apply barrier.
   */
  proposeCommitted(data: Uint8Array, opts: { readonly bypassApplyBarrier?: boolean } = {}): Promise<number> {
    if (this.closed) return Promise.reject(unavailable("node is shutting down", "ShuttingDown"))
    const r = this.core.propose(data, opts)
    if (r._tag === "ProposalDropped") {
      if (r.reason === "NotLeader") return Promise.reject(new NotLeader(r.leader))
      return Promise.reject(unavailable(`proposal not accepted: ${r.reason}`, r.reason))
    }
    this.kick()
    const deadline = Date.now() + PROPOSAL_TIMEOUT_MS
    return new Promise<number>((resolve, reject) => {
      const check = () => {
        const log = this.core.raft.log
        if (log.committed >= r.index) {
          const t = log.term(r.index)
          // Compacted (t undefined) means committed and applied: our entry if terms matched then.
          if (t === r.term || (t === undefined && r.index <= log.snapshot.index)) return resolve(r.index)
          return reject(unavailable(`proposal at ${r.index} was replaced`, "ProposalLost"))
        }
        if (this.closed || Date.now() > deadline)
          return reject(unavailable(`entry ${r.index} did not commit in time`, "Timeout"))
        setTimeout(check, 5)
      }
      check()
    })
  }

  /** Runs `f` with apply paused: the state machine (and the keystore) stay at one applied index. */
  withApplyPaused<A>(f: () => Promise<A>): Promise<A> {
    return this.smSerial.run(f)
  }

  /** Resolves once this node applied `index`; fails Unavailable (Timeout) after the read timeout. */
  untilApplied(index: number): Promise<void> {
    return this.appliedWaiters.wait(index)
  }

  /** Linearizable read barrier on the leader: resolves once this node applied the confirmed read index. */
  async readBarrier(): Promise<number> {
    if (!this.isLeader) throw new NotLeader(this.soft.leader)
    const index = await this.reads.request()
    await this.appliedWaiters.wait(index)
    return index
  }

  async transferLeader(to: NodeId): Promise<NodeId> {
    const r = this.core.transferLeader(to)
    this.kick()
    if (!r.ok) {
      if (r.reason === "NotLeader") throw new NotLeader(r.leader)
      if (r.reason === "NotVoter")
        throw new ApiError.FailedPrecondition({
          message: `${to} is not a voter`,
          details: { reason: "NotAMember" },
        })
      throw unavailable(`leader transfer refused: ${r.reason}`, r.reason)
    }
    const deadline = Date.now() + 3 * this.o.electionTimeoutMs
    while (Date.now() < deadline) {
      if (this.soft.leader === to) return to
      await sleep(Math.max(10, this.o.electionTimeoutMs / 20))
    }
    throw unavailable(`leadership did not move to ${to} in time`, "Timeout", { leader: this.soft.leader })
  }

  /** Takes a snapshot of this node's state machine now and compacts the log; returns its index. */
  async snapshotNow(): Promise<number> {
    const target = this.applier.appliedIndex
    // One already being written may be older than what is applied now: then take another.
    const index = await this.takeSnapshot("file")
    return index >= target ? index : this.takeSnapshot("file")
  }

  // ---------------------------------------------------------------- Raft loop

  private kick(): void {
    const w = this.wake
    if (w !== null) {
      this.wake = null
      w()
    }
  }

  private stepAll(msgs: readonly Message[]): void {
    for (const m of msgs) {
      try {
        this.core.step(m)
      } catch (e) {
        this.log.error("raft core refused a message", { type: m.type, from: m.from, error: String(e) })
      }
    }
    this.kick()
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      if (!this.core.hasReady()) {
        await new Promise<void>((resolve) => {
          this.wake = resolve
        })
        continue
      }
      try {
        await this.handleReady(this.core.ready())
      } catch (e) {
        this.log.error("raft loop failed", {
          error: String(e),
          stack: e instanceof Error ? e.stack : undefined,
        })
        this.closed = true
        this.o.onFatal(e)
        return
      }
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState !== null) this.onSoftState(rd.softState)
    // A leader's appends go out while it writes them itself (Raft thesis
    // §10.2.1): one fsync less on the commit path. The core counts the
    // leader's copy only at advance(), after the write.
    if (rd.messagesBeforePersist) this.send(rd)
    if (rd.snapshot !== null) await this.installReadySnapshot(rd)
    else if (rd.entries.length > 0 || (rd.hardState !== null && rd.mustSync)) {
      // A commit-only hard state is not fsync'd: the commit index is relearned after a restart.
      const t0 = performance.now()
      await this.persistSerial.run(() =>
        this.logStore.persist({
          ...(rd.hardState === null ? {} : { hardState: rd.hardState }),
          entries: rd.entries.map(toStored),
        }),
      )
      this.metrics.fsyncSeconds.observe((performance.now() - t0) / 1000)
      this.metrics.persistEntries.inc(undefined, rd.entries.length)
    }
    if (!rd.messagesBeforePersist) this.send(rd)
    if (rd.committedEntries.length > 0) this.enqueueApply(rd.committedEntries)
    if (rd.readStates.length > 0) this.reads.confirmed(rd.readStates)
    this.core.advance(rd)
    this.updateMetrics()
  }

  private send(rd: Ready): void {
    if (rd.messages.length === 0) return
    const failed = this.transport?.send(rd.messages) ?? []
    for (const to of failed) this.core.reportUnreachable(to)
    for (const m of rd.messages) if (m.type === "Snap") this.sender?.send(m as SnapshotRequest)
  }

  private onSoftState(ss: SoftState): void {
    const wasLeader = this.soft.role === Role.Leader
    this.soft = ss
    const isLeader = ss.role === Role.Leader
    if (wasLeader && !isLeader) {
      const err = unavailable("leadership lost; the outcome of the request is unknown", "LeadershipLost", {
        leader: ss.leader,
      })
      this.proposals.failAll(err)
      this.reads.failAll(err)
      this.sender?.abortAll()
      this.log.info("stepped down", { term: ss.term, leader: ss.leader })
    }
    if (isLeader && !wasLeader) {
      this.log.info("became leader", { term: ss.term })
      this.o.events.publish({ kind: "leader", term: ss.term }, this.applier.clusterId)
      queueMicrotask(() => this.maybeProposeClusterId())
    }
  }

  private updateMetrics(): void {
    const st = this.core.raft
    this.metrics.term.set(st.term)
    this.metrics.commitIndex.set(st.log.committed)
    this.metrics.isLeader.set(this.soft.role === Role.Leader ? 1 : 0)
  }

  /** SPEC §2: the first leader writes cluster_id when the applied state has none. */
  private maybeProposeClusterId(): void {
    const r = this.core.raft
    if (this.closed || this.soft.role !== Role.Leader || this.applier.clusterId !== "") return
    if (this.clusterIdProposedTerm === r.term || r.log.applied < r.termStartIndex) return
    this.clusterIdProposedTerm = r.term
    const id = randomBytes(16).toString("hex")
    const p = this.core.propose(encodeEntry({ tag: Tag.ClusterMeta, cluster_id: id }))
    if (p._tag === "ProposalAccepted")
      this.log.info("proposed cluster_id", { index: p.index, cluster_id: id })
    else this.clusterIdProposedTerm = -1
    this.kick()
  }

  // ---------------------------------------------------------------- apply pipeline

  private enqueueApply(entries: readonly Entry[]): void {
    for (const e of entries) this.applyQueue.push(e)
    this.drainApply()
  }

  private drainApply(): void {
    if (this.applyRunning !== null || this.closed || this.damage !== null) return
    this.applyRunning = this.applyLoop().finally(() => {
      this.applyRunning = null
      // Entries may have arrived after the loop's last look.
      if (this.applyQueue.length > 0 && this.haltTimer === null && !this.closed) this.drainApply()
    })
  }

  private takeApplyBatch(): Entry[] {
    let n = 0
    let bytes = 0
    while (n < this.applyQueue.length && n < APPLY_BATCH_ENTRIES && bytes < APPLY_BATCH_BYTES) {
      bytes += entrySize(this.applyQueue[n]!)
      n++
    }
    return this.applyQueue.splice(0, n)
  }

  private async applyLoop(): Promise<void> {
    while (this.applyQueue.length > 0 && !this.closed) {
      if (this.haltTimer !== null || this.damage !== null) return
      const gen = this.applyGen
      const batch = this.takeApplyBatch()
      const t0 = performance.now()
      let res: Awaited<ReturnType<Applier["apply"]>>
      try {
        res = await this.smSerial
          .run(async () => {
            // A snapshot installed meanwhile made these entries obsolete.
            if (gen !== this.applyGen) return null
            const from = this.applier.appliedIndex
            return this.applier.apply(
              batch.filter((e) => e.index > from),
              { beforeWrite: (outcomes) => this.answerWrites(outcomes) },
            )
          })
          .then((r) => r ?? { outcomes: [], appliedIndex: this.applier.appliedIndex, halt: null })
      } catch (e) {
        this.log.error("state machine apply failed", { error: String(e) })
        this.closed = true
        this.o.onFatal(e)
        return
      }
      this.metrics.applySeconds.observe((performance.now() - t0) / 1000)
      if (res.halt !== null && gen === this.applyGen) {
        const rest = batch.filter((e) => e.index >= res.halt!.index)
        this.applyQueue.unshift(...rest)
      }
      this.onApplied(res.outcomes, res.appliedIndex, batch)
      if (res.halt !== null) {
        this.enterHalt(res.halt)
        return
      }
      if (this.halt !== null) this.resume()
      this.maybeSnapshot()
    }
  }

  /**
   * A KV write's outcome is known before its apply batch is written, and the
   * entry is already committed on a quorum, so its proposer is answered now,
   * as etcd answers from its in-memory backend (docs/performance.md, change
   * 17). Serializable reads on this node first wait for every write it
   * answered (answeredWritten; a linearizable read's index already covers
   * them): no client reads older than a write it was told about.
   * Other outcomes (rejections, encryption and configuration entries) are
   * answered once written, in onApplied.
   */
  private answerWrites(outcomes: readonly EntryOutcome[]): void {
    for (const o of outcomes) {
      if (o.kind !== "write") continue
      this.proposals.applied(o)
      if (o.index > this.answeredThrough) this.answeredThrough = o.index
    }
  }

  private answeredThrough = 0

  /** Resolves once every write this node answered is in its state database (before a local read). */
  answeredWritten(): Promise<void> {
    return this.appliedWaiters.wait(this.answeredThrough)
  }

  private onApplied(outcomes: readonly EntryOutcome[], applied: number, batch: readonly Entry[]): void {
    if (applied > this.core.raft.log.applied && applied <= this.core.raft.log.applying)
      this.core.appliedTo(applied)
    for (const o of outcomes) {
      // Writes were answered before the batch was written (answerWrites).
      if (o.kind !== "write") this.proposals.applied(o)
      if (o.kind === "rejected") {
        this.metrics.rejected.inc({ code: o.code })
        this.log.warn("entry rejected", { index: o.index, code: o.code, reason: o.reason })
        this.o.events.publish(
          { kind: "rejected", index: o.index, code: o.code as never, reason: o.reason },
          this.applier.clusterId,
        )
      }
    }
    for (const e of batch) if (e.index <= applied) this.bytesSinceSnapshot += entrySize(e)
    this.appliedWaiters.advance(applied)
    this.metrics.appliedIndex.set(applied)
    this.kick()
    this.maybeProposeClusterId()
  }

  private enterHalt(h: HaltInfo): void {
    const fresh = this.halt === null || this.halt.index !== h.index || this.halt.reason !== h.reason
    this.halt = h
    this.core.setHalted(true)
    this.metrics.applyHalted.set(1)
    if (fresh) {
      this.log.error("apply halted", { index: h.index, reason: h.reason, message: h.message })
      this.o.events.publish(
        { kind: "halted", index: h.index, code: h.reason, reason: h.message },
        this.applier.clusterId,
      )
    }
    this.kick()
    if (this.damage !== null) return
    // A non-transient cause is retried too, at the slowest pace: retrying is harmless, and the
    // operator may fix it without a restart.
    const delay = h.transient
      ? haltRetryDelayMs(this.haltAttempts++)
      : haltRetryDelayMs(Number.MAX_SAFE_INTEGER)
    this.haltTimer = setTimeout(() => {
      this.haltTimer = null
      this.drainApply()
    }, delay)
  }

  private resume(): void {
    const h = this.halt
    if (h === null || this.damage !== null) return
    this.halt = null
    this.haltAttempts = 0
    this.core.setHalted(false)
    this.metrics.applyHalted.set(0)
    this.log.info("apply resumed", { index: h.index, reason: h.reason })
    this.o.events.publish({ kind: "resumed", index: h.index, code: h.reason }, this.applier.clusterId)
    this.kick()
  }

  /**
   * Damage found in this node's state database (a table block checksum,
   * scrubber.ts): apply halts at the next entry for good — the damage stays
   * until the operator wipes the node, which then rejoins through a snapshot
   * (docs/operations.md) — the node steps down and never campaigns, reads
   * answer Halted, and no snapshot file is made or sent from here.
   */
  haltOnDamage(reason: HaltCode, message: string): Promise<void> {
    return this.smSerial.run(async () => {
      if (this.damage !== null || this.closed) return
      const h: HaltInfo = { index: this.applier.appliedIndex + 1, reason, message, transient: false }
      this.damage = h
      if (this.haltTimer !== null) clearTimeout(this.haltTimer)
      this.haltTimer = null
      this.sender?.abortAll()
      this.enterHalt(h)
    })
  }

  // ---------------------------------------------------------------- snapshots

  // Two kinds of snapshot. Every EKV_SNAPSHOT_ENTRIES entries (or bytes) a
  // CHECKPOINT: the state machine is made durable through its applied index
  // (one synced LevelDB write) and the log is compacted up to it — the state
  // database is the snapshot, so the cost does not grow with the data. A
  // snapshot FILE (a full export) is written only when it is needed: for a
  // follower that must install one (prepareSnapshot), or on request
  // (snapshotNow, `ekv cluster snapshot`). Writing a file of the whole store
  // every 10,000 entries made write throughput fall as the store grew.

  /** Starts a checkpoint when due. */
  private maybeSnapshot(): void {
    const applied = this.applier.appliedIndex
    const bytesLimit = this.o.snapshotBytes ?? DEFAULT_SNAPSHOT_BYTES
    if (this.snapshotRunning !== null) return
    if (applied - this.lastSnapshotIndex >= this.o.snapshotEntries || this.bytesSinceSnapshot >= bytesLimit) {
      this.takeSnapshot("checkpoint").catch((e: unknown) => {
        this.log.error("automatic snapshot failed", { error: String(e) })
      })
    }
  }

  /** The snapshot being taken, if any (one at a time). */
  private snapshotRunning: Promise<number> | null = null

  private takeSnapshot(kind: "checkpoint" | "file"): Promise<number> {
    if (this.snapshotRunning !== null) return this.snapshotRunning
    const p = (kind === "file" ? this.writeSnapshot() : this.checkpoint()).finally(() => {
      this.snapshotRunning = null
    })
    this.snapshotRunning = p
    return p
  }

  /** Makes the applied state durable and compacts the log up to it (no file). */
  private async checkpoint(): Promise<number> {
    const t0 = performance.now()
    const taken = await this.smSerial.run(async () => {
      const applied = this.applier.appliedIndex
      if (applied <= this.core.raft.log.snapshot.index) return null
      // Applies are written without fsync; one synced write makes all of them durable.
      await this.sm.syncApplied()
      return { index: applied, conf: this.applier.membership }
    })
    if (taken === null) return this.core.raft.log.snapshot.index
    const index = await this.compactTo(taken.index, taken.conf)
    if (index === taken.index) {
      this.metrics.snapshots.inc({ kind: "checkpoint" })
      this.log.info("log compacted", { index, ms: Math.round(performance.now() - t0) })
    }
    return index
  }

  /** Records the snapshot mark and compacts the core's log; the state must be durable through `index`. */
  private async compactTo(index: number, conf: ConfState): Promise<number> {
    const term = this.core.raft.log.term(index)
    if (term === undefined || index <= this.core.raft.log.snapshot.index)
      return this.core.raft.log.snapshot.index
    await this.persistSerial.run(() => this.logStore.persist({ snapshot: snapshotMark(index, term, conf) }))
    this.core.compact(index, conf)
    this.lastSnapshotIndex = index
    this.bytesSinceSnapshot = 0
    this.kick()
    return index
  }

  /**
   * A durable snapshot file of the state machine at its applied index, with its
   * metadata. The view (LevelDB snapshot, keystore attachments, membership) is
   * taken under the apply lock; the file is written outside it, so applying
   * does not stall for the export.
   */
  private async exportFile(): Promise<{
    file: string
    meta: SnapshotMeta
    bytes: number
    records: number
  } | null> {
    if (this.damage !== null) return null
    // Never a file made from damaged tables: they are checked first, at full speed.
    const damage = (await this.o.verifyStateFiles?.()) ?? null
    if (damage !== null) {
      await this.haltOnDamage("CorruptState", damage)
      return null
    }
    const taken = await this.smSerial.run(async () => {
      const applied = this.applier.appliedIndex
      const term = this.core.raft.log.term(applied)
      if (term === undefined) return null
      const attachments = await this.o.snapshotAttachments?.()
      const view = await this.sm.openExport({
        expectIndex: applied,
        ...(attachments === undefined ? {} : { attachments }),
      })
      return { view, meta: { index: applied, term, confState: this.applier.membership } }
    })
    if (taken === null) return null
    const { view, meta } = taken
    try {
      const exp = await view.write(this.o.snapshotDir)
      const out = { file: exp.path, meta, bytes: exp.bytes, records: exp.records }
      this.lastExport = out
      return out
    } finally {
      await view.close()
    }
  }

  /** The newest snapshot file this node wrote (to send again while it is recent enough). */
  private lastExport: { file: string; meta: SnapshotMeta } | null = null
  private exportRunning: ReturnType<RaftNode["exportFile"]> | null = null

  /**
   * The file to send a follower whose next entry the log no longer holds: one
   * at or after the core's snapshot when this node has it, else a fresh export
   * at the applied index (one export at a time, shared by every follower).
   */
  private async prepareSnapshot(meta: SnapshotMeta): Promise<{ file: string; meta: SnapshotMeta } | null> {
    if (this.damage !== null) return null
    const last = this.lastExport
    if (last !== null && last.meta.index >= meta.index && (await fileExists(last.file))) return last
    if (this.exportRunning === null) {
      this.exportRunning = this.exportFile().finally(() => {
        this.exportRunning = null
      })
    }
    const t0 = performance.now()
    const exp = await this.exportRunning
    if (exp !== null && exp !== last) {
      this.metrics.snapshots.inc({ kind: "exported" })
      this.log.info("snapshot file written to send", {
        index: exp.meta.index,
        bytes: exp.bytes,
        ms: Math.round(performance.now() - t0),
      })
    }
    return exp === null || exp.meta.index < meta.index ? null : exp
  }

  /** A snapshot file at the applied index, then compaction up to it (`ekv cluster snapshot`). */
  private async writeSnapshot(): Promise<number> {
    const t0 = performance.now()
    if (this.applier.appliedIndex <= this.core.raft.log.snapshot.index && this.lastExport !== null)
      return this.core.raft.log.snapshot.index
    const exp = await this.exportFile()
    if (exp === null) return this.core.raft.log.snapshot.index
    const index = await this.compactTo(exp.meta.index, exp.meta.confState)
    this.metrics.snapshots.inc({ kind: "taken" })
    this.log.info("snapshot taken", {
      index: exp.meta.index,
      bytes: exp.bytes,
      records: exp.records,
      ms: Math.round(performance.now() - t0),
    })
    return index
  }

  /** A snapshot received from the leader (already verified on disk): restore, persist, advance. */
  private async installReadySnapshot(rd: Ready): Promise<void> {
    const meta = rd.snapshot!.meta
    const file = path.join(this.o.snapshotDir, snapshotFileName(meta.index))
    const t0 = performance.now()
    await this.smSerial.run(async () => {
      this.applyGen++
      this.applyQueue = []
      await this.persistSerial.run(() =>
        this.logStore.persist({
          snapshot: snapshotMark(meta.index, meta.term, meta.confState),
          discardAfterSnapshot: true,
          entries: rd.entries.map(toStored),
          ...(rd.hardState === null ? {} : { hardState: rd.hardState }),
        }),
      )
      await this.sm.installSnapshot(file)
      await this.applier.reload()
      await this.o.onSnapshotInstalled?.(meta.index)
    })
    this.lastSnapshotIndex = meta.index
    this.bytesSinceSnapshot = 0
    this.proposals.skippedThrough(meta.index)
    this.appliedWaiters.advance(meta.index)
    this.metrics.appliedIndex.set(meta.index)
    this.metrics.snapshots.inc({ kind: "installed" })
    this.log.info("snapshot installed", {
      index: meta.index,
      term: meta.term,
      ms: Math.round(performance.now() - t0),
    })
    if (this.haltTimer !== null) {
      clearTimeout(this.haltTimer)
      this.haltTimer = null
    }
    if (this.halt !== null) this.resume()
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const fileExists = (file: string): Promise<boolean> =>
  fs.stat(file).then(
    () => true,
    () => false,
  )
