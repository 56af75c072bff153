// Applies committed entries to the MVCC store strictly in log order (SPEC
// §2, §2.2): many entries per LevelDB batch, the applied index in the same
// batch as their effects. Everything decided from the log alone (decode
// failures, a second cluster_id, a 0x06 before the cutover) is a rejection
// recorded identically on every replica; node-local faults halt at the entry
// without marking it applied.
import { decodeEntry, type EntryPayload, type KvOp, RejectionCode, Tag } from "@ekv/wire"
import { Result } from "effect"
import {
  cutoverVerdict,
  decodeEncState,
  ENCRYPTION_STATE_META,
  type EncState,
  encodeEncState,
  LEGACY_LAST_ENCRYPTION_INDEX,
  nextEncState,
} from "../encryption/encryptionState.ts"
import { applyConfChangeToState, type ConfState, decodeConfChange, type Entry } from "../raft/mod.ts"
import { MetaName } from "../stateMachine/keySpace.ts"
import type { ApplyBatch, MvccStore } from "../stateMachine/mvccStore.ts"
import type { EncryptionDispatcher } from "./encryptionDispatcher.ts"
import type { FaultInjector, HaltInfo } from "./halt.ts"
import type { SealerHalt, ValueSealer } from "./valueSealer.ts"

export type EntryOutcome =
  | { readonly kind: "write"; readonly index: number; readonly term: number; readonly deleted: boolean }
  | {
      readonly kind: "rejected"
      readonly index: number
      readonly term: number
      readonly code: string
      readonly reason: string
    }
  /** Empty, ConfChange, cluster metadata, an applied encryption entry. */
  | { readonly kind: "other"; readonly index: number; readonly term: number }

export interface ApplyResult {
  /** One per entry applied (in order); entries from a halt onwards have none. */
  readonly outcomes: readonly EntryOutcome[]
  /** The applied index after this call. */
  readonly appliedIndex: number
  readonly halt: HaltInfo | null
}

/** Opens a 0x06 payload at apply (SPEC §2.5): the inner 0x00/0x01 bytes, or a node-local halt. */
export interface RaftEnvelopeOpener {
  /** Answers at once when the key is at hand; a promise only when it must wait for the session. */
  open(envelope: Uint8Array): Uint8Array | SealerHalt | Promise<Uint8Array | SealerHalt>
}

export const noRaftEnvelopeOpener: RaftEnvelopeOpener = {
  open: async () => ({
    reason: "RaftEnvelopeOpenFailed",
    message: "this node has no raft keys (no keystore session)",
    transient: false,
  }),
}

export interface ApplierOptions {
  readonly sealer: ValueSealer
  readonly dispatcher: EncryptionDispatcher
  readonly faults: FaultInjector
  readonly raftOpener?: RaftEnvelopeOpener
  /** Runs before any entry applies (e.g. a pending keystore restore after a snapshot install, SPEC §4.6). */
  readonly beforeApply?: () => Promise<SealerHalt | null>
  /** Called after an encryption entry's outcome is known (before the batch commits). */
  readonly onEncryptionApplied?: (index: number, state: EncState) => void
}

const utf8 = new TextEncoder()
const utf8Decoder = new TextDecoder()

export const encodeConfState = (c: ConfState): Uint8Array =>
  utf8.encode(JSON.stringify({ voters: [...c.voters], learners: [...c.learners] }))

export const decodeConfState = (b: Uint8Array | undefined): ConfState => {
  if (b === undefined || b.length === 0) return { voters: [], learners: [] }
  const v = JSON.parse(utf8Decoder.decode(b)) as { voters?: unknown; learners?: unknown }
  const list = (x: unknown): string[] =>
    Array.isArray(x) && x.every((s) => typeof s === "string") ? (x as string[]) : []
  return { voters: list(v.voters), learners: list(v.learners) }
}

export class Applier {
  readonly store: MvccStore
  private readonly opts: ApplierOptions
  /** Membership as of the applied index (carried in snapshots as SM metadata). */
  membership: ConfState = { voters: [], learners: [] }
  clusterId = ""
  /** The replicated encryption state as of the applied index (SPEC §2.4). */
  encState: EncState = decodeEncState(undefined)

  get lastEncryptionIndex(): number {
    return this.encState.lastEncryptionIndex
  }

