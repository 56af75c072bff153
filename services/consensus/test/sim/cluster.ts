// Deterministic simulation of a Raft cluster driving the pure core: a seeded
// scheduler picks every event (deliver, drop, duplicate, reorder, tick,
// persist, apply, crash, restart, partition, halt, membership change, leader
// transfer, snapshot, read; in some seeds, wiping a node's durable state), and
// every safety property is checked after every event.
//
// Wipes are scoped to what ekv claims (raft.ts "Rejoining", storage.ts,
// docs/operations.md): one node at a time loses everything and restarts the
// way storage.ts starts it after asking its peers — rejoining at the highest
// term the live peers hold when any of them shows a cluster exists (term or
// commit index above 1), else afresh. A wipe happens only while, in every
// configuration any node holds (and with no change in flight), the other voters alone can form a quorum and
// enough of them are live that every quorum the wiped node was part of has a
// live member besides it (so its votes and acknowledgements are covered by
// the peers' answers); and no membership change is proposed while a node
// rejoins (a rejoining voter cannot vote: a configuration that needs it for
// every quorum would stall). Outside that scope the residual risks of
// docs/operations.md apply. Within it, every safety check below still holds. A failure names the seed, the invariant and the recent decisions;
// replaying the seed replays the run exactly.

import { applyConfChangeToState, decodeConfChange } from "../../src/raft/confChange.ts"
import type { ProposeResult } from "../../src/raft/raft.ts"
import { bootstrapState, emptyState, RawNode, type Ready } from "../../src/raft/rawNode.ts"
import {
  type ConfState,
  type Entry,
  EntryType,
  type HardState,
  type Message,
  type NodeId,
  Role,
  type Snapshot,
} from "../../src/raft/types.ts"
import { Prng } from "./prng.ts"

export interface SimOptions {
  readonly seed: number
  /** Founding voters: 3 or 5. */
  readonly nodes: number
  /** Start with one extra learner. */
  readonly learner: boolean
  /** Scheduler decisions in the faulty phase. */
  readonly steps: number
  /** Keep the whole trace (else only the last decisions). */
  readonly trace: boolean
  /** Ticks allowed after healing for a fresh proposal to reach every member. */
  readonly livenessTicks: number
  /** Some faults wipe a node's durable state (it rejoins, see above). */
  readonly wipes?: boolean
}

export class SimFailure extends Error {
  readonly seed: number
  readonly invariant: string
  readonly trace: readonly string[]
  constructor(seed: number, invariant: string, trace: readonly string[]) {
    super(`seed ${seed}: ${invariant}`)
    this.seed = seed
    this.invariant = invariant
    this.trace = trace
  }
}

export interface SimStats {
  steps: number
  ticks: number
  leaders: number
  commits: number
  applied: number
  snapshotsInstalled: number
  compactions: number
  confChanges: number
  transfers: number
  readsServed: number
  crashes: number
  halts: number
  partitions: number
  proposalsAccepted: number
  barrierRefusals: number
  wipes: number
  /** Leaders that crashed after sending a Ready's appends and before writing them. */
  earlySendCrashes: number
}

/** What survives a crash. */
interface Durable {
  hardState: HardState
  snapshot: Snapshot
  /** Entries after snapshot.meta.index. */
  entries: Entry[]
  /** The state machine: applied index, running hash and configuration, written atomically per entry. */
  sm: SmState
}

interface SmState {
  applied: number
  hash: number
  confState: ConfState
}

interface PendingRead {
  readonly ctx: string
  /** Highest commit index any node knew when the read started. */
  readonly minIndex: number
}

class SimNode {
  readonly id: NodeId
  readonly durable: Durable
  rn: RawNode | null = null
  applyQueue: Entry[] = []
  halted = false
  haltUntil = 0
  restartAt = 0
  /** Volatile checker bookkeeping. */
  recordedCommit = 0
  leaderTermChecked = -1
  leaderStartCommit = -1
  readonly reads = new Map<string, PendingRead>()

  constructor(id: NodeId, durable: Durable) {
    this.id = id
    this.durable = durable
  }
}

type ProposalDropped = Extract<ProposeResult, { _tag: "ProposalDropped" }>

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const emptyCs: ConfState = { voters: [], learners: [] }

const fnv = (h: number, n: number): number => Math.imul(h ^ n, 16777619) >>> 0

const hashEntry = (h: number, e: Entry): number => {
  let x = fnv(fnv(fnv(h, e.index), e.term), e.type.length)
  for (let i = 0; i < e.data.length; i++) x = fnv(x, e.data[i]!)
  return x
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a === b) return true
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const sameEntry = (a: Entry, b: Entry): boolean =>
  a === b || (a.index === b.index && a.term === b.term && a.type === b.type && sameBytes(a.data, b.data))

const describe = (m: Message): string => {
  const base = `${m.from}>${m.to} ${m.type} t${m.term}`
  switch (m.type) {
    case "App":
      return `${base} prev=${m.prevIndex}/${m.prevTerm} n=${m.entries.length} c=${m.commit}`
    case "AppResp":
      return `${base} i=${m.index}${m.reject ? ` rej hint=${m.hintIndex}/${m.hintTerm}` : ""}`
    case "PreVote":
    case "Vote":
      return `${base} last=${m.lastIndex}/${m.lastTerm}${m.force ? " force" : ""}`
    case "PreVoteResp":
    case "VoteResp":
      return `${base}${m.reject ? " rej" : " ok"}`
    case "Snap":
      return `${base} snap=${m.snapshot.meta.index}/${m.snapshot.meta.term}`
    case "Heartbeat":
      return `${base} c=${m.commit}`
    default:
      return base
  }
}

