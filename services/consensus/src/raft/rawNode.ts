// The driver's interface to the core (etcd's RawNode): feed inputs (step,
// tick, propose, ...), then take a Ready, act on it, and advance().
//
// The driver's duties for one Ready, in this order:
//   1. snapshot: if present, restore the state machine from it, persist it and
//      discard the whole stored log (the snapshot replaces it).
//   2. entries: delete every stored entry with index ≥ entries[0].index (see
//      `truncateFrom`), then write `entries`.
//   3. hardState: persist it — in the same synchronous (fsync'd) batch as 1 and 2.
//   4. only then send `messages` (votes and acknowledgements depend on what was
//      just persisted), and advance(ready). Exception: when
//      `messagesBeforePersist` is set (a leader's appends and heartbeats), the
//      driver may send them before or while it persists (Raft thesis §10.2.1).
//      That is safe because the leader counts its own copy toward commit only
//      at advance(), after its write: a commit still needs a majority of
//      durable copies, and entries a follower got from a leader that crashed
//      before writing them are an ordinary uncommitted suffix of its term.
//   5. apply `committedEntries` in order, at its own pace (apply may lag),
//      reporting durable progress with appliedTo(); serve `readStates` once
//      applied ≥ their index.
// Stepping other inputs between ready() and advance() is fine; calling ready()
// again before advance() is not.
//
// Other duties:
//   - tick() at a fixed interval; route messages to step() by `to`.
//   - A Snap message carries SnapshotMeta and whatever `snapshotData(meta)`
//     returned; the driver streams the real files beside it and steps the message
//     into the receiver only once they are all there. The sender must then call
//     reportSnapshot(to, ok) when the stream ends, either way (otherwise that
//     follower waits for a snapshot forever).
//   - After taking a state-machine snapshot at index i (≤ applied), call compact(i, confState).
//   - A ProposalAccepted (index, term) identifies the entry: when an entry is
//     applied at that index with another term, the proposal was lost.
//   - readIndex ctx values must be unique among a node's pending reads; a read
//     may get no answer at all (leader change): time it out and retry.
//   - A halted driver that dropped the entries it was handed calls rewindApply()
//     when it resumes.

import { type ConfChange, encodeConfChange } from "./confChange.ts"
import {
  type CommandResult,
  type PersistedState,
  type ProposeOptions,
  type ProposeResult,
  Raft,
  type RaftOptions,
} from "./raft.ts"
import type {
  ConfState,
  Entry,
  HardState,
  Message,
  NodeId,
  ReadState,
  Snapshot,
  SnapshotMeta,
  SoftState,
} from "./types.ts"
import { Role } from "./types.ts"

export interface Ready {
  /** Persist when non-null (changed since the last Ready). */
  readonly hardState: HardState | null
  /** Persist, first deleting stored entries with index ≥ entries[0].index. */
  readonly entries: readonly Entry[]
  /**
   * Non-null when `entries` replace entries this node already persisted (a new
   * leader overwrote an uncommitted suffix): stored entries from this index on
   * must go. (Deleting from entries[0].index is always right; this says when it matters.)
   */
  readonly truncateFrom: number | null
  /** Install when non-null (see above); the core counts it installed at advance(). */
  readonly snapshot: Snapshot | null
  /** Send after persisting (or before, when `messagesBeforePersist`). */
  readonly messages: readonly Message[]
  /**
   * Every message may be sent before 1–3 are persisted: this node leads, the
   * Ready changes no term, vote or rejoining flag and installs no snapshot,
   * and the messages are only appends and heartbeats.
   */
  readonly messagesBeforePersist: boolean
  /** Apply in order (all are persisted locally and committed). */
  readonly committedEntries: readonly Entry[]
  readonly readStates: readonly ReadState[]
  /** Non-null when leader/role/term changed. */
  readonly softState: SoftState | null
  /** Whether 1–3 require an fsync (anything durable changed). */
  readonly mustSync: boolean
}

export interface Status {
  readonly id: NodeId
  readonly hardState: HardState
  readonly softState: SoftState
  readonly applied: number
  readonly lastIndex: number
  readonly firstIndex: number
  readonly confState: ConfState
  readonly halted: boolean
  readonly leadTransferee: NodeId | null
  /** Leader only: each member's acknowledged index. */
  readonly progress: ReadonlyMap<
    NodeId,
    { readonly match: number; readonly next: number; readonly state: string; readonly recentActive: boolean }
  >
}

export type RawNodeOptions = RaftOptions

const sameHardState = (a: HardState, b: HardState): boolean =>
  a.term === b.term &&
  a.vote === b.vote &&
  a.commit === b.commit &&
  (a.rejoining === true) === (b.rejoining === true)

const sameSoftState = (a: SoftState, b: SoftState): boolean =>
  a.leader === b.leader && a.role === b.role && a.term === b.term

export class RawNode {
  /** The state machine; exposed read-only for tests and the simulation. */
  readonly raft: Raft
  private prevHardState: HardState
  private prevSoftState: SoftState
  private outstanding: Ready | null = null
  /** Highest log index the driver has persisted, as far as the Readies it acknowledged tell. */
  private persistedLast: number

  constructor(opts: RawNodeOptions) {
    this.raft = new Raft(opts)
    this.prevHardState = opts.storage.hardState
    this.prevSoftState = this.raft.softState()
    this.persistedLast = this.raft.log.lastIndex()
  }

  get id(): NodeId {
    return this.raft.id
  }

  tick(): void {
    this.raft.tick()
  }

  step(m: Message): void {
    this.raft.step(m)
  }

  propose(data: Uint8Array, opts?: ProposeOptions): ProposeResult {
    return this.raft.propose(data, opts)
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    return this.raft.proposeConfChange(cc)
  }

