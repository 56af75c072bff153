// The Raft state machine (modelled on etcd's raft.go). No I/O, no clock, no
// randomness of its own: time is tick(), randomness is the injected `random`.
// Each role has its own step function with one switch per message type;
// term handling common to all roles happens once, in step().
//
// Configuration changes take effect when their entry is known committed
// (etcd applies them when applied; here the core applies them itself as the
// commit index passes them, so the driver's apply lag never delays them).
// Safety of single-step changes then rests on: a leader proposes a change only
// after every earlier one is committed and after its own term's first entry
// is committed (pendingConfIndex), and the commit index travels with appends.
//
// Rejoining. A voter whose durable state was lost (data dir wiped) has
// forgotten the votes it cast and the entries it acknowledged; Raft's safety
// assumes neither happens. The driver starts such a node with
// `hardState.rejoining` (and the highest term its peers report). Until a
// leader has caught it up, it neither campaigns nor grants any vote or
// pre-vote. "Caught up" = an append from the leader of the current term was
// accepted and left our commit index at the leader's commit, which is an
// entry of the leader's own term: then we hold every entry that leader knew
// committed, and since that leader has already won this term, recording
// vote = leader (persisted with the flag cleared, in one hard state) can
// never elect anyone else in it. From then on the node is an ordinary voter.
// Residual risk (docs/operations.md): votes it cast before the wipe in terms
// above every term its reachable peers reported are forgotten; removing the
// node and re-adding it as a learner avoids even that.

import {
  applyConfChange,
  type ConfChange,
  type Config,
  configFromState,
  decodeConfChange,
  encodeConfChange,
  isMember,
} from "./confChange.ts"
import { RaftLog } from "./log.ts"
import { Progress, ProgressState } from "./progress.ts"
import { committedIndex, hasQuorum, VoteResult, voteResult } from "./quorum.ts"
import { ReadOnly } from "./readIndex.ts"
import {
  type AppendRequest,
  type AppendResponse,
  type Entry,
  EntryType,
  entrySize,
  type HardState,
  type Heartbeat,
  type HeartbeatResponse,
  type Message,
  type NodeId,
  type ReadState,
  Role,
  type Snapshot,
  type SnapshotMeta,
  type SnapshotRequest,
  type SoftState,
  type VoteRequest,
  type VoteResponse,
} from "./types.ts"

/** State the driver persisted, from which a node is (re)built. */
export interface PersistedState {
  readonly hardState: HardState
  /** The last snapshot (index 0, empty ConfState when there is none). */
  readonly snapshotMeta: SnapshotMeta
  /** Every entry after snapshotMeta.index, in order. */
  readonly entries: readonly Entry[]
  /** Last index whose effects are durable in the state machine (≥ snapshotMeta.index). */
  readonly applied: number
}

export interface RaftOptions {
  readonly id: NodeId
  /** T: election timeouts are drawn from [T, 2T) ticks. */
  readonly electionTick: number
  readonly heartbeatTick: number
  /** Uniform in [0, 1); seeded by the caller. */
  readonly random: () => number
  readonly storage: PersistedState
  /** The driver's latest snapshot payload for `meta`, or null if temporarily unavailable. */
  readonly snapshotData?: (meta: SnapshotMeta) => Uint8Array | null
  readonly checkQuorum?: boolean
  readonly preVote?: boolean
  /** Per append message. */
  readonly maxMsgEntries?: number
  readonly maxMsgBytes?: number
  /** Pipelining window per follower. */
  readonly maxInflightMsgs?: number
  readonly maxInflightBytes?: number
  /** Proposals are refused while this many bytes are appended but uncommitted. */
  readonly maxUncommittedBytes?: number
  /** Per Ready. */
  readonly maxCommittedBytesPerReady?: number
  /** Committed entries handed out but not yet reported applied, at most. */
  readonly maxApplyingEntries?: number
  /** Assert invariants after every call (the simulation turns this on). */
  readonly debug?: boolean
}

export type ProposalDroppedReason =
  | "NotLeader"
  | "ApplyBarrier"
  | "LeaderTransfer"
  | "ConfChangePending"
  | "InvalidConfChange"
  | "Backpressure"

export type ProposeResult =
  | { readonly _tag: "ProposalAccepted"; readonly index: number; readonly term: number }
  | {
      readonly _tag: "ProposalDropped"
      readonly reason: ProposalDroppedReason
      /** Where to forward (NotLeader), when known. */
      readonly leader: NodeId | null
      readonly detail?: string
    }

export interface ProposeOptions {
  /** The leader's own session registration (SPEC §2, §6): exempt from the apply barrier. */
  readonly bypassApplyBarrier?: boolean
}

export type CommandResult =
  | { readonly ok: true }
  | {
      readonly ok: false
      readonly reason: "NotLeader" | "NoLeader" | "Halted" | "NotVoter" | "Rejoining"
      readonly leader: NodeId | null
    }

