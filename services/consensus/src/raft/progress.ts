// The leader's view of one follower (etcd's tracker.Progress).
//
//   Probe:     one append in flight at a time (`probeSent`) until the follower's
//              position is known; then Replicate.
//   Replicate: appends are pipelined optimistically (`next` runs ahead of
//              `match`), bounded by the in-flight window.
//   Snapshot:  a snapshot at `pendingSnapshot` is on its way; nothing else is sent.
//
// Invariants: 0 ≤ match < next; in Snapshot state, pendingSnapshot > 0.

export const ProgressState = { Probe: "Probe", Replicate: "Replicate", Snapshot: "Snapshot" } as const
export type ProgressState = (typeof ProgressState)[keyof typeof ProgressState]

/** A ring of the last index (and bytes) of each append in flight, oldest first. */
export class Inflights {
  readonly capacity: number
  readonly maxBytes: number
  private readonly idx: number[]
  private readonly size: number[]
  private start = 0
  count = 0
  bytes = 0

  constructor(capacity: number, maxBytes: number) {
    this.capacity = capacity
    this.maxBytes = maxBytes
    this.idx = new Array<number>(capacity).fill(0)
    this.size = new Array<number>(capacity).fill(0)
  }

  add(lastIndex: number, bytes: number): void {
    if (this.full()) throw new Error("raft: inflights overflow")
    const slot = (this.start + this.count) % this.capacity
    this.idx[slot] = lastIndex
    this.size[slot] = bytes
    this.count++
    this.bytes += bytes
  }

  /** Frees every append whose last index ≤ `index` (acknowledged). */
  freeLE(index: number): void {
    while (this.count > 0 && this.idx[this.start]! <= index) {
      this.bytes -= this.size[this.start]!
      this.start = (this.start + 1) % this.capacity
      this.count--
    }
    if (this.count === 0) this.start = 0
  }

  freeFirstOne(): void {
    if (this.count > 0) this.freeLE(this.idx[this.start]!)
  }

  full(): boolean {
    return this.count >= this.capacity || (this.maxBytes > 0 && this.bytes >= this.maxBytes)
  }

  reset(): void {
    this.start = 0
    this.count = 0
    this.bytes = 0
  }
}

export class Progress {
  /** Highest index known to be replicated on the follower. */
  match = 0
  /** Next index to send; match < next. */
  next: number
  state: ProgressState = ProgressState.Probe
  /** In Snapshot state: the index of the snapshot in flight. */
  pendingSnapshot = 0
  /** Heard from since the last check-quorum round. */
  recentActive = true
  /** In Probe state: an append was sent and not yet answered (pauses further appends). */
  probeSent = false
  isLearner: boolean
  readonly inflights: Inflights

  constructor(next: number, isLearner: boolean, maxInflightMsgs: number, maxInflightBytes: number) {
    this.next = next
    this.isLearner = isLearner
    this.inflights = new Inflights(maxInflightMsgs, maxInflightBytes)
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false
    this.pendingSnapshot = 0
    this.state = state
    this.inflights.reset()
  }

  becomeProbe(): void {
    if (this.state === ProgressState.Snapshot) {
      const pending = this.pendingSnapshot
      this.resetState(ProgressState.Probe)
      this.next = Math.max(this.match + 1, pending + 1)
    } else {
      this.resetState(ProgressState.Probe)
      this.next = this.match + 1
    }
  }

  becomeReplicate(): void {
    this.resetState(ProgressState.Replicate)
    this.next = this.match + 1
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState(ProgressState.Snapshot)
    this.pendingSnapshot = snapshotIndex
    this.next = snapshotIndex + 1
  }

  /** Records that `n` entries (`bytes` in all, last index `lastIndex`) were just sent. */
  sentEntries(n: number, bytes: number, lastIndex: number): void {
    if (this.state === ProgressState.Replicate) {
      if (n > 0) {
        this.next = lastIndex + 1
        this.inflights.add(lastIndex, bytes)
      }
    } else if (this.state === ProgressState.Probe) {
      this.probeSent = true
    }
  }

  /** An acknowledgement up to `n`; false when it told us nothing new (stale or duplicate). */
  maybeUpdate(n: number): boolean {
    let updated = false
    if (this.match < n) {
      this.match = n
      updated = true
      this.probeSent = false
    }
    this.next = Math.max(this.next, n + 1)
    return updated
  }

  /**
   * A rejection of the append whose prevIndex was `rejected`; `hint` is where the
   * follower's log can match at best. False when the rejection is stale.
   *
   * A hint below `match` means the follower lacks entries it acknowledged: its
   * log went backwards (data dir wiped or restored from an old copy), or the
   * rejection is an old one delivered late. The message alone cannot tell
   * which, so it is confirmed by a probe at `match` before anything is undone:
   *   - Replicate: any such rejection only turns the follower back to Probe at
   *     match + 1 (the caller does); a healthy follower acknowledges the probe,
   *     so a stale rejection costs one round trip and is consumed.
   *   - Probe: a rejection of the probe in flight (prevIndex = next - 1) with a
   *     hint below match is believed: match drops to 0 ("unknown") and probing
   *     restarts at hint + 1 (a snapshot when that is compacted). Not to hint:
   *     the follower's entry at hint may be an old conflicting one, and
   *     counting it toward a quorum could commit an entry a majority lacks.
   *     Lowering match is always safe (commit never decreases; a lower match
   *     only delays commits and heartbeat commits), and the follower's answer
   *     to the new probe is an acknowledgement or a rejection with a smaller
   *     hint, so a late stale rejection costs at most one resend and can never
   *     make progress loop.
   */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === ProgressState.Replicate) {
      // Anything at or below match was acknowledged already: a reordered rejection,
      // unless its hint says the follower's log now ends below match (checked by a probe).
      if (rejected <= this.match && hint >= this.match) return false
      this.next = this.match + 1
      return true
    }
    // Probe (or Snapshot): only the rejection of the last probe counts.
    if (this.next - 1 !== rejected) return false
    if (hint < this.match) {
      this.match = 0
      this.next = hint + 1
    } else this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1)
    this.probeSent = false
    return true
  }

  isPaused(): boolean {
    switch (this.state) {
      case ProgressState.Probe:
        return this.probeSent
      case ProgressState.Replicate:
        return this.inflights.full()
      case ProgressState.Snapshot:
        return true
    }
  }
}