export class Simulation {
  readonly o: SimOptions
  readonly rng: Prng
  readonly nodes = new Map<NodeId, SimNode>()
  private net: Message[] = []
  /** Directed links that drop everything ("a>b"). */
  private blocked = new Set<string>()
  private now = 0
  private step = 0
  private nextNodeNo: number
  private readCounter = 0
  private proposalCounter = 0
  private healed = false
  private dropRate: number
  private dupRate: number
  private reorderRate: number
  private faultRate: number
  private maxMsgEntries: number
  private maxInflight: number
  private maxInflightBytes: number
  private preVote: boolean
  private checkQuorum: boolean
  private readonly traceLog: string[] = []

  // --- global truth for the checks
  private readonly leaderOfTerm = new Map<number, NodeId>()
  /** Entries known committed, by index. */
  private readonly committed: (Entry | undefined)[] = []
  private commitMax = 0
  /** Entries applied by anyone, by index, and the state-machine hash after each. */
  private readonly appliedAt: (Entry | undefined)[] = []
  private readonly hashAt: (number | undefined)[] = []
  /** (index, term) → the entry and the term before it, for log matching. */
  private readonly logRegistry = new Map<number, { entry: Entry; prevTerm: number }>()

  readonly stats: SimStats = {
    steps: 0,
    ticks: 0,
    leaders: 0,
    commits: 0,
    applied: 0,
    snapshotsInstalled: 0,
    compactions: 0,
    confChanges: 0,
    transfers: 0,
    readsServed: 0,
    crashes: 0,
    halts: 0,
    partitions: 0,
    proposalsAccepted: 0,
    barrierRefusals: 0,
    wipes: 0,
    earlySendCrashes: 0,
  }