  readIndex(ctx: string): CommandResult {
    return this.raft.readIndex(ctx)
  }

  transferLeader(to: NodeId): CommandResult {
    return this.raft.transferLeader(to)
  }

  campaign(): CommandResult {
    return this.raft.campaign()
  }

  setHalted(halted: boolean): void {
    this.raft.setHalted(halted)
  }

  /** The state machine durably applied everything through `index` (apply may lag commit). */
  appliedTo(index: number): void {
    this.raft.appliedTo(index)
  }

  /**
   * Forget that committed entries after `applied` were handed out, so the next
   * Readies carry them again (a halted node resuming at its first unapplied entry, SPEC §2.2).
   */
  rewindApply(): void {
    this.raft.rewindApply()
  }

  /** The driver took a snapshot at `index` (≤ applied) whose configuration is `confState`: drop the log up to it. */
  compact(index: number, confState: ConfState): void {
    this.raft.compact(index, confState)
  }

  reportSnapshot(to: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(to, ok)
  }

  reportUnreachable(to: NodeId): void {
    this.raft.reportUnreachable(to)
  }

  hasReady(): boolean {
    if (this.outstanding !== null) return false
    const r = this.raft
    return (
      r.msgs.length > 0 ||
      r.readStates.length > 0 ||
      r.hasPendingBroadcast() ||
      r.log.pendingSnapshot !== null ||
      r.log.stable < r.log.lastIndex() ||
      !sameHardState(r.hardState(), this.prevHardState) ||
      !sameSoftState(r.softState(), this.prevSoftState) ||
      (r.log.hasNextCommittedEntries() && this.applyWindow() > 0)
    )
  }

  private applyWindow(): number {
    const l = this.raft.log
    return this.raft.maxApplyingEntries - (l.applying - l.applied)
  }

  ready(): Ready {
    if (this.outstanding !== null) throw new Error("raft: ready() called again before advance()")
    const r = this.raft
    r.flushProposals()
    const hs = r.hardState()
    const ss = r.softState()
    const snapshot = r.log.pendingSnapshot
    const entries = r.log.unstableEntries()
    const committedEntries = r.log.nextCommittedEntries(r.maxCommittedBytesPerReady, this.applyWindow())
    if (committedEntries.length > 0) r.log.applying = committedEntries[committedEntries.length - 1]!.index
    const hardState = sameHardState(hs, this.prevHardState) ? null : hs
    const electionStateChanged =
      hardState !== null &&
      (hardState.term !== this.prevHardState.term ||
        hardState.vote !== this.prevHardState.vote ||
        (hardState.rejoining === true) !== (this.prevHardState.rejoining === true))
    const rd: Ready = {
      hardState,
      entries,
      // (A snapshot in the same Ready replaces the whole stored log first.)
      truncateFrom:
        entries.length > 0 && entries[0]!.index <= (snapshot?.meta.index ?? this.persistedLast)
          ? entries[0]!.index
          : null,
      snapshot,
      messages: r.msgs,
      messagesBeforePersist:
        r.role === Role.Leader &&
        snapshot === null &&
        !electionStateChanged &&
        r.msgs.every((m) => m.type === "App" || m.type === "Heartbeat"),
      committedEntries,
      readStates: r.readStates,
      softState: sameSoftState(ss, this.prevSoftState) ? null : ss,
      mustSync: snapshot !== null || entries.length > 0 || electionStateChanged,
    }
    r.msgs = []
    r.readStates = []
    this.prevSoftState = ss
    this.outstanding = rd
    return rd
  }

  /** Everything in `rd` was persisted (and its snapshot installed); its messages were handed to the transport. */
  advance(rd: Ready): void {
    if (rd !== this.outstanding)
      throw new Error("raft: advance() with a Ready that is not the outstanding one")
    this.outstanding = null
    if (rd.hardState !== null) this.prevHardState = rd.hardState
    if (rd.snapshot !== null) {
      this.raft.snapshotInstalled(rd.snapshot.meta)
      this.persistedLast = rd.snapshot.meta.index
    }
    const last = rd.entries[rd.entries.length - 1]
    if (last !== undefined) {
      this.persistedLast = last.index
      this.raft.stableTo(last.index, last.term)
    }
  }

  status(): Status {
    const r = this.raft
    const progress = new Map<NodeId, { match: number; next: number; state: string; recentActive: boolean }>()
    for (const [id, pr] of r.progress)
      progress.set(id, { match: pr.match, next: pr.next, state: pr.state, recentActive: pr.recentActive })
    return {
      id: r.id,
      hardState: r.hardState(),
      softState: r.softState(),
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      firstIndex: r.log.firstIndex(),
      confState: { voters: [...r.config.voters].sort(), learners: [...r.config.learners].sort() },
      halted: r.halted,
      leadTransferee: r.leadTransferee,
      progress,
    }
  }
}

/** The persisted state every founding member of a new cluster starts from (identical on each). */
export const bootstrapState = (voters: readonly NodeId[]): PersistedState => {
  const cc: ConfChange = { type: "Bootstrap", voters: [...voters].sort() }
  const entry: Entry = { term: 1, index: 1, type: "ConfChange", data: encodeConfChange(cc) }
  return {
    hardState: { term: 1, vote: null, commit: 1 },
    snapshotMeta: emptySnapshotMeta,
    entries: [entry],
    applied: 0,
  }
}

/** The persisted state of a node joining an existing cluster (it learns everything from the leader). */
export const emptyState = (): PersistedState => ({
  hardState: { term: 0, vote: null, commit: 0 },
  snapshotMeta: emptySnapshotMeta,
  entries: [],
  applied: 0,
})

export const emptySnapshotMeta: SnapshotMeta = { index: 0, term: 0, confState: { voters: [], learners: [] } }
