// The log since the last snapshot, all in memory (so memory is bounded by
// what the driver has not compacted yet):
//
//   snapshot.index  <  stable part (persisted)  ≤ stable  <  unstable tail  ≤ lastIndex
//
// Invariants (checked by `check()` in debug builds):
//   snapshot.index ≤ applied ≤ applying ≤ committed ≤ lastIndex   (except while a
//     received snapshot waits to be installed: then applied ≤ applying < snapshot.index = committed)
//   snapshot.index ≤ stable ≤ lastIndex
//   entries[k].index = snapshot.index + 1 + k;  terms never decrease along the log

import { type Entry, entrySize, type Snapshot, type SnapshotMeta } from "./types.ts"

export class RaftLog {
  /** The compacted prefix (or the snapshot just received). */
  snapshot: SnapshotMeta
  /** entries[k] has index snapshot.index + 1 + k. */
  entries: Entry[]
  /** Last index known durable in the driver's storage. */
  stable: number
  /** A snapshot received from the leader that the driver has not installed yet. */
  pendingSnapshot: Snapshot | null = null
  /** Highest index known to be committed. */
  committed: number
  /** Highest index handed to the driver for applying (applied ≤ applying ≤ committed). */
  applying: number
  /** Highest index the driver reported applied. */
  applied: number

  constructor(snapshot: SnapshotMeta, entries: readonly Entry[], commit: number, applied: number) {
    this.snapshot = snapshot
    this.entries = [...entries]
    for (let k = 0; k < this.entries.length; k++) {
      const e = this.entries[k]!
      if (e.index !== snapshot.index + 1 + k)
        throw new Error(`raft: entry ${e.index} out of place after ${snapshot.index}`)
      const prevTerm = k === 0 ? snapshot.term : this.entries[k - 1]!.term
      if (e.term < prevTerm) throw new Error(`raft: entry ${e.index} has a term below its predecessor's`)
    }
    this.stable = this.lastIndex()
    if (applied < snapshot.index)
      throw new Error(`raft: applied ${applied} is below the snapshot ${snapshot.index}`)
    if (applied > this.lastIndex())
      throw new Error(`raft: applied ${applied} is beyond the last index ${this.lastIndex()}`)
    if (commit > this.lastIndex())
      throw new Error(`raft: commit ${commit} is beyond the last index ${this.lastIndex()}`)
    // Applied entries were committed, whatever the persisted commit says.
    this.committed = Math.max(commit, applied, snapshot.index)
    this.applied = applied
    this.applying = applied
  }

  firstIndex(): number {
    return this.snapshot.index + 1
  }

  lastIndex(): number {
    return this.snapshot.index + this.entries.length
  }

  /** Term of the entry at `i`, or undefined when it is compacted away or beyond the log. */
  term(i: number): number | undefined {
    const off = this.snapshot.index
    if (i === off) return this.snapshot.term
    if (i < off || i > off + this.entries.length) return undefined
    return this.entries[i - off - 1]!.term
  }

  lastTerm(): number {
    return this.term(this.lastIndex())!
  }

  entry(i: number): Entry | undefined {
    const off = this.snapshot.index
    return i > off ? this.entries[i - off - 1] : undefined
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t
  }

  /** Raft's election restriction: is (lastIndex, lastTerm) at least as up to date as this log? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm()
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex())
  }

  /**
   * Entries from `lo` (≥ firstIndex) to at most `hi`, at most `maxEntries` and
   * about `maxBytes` (always at least one when any exist).
   */
  slice(lo: number, hi: number, maxEntries: number, maxBytes: number): Entry[] {
    const off = this.snapshot.index
    if (lo <= off) throw new Error(`raft: slice from ${lo} is compacted (snapshot ${off})`)
    const end = Math.min(hi, this.lastIndex(), lo + maxEntries - 1)
    const out: Entry[] = []
    let bytes = 0
    for (let i = lo; i <= end; i++) {
      const e = this.entries[i - off - 1]!
      bytes += entrySize(e)
      if (out.length > 0 && bytes > maxBytes) break
      out.push(e)
    }
    return out
  }