/** A message before the core stamps its own id as the sender. */
type Outgoing = Message extends infer M ? (M extends Message ? Omit<M, "from"> : never) : never

const OK: CommandResult = { ok: true }

const dropped = (reason: ProposalDroppedReason, leader: NodeId | null, detail?: string): ProposeResult =>
  detail === undefined
    ? { _tag: "ProposalDropped", reason, leader }
    : { _tag: "ProposalDropped", reason, leader, detail }

export class Raft {
  readonly id: NodeId
  // --- persistent (HardState); every change reaches the driver via Ready before
  // any message that depends on it is sent.
  /** Never decreases. */
  term = 0
  /** Whom we voted for in `term`; null if nobody. */
  vote: NodeId | null = null
  /** Lost durable state, not caught up by a leader yet: no votes, no campaigns. Rejoining ⇒ follower, vote = null. */
  rejoining = false
  readonly log: RaftLog

  // --- volatile
  role: Role = Role.Follower
  /** The leader of `term`, if known. Leader ⇒ lead = id. */
  lead: NodeId | null = null
  /** Halted nodes never campaign and are never leader (SPEC §2.2). */
  halted = false
  /** Snapshot config + every ConfChange entry ≤ confApplied (= log.committed outside a step). */
  config: Config
  private confApplied: number

  /** Leader only: every member's progress, including its own. */
  readonly progress = new Map<NodeId, Progress>()
  private readonly votes = new Map<NodeId, boolean>()
  /** Leader only: index of its term's Empty entry; proposals wait until applied ≥ it. */
  termStartIndex = 0
  /** Leader only: a ConfChange at this index may still be uncommitted. */
  private pendingConfIndex = 0
  leadTransferee: NodeId | null = null
  /** Leader only: bytes appended and not yet committed (backpressure). */
  private uncommittedBytes = 0
  /** Proposals appended since the last broadcast (flushed at Ready time: group commit). */
  private pendingBcast = false
  /** Leader removed by a committed change: steps down at the end of the current call. */
  private removedSelf = false
  private readonly readOnly = new ReadOnly()
  /** Reads that arrived before the leader committed an entry of its term. */
  private pendingReads: { from: NodeId; ctx: string }[] = []

  electionElapsed = 0
  private heartbeatElapsed = 0
  private randomizedElectionTimeout = 0
  readonly electionTimeout: number
  private readonly heartbeatTimeout: number
  private readonly random: () => number
  private readonly checkQuorum: boolean
  private readonly preVote: boolean
  private readonly maxMsgEntries: number
  private readonly maxMsgBytes: number
  private readonly maxInflightMsgs: number
  private readonly maxInflightBytes: number
  private readonly maxUncommittedBytes: number
  readonly maxCommittedBytesPerReady: number
  readonly maxApplyingEntries: number
  private readonly snapshotData: (meta: SnapshotMeta) => Uint8Array | null
  readonly debug: boolean
  private checks = 0

  /** Outbox: drained by RawNode.ready(). */
  msgs: Message[] = []
  readStates: ReadState[] = []

  private stepFn: (m: Message) => void

  constructor(o: RaftOptions) {
    if (o.electionTick <= o.heartbeatTick) throw new Error("raft: electionTick must exceed heartbeatTick")
    this.id = o.id
    this.electionTimeout = o.electionTick
    this.heartbeatTimeout = o.heartbeatTick
    this.random = o.random
    this.checkQuorum = o.checkQuorum ?? true
    this.preVote = o.preVote ?? true
    this.maxMsgEntries = o.maxMsgEntries ?? 256
    this.maxMsgBytes = o.maxMsgBytes ?? 1 << 20
    this.maxInflightMsgs = o.maxInflightMsgs ?? 64
    this.maxInflightBytes = o.maxInflightBytes ?? 0
    this.maxUncommittedBytes = o.maxUncommittedBytes ?? 64 << 20
    this.maxCommittedBytesPerReady = o.maxCommittedBytesPerReady ?? 8 << 20
    this.maxApplyingEntries = o.maxApplyingEntries ?? 4096
    this.snapshotData = o.snapshotData ?? (() => new Uint8Array(0))
    this.debug = o.debug ?? false

    const s = o.storage
    this.log = new RaftLog(s.snapshotMeta, s.entries, s.hardState.commit, s.applied)
    this.term = s.hardState.term
    this.vote = s.hardState.vote
    this.rejoining = s.hardState.rejoining === true
    if (this.log.lastTerm() > this.term) throw new Error("raft: log holds a term above the persisted term")
    this.config = configFromState(s.snapshotMeta.confState)
    this.confApplied = s.snapshotMeta.index
    this.applyCommittedConfChanges()
    this.stepFn = this.stepFollower
    this.becomeFollower(this.term, null)
    this.assertInvariants()
  }

  // ------------------------------------------------------------------ queries

  hardState(): HardState {
    const hs = { term: this.term, vote: this.vote, commit: this.log.committed }
    return this.rejoining ? { ...hs, rejoining: true } : hs
  }