  constructor(o: SimOptions) {
    this.o = o
    this.rng = new Prng(o.seed)
    this.dropRate = this.rng.pick([0, 0.02, 0.05, 0.15])
    this.dupRate = this.rng.pick([0, 0.02, 0.05])
    this.reorderRate = this.rng.pick([0.02, 0.1, 0.5, 1])
    this.faultRate = this.rng.pick([0.01, 0.02, 0.04])
    this.maxMsgEntries = this.rng.pick([1, 2, 4, 16])
    this.maxInflight = this.rng.pick([1, 2, 4, 8])
    this.maxInflightBytes = this.rng.pick([0, 0, 120])
    // Mostly the production setting; sometimes without pre-vote or check-quorum (safety must not depend on them).
    this.preVote = !this.rng.chance(0.1)
    this.checkQuorum = !this.rng.chance(0.1)
    const voters = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`)
    this.founders = voters
    this.nextNodeNo = o.nodes + 1
    for (const id of voters) {
      const s = bootstrapState(voters)
      this.addNode(id, {
        hardState: s.hardState,
        snapshot: { meta: s.snapshotMeta, data: new Uint8Array(0) },
        entries: [...s.entries],
        sm: { applied: 0, hash: 0, confState: emptyCs },
      })
    }
    if (o.learner) this.pendingLearner = `n${this.nextNodeNo++}`
  }

  /** A learner to add once the cluster has a leader. */
  private pendingLearner: NodeId | null = null
  /** EKV_PEERS: the founding voters (a wiped founder may bootstrap with them). */
  private founders: readonly NodeId[] = []

  private addNode(id: NodeId, d: Durable): SimNode {
    const n = new SimNode(id, d)
    this.nodes.set(id, n)
    this.start(n)
    return n
  }

  private start(n: SimNode): void {
    const d = n.durable
    const rng = this.rng.fork()
    n.rn = new RawNode({
      id: n.id,
      electionTick: 10,
      heartbeatTick: 2,
      random: () => rng.next(),
      storage: {
        hardState: d.hardState,
        snapshotMeta: d.snapshot.meta,
        entries: d.entries,
        applied: d.sm.applied,
      },
      snapshotData: (meta) => (n.durable.snapshot.meta.index === meta.index ? n.durable.snapshot.data : null),
      maxMsgEntries: this.maxMsgEntries,
      maxMsgBytes: 256,
      maxInflightMsgs: this.maxInflight,
      maxInflightBytes: this.maxInflightBytes,
      preVote: this.preVote,
      checkQuorum: this.checkQuorum,
      maxUncommittedBytes: 4096,
      maxApplyingEntries: 16,
      maxCommittedBytesPerReady: 512,
      debug: true,
    })
    n.applyQueue = []
    n.recordedCommit = d.snapshot.meta.index
    n.leaderTermChecked = -1
    n.reads.clear()
    if (n.halted) n.rn.setHalted(true)
  }

  // ------------------------------------------------------------------ running

  run(): SimStats {
    for (this.step = 0; this.step < this.o.steps; this.step++) {
      this.event(true)
      this.check()
      this.scheduledCrash()
    }
    this.heal()
    this.liveness()
    this.stats.steps = this.step
    return this.stats
  }

  private trace(s: string): void {
    this.traceLog.push(`${this.step}@${this.now} ${s}`)
    if (!this.o.trace && this.traceLog.length > 400) this.traceLog.splice(0, 200)
  }

  traceLines(): readonly string[] {
    return this.traceLog
  }

  fail(what: string): never {
    throw new SimFailure(
      this.o.seed,
      `step ${this.step}: ${what}`,
      this.traceLog.slice(this.o.trace ? 0 : -120),
    )
  }

  private live(): SimNode[] {
    const out: SimNode[] = []
    for (const n of this.nodes.values()) if (n.rn !== null) out.push(n)
    return out
  }

  private leader(): SimNode | null {
    let best: SimNode | null = null
    for (const n of this.nodes.values()) {
      const r = n.rn?.raft
      if (r !== undefined && r.role === Role.Leader && (best === null || r.term > best.rn!.raft.term))
        best = n
    }
    return best
  }

  private event(faults: boolean): void {
    this.chooseEvent(faults)()
  }

  /** One scheduler decision: which event happens next. */
  private chooseEvent(faults: boolean): () => void {
    if (faults && this.rng.chance(this.faultRate)) return this.chooseFault()
    const r = this.rng.next()
    const pDeliver = Math.min(0.75, 0.25 + 0.02 * this.net.length)
    if (this.net.length > 0 && r < pDeliver) return () => this.deliver(faults)
    // Time passes more slowly (in events) for bigger clusters, which have more to do per tick.
    if (this.rng.chance(0.45 / this.nodes.size)) return () => this.tickAll()
    const r2 = this.rng.next()
    if (r2 < 0.5) return () => this.readyAny()
    if (r2 < 0.72) return () => this.applyAny()
    // After healing only the liveness marker is proposed, so the backlog is finite.
    if (r2 < 0.9) return faults ? () => this.clientPropose() : () => this.readyAny()
    return () => this.startRead()
  }

  private chooseFault(): () => void {
    // (Seeds without wipes draw nothing here, so their schedules are unchanged.)
    if (this.o.wipes === true && this.rng.chance(0.08)) return () => this.wipe()
    const r = this.rng.next()
    if (r < 0.08) return () => this.crash()
    if (r < 0.14) return () => this.bounce()
    if (r < 0.3) return () => this.restart()
    if (r < 0.37) return () => this.partition()
    if (r < 0.48) return () => this.healPartition()
    if (r < 0.55) return () => this.halt()
    if (r < 0.68) return () => this.confChange()
    if (r < 0.76) return () => this.transfer()
    if (r < 0.9) return () => this.compactAny()
    return () => this.campaignAny()
  }

  // --- network

  private deliver(faults: boolean): void {
    // Links are mostly FIFO (a stream per peer) but sometimes reorder.
    let i = this.rng.int(this.net.length)
    if (!this.rng.chance(this.reorderRate)) {
      const { from, to } = this.net[i]!
      i = this.net.findIndex((x) => x.from === from && x.to === to)
    }
    const m = this.net[i]!
    const dup = faults && this.rng.chance(this.dupRate)
    if (!dup) this.net.splice(i, 1)
    const to = this.nodes.get(m.to)
    const blocked = this.blocked.has(`${m.from}>${m.to}`)
    if (to?.rn == null || blocked || (faults && this.rng.chance(this.dropRate))) {
      this.trace(`drop ${describe(m)}`)
      const from = this.nodes.get(m.from)?.rn
      if (m.type === "Snap") from?.reportSnapshot(m.to, false)
      // A transport that notices a dead link says so.
      else if (blocked && from != null && this.rng.chance(0.3)) from.reportUnreachable(m.to)
      return
    }
    this.trace(`${dup ? "dup " : ""}deliver ${describe(m)}`)
    to.rn.step(m)
    // The transport reports the end of a snapshot stream to the sender (as a real driver must).
    if (m.type === "Snap") this.nodes.get(m.from)?.rn?.reportSnapshot(m.to, true)
  }

  // --- persistence and apply

  private readyAny(): void {
    const ready = this.live().filter((n) => n.rn!.hasReady())
    if (ready.length === 0) return
    this.processReady(this.rng.pick(ready))
  }

  private processReady(n: SimNode): void {
    const rn = n.rn!
    const rd = rn.ready()
    this.trace(
      `ready ${n.id}${rd.snapshot ? ` snap=${rd.snapshot.meta.index}` : ""} ents=${rd.entries.length ? `${rd.entries[0]!.index}..${rd.entries[rd.entries.length - 1]!.index}` : "-"}${rd.hardState ? ` hs=${rd.hardState.term}/${rd.hardState.vote}/${rd.hardState.commit}` : ""} msgs=${rd.messages.length} apply=${rd.committedEntries.length}`,
    )
    const d = n.durable
    // A leader's appends and heartbeats may go out before its own write (as the
    // driver sends them): half the time here, and sometimes it crashes right
    // after, so followers hold entries their leader never wrote.
    const early = rd.messagesBeforePersist && this.rng.chance(0.5)
    if (early) {
      this.checkDurableBeforeSend(n, rd.messages)
      for (const m of rd.messages) this.net.push(m)
      if (!this.healed && this.rng.chance(0.004)) {
        this.trace(`crash-after-early-send ${n.id}`)
        this.stats.earlySendCrashes++
        this.crashNode(n)
        return
      }
    }
    if (rd.snapshot !== null) this.installSnapshot(n, rd.snapshot)
    if (rd.entries.length > 0) {
      const stored = d.snapshot.meta.index + d.entries.length
      const first = rd.entries[0]!.index
      if (rd.truncateFrom !== (first <= stored ? first : null))
        this.fail(`${n.id}: truncateFrom ${rd.truncateFrom} with entries from ${first} over ${stored} stored`)
      this.persistEntries(n, rd.entries)
    }
    if (rd.hardState !== null) d.hardState = rd.hardState
    // A crash between the fsync and the sends.
    if (!this.healed && this.rng.chance(0.002)) {
      this.trace(`crash-after-persist ${n.id}`)
      this.crashNode(n)
      return
    }
    if (!early) {
      this.checkDurableBeforeSend(n, rd.messages)
      for (const m of rd.messages) this.net.push(m)
    }
    n.applyQueue.push(...rd.committedEntries)
    this.checkReadStates(n, rd)
    rn.advance(rd)
  }

  /** Nothing a message promises may run ahead of what is on disk (term, vote, acknowledged entries). */
  private checkDurableBeforeSend(n: SimNode, msgs: readonly Message[]): void {
    const d = n.durable
    const hs = d.hardState
    const last = d.snapshot.meta.index + d.entries.length
    for (const m of msgs) {
      if (m.type !== "PreVote" && m.type !== "PreVoteResp" && m.term > hs.term)
        this.fail(`durability: ${n.id} sends ${m.type} at term ${m.term} with term ${hs.term} on disk`)
      // (A later term on disk also rules out voting again in an earlier one.)
      if (m.type === "VoteResp" && !m.reject && hs.term === m.term && hs.vote !== m.to)
        this.fail(
          `durability: ${n.id} grants its vote to ${m.to} in term ${m.term}, disk says ${hs.term}/${hs.vote}`,
        )
      if (m.type === "Vote" && hs.term === m.term && hs.vote !== n.id)
        this.fail(`durability: ${n.id} campaigns in term ${m.term}, disk says ${hs.term}/${hs.vote}`)
      if (m.type === "AppResp" && !m.reject) {
        if (m.index > last) this.fail(`durability: ${n.id} acknowledges ${m.index} with ${last} on disk`)
        // An acknowledgement says "my log matches yours through index": check it against
        // the leader's log while that leader still leads its term (its log only grows then).
        const l = this.nodes.get(m.to)?.rn?.raft
        const mine = d.entries[m.index - d.snapshot.meta.index - 1]
        const theirs =
          l !== undefined && l.role === Role.Leader && l.term === m.term ? l.log.entry(m.index) : undefined
        if (mine !== undefined && theirs !== undefined && !sameEntry(mine, theirs))
          this.fail(
            `${n.id} acknowledges ${m.index} to ${m.to} but holds ${mine.index}/${mine.term}, not ${theirs.term}`,
          )
      }
    }
  }

  private installSnapshot(n: SimNode, s: Snapshot): void {
    const d = n.durable
    const st = JSON.parse(decoder.decode(s.data)) as { hash: number }
    if (s.meta.index <= d.sm.applied)
      this.fail(`${n.id} handed snapshot ${s.meta.index} ≤ applied ${d.sm.applied}`)
    const known = this.hashAt[s.meta.index]
    if (known !== undefined && known !== st.hash)
      this.fail(`${n.id} snapshot ${s.meta.index} has a diverging state`)
    d.snapshot = s
    d.entries = []
    d.sm = { applied: s.meta.index, hash: st.hash, confState: s.meta.confState }
    n.applyQueue = []
    this.stats.snapshotsInstalled++
  }

  private persistEntries(n: SimNode, ents: readonly Entry[]): void {
    const d = n.durable
    const off = d.snapshot.meta.index
    const first = ents[0]!.index
    if (first <= off || first > off + d.entries.length + 1)
      this.fail(`${n.id} persists ${first} outside (${off}, ${off + d.entries.length + 1}]`)
    // Durability of commits: a node never drops a committed entry it holds.
    for (let k = first - off - 1; k < d.entries.length; k++) {
      const old = d.entries[k]!
      const c = this.committed[old.index]
      const repl = ents[old.index - first]
      if (c !== undefined && sameEntry(c, old) && (repl === undefined || !sameEntry(repl, old)))
        this.fail(`committed entry ${old.index}/${old.term} truncated on ${n.id}`)
    }
    d.entries.length = first - off - 1
    let prevTerm = first - 1 === off ? d.snapshot.meta.term : d.entries[first - off - 2]!.term
    for (const e of ents) {
      // Log matching: one (index, term) names one entry, with one predecessor term.
      const key = e.index * 100000 + e.term
      const seen = this.logRegistry.get(key)
      if (seen === undefined) this.logRegistry.set(key, { entry: e, prevTerm })
      else if (!sameEntry(seen.entry, e) || seen.prevTerm !== prevTerm)
        this.fail(`log matching: ${n.id} has a different entry at ${e.index}/${e.term}`)
      d.entries.push(e)
      prevTerm = e.term
    }
  }

  private applyAny(): void {
    const cands = this.live().filter((n) => n.applyQueue.length > 0 && !n.halted)
    if (cands.length === 0) return
    const n = this.rng.pick(cands)
    this.applySome(n, 1 + this.rng.int(6))
  }

  private applySome(n: SimNode, k: number): void {
    const sm = n.durable.sm
    let count = 0
    while (count < k && n.applyQueue.length > 0) {
      const e = n.applyQueue.shift()!
      if (e.index !== sm.applied + 1) this.fail(`${n.id} applies ${e.index} after ${sm.applied}`)
      if (e.index > n.rn!.raft.log.committed) this.fail(`${n.id} applies uncommitted ${e.index}`)
      const other = this.appliedAt[e.index]
      if (other === undefined) this.appliedAt[e.index] = e
      else if (!sameEntry(other, e))
        this.fail(`state machine safety: ${n.id} applies a different entry at ${e.index}`)
      sm.hash = hashEntry(sm.hash, e)
      sm.applied = e.index
      if (e.type === EntryType.ConfChange) {
        const cc = decodeConfChange(e.data)
        const r = cc === null ? null : applyConfChangeToState(sm.confState, cc)
        if (r?.ok) sm.confState = r.confState
      }
      const h = this.hashAt[e.index]
      if (h === undefined) this.hashAt[e.index] = sm.hash
      else if (h !== sm.hash) this.fail(`state machine safety: ${n.id} state diverges at ${e.index}`)
      this.stats.applied++
      count++
    }
    this.trace(`apply ${n.id} →${sm.applied}`)
    n.rn!.appliedTo(sm.applied)
  }

  // --- time

  private tickAll(): void {
    this.now++
    this.stats.ticks++
    this.trace("tick")
    for (const n of this.live()) {
      if (n.halted && this.now >= n.haltUntil) {
        n.halted = false
        n.rn!.setHalted(false)
        // Sometimes the driver dropped what it was handed while halted and asks again.
        const rewind = this.rng.chance(0.5)
        if (rewind) {
          n.applyQueue = []
          n.rn!.rewindApply()
        }
        this.trace(`unhalt ${n.id}${rewind ? " (rewind apply)" : ""}`)
      }
      // Clocks drift: sometimes a node misses a tick or takes two.
      const r = this.rng.next()
      if (r < 0.05) continue
      n.rn!.tick()
      if (r > 0.95) n.rn!.tick()
    }
  }

  // --- clients

  private clientPropose(): void {
    const live = this.live()
    if (live.length === 0) return
    const n = this.rng.pick(live)
    const data = encoder.encode(`p${this.proposalCounter++}`)
    const bypass = !this.healed && this.rng.chance(0.1)
    const res = this.proposeAt(n, data, bypass)
    // A driver forwards to the leader it was told about.
    if (res !== null && res.reason === "NotLeader" && res.leader !== null) {
      const l = this.nodes.get(res.leader)
      if (l?.rn != null) this.proposeAt(l, data, bypass)
    }
  }

  /** Proposes; returns null when accepted, else the refusal. */
  private proposeAt(n: SimNode, data: Uint8Array, bypass: boolean): ProposalDropped | null {
    const r = n.rn!.raft
    const res = n.rn!.propose(data, { bypassApplyBarrier: bypass })
    this.trace(
      `propose ${n.id}${bypass ? " bypass" : ""} → ${res._tag === "ProposalAccepted" ? res.index : res.reason}`,
    )
    if (res._tag !== "ProposalAccepted") {
      if (res.reason === "ApplyBarrier") this.stats.barrierRefusals++
      return res
    }
    this.stats.proposalsAccepted++
    if (!bypass) {
      // SPEC §2: a leader accepts proposals only after applying its first entry of the term.
      // (When the log is compacted into this term, the Empty entry was applied before the snapshot.)
      const first =
        r.log.snapshot.term >= r.term ? 0 : r.log.findConflictByTerm(r.log.lastIndex(), r.term - 1).index + 1
      const e = r.log.entry(first)
      if (first > 0 && (e === undefined || e.term !== r.term || e.type !== EntryType.Empty))
        this.fail(`${n.id}'s first entry of term ${r.term} at ${first} is not its Empty entry`)
      if (n.durable.sm.applied < first)
        this.fail(
          `apply barrier: ${n.id} accepted a proposal with applied ${n.durable.sm.applied} < ${first}`,
        )
    }
    return null
  }

  private startRead(): void {
    const live = this.live()
    if (live.length === 0) return
    const n = this.rng.pick(live)
    const ctx = `r${this.readCounter++}`
    const res = n.rn!.readIndex(ctx)
    this.trace(`read ${n.id} ${ctx} → ${res.ok ? "ok" : res.reason}`)
    if (res.ok) n.reads.set(ctx, { ctx, minIndex: this.commitMax })
  }

  private checkReadStates(n: SimNode, rd: Ready): void {
    for (const rs of rd.readStates) {
      const p = n.reads.get(rs.ctx)
      // Unknown: answered already (a duplicated response) or started before a restart.
      if (p === undefined) continue
      n.reads.delete(rs.ctx)
      // Linearizability: everything committed before the read started is visible at its index.
      if (rs.index < p.minIndex) this.fail(`read ${rs.ctx} at ${rs.index} misses commit ${p.minIndex}`)
      this.stats.readsServed++
    }
  }

  // --- faults

  private crash(): void {
    const live = this.live()
    if (live.length === 0) return
    // Leaders are the interesting victims: half the time, crash the leader.
    const l = this.leader()
    this.crashNode(l !== null && this.rng.chance(0.5) ? l : this.rng.pick(live))
  }

  private leaderCrash: { id: NodeId; at: number } | null = null

  private scheduledCrash(): void {
    for (const n of this.nodes.values()) {
      if (n.rn === null && n.restartAt <= this.step) {
        this.trace(`restart ${n.id}`)
        this.start(n)
      }
    }
    const c = this.leaderCrash
    if (c === null || this.step < c.at) return
    this.leaderCrash = null
    const n = this.nodes.get(c.id)!
    if (n.rn?.raft.role === Role.Leader) this.crashNode(n)
  }

  /** A process bounce: crash and restart at once, preferring a node in the middle of an election. */
  private bounce(): void {
    const live = this.live()
    if (live.length === 0) return
    const voting = live.filter((n) => n.rn!.raft.vote !== null && n.rn!.raft.lead === null)
    const n = voting.length > 0 && this.rng.chance(0.7) ? this.rng.pick(voting) : this.rng.pick(live)
    this.crashNode(n)
    this.trace(`restart ${n.id}`)
    this.start(n)
  }

  private crashNode(n: SimNode): void {
    this.trace(`crash ${n.id}`)
    n.rn = null
    n.applyQueue = []
    // Crashed nodes come back after a while (or at a restart event, or at the end).
    n.restartAt = this.step + 20 + this.rng.int(400)
    this.stats.crashes++
  }

  private restart(): void {
    const down = [...this.nodes.values()].filter((n) => n.rn === null)
    if (down.length === 0) return
    const n = this.rng.pick(down)
    this.trace(`restart ${n.id}`)
    this.start(n)
  }

  /** A node's data dir is wiped; it restarts as storage.ts would start it. */
  private wipe(): void {
    const all = [...this.nodes.values()]
    // One at a time: the previous wiped node must have been caught up first.
    if (all.some((x) => x.durable.hardState.rejoining === true)) return
    const n = this.rng.pick(all)
    const peers = this.live().filter((x) => x !== n)
    const configs: ReadonlySet<NodeId>[] = []
    for (const x of all) {
      if (x.rn !== null) {
        const log = x.rn.raft.log
        configs.push(x.rn.raft.config.voters)
        // A change still in flight may yet take effect: then the scope cannot be judged.
        for (let i = log.committed + 1; i <= log.lastIndex(); i++)
          if (log.entry(i)?.type === EntryType.ConfChange) {
            this.trace(`no wipe: a membership change is in flight on ${x.id}`)
            return
          }
      }
      configs.push(new Set(x.durable.sm.confState.voters))
    }
    const live = new Set(peers.map((x) => x.id))
    for (const voters of configs) {
      if (!voters.has(n.id)) continue
      const others = [...voters].filter((v) => v !== n.id)
      const maj = Math.floor(voters.size / 2) + 1
      const liveOthers = others.filter((v) => live.has(v)).length
      if (others.length < maj || liveOthers <= voters.size - maj) {
        this.trace(`no wipe of ${n.id}: out of scope for voters {${[...voters].join(",")}}`)
        return
      }
    }
    let term = 0
    let exists = false
    for (const p of peers) {
      const r = p.rn!.raft
      term = Math.max(term, r.term)
      if (r.term > 1 || r.log.committed > 1) exists = true
    }
    if (n.rn !== null) this.crashNode(n)
    const d = n.durable
    const s = exists || !this.founders.includes(n.id) ? emptyState() : bootstrapState([...this.founders])
    d.hardState = exists ? { term, vote: null, commit: 0, rejoining: true } : s.hardState
    d.snapshot = { meta: s.snapshotMeta, data: encoder.encode(JSON.stringify({ hash: 0 })) }
    d.entries = [...s.entries]
    d.sm = { applied: 0, hash: 0, confState: emptyCs }
    this.stats.wipes++
    this.trace(`wipe ${n.id} → ${exists ? `rejoining at term ${term}` : "fresh start"}`)
    this.trace(`restart ${n.id}`)
    this.start(n)
  }

  private partition(): void {
    const ids = [...this.nodes.keys()]
    this.blocked.clear()
    const r = this.rng.next()
    const l = this.leader()
    if (r < 0.65) {
      // Isolate the leader, or strand it in a minority with one follower (it keeps
      // appending there: divergent uncommitted tails), or split at random.
      let side: Set<NodeId>
      if (l !== null && r < 0.15) side = new Set([l.id])
      else if (l !== null && r < 0.3) side = new Set([l.id, this.rng.pick(ids.filter((x) => x !== l.id))])
      else side = new Set(ids.filter(() => this.rng.chance(0.5)))
      for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) this.blocked.add(`${a}>${b}`)
      this.trace(`partition {${[...side].join(",")}}`)
    } else {
      for (const a of ids)
        for (const b of ids) if (a !== b && this.rng.chance(0.3)) this.blocked.add(`${a}>${b}`)
      this.trace(`asymmetric partition ${[...this.blocked].join(" ")}`)
    }
    this.stats.partitions++
  }

  private healPartition(): void {
    this.blocked.clear()
    this.trace("heal partition")
  }

  private halt(): void {
    const live = this.live().filter((n) => !n.halted)
    if (live.length === 0) return
    const n = this.rng.pick(live)
    n.halted = true
    n.haltUntil = this.now + 5 + this.rng.int(40)
    n.rn!.setHalted(true)
    this.stats.halts++
    this.trace(`halt ${n.id} until ${n.haltUntil}`)
  }

  private confChange(): void {
    // (Wipe scope, see the header.)
    for (const n of this.nodes.values()) if (n.durable.hardState.rejoining === true) return
    const l = this.leader()
    if (l === null) return
    const cfg = l.rn!.raft.config
    const r = this.rng.next()
    let res: ReturnType<RawNode["proposeConfChange"]>
    if (this.pendingLearner !== null || (r < 0.35 && this.nodes.size < this.o.nodes + 3)) {
      const id = this.pendingLearner ?? `n${this.nextNodeNo++}`
      res = l.rn!.proposeConfChange({ type: "AddLearner", node: id })
      if (res._tag === "ProposalAccepted") {
        this.pendingLearner = null
        if (!this.nodes.has(id)) {
          const s = emptyState()
          this.addNode(id, {
            hardState: s.hardState,
            snapshot: { meta: s.snapshotMeta, data: new Uint8Array(0) },
            entries: [],
            sm: { applied: 0, hash: 0, confState: emptyCs },
          })
        }
      }
      this.trace(
        `conf add-learner ${id} via ${l.id} → ${res._tag === "ProposalAccepted" ? res.index : res.reason}`,
      )
    } else if (r < 0.7 && cfg.learners.size > 0) {
      const id = this.rng.pick([...cfg.learners])
      res = l.rn!.proposeConfChange({ type: "PromoteLearner", node: id })
      this.trace(
        `conf promote ${id} via ${l.id} → ${res._tag === "ProposalAccepted" ? res.index : res.reason}`,
      )
    } else {
      const members = [...cfg.voters, ...cfg.learners]
      if (cfg.voters.size <= 2 && cfg.learners.size === 0) return
      const id = this.rng.pick(members)
      if (cfg.voters.has(id) && cfg.voters.size <= 2) return
      res = l.rn!.proposeConfChange({ type: "RemoveNode", node: id })
      this.trace(
        `conf remove ${id} via ${l.id} → ${res._tag === "ProposalAccepted" ? res.index : res.reason}`,
      )
    }
    if (res._tag === "ProposalAccepted") this.stats.confChanges++
  }

  private transfer(): void {
    const l = this.leader()
    if (l === null) return
    const voters = [...l.rn!.raft.config.voters].filter((v) => v !== l.id)
    if (voters.length === 0) return
    const to = this.rng.pick(voters)
    const res = l.rn!.transferLeader(to)
    this.trace(`transfer ${l.id}→${to} ${res.ok ? "ok" : res.reason}`)
    if (res.ok) this.stats.transfers++
  }

  private compactAny(): void {
    const live = this.live()
    if (live.length === 0) return
    const n = this.rng.pick(live)
    const d = n.durable
    const off = d.snapshot.meta.index
    // The driver's snapshot is its state machine as of the applied index.
    const at = d.sm.applied
    if (at <= off || n.rn!.raft.log.pendingSnapshot !== null) return
    const term = d.entries[at - off - 1]!.term
    d.snapshot = {
      meta: { index: at, term, confState: d.sm.confState },
      data: encoder.encode(JSON.stringify({ hash: d.sm.hash })),
    }
    d.entries = d.entries.slice(at - off)
    n.rn!.compact(at, d.sm.confState)
    this.stats.compactions++
    this.trace(`compact ${n.id} at ${at}`)
  }

  private campaignAny(): void {
    const live = this.live()
    if (live.length === 0) return
    const n = this.rng.pick(live)
    const res = n.rn!.campaign()
    this.trace(`campaign ${n.id} ${res.ok ? "ok" : res.reason}`)
  }

  // --- end of the faulty phase

  private heal(): void {
    this.healed = true
    this.blocked.clear()
    // A healed network: streams mostly in order again.
    this.reorderRate = Math.min(this.reorderRate, 0.05)
    this.trace("HEAL: partitions cleared, nodes restarted, halts lifted")
    for (const n of this.nodes.values()) {
      if (n.rn === null) this.start(n)
      if (n.halted) {
        n.halted = false
        n.rn!.setHalted(false)
      }
    }
  }

  private liveness(): void {
    const marker = encoder.encode(`marker-${this.o.seed}`)
    const startTicks = this.now
    let accepted = false
    for (;;) {
      this.step++
      if (this.now - startTicks > this.o.livenessTicks) {
        const l = this.leader()
        this.fail(
          `liveness: no progress within ${this.o.livenessTicks} ticks after healing (leader ${l?.id ?? "none"}, marker accepted: ${accepted})`,
        )
      }
      const l = this.leader()
      if (l !== null && !accepted && this.rng.chance(0.2)) {
        accepted = this.proposeAt(l, marker, false) === null
      }
      if (l !== null && accepted && this.markerEverywhere(l, marker)) return
      // A lost marker (leader deposed before commit) is proposed again.
      if (accepted && l !== null && this.rng.chance(0.02) && !this.markerInLog(l, marker)) accepted = false
      this.event(false)
      this.check()
    }
  }

  private markerInLog(l: SimNode, marker: Uint8Array): boolean {
    const log = l.rn!.raft.log
    for (let i = log.lastIndex(); i > log.snapshot.index; i--)
      if (sameBytes(log.entry(i)!.data, marker)) return true
    return log.snapshot.index > 0 && this.appliedMarker(marker) // compacted: only after it was applied
  }

  private appliedMarker(marker: Uint8Array): boolean {
    for (let i = this.appliedAt.length - 1; i > 0; i--) {
      const e = this.appliedAt[i]
      if (e !== undefined && sameBytes(e.data, marker)) return true
    }
    return false
  }

  private markerEverywhere(l: SimNode, marker: Uint8Array): boolean {
    let at = 0
    for (let i = this.appliedAt.length - 1; i > 0; i--) {
      const e = this.appliedAt[i]
      if (e !== undefined && sameBytes(e.data, marker)) {
        at = i
        break
      }
    }
    if (at === 0) return false
    const cfg = l.rn!.raft.config
    for (const id of [...cfg.voters, ...cfg.learners]) {
      const n = this.nodes.get(id)
      if (n === undefined || n.durable.sm.applied < at) return false
    }
    return true
  }

  // ------------------------------------------------------------------ checks

  private check(): void {
    for (const n of this.nodes.values()) {
      const rn = n.rn
      if (rn === null) continue
      const r = rn.raft
      const log = r.log
      if (n.durable.sm.applied > log.committed && log.pendingSnapshot === null)
        this.fail(`${n.id}: applied ${n.durable.sm.applied} > committed ${log.committed}`)
      if (log.committed > log.lastIndex())
        this.fail(`${n.id}: committed ${log.committed} > last ${log.lastIndex()}`)
      // Record newly committed entries; a committed index must never change its entry.
      if (log.committed > n.recordedCommit) {
        for (let i = Math.max(n.recordedCommit + 1, log.snapshot.index + 1); i <= log.committed; i++) {
          const e = log.entry(i)!
          const c = this.committed[i]
          if (c === undefined) {
            this.committed[i] = e
            this.stats.commits++
          } else if (!sameEntry(c, e))
            this.fail(`committed entry ${i} differs on ${n.id}: term ${e.term} vs ${c.term}`)
        }
        n.recordedCommit = log.committed
        if (log.committed > this.commitMax) this.commitMax = log.committed
      }
      if (r.role === Role.Leader) {
        if (n.halted) this.fail(`halted ${n.id} is leader`)
        const other = this.leaderOfTerm.get(r.term)
        if (other === undefined) {
          this.leaderOfTerm.set(r.term, n.id)
          this.stats.leaders++
        } else if (other !== n.id) this.fail(`two leaders in term ${r.term}: ${other} and ${n.id}`)
        if (n.leaderTermChecked !== r.term) {
          n.leaderTermChecked = r.term
          this.trace(`leader ${n.id} term ${r.term}`)
          this.checkLeaderCompleteness(n)
          n.leaderStartCommit = log.committed
          // Cut some new leaders down mid-replication (the Figure 8 family of histories).
          if (!this.healed && this.rng.chance(0.25))
            this.leaderCrash = { id: n.id, at: this.step + 1 + this.rng.int(40) }
        } else if (n.leaderStartCommit >= 0 && log.committed > n.leaderStartCommit) {
          // Its first commit of the term: its own entries may be on a bare quorum. A
          // good moment to fail it.
          n.leaderStartCommit = -1
          if (!this.healed && this.rng.chance(0.3))
            this.leaderCrash = { id: n.id, at: this.step + this.rng.int(3) }
        }
      }
    }
  }

  /** Every entry ever committed is in a new leader's log. */
  private checkLeaderCompleteness(n: SimNode): void {
    const log = n.rn!.raft.log
    if (log.lastIndex() < this.commitMax)
      this.fail(`leader completeness: ${n.id} (last ${log.lastIndex()}) lacks committed ${this.commitMax}`)
    for (let i = log.snapshot.index + 1; i <= this.commitMax; i++) {
      const c = this.committed[i]
      if (c !== undefined && !sameEntry(c, log.entry(i)!))
        this.fail(`leader completeness: ${n.id} has term ${log.term(i)} at committed ${i}/${c.term}`)
    }
  }
}