  /**
   * The largest index ≤ `index` whose term ≤ `term`, with that term (terms do
   * not decrease along a log, so this is a binary search). When the answer
   * lies in the compacted prefix the term is 0 ("unknown").
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    const off = this.snapshot.index
    let hi = Math.min(index, this.lastIndex())
    if (hi <= off)
      return { index: hi, term: hi === off && this.snapshot.term <= term ? this.snapshot.term : 0 }
    if (this.entries[hi - off - 1]!.term <= term) return { index: hi, term: this.entries[hi - off - 1]!.term }
    // Find the largest i in [off, hi) with term(i) ≤ term; term(off) = snapshot.term.
    let lo = off
    if (this.snapshot.term > term) return { index: off, term: 0 }
    // Invariant: term(lo) ≤ term < term(hi)
    while (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2)
      if (this.term(mid)! <= term) lo = mid
      else hi = mid
    }
    return { index: lo, term: this.term(lo)! }
  }

  /** Index of the first entry of `ents` that is missing from or conflicts with this log; 0 if none. */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      const t = this.term(e.index)
      if (t === undefined && e.index <= this.snapshot.index) continue // compacted: committed, so matching
      if (t !== e.term) return e.index
    }
    return 0
  }

  /**
   * Appends `ents` (contiguous, starting at most one past the last index),
   * replacing any suffix from ents[0].index. Never replaces committed entries.
   */
  append(ents: readonly Entry[]): void {
    if (ents.length === 0) return
    const first = ents[0]!.index
    if (first <= this.committed)
      throw new Error(`raft: append at ${first} would overwrite committed ${this.committed}`)
    if (first > this.lastIndex() + 1)
      throw new Error(`raft: append at ${first} leaves a gap after ${this.lastIndex()}`)
    const off = this.snapshot.index
    if (first <= this.lastIndex()) {
      this.entries.length = first - off - 1
      this.stable = Math.min(this.stable, first - 1)
    }
    let prevTerm = this.term(first - 1)!
    for (let k = 0; k < ents.length; k++) {
      const e = ents[k]!
      if (e.index !== first + k || e.term < prevTerm) throw new Error(`raft: malformed append at ${e.index}`)
      prevTerm = e.term
      this.entries.push(e)
    }
  }

  /**
   * The follower side of an append: if this log holds (prevIndex, prevTerm),
   * append what is new in `ents` and return the last index now matching the
   * leader; otherwise null. Committing is the caller's business.
   */
  maybeAppend(prevIndex: number, prevTerm: number, ents: readonly Entry[]): number | null {
    if (!this.matchTerm(prevIndex, prevTerm)) return null
    const lastNew = prevIndex + ents.length
    const ci = this.findConflict(ents)
    if (ci !== 0) {
      if (ci <= this.committed) throw new Error(`raft: conflict at ${ci} with committed ${this.committed}`)
      this.append(ents.slice(ci - prevIndex - 1))
    }
    return lastNew
  }

  commitTo(i: number): boolean {
    if (i <= this.committed) return false
    if (i > this.lastIndex()) throw new Error(`raft: commit ${i} beyond last index ${this.lastIndex()}`)
    this.committed = i
    return true
  }

  unstableEntries(): readonly Entry[] {
    return this.stable < this.lastIndex() ? this.entries.slice(this.stable - this.snapshot.index) : []
  }

  /** The driver persisted the log up to (i, t); ignored if the log changed since. */
  stableTo(i: number, t: number): void {
    if (i > this.stable && this.term(i) === t) this.stable = i
  }

  /** Replaces the whole log with a snapshot received from the leader (installed later by the driver). */
  restore(snap: Snapshot): void {
    this.snapshot = snap.meta
    this.entries = []
    this.stable = snap.meta.index
    this.committed = snap.meta.index
    this.pendingSnapshot = snap
  }

  /** The driver installed (restored and persisted) the snapshot it was handed. */
  snapshotInstalled(meta: SnapshotMeta): void {
    if (this.pendingSnapshot !== null && this.pendingSnapshot.meta.index === meta.index)
      this.pendingSnapshot = null
    this.applied = Math.max(this.applied, meta.index)
    this.applying = Math.max(this.applying, meta.index)
  }

  /** Committed, persisted entries not yet handed to the driver. */
  nextCommittedEntries(maxBytes: number, maxEntries: number): Entry[] {
    if (this.pendingSnapshot !== null) return []
    const lo = this.applying + 1
    const hi = Math.min(this.committed, this.stable)
    if (lo > hi || maxEntries <= 0) return []
    return this.slice(lo, hi, maxEntries, maxBytes)
  }

  hasNextCommittedEntries(): boolean {
    return this.pendingSnapshot === null && this.applying < Math.min(this.committed, this.stable)
  }

  appliedTo(i: number): void {
    if (i > this.applying)
      throw new Error(`raft: applied ${i} beyond the entries handed out (${this.applying})`)
    if (i > this.applied) this.applied = i
  }

  /** Drops entries up to `i`, which the driver's snapshot (configuration `meta.confState`) now covers. */
  compact(meta: SnapshotMeta): void {
    const i = meta.index
    if (i <= this.snapshot.index) return
    if (i > this.applied) throw new Error(`raft: compact ${i} beyond applied ${this.applied}`)
    if (i > this.stable) throw new Error(`raft: compact ${i} beyond the persisted log ${this.stable}`)
    const t = this.term(i)
    if (t !== meta.term) throw new Error(`raft: compact ${i} with term ${meta.term}, log has ${t}`)
    this.entries = this.entries.slice(i - this.snapshot.index)
    this.snapshot = meta
  }

  /** O(1) invariants; `deep` also walks the log. */
  check(deep: boolean): void {
    const off = this.snapshot.index
    const last = this.lastIndex()
    const bad = (what: string) => {
      throw new Error(`raft log invariant: ${what}`)
    }
    if (!(this.applied <= this.applying)) bad(`applied ${this.applied} > applying ${this.applying}`)
    if (!(this.applying <= this.committed)) bad(`applying ${this.applying} > committed ${this.committed}`)
    if (!(this.committed <= last)) bad(`committed ${this.committed} > last ${last}`)
    if (!(off <= this.committed)) bad(`snapshot ${off} > committed ${this.committed}`)
    if (this.pendingSnapshot === null && !(off <= this.applied))
      bad(`snapshot ${off} > applied ${this.applied}`)
    if (!(off <= this.stable && this.stable <= last)) bad(`stable ${this.stable} outside [${off}, ${last}]`)
    if (deep) {
      let prev = this.snapshot.term
      for (let k = 0; k < this.entries.length; k++) {
        const e = this.entries[k]!
        if (e.index !== off + 1 + k) bad(`entry ${e.index} at slot ${off + 1 + k}`)
        if (e.term < prev) bad(`term decreases at ${e.index}`)
        prev = e.term
      }
    }
  }
}