  softState(): SoftState {
    return { leader: this.lead, role: this.role, term: this.term }
  }

  promotable(): boolean {
    return this.config.voters.has(this.id)
  }

  /** The leader has committed an entry of its own term (needed before serving reads). */
  private committedInTerm(): boolean {
    return this.log.term(this.log.committed) === this.term
  }

  // ------------------------------------------------------------------ inputs

  tick(): void {
    if (this.role === Role.Leader) this.tickHeartbeat()
    else this.tickElection()
    this.finish()
  }

  step(m: Message): void {
    if (m.to !== this.id) return
    this.stepInner(m)
    this.finish()
  }

  propose(data: Uint8Array, opts?: ProposeOptions): ProposeResult {
    const refused = this.refuseProposal(opts?.bypassApplyBarrier === true)
    if (refused !== null) return refused
    const size = data.byteLength + 24
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + size > this.maxUncommittedBytes)
      return dropped("Backpressure", this.id)
    const e = this.appendEntry(EntryType.Normal, data)
    this.finish()
    return { _tag: "ProposalAccepted", index: e.index, term: e.term }
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    const refused = this.refuseProposal(false)
    if (refused !== null) return refused
    if (this.pendingConfIndex > this.log.committed)
      return dropped("ConfChangePending", this.id, `change at ${this.pendingConfIndex} is not committed yet`)
    if (cc.type === "Bootstrap") return dropped("InvalidConfChange", this.id, "bootstrap is not a proposal")
    const r = applyConfChange(this.config, cc)
    if (!r.ok) return dropped("InvalidConfChange", this.id, r.error)
    const e = this.appendEntry(EntryType.ConfChange, encodeConfChange(cc))
    this.pendingConfIndex = e.index
    this.finish()
    return { _tag: "ProposalAccepted", index: e.index, term: e.term }
  }

  /** Starts a linearizable read; its ReadState (index, ctx) arrives in a later Ready. */
  readIndex(ctx: string): CommandResult {
    let r: CommandResult = OK
    if (this.role === Role.Leader) this.handleReadIndex(this.id, ctx)
    else if (this.lead !== null) this.send({ type: "ReadIndex", to: this.lead, term: this.term, ctx })
    else r = { ok: false, reason: "NoLeader", leader: null }
    this.finish()
    return r
  }

  transferLeader(to: NodeId): CommandResult {
    if (this.role !== Role.Leader) return { ok: false, reason: "NotLeader", leader: this.lead }
    if (to === this.id) return OK
    if (!this.config.voters.has(to)) return { ok: false, reason: "NotVoter", leader: this.id }
    if (this.leadTransferee === to) return OK
    this.leadTransferee = to
    // The transfer must finish within one election timeout (tickHeartbeat aborts it).
    this.electionElapsed = 0
    const pr = this.progress.get(to)!
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to)
    else this.sendAppend(to)
    this.finish()
    return OK
  }

  campaign(): CommandResult {
    if (this.halted) return { ok: false, reason: "Halted", leader: this.lead }
    if (this.rejoining) return { ok: false, reason: "Rejoining", leader: this.lead }
    if (!this.promotable()) return { ok: false, reason: "NotVoter", leader: this.lead }
    this.hup(false)
    this.finish()
    return OK
  }

  /** Halt (SPEC §2.2): step down, never campaign; keep following, persisting and voting. */
  setHalted(halted: boolean): void {
    if (halted === this.halted) return
    this.halted = halted
    if (halted) {
      if (this.role === Role.Leader) {
        // Hand over at once to a caught-up voter rather than leaving the
        // cluster leaderless for an election timeout.
        const to = this.bestTransferTarget()
        if (to !== null) this.sendTimeoutNow(to)
        this.becomeFollower(this.term, null)
      } else if (this.role !== Role.Follower) {
        this.becomeFollower(this.term, null)
      }
    }
    this.finish()
  }

  appliedTo(index: number): void {
    this.log.appliedTo(index)
    this.finish()
  }

  /** The driver dropped the committed entries it was handed beyond `applied` (a halt): hand them out again. */
  rewindApply(): void {
    if (this.log.pendingSnapshot === null) this.log.applying = this.log.applied
    this.finish()
  }

  compact(index: number, confState: SnapshotMeta["confState"]): void {
    const term = this.log.term(index)
    if (index <= this.log.snapshot.index) return
    if (term === undefined) throw new Error(`raft: compact ${index}: no such entry`)
    this.log.compact({ index, term, confState })
    this.finish()
  }

  /** The driver's snapshot stream to `to` finished (ok) or failed. */
  reportSnapshot(to: NodeId, ok: boolean): void {
    const pr = this.role === Role.Leader ? this.progress.get(to) : undefined
    if (pr !== undefined && pr.state === ProgressState.Snapshot) {
      if (!ok) pr.pendingSnapshot = 0
      pr.becomeProbe()
      // Wait for the next heartbeat response before probing again.
      pr.probeSent = true
    }
    this.finish()
  }

  reportUnreachable(to: NodeId): void {
    const pr = this.role === Role.Leader ? this.progress.get(to) : undefined
    if (pr !== undefined && pr.state === ProgressState.Replicate) pr.becomeProbe()
    this.finish()
  }

  /** The driver persisted the log through (index, term). */
  stableTo(index: number, term: number): void {
    this.log.stableTo(index, term)
    if (this.role === Role.Leader) {
      const self = this.progress.get(this.id)!
      if (self.maybeUpdate(this.log.stable) && this.maybeCommit()) this.bcastAppend()
    }
    this.finish()
  }

  snapshotInstalled(meta: SnapshotMeta): void {
    this.log.snapshotInstalled(meta)
    this.finish()
  }

  /** Sends what proposals appended since the last call (called at Ready time). */
  flushProposals(): void {
    if (this.pendingBcast) {
      this.pendingBcast = false
      if (this.role === Role.Leader) this.bcastAppend()
    }
  }

  hasPendingBroadcast(): boolean {
    return this.pendingBcast && this.role === Role.Leader
  }

  // ------------------------------------------------------------------ internals

  private refuseProposal(bypassApplyBarrier: boolean): ProposeResult | null {
    if (this.role !== Role.Leader || this.removedSelf) return dropped("NotLeader", this.lead)
    if (this.leadTransferee !== null) return dropped("LeaderTransfer", this.leadTransferee)
    // SPEC §2: a new leader accepts proposals only once it has applied its first entry of the term.
    if (!bypassApplyBarrier && this.log.applied < this.termStartIndex)
      return dropped("ApplyBarrier", this.id, `applied ${this.log.applied} < ${this.termStartIndex}`)
    return null
  }

  private send(m: Outgoing): void {
    this.msgs.push({ ...m, from: this.id } as Message)
  }

  private finish(): void {
    if (this.removedSelf) {
      this.removedSelf = false
      if (this.role === Role.Leader) {
        // The commit that removed us was broadcast already; hand over.
        const to = this.bestTransferTarget()
        if (to !== null) this.sendTimeoutNow(to)
        this.becomeFollower(this.term, null)
      }
    }
    this.assertInvariants()
  }

  private stepInner(m: Message): void {
    if (m.term > this.term) {
      if (m.type === "PreVote" || m.type === "Vote") {
        // Leader lease: while we hear from a live leader, ignore campaigns
        // (a partitioned node rejoining cannot disrupt) unless it is a transfer.
        const inLease = this.checkQuorum && this.lead !== null && this.electionElapsed < this.electionTimeout
        if (inLease && !m.force) return
      }
      if (m.type === "PreVote") {
        // Never change term for a pre-vote.
      } else if (m.type === "PreVoteResp" && !m.reject) {
        // Granted pre-votes carry the term we will campaign in.
      } else {
        const leader = m.type === "App" || m.type === "Heartbeat" || m.type === "Snap" ? m.from : null
        this.becomeFollower(m.term, leader)
      }
    } else if (m.term < this.term) {
      if (m.type === "App" || m.type === "Heartbeat") {
        // A stale leader (e.g. it was partitioned): pre-vote means our term may
        // never reach it otherwise, so tell it.
        this.send({
          type: "AppResp",
          to: m.from,
          term: this.term,
          index: 0,
          reject: true,
          hintIndex: 0,
          hintTerm: 0,
        })
      } else if (m.type === "PreVote") {
        this.send({ type: "PreVoteResp", to: m.from, term: this.term, reject: true })
      }
      return
    }
    if (m.type === "PreVote" || m.type === "Vote") this.handleVoteRequest(m)
    else this.stepFn(m)
  }

  private handleVoteRequest(m: VoteRequest): void {
    const respType = m.type === "Vote" ? "VoteResp" : "PreVoteResp"
    // Rejoining: whatever we voted before losing our state is forgotten; grant nothing.
    const canVote =
      !this.rejoining &&
      (this.vote === m.from ||
        (this.vote === null && this.lead === null) ||
        (m.type === "PreVote" && m.term > this.term))
    if (canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm)) {
      this.send({ type: respType, to: m.from, term: m.term, reject: false })
      if (m.type === "Vote") {
        this.electionElapsed = 0
        this.vote = m.from
      }
    } else {
      this.send({ type: respType, to: m.from, term: this.term, reject: true })
    }
  }

  private readonly stepLeader = (m: Message): void => {
    switch (m.type) {
      case "AppResp":
        this.handleAppendResponse(m)
        return
      case "HeartbeatResp":
        this.handleHeartbeatResponse(m)
        return
      case "ReadIndex":
        this.handleReadIndex(m.from, m.ctx)
        return
      case "App":
      case "Heartbeat":
      case "Snap":
        this.twoLeaders(m.from)
        return
      case "PreVote":
      case "Vote":
      case "PreVoteResp":
      case "VoteResp":
      case "TimeoutNow":
      case "ReadIndexResp":
        return
    }
  }

  private readonly stepCandidate = (m: Message): void => {
    switch (m.type) {
      case "App":
        this.becomeFollower(m.term, m.from)
        this.handleAppend(m)
        return
      case "Heartbeat":
        this.becomeFollower(m.term, m.from)
        this.handleHeartbeat(m)
        return
      case "Snap":
        this.becomeFollower(m.term, m.from)
        this.handleSnapshot(m)
        return
      case "PreVoteResp":
      case "VoteResp":
        this.handleVoteResponse(m)
        return
      case "PreVote":
      case "Vote":
      case "AppResp":
      case "HeartbeatResp":
      case "TimeoutNow":
      case "ReadIndex":
      case "ReadIndexResp":
        return
    }
  }

  private readonly stepFollower = (m: Message): void => {
    switch (m.type) {
      case "App":
        this.followLeader(m.from)
        this.handleAppend(m)
        return
      case "Heartbeat":
        this.followLeader(m.from)
        this.handleHeartbeat(m)
        return
      case "Snap":
        this.followLeader(m.from)
        this.handleSnapshot(m)
        return
      case "TimeoutNow":
        // A halted node never campaigns, not even when asked to (SPEC §2.2).
        if (!this.halted && this.promotable()) this.hup(true)
        return
      case "ReadIndexResp":
        this.readStates.push({ index: m.index, ctx: m.ctx })
        return
      case "PreVote":
      case "Vote":
      case "PreVoteResp":
      case "VoteResp":
      case "AppResp":
      case "HeartbeatResp":
      case "ReadIndex":
        return
    }
  }

  private followLeader(from: NodeId): void {
    if (this.lead !== null && this.lead !== from) this.twoLeaders(from)
    this.electionElapsed = 0
    this.lead = from
  }

  private twoLeaders(other: NodeId): void {
    if (this.debug)
      throw new Error(`raft ${this.id}: two leaders in term ${this.term}: ${this.lead}, ${other}`)
  }

  // --- role transitions

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term
      this.vote = null
    }
    this.lead = null
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(this.random() * this.electionTimeout)
    this.leadTransferee = null
    this.votes.clear()
    this.progress.clear()
    this.termStartIndex = 0
    this.pendingConfIndex = 0
    this.uncommittedBytes = 0
    this.pendingBcast = false
    this.readOnly.clear()
    this.pendingReads = []
  }

  private becomeFollower(term: number, lead: NodeId | null): void {
    this.stepFn = this.stepFollower
    this.reset(term)
    this.lead = lead
    this.role = Role.Follower
  }

  private becomePreCandidate(): void {
    // No term change: a pre-vote never disturbs anyone.
    this.stepFn = this.stepCandidate
    this.votes.clear()
    this.lead = null
    this.role = Role.PreCandidate
  }

  private becomeCandidate(): void {
    this.stepFn = this.stepCandidate
    this.reset(this.term + 1)
    this.vote = this.id
    this.role = Role.Candidate
  }

  private becomeLeader(): void {
    this.stepFn = this.stepLeader
    this.reset(this.term)
    this.lead = this.id
    this.role = Role.Leader
    const last = this.log.lastIndex()
    for (const id of [...this.config.voters, ...this.config.learners]) this.addProgress(id, last + 1)
    if (!this.progress.has(this.id)) this.addProgress(this.id, last + 1)
    const self = this.progress.get(this.id)!
    self.match = this.log.stable
    self.becomeReplicate()
    for (let i = this.log.committed + 1; i <= last; i++)
      this.uncommittedBytes += entrySize(this.log.entry(i)!)
    // The term's first entry: committing it commits every earlier entry (Raft §5.4.2).
    const e = this.appendEntry(EntryType.Empty, new Uint8Array(0))
    this.termStartIndex = e.index
    this.pendingConfIndex = e.index
  }

  private addProgress(id: NodeId, next: number): void {
    const pr = new Progress(next, this.config.learners.has(id), this.maxInflightMsgs, this.maxInflightBytes)
    pr.recentActive = true
    this.progress.set(id, pr)
  }

  private hup(transfer: boolean): void {
    if (this.role === Role.Leader || this.halted || this.rejoining || !this.promotable()) return
    if (this.preVote && !transfer) this.startCampaign(true, false)
    else this.startCampaign(false, transfer)
  }

  private startCampaign(pre: boolean, force: boolean): void {
    let voteTerm: number
    if (pre) {
      this.becomePreCandidate()
      voteTerm = this.term + 1
    } else {
      this.becomeCandidate()
      voteTerm = this.term
    }
    if (this.poll(this.id, true)) return
    const lastIndex = this.log.lastIndex()
    const lastTerm = this.log.lastTerm()
    for (const id of this.config.voters) {
      if (id === this.id) continue
      this.send({ type: pre ? "PreVote" : "Vote", to: id, term: voteTerm, lastIndex, lastTerm, force })
    }
  }

  /** Records a vote; returns true if the election concluded. */
  private poll(from: NodeId, granted: boolean): boolean {
    if (!this.votes.has(from)) this.votes.set(from, granted)
    switch (voteResult(this.config.voters, this.votes)) {
      case VoteResult.Won:
        if (this.role === Role.PreCandidate) this.startCampaign(false, false)
        else {
          this.becomeLeader()
          this.bcastAppend()
        }
        return true
      case VoteResult.Lost:
        this.becomeFollower(this.term, null)
        return true
      case VoteResult.Pending:
        return false
    }
  }

  private handleVoteResponse(m: VoteResponse): void {
    const expected = this.role === Role.PreCandidate ? "PreVoteResp" : "VoteResp"
    if (m.type !== expected) return
    this.poll(m.from, !m.reject)
  }

  // --- ticks

  private tickElection(): void {
    this.electionElapsed++
    if (
      this.promotable() &&
      !this.halted &&
      !this.rejoining &&
      this.electionElapsed >= this.randomizedElectionTimeout
    ) {
      this.electionElapsed = 0
      this.hup(false)
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++
    this.electionElapsed++
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0
      if (this.checkQuorum) {
        // Check-quorum: step down unless a quorum was heard from in the last election timeout.
        const active = hasQuorum(
          this.config.voters,
          (id) => id === this.id || this.progress.get(id)?.recentActive === true,
        )
        for (const [id, pr] of this.progress) if (id !== this.id) pr.recentActive = false
        if (!active) {
          this.becomeFollower(this.term, null)
          return
        }
      }
      if (this.leadTransferee !== null) this.leadTransferee = null
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0
      this.bcastHeartbeat(this.readOnly.lastPendingKey())
    }
  }

  // --- log replication (leader)

  private appendEntry(type: EntryType, data: Uint8Array): Entry {
    const e: Entry = { term: this.term, index: this.log.lastIndex() + 1, type, data }
    this.log.append([e])
    this.uncommittedBytes += entrySize(e)
    this.pendingBcast = true
    return e
  }

  private bcastAppend(): void {
    this.pendingBcast = false
    for (const id of this.progress.keys()) {
      if (id === this.id) continue
      this.sendAppend(id)
      while (this.sendAppend(id, false)) {}
    }
  }

  private bcastHeartbeat(ctx: string | null): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue
      this.send({
        type: "Heartbeat",
        to: id,
        term: this.term,
        commit: Math.min(pr.match, this.log.committed),
        ctx,
      })
    }
  }

  /** Sends the next append (or snapshot) to `to` unless paused; false if nothing was sent. */
  private sendAppend(to: NodeId, sendIfEmpty = true): boolean {
    const pr = this.progress.get(to)
    if (pr === undefined || pr.isPaused()) return false
    const prevIndex = pr.next - 1
    const prevTerm = this.log.term(prevIndex)
    if (prevTerm === undefined) return this.sendSnapshot(to, pr)
    const last = this.log.lastIndex()
    const ents = pr.next <= last ? this.log.slice(pr.next, last, this.maxMsgEntries, this.maxMsgBytes) : []
    if (ents.length === 0 && !sendIfEmpty) return false
    let bytes = 0
    for (const e of ents) bytes += entrySize(e)
    this.send({
      type: "App",
      to,
      term: this.term,
      prevIndex,
      prevTerm,
      entries: ents,
      commit: this.log.committed,
    })
    pr.sentEntries(ents.length, bytes, prevIndex + ents.length)
    return true
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    // Snapshots are expensive: only to followers that answered recently.
    if (!pr.recentActive || this.log.pendingSnapshot !== null) return false
    const meta = this.log.snapshot
    const data = this.snapshotData(meta)
    if (data === null) return false
    this.send({ type: "Snap", to, term: this.term, snapshot: { meta, data } })
    pr.becomeSnapshot(meta.index)
    return true
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: "TimeoutNow", to, term: this.term })
  }

  /** A voter other than us whose log is complete, preferring one heard from recently. */
  private bestTransferTarget(): NodeId | null {
    let best: NodeId | null = null
    for (const [id, pr] of this.progress) {
      if (id === this.id || !this.config.voters.has(id) || pr.match !== this.log.lastIndex()) continue
      if (best === null || pr.recentActive) best = id
    }
    return best
  }

  private handleAppendResponse(m: AppendResponse): void {
    const pr = this.progress.get(m.from)
    if (pr === undefined) return
    pr.recentActive = true
    if (m.reject) {
      let next = m.hintIndex
      if (m.hintTerm > 0) next = this.log.findConflictByTerm(m.hintIndex, m.hintTerm).index
      if (pr.maybeDecrTo(m.index, next)) {
        if (pr.state === ProgressState.Replicate) pr.becomeProbe()
        this.sendAppend(m.from)
      }
      return
    }
    const oldPaused = pr.isPaused()
    const updated = pr.maybeUpdate(m.index)
    if (!updated && !(pr.state === ProgressState.Probe && pr.match === m.index)) return
    switch (pr.state) {
      case ProgressState.Probe:
        pr.becomeReplicate()
        break
      case ProgressState.Snapshot:
        if (pr.match >= this.log.snapshot.index) {
          pr.becomeProbe()
          pr.becomeReplicate()
        }
        break
      case ProgressState.Replicate:
        pr.inflights.freeLE(m.index)
        break
    }
    if (this.maybeCommit()) {
      this.bcastAppend()
    } else if (oldPaused) {
      this.sendAppend(m.from)
    }
    while (this.sendAppend(m.from, false)) {}
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from)
  }

  private handleHeartbeatResponse(m: HeartbeatResponse): void {
    const pr = this.progress.get(m.from)
    if (pr === undefined) return
    pr.recentActive = true
    pr.probeSent = false
    if (pr.state === ProgressState.Replicate && pr.inflights.full()) pr.inflights.freeFirstOne()
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from)
    if (m.ctx === null) return
    const acks = this.readOnly.recvAck(m.from, m.ctx)
    if (acks === null || !hasQuorum(this.config.voters, (id) => acks.has(id))) return
    for (const r of this.readOnly.advance(m.ctx)) this.respondRead(r.from, r.ctx, r.index)
  }

  /** Commits the quorum's index if it is of the current term (Raft §5.4.2, Figure 8). */
  private maybeCommit(): boolean {
    const ci = committedIndex(this.config.voters, (id) => this.progress.get(id)?.match ?? 0)
    if (ci <= this.log.committed || this.log.term(ci) !== this.term) return false
    this.commitTo(ci)
    if (this.pendingReads.length > 0) {
      const reads = this.pendingReads
      this.pendingReads = []
      for (const r of reads) this.handleReadIndex(r.from, r.ctx)
    }
    return true
  }

  private commitTo(i: number): void {
    if (this.log.commitTo(i)) this.applyCommittedConfChanges()
  }

  /** Configuration changes take effect as their entries become committed, in log order. */
  private applyCommittedConfChanges(): void {
    while (this.confApplied < this.log.committed) {
      const i = ++this.confApplied
      const e = this.log.entry(i)
      if (e === undefined) continue
      if (this.role === Role.Leader) this.uncommittedBytes = Math.max(0, this.uncommittedBytes - entrySize(e))
      if (e.type !== EntryType.ConfChange) continue
      const cc = decodeConfChange(e.data)
      if (cc === null) continue
      // Every replica decides the same way, from the same log: an invalid change is a no-op.
      const r = applyConfChange(this.config, cc)
      if (r.ok) this.setConfig(r.config)
    }
  }

  private setConfig(c: Config): void {
    this.config = c
    if (this.role !== Role.Leader) return
    const next = this.log.lastIndex() + 1
    for (const id of [...c.voters, ...c.learners]) {
      const pr = this.progress.get(id)
      if (pr === undefined) this.addProgress(id, next)
      else pr.isLearner = c.learners.has(id)
    }
    for (const id of [...this.progress.keys()])
      if (id !== this.id && !isMember(c, id)) this.progress.delete(id)
    if (this.leadTransferee !== null && !c.voters.has(this.leadTransferee)) this.leadTransferee = null
    if (!c.voters.has(this.id)) this.removedSelf = true
    // A smaller quorum may already hold more.
    if (this.maybeCommit()) this.bcastAppend()
  }

  // --- follower side

  private handleAppend(m: AppendRequest): void {
    if (m.prevIndex < this.log.committed) {
      this.send({
        type: "AppResp",
        to: m.from,
        term: this.term,
        index: this.log.committed,
        reject: false,
        hintIndex: 0,
        hintTerm: 0,
      })
      return
    }
    if (this.log.matchTerm(m.prevIndex, m.prevTerm)) {
      const ci = this.log.findConflict(m.entries)
      if (ci !== 0 && ci <= this.log.lastIndex()) this.withdrawAcks(ci)
    }
    const lastNew = this.log.maybeAppend(m.prevIndex, m.prevTerm, m.entries)
    if (lastNew !== null) {
      this.commitTo(Math.min(m.commit, lastNew))
      if (
        this.rejoining &&
        this.log.committed >= m.commit &&
        this.log.term(this.log.committed) === this.term
      ) {
        // Caught up by the leader of this term (see the header): lock our vote on it.
        this.rejoining = false
        this.vote = m.from
      }
      this.send({
        type: "AppResp",
        to: m.from,
        term: this.term,
        index: lastNew,
        reject: false,
        hintIndex: 0,
        hintTerm: 0,
      })
      return
    }
    // Fast backtracking: the largest index ≤ min(prevIndex, last) whose term ≤ prevTerm.
    const hint = this.log.findConflictByTerm(Math.min(m.prevIndex, this.log.lastIndex()), m.prevTerm)
    this.send({
      type: "AppResp",
      to: m.from,
      term: this.term,
      index: m.prevIndex,
      reject: true,
      hintIndex: hint.index,
      hintTerm: hint.term,
    })
  }

  private handleHeartbeat(m: Heartbeat): void {
    // m.commit ≤ our match as the leader knows it, so those entries are ours.
    if (m.commit > this.log.committed && m.commit <= this.log.lastIndex()) this.commitTo(m.commit)
    this.send({ type: "HeartbeatResp", to: m.from, term: this.term, ctx: m.ctx })
    // The leader believes we hold m.commit but our log ends below it: it went
    // backwards (wiped or restored data). Say so as a rejection at m.commit, or
    // an idle leader would never notice (progress.ts maybeDecrTo).
    if (m.commit > this.log.lastIndex())
      this.send({
        type: "AppResp",
        to: m.from,
        term: this.term,
        index: m.commit,
        reject: true,
        hintIndex: this.log.lastIndex(),
        hintTerm: this.log.lastTerm(),
      })
  }

  private handleSnapshot(m: SnapshotRequest): void {
    const s = m.snapshot.meta
    if (s.index > this.log.committed && this.restore(m.snapshot)) {
      this.send({
        type: "AppResp",
        to: m.from,
        term: this.term,
        index: this.log.lastIndex(),
        reject: false,
        hintIndex: 0,
        hintTerm: 0,
      })
    } else {
      this.send({
        type: "AppResp",
        to: m.from,
        term: this.term,
        index: this.log.committed,
        reject: false,
        hintIndex: 0,
        hintTerm: 0,
      })
    }
  }

  /**
   * The log is about to lose entries from `from` on (a new leader's conflicting
   * append, or a snapshot replacing everything) before they were persisted:
   * acknowledgements of them still in the outbox would be false once sent.
   */
  private withdrawAcks(from: number): void {
    this.msgs = this.msgs.filter((m) => m.type !== "AppResp" || m.reject || m.index < from)
  }

  /** Installs a snapshot in the log (the driver restores the state machine via Ready). */
  private restore(snap: Snapshot): boolean {
    const s = snap.meta
    if (this.log.matchTerm(s.index, s.term)) {
      // We hold the snapshot's last entry: just fast-forward the commit.
      this.commitTo(s.index)
      return false
    }
    this.withdrawAcks(0)
    this.log.restore(snap)
    this.config = configFromState(s.confState)
    this.confApplied = s.index
    return true
  }

  // --- reads

  private handleReadIndex(from: NodeId, ctx: string): void {
    if (this.config.voters.size === 1 && this.config.voters.has(this.id)) {
      this.respondRead(from, ctx, this.log.committed)
      return
    }
    // Until an entry of this term commits, our commit index may lag the true one.
    if (!this.committedInTerm()) {
      this.pendingReads.push({ from, ctx })
      return
    }
    const req = this.readOnly.add(from, ctx, this.log.committed)
    if (req === null) return
    req.acks.add(this.id)
    this.bcastHeartbeat(req.key)
  }

  private respondRead(from: NodeId, ctx: string, index: number): void {
    if (from === this.id) this.readStates.push({ index, ctx })
    else this.send({ type: "ReadIndexResp", to: from, term: this.term, ctx, index })
  }

  // --- invariants

  private assertInvariants(): void {
    if (!this.debug) return
    this.log.check(++this.checks % 64 === 0)
    const bad = (what: string) => {
      throw new Error(`raft ${this.id} invariant: ${what}`)
    }
    if (this.confApplied !== this.log.committed)
      bad(`config applied ${this.confApplied} ≠ committed ${this.log.committed}`)
    if (this.log.lastTerm() > this.term) bad(`last log term ${this.log.lastTerm()} > term ${this.term}`)
    if (this.halted && this.role !== Role.Follower) bad(`halted ${this.role}`)
    if (this.rejoining && (this.role !== Role.Follower || this.vote !== null))
      bad(`rejoining ${this.role} with vote ${this.vote}`)
    if (this.role === Role.Candidate && this.vote !== this.id) bad("candidate has not voted for itself")
    if (this.role === Role.Leader) {
      if (this.lead !== this.id || this.vote !== this.id) bad("leader without its own vote/lead")
      const ts = this.termStartIndex
      if (ts > this.log.snapshot.index && this.log.term(ts) !== this.term)
        bad(`term start ${this.termStartIndex} not of term ${this.term}`)
      const last = this.log.lastIndex()
      for (const [id, pr] of this.progress) {
        if (!(pr.match < pr.next)) bad(`${id}: match ${pr.match} ≥ next ${pr.next}`)
        if (pr.match > last) bad(`${id}: match ${pr.match} > last ${last}`)
      }
    } else if (this.progress.size > 0) bad("non-leader tracks progress")
  }
}
