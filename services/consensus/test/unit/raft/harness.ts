// A scripted, in-memory cluster for transcript tests: every delivered message
// and every Ready is written to `lines`, so a scenario's whole history can be
// compared against a checked-in transcript.

import { decodeConfChange } from "../../../src/raft/confChange.ts"
import type { PersistedState, ProposeResult, RaftOptions } from "../../../src/raft/raft.ts"
import { bootstrapState, emptyState, RawNode, type Ready } from "../../../src/raft/rawNode.ts"
import {
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  Role,
  type Snapshot,
} from "../../../src/raft/types.ts"

export interface Store {
  hardState: HardState
  snapshot: Snapshot
  entries: Entry[]
  applied: number
}

export interface HNode {
  readonly id: NodeId
  rn: RawNode | null
  store: Store
  /** Every entry applied, in order (data decoded as text). */
  applied: string[]
  /** Auto-apply committed entries at once (else they wait in `toApply`). */
  autoApply: boolean
  toApply: Entry[]
  jitter: number
  readStates: { index: number; ctx: string }[]
}

const enc = new TextEncoder()
const dec = new TextDecoder()
export const bytes = (s: string): Uint8Array => enc.encode(s)

export const describeMessage = (m: Message): string => {
  const base = `${m.from}->${m.to} ${m.type} term=${m.term}`
  switch (m.type) {
    case "App":
      return `${base} prev=${m.prevIndex}/${m.prevTerm} commit=${m.commit} entries=[${m.entries.map((e) => `${e.index}/${e.term}${e.type === "Normal" ? "" : `:${e.type}`}`).join(" ")}]`
    case "AppResp":
      return `${base} index=${m.index}${m.reject ? ` REJECT hint=${m.hintIndex}/${m.hintTerm}` : ""}`
    case "PreVote":
    case "Vote":
      return `${base} last=${m.lastIndex}/${m.lastTerm}${m.force ? " force" : ""}`
    case "PreVoteResp":
    case "VoteResp":
      return `${base} ${m.reject ? "REJECT" : "granted"}`
    case "Heartbeat":
      return `${base} commit=${m.commit}${m.ctx === null ? "" : ` ctx=${m.ctx}`}`
    case "HeartbeatResp":
      return `${base}${m.ctx === null ? "" : ` ctx=${m.ctx}`}`
    case "Snap":
      return `${base} snapshot=${m.snapshot.meta.index}/${m.snapshot.meta.term}`
    case "ReadIndex":
      return `${base} ctx=${m.ctx}`
    case "ReadIndexResp":
      return `${base} ctx=${m.ctx} index=${m.index}`
    case "TimeoutNow":
      return base
  }
}

export type HarnessOptions = Partial<Omit<RaftOptions, "id" | "storage" | "random">> & {
  /** Per node, the value random() returns: its election timeout is electionTick × (1 + jitter). Default 0. */
  readonly jitter?: Readonly<Record<NodeId, number>>
}

export class Harness {
  readonly nodes = new Map<NodeId, HNode>()
  queue: Message[] = []
  readonly lines: string[] = []
  /** Directed links that drop messages ("a->b"). */
  readonly cut = new Set<string>()
  /** Drop any message this returns true for. */
  dropIf: (m: Message) => boolean = () => false
  private readonly opts: HarnessOptions

  constructor(voters: readonly NodeId[], opts: HarnessOptions = {}) {
    this.opts = opts
    for (const id of voters) this.addNode(id, toStore(bootstrapState(voters)))
  }

  addNode(id: NodeId, store: Store = toStore(emptyState())): HNode {
    const n: HNode = {
      id,
      rn: null,
      store,
      applied: [],
      autoApply: true,
      toApply: [],
      jitter: this.opts.jitter?.[id] ?? 0,
      readStates: [],
    }
    this.nodes.set(id, n)
    this.start(n)
    return n
  }

  private start(n: HNode): void {
    const s = n.store
    n.rn = new RawNode({
      electionTick: 10,
      heartbeatTick: 1,
      debug: true,
      ...this.opts,
      id: n.id,
      // Fixed timeouts: scenarios decide who times out first.
      random: () => n.jitter,
      storage: {
        hardState: s.hardState,
        snapshotMeta: s.snapshot.meta,
        entries: s.entries,
        applied: s.applied,
      },
      snapshotData: (meta) => (n.store.snapshot.meta.index === meta.index ? n.store.snapshot.data : null),
    })
    n.toApply = []
  }