  /** The raft-envelope cutover index c (SPEC §2.5), 0 while there is none. */
  get cutoverIndex(): number {
    return this.encState.cutoverIndex
  }

  constructor(store: MvccStore, opts: ApplierOptions) {
    this.store = store
    this.opts = opts
  }

  /** Reloads the cached SM metadata (after open and after a snapshot install). */
  async reload(): Promise<void> {
    this.membership = decodeConfState(await this.store.getMeta(MetaName.Membership))
    const cid = await this.store.getMeta(MetaName.ClusterId)
    this.clusterId = cid === undefined ? "" : utf8Decoder.decode(cid)
    const es = await this.store.getMeta(ENCRYPTION_STATE_META)
    if (es !== undefined) this.encState = decodeEncState(es)
    else {
      const lei = await this.store.getMeta(LEGACY_LAST_ENCRYPTION_INDEX)
      this.encState = {
        ...decodeEncState(undefined),
        lastEncryptionIndex: lei === undefined ? 0 : Number(utf8Decoder.decode(lei)),
      }
    }
  }

  get appliedIndex(): number {
    return this.store.appliedIndex()
  }

  /**
   * Applies `entries` (consecutive, starting right after the applied index).
   * Stops at the first node-local fault. `sync` fsyncs the final batch.
   * `beforeWrite` gets the outcomes once they are all known, before the
   * final batch is written (see RaftNode: KV writes are answered then).
   */
  async apply(
    entries: readonly Entry[],
    options: {
      readonly sync?: boolean
      readonly beforeWrite?: (outcomes: readonly EntryOutcome[]) => void
    } = {},
  ): Promise<ApplyResult> {
    const outcomes: EntryOutcome[] = []
    if (entries.length > 0 && this.opts.beforeApply !== undefined) {
      const h = await this.opts.beforeApply()
      if (h !== null)
        return { outcomes, appliedIndex: this.store.appliedIndex(), halt: { index: entries[0]!.index, ...h } }
    }
    const fault = this.opts.faults.check()
    let batch = this.store.batch()
    let dirty = false
    let halt: HaltInfo | null = null
    // Snapshot of cached metadata, restored if the batch fails to commit.
    const saved = { m: this.membership, c: this.clusterId, e: this.encState }
    try {
      for (const e of entries) {
        const f = fault?.(e.index) ?? null
        if (f !== null) {
          halt = f
          break
        }
        if (e.type === "Normal") {
          // Views, not copies: what apply keeps (stored values, envelopes) it seals or copies itself.
          const decoded = decodeEntry(e.data, { copy: false })
          if (Result.isFailure(decoded)) {
            outcomes.push(this.reject(batch, e, decoded.failure.code, decoded.failure.message))
          } else {
            const p = decoded.success
            if (p.tag === Tag.Registration || p.tag === Tag.Bootstrap || p.tag === Tag.Control) {
              // The keystore makes its own effects durable: commit ours first, then wait for it.
              if (dirty) {
                await batch.commit()
                batch = this.store.batch()
                dirty = false
              }
              const r = await this.opts.dispatcher.dispatch({
                index: e.index,
                prevEncryptionIndex: this.encState.lastEncryptionIndex,
                payload: p,
                entry: e.data,
                clusterId: this.clusterId,
              })
              if (r._tag === "Failed") {
                halt = { index: e.index, reason: r.code, message: r.reason, transient: r.transient }
                break
              }
              if (r._tag === "Rejected") outcomes.push(this.reject(batch, e, r.code, r.reason))
              else outcomes.push({ kind: "other", index: e.index, term: e.term })
              this.encState = nextEncState(
                this.encState,
                e.index,
                p,
                r._tag === "Rejected" ? "rejected" : "applied",
              )
              batch.putMeta(ENCRYPTION_STATE_META, encodeEncState(this.encState))
              this.opts.onEncryptionApplied?.(e.index, this.encState)
            } else {
              const o = await this.applyPayload(batch, e, p)
              if ("halt" in o) {
                halt = o.halt
                break
              }
              outcomes.push(o)
            }
          }
        } else if (e.type === "ConfChange") {
          const cc = decodeConfChange(e.data)
          if (cc !== null) {
            const r = applyConfChangeToState(this.membership, cc)
            // The core rejects the same invalid change the same way: a no-op everywhere.
            if (r.ok) {
              this.membership = r.confState
              batch.putMeta(MetaName.Membership, encodeConfState(r.confState))
            }
          }
          outcomes.push({ kind: "other", index: e.index, term: e.term })
        } else {
          outcomes.push({ kind: "other", index: e.index, term: e.term })
        }
        batch.setApplied(e.index)
        dirty = true
      }
      options.beforeWrite?.(outcomes)
      if (dirty) {
        const delay = this.opts.faults.writeDelayMs ?? 0
        if (delay > 0) await new Promise((r) => setTimeout(r, delay))
        await batch.commit({ sync: options.sync ?? false })
      }
    } catch (err) {
      this.membership = saved.m
      this.clusterId = saved.c
      this.encState = saved.e
      throw err
    }
    return { outcomes, appliedIndex: this.store.appliedIndex(), halt }
  }

