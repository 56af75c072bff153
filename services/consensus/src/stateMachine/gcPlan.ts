// Which versions GC may delete (SPEC §2.4), decided one stored version at a
// time in storage-key order (per user key, newest first). For each user key:
// versions above the horizon stay; the newest version ≤ horizon N stays unless
// it is a tombstone; every version older than N goes. No read at or above the
// horizon can tell the difference.
//
// Work is bounded: the planner stops when its delete or scan budget is spent
// and names the user key to resume at. Every call makes progress: it finishes
// its first key, or deletes at least one version of it. A tombstone N is deleted only in the
// same batch as (after) every older version of its key: otherwise a stop in
// between would leave an older version that a read at the horizon then sees.

export interface GcEntry {
  /** Bytes shared by every version of this user key (versionPrefix). */
  readonly keyPrefix: Uint8Array
  readonly storageKey: Uint8Array
  readonly index: number
  readonly tombstone: boolean
}

export type Offer = "continue" | "stop"

export class GcPlanner {
  readonly deletes: Uint8Array[] = []
  scanned = 0
  /** When `offer` returned "stop": the key prefix to resume at (re-reading that key from its newest version). */
  resumeAt: Uint8Array | undefined
  private current: Uint8Array | undefined
  private seenNewest = false
  private pendingTombstone: Uint8Array | undefined
  private readonly horizon: number
  private readonly maxDeletes: number
  private readonly maxScan: number

  constructor(horizon: number, maxDeletes: number, maxScan: number) {
    this.horizon = horizon
    this.maxDeletes = Math.max(1, maxDeletes)
    this.maxScan = Math.max(1, maxScan)
  }

  /**
   * Considers the next stored version. "stop" means the budget is spent: this
   * entry was not consumed and the caller commits `deletes` and resumes at
   * `resumeAt` later.
   */
  offer(e: GcEntry): Offer {
    if (this.current === undefined || !sameBytes(this.current, e.keyPrefix)) {
      this.closeKey()
      if (this.scanned >= this.maxScan || this.deletes.length >= this.maxDeletes) {
        this.resumeAt = e.keyPrefix
        return "stop"
      }
      this.current = e.keyPrefix
      this.seenNewest = false
    }
    if (e.index > this.horizon) {
      this.scanned++
      return "continue"
    }
    if (!this.seenNewest) {
      this.seenNewest = true
      this.scanned++
      if (e.tombstone) this.pendingTombstone = e.storageKey
      return "continue"
    }
    // An older version, shadowed at the horizon by N. Only the delete budget
    // stops inside a key (so every call that stops there deleted something:
    // progress); the scan budget is checked at key boundaries.
    if (this.deletes.length >= this.maxDeletes) {
      // Stop inside the key: N (even a tombstone) stays, the key is re-read next time.
      this.pendingTombstone = undefined
      this.resumeAt = this.current
      return "stop"
    }
    this.scanned++
    this.deletes.push(e.storageKey)
    return "continue"
  }

  /** The input ended: the last key was read completely. */
  end(): void {
    this.closeKey()
    this.resumeAt = undefined
  }

  private closeKey(): void {
    // Every older version of the key is in `deletes` already (we saw the whole key).
    if (this.pendingTombstone !== undefined) this.deletes.push(this.pendingTombstone)
    this.pendingTombstone = undefined
    this.current = undefined
  }
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}