  node(id: NodeId): HNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n
  }

  rn(id: NodeId): RawNode {
    const rn = this.node(id).rn
    if (rn === null) throw new Error(`${id} is down`)
    return rn
  }

  log(line: string): void {
    this.lines.push(line)
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) this.rn(id).tick()
  }

  /** Ticks every live node `times` times, delivering everything after each round. */
  tickAll(times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const n of this.nodes.values()) n.rn?.tick()
      this.stabilize()
    }
  }

  campaign(id: NodeId): void {
    this.log(`campaign ${id}`)
    this.rn(id).campaign()
  }

  propose(id: NodeId, data: string, bypassApplyBarrier = false): ProposeResult {
    const r = this.rn(id).propose(bytes(data), { bypassApplyBarrier })
    this.log(
      `propose ${id} ${JSON.stringify(data)} -> ${r._tag === "ProposalAccepted" ? `accepted at ${r.index}` : `dropped: ${r.reason}`}`,
    )
    return r
  }

  crash(id: NodeId): void {
    this.log(`crash ${id}`)
    this.node(id).rn = null
  }

  restart(id: NodeId): void {
    this.log(`restart ${id}`)
    this.start(this.node(id))
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue
      this.cut.add(`${id}->${other}`)
      this.cut.add(`${other}->${id}`)
    }
  }

  heal(): void {
    this.cut.clear()
    this.dropIf = () => false
  }

  /** Persists, sends and applies one Ready of `id`. */
  processReady(id: NodeId): Ready {
    const n = this.node(id)
    const rn = n.rn!
    const rd = rn.ready()
    const s = n.store
    const parts: string[] = []
    if (rd.softState)
      parts.push(`soft=${rd.softState.role}/lead=${rd.softState.leader}/term=${rd.softState.term}`)
    if (rd.hardState)
      parts.push(
        `hard=${rd.hardState.term}/${rd.hardState.vote}/${rd.hardState.commit}${rd.hardState.rejoining === true ? "/rejoining" : ""}`,
      )
    if (rd.snapshot) parts.push(`snapshot=${rd.snapshot.meta.index}/${rd.snapshot.meta.term}`)
    if (rd.entries.length)
      parts.push(`persist=${rd.entries[0]!.index}..${rd.entries[rd.entries.length - 1]!.index}`)
    if (rd.committedEntries.length)
      parts.push(
        `apply=${rd.committedEntries[0]!.index}..${rd.committedEntries[rd.committedEntries.length - 1]!.index}`,
      )
    if (rd.readStates.length) parts.push(`reads=${rd.readStates.map((r) => `${r.ctx}@${r.index}`).join(",")}`)
    this.log(`  ready ${id}: ${parts.join(" ")}`)
    if (rd.snapshot) {
      s.snapshot = rd.snapshot
      s.entries = []
      s.applied = rd.snapshot.meta.index
      n.applied.push(`<snapshot ${rd.snapshot.meta.index}>`)
      n.toApply = []
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index
      s.entries.length = first - s.snapshot.meta.index - 1
      s.entries.push(...rd.entries)
    }
    if (rd.hardState) s.hardState = rd.hardState
    this.queue.push(...rd.messages)
    n.toApply.push(...rd.committedEntries)
    n.readStates.push(...rd.readStates)
    rn.advance(rd)
    if (n.autoApply) this.apply(id)
    return rd
  }

  /** Applies up to `max` waiting committed entries of `id`. */
  apply(id: NodeId, max = Number.POSITIVE_INFINITY): void {
    const n = this.node(id)
    let k = 0
    while (n.toApply.length > 0 && k < max) {
      const e = n.toApply.shift()!
      n.applied.push(
        e.type === "Normal"
          ? dec.decode(e.data)
          : e.type === "Empty"
            ? `<empty ${e.term}>`
            : `<conf ${JSON.stringify(decodeConfChange(e.data))}>`,
      )
      n.store.applied = e.index
      k++
    }
    if (k > 0) n.rn!.appliedTo(n.store.applied)
  }

  /** Delivers one message (FIFO); returns false when none is left. */
  deliverOne(): boolean {
    const m = this.queue.shift()
    if (m === undefined) return false
    const to = this.nodes.get(m.to)
    if (to?.rn == null || this.cut.has(`${m.from}->${m.to}`) || this.dropIf(m)) {
      this.log(`  drop ${describeMessage(m)}`)
      if (m.type === "Snap") this.nodes.get(m.from)?.rn?.reportSnapshot(m.to, false)
      return true
    }
    this.log(`  ${describeMessage(m)}`)
    to.rn.step(m)
    if (m.type === "Snap") this.nodes.get(m.from)?.rn?.reportSnapshot(m.to, true)
    return true
  }

  /** Processes Readies and delivers messages until nothing moves. */
  stabilize(): void {
    for (let guard = 0; guard < 100_000; guard++) {
      let moved = false
      for (const n of this.nodes.values()) {
        if (n.rn?.hasReady()) {
          this.processReady(n.id)
          moved = true
        }
      }
      while (this.deliverOne()) moved = true
      if (!moved) return
    }
    throw new Error("harness: no quiescence")
  }

  leader(): NodeId | null {
    for (const n of this.nodes.values()) if (n.rn?.raft.role === Role.Leader) return n.id
    return null
  }

  /** Elects `id` by campaign and stabilizes. */
  elect(id: NodeId): void {
    this.campaign(id)
    this.stabilize()
    if (this.rn(id).raft.role !== Role.Leader) throw new Error(`${id} did not become leader`)
  }

  transcript(): string {
    return `${this.lines.join("\n")}\n`
  }
}

export const toStore = (p: PersistedState): Store => ({
  hardState: p.hardState,
  snapshot: { meta: p.snapshotMeta, data: new Uint8Array(0) },
  entries: [...p.entries],
  applied: p.applied,
})

/** Snapshots `id` at its applied index (the "state machine": the applied list, as text) and compacts its log. */
export const takeSnapshot = (h: Harness, id: string): void => {
  const n = h.node(id)
  const at = n.store.applied
  const off = n.store.snapshot.meta.index
  const term = n.store.entries[at - off - 1]!.term
  const confState = {
    voters: [...n.rn!.raft.config.voters].sort(),
    learners: [...n.rn!.raft.config.learners].sort(),
  }
  n.store.snapshot = { meta: { index: at, term, confState }, data: bytes(JSON.stringify(n.applied)) }
  n.store.entries = n.store.entries.slice(at - off)
  n.rn!.compact(at, confState)
}