  private reject(batch: ApplyBatch, e: Entry, code: string, reason: string): EntryOutcome {
    batch.recordRejection(e.index, code, reason)
    return { kind: "rejected", index: e.index, term: e.term, code, reason }
  }

  private async applyPayload(
    batch: ApplyBatch,
    e: Entry,
    p: EntryPayload,
    opened = false,
  ): Promise<EntryOutcome | { readonly halt: HaltInfo }> {
    switch (p.tag) {
      case Tag.KvOp:
      case Tag.KvBatch: {
        if (!opened && cutoverVerdict(this.cutoverIndex, e.index, false) !== "ok")
          return this.reject(
            batch,
            e,
            RejectionCode.UnsealedAfterCutover,
            `unsealed user entry after cutover ${this.cutoverIndex}`,
          )
        const ops: readonly KvOp[] = p.tag === Tag.KvOp ? [p.op] : p.ops
        if (ops.some((o) => o.op === "put") && this.opts.sealer.prepare !== undefined) {
          const ready = this.opts.sealer.prepare()
          const h = ready instanceof Promise ? await ready : ready
          if (h !== null) return { halt: { index: e.index, ...h } }
        }
        let deleted = false
        for (const op of ops) {
          if (op.op === "put") batch.put(op.key, e.index, this.opts.sealer.seal(op.key, e.index, op.value))
          else {
            deleted = (await batch.get(op.key)).found
            batch.delete(op.key, e.index)
          }
        }
        return { kind: "write", index: e.index, term: e.term, deleted }
      }
      case Tag.ClusterMeta: {
        if (this.clusterId !== "")
          return this.reject(
            batch,
            e,
            RejectionCode.PreconditionFailed,
            `cluster_id is already ${this.clusterId}`,
          )
        this.clusterId = p.cluster_id
        batch.putMeta(MetaName.ClusterId, utf8.encode(p.cluster_id))
        return { kind: "other", index: e.index, term: e.term }
      }
      case Tag.RaftEnvelope: {
        if (this.cutoverIndex === 0)
          return this.reject(
            batch,
            e,
            RejectionCode.SealedBeforeCutover,
            "raft envelope while no cutover exists",
          )
        if (e.index <= this.cutoverIndex)
          return this.reject(
            batch,
            e,
            RejectionCode.SealedBeforeCutover,
            `raft envelope at or before cutover ${this.cutoverIndex}`,
          )
        const opening = (this.opts.raftOpener ?? noRaftEnvelopeOpener).open(p.envelope)
        const inner = opening instanceof Promise ? await opening : opening
        if (!(inner instanceof Uint8Array)) return { halt: { index: e.index, ...inner } }
        const d = decodeEntry(inner, { copy: false })
        if (Result.isFailure(d)) return this.reject(batch, e, d.failure.code, d.failure.message)
        if (d.success.tag !== Tag.KvOp && d.success.tag !== Tag.KvBatch)
          return this.reject(
            batch,
            e,
            RejectionCode.MalformedEntry,
            `a raft envelope holds tag 0x0${d.success.tag}; only 0x00/0x01 may be sealed`,
          )
        return this.applyPayload(batch, e, d.success, true)
      }
      default:
        // 0x03–0x05 are dispatched by the caller.
        return { kind: "other", index: e.index, term: e.term }
    }
  }
}