export const runSeed = (
  o: SimOptions,
): { ok: true; stats: SimStats; trace: readonly string[] } | { ok: false; failure: SimFailure } => {
  const sim = new Simulation(o)
  try {
    const stats = sim.run()
    return { ok: true, stats, trace: o.trace ? sim.traceLines() : [] }
  } catch (e) {
    if (e instanceof SimFailure) return { ok: false, failure: e }
    // An assertion inside the core (debug invariants) is a failure of the seed too.
    const msg = e instanceof Error ? `${e.message}\n${e.stack ?? ""}` : String(e)
    return {
      ok: false,
      failure: new SimFailure(o.seed, `core threw: ${msg}`, sim.traceLines().slice(o.trace ? 0 : -120)),
    }
  }
}

/** The per-seed shape used by CI and scripts/sim.ts: 3 or 5 voters, sometimes a learner. */
export const optionsForSeed = (seed: number, over: Partial<SimOptions> = {}): SimOptions => {
  const p = new Prng(seed ^ 0x5bd1e995)
  const nodes = p.chance(0.5) ? 3 : 5
  const learner = p.chance(0.3)
  return {
    seed,
    nodes,
    learner,
    wipes: p.chance(0.3),
    steps: 6000,
    trace: false,
    livenessTicks: 600,
    ...over,
  }
}
