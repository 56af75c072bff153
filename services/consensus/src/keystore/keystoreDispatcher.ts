// The real EncryptionDispatcher (SPEC §2.3): sends the entry with
// prev_encryption_index (= the SM state's last encryption index) and this
// node's session to its keystore, retrying timeouts and "no responders" with
// backoff; after a bounded time it reports a transient KeystoreUnavailable
// halt (the driver keeps retrying and resumes by itself). A `Halted` reply
// halts with its reason; `rejected` is the deterministic rejection.
import { HaltCode, type RejectionCode } from "@ekv/wire"
import type { EncryptionSession } from "../encryption/session.ts"
import type { DispatchOutcome, DispatchRequest, EncryptionDispatcher } from "../fsm/encryptionDispatcher.ts"
import { haltReasonOf, isUnreachable, type KeystoreClient } from "./keystoreClient.ts"

const HALT_CODES = new Set<string>(Object.values(HaltCode))
/** How long one dispatch keeps retrying before the node reports the halt. */
export const DISPATCH_RETRY_BUDGET_MS = 5_000

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

export class KeystoreDispatcher implements EncryptionDispatcher {
  private readonly ks: KeystoreClient
  private readonly session: EncryptionSession
  private readonly fullNodeId: bigint
  private readonly budgetMs: number
  private readonly recent = new Map<number, { outcome?: string; keyIds: readonly number[] }>()

  /** The keystore's outcome of a recently applied entry (for the proposer's reply). */
  lastOutcome(index: number): { readonly outcome?: string; readonly keyIds: readonly number[] } | undefined {
    return this.recent.get(index)
  }

  private remember(index: number, v: { outcome?: string; keyIds: readonly number[] }): void {
    this.recent.set(index, v)
    if (this.recent.size > 256) this.recent.delete(this.recent.keys().next().value!)
  }

  /** Observed keystore apply latency (ekv_keystore_apply_seconds). */
  onLatency: ((seconds: number) => void) | undefined

  constructor(
    ks: KeystoreClient,
    session: EncryptionSession,
    fullNodeId: bigint,
    budgetMs = DISPATCH_RETRY_BUDGET_MS,
  ) {
    this.ks = ks
    this.session = session
    this.fullNodeId = fullNodeId
    this.budgetMs = budgetMs
  }

  async dispatch(req: DispatchRequest): Promise<DispatchOutcome> {
    const deadline = Date.now() + this.budgetMs
    let attempt = 0
    for (;;) {
      const session = this.session.dispatchSession
      const t0 = performance.now()
      try {
        const r = await this.ks.dispatch({
          index: req.index,
          prev_encryption_index: req.prevEncryptionIndex,
          entry: req.entry,
          ...(session === undefined ? {} : { session: session as never }),
          ...(req.clusterId === "" ? {} : { cluster_id: req.clusterId as never }),
        })
        this.onLatency?.((performance.now() - t0) / 1000)
        this.remember(
          req.index,
          r.status === "applied" ? { outcome: r.outcome, keyIds: r.key_ids } : { keyIds: r.key_ids },
        )
        if (r.status === "rejected") {
          const own =
            req.payload.tag === 0x03 &&
            req.payload.registration.full_node_id === this.fullNodeId &&
            session !== undefined &&
            req.payload.registration.session_id === session.session_id
          // SPEC §6: our own session registration rejected halts this node with that code.
          if (own && HALT_CODES.has(r.code))
            return { _tag: "Failed", code: r.code as HaltCode, reason: r.reason, transient: false }
          return { _tag: "Rejected", code: r.code as RejectionCode, reason: r.reason }
        }
        if (r.handover !== undefined && session !== undefined)
          this.session.acceptHandover(r.handover.sealed, r.handover.unregistered_key_ids, session.session_id)
        if (r.exhausted_key_ids.length > 0) this.session.markExhausted(r.exhausted_key_ids)
        // A DEK this entry created reaches the session only by a hand-over under it; once the
        // applier has recorded the entry (next task), the session fetches whatever it lacks.
        if (req.payload.tag !== 0x03) setTimeout(() => this.session.reconcile(), 0)
        return { _tag: "Applied", outcome: r.outcome, keyIds: r.key_ids }
      } catch (e) {
        const reason = haltReasonOf(e)
        if (reason !== undefined)
          return {
            _tag: "Failed",
            code: (HALT_CODES.has(reason) ? reason : "KeystoreUnavailable") as HaltCode,
            reason: (e as Error).message,
            transient: reason === "KeystoreUnavailable",
          }
        if (!isUnreachable(e) || Date.now() >= deadline)
          return {
            _tag: "Failed",
            code: "KeystoreUnavailable",
            reason: `keystore did not apply entry ${req.index}: ${(e as Error).message}`,
            transient: true,
          }
        await sleep(Math.min(1_000, 50 * 2 ** Math.min(attempt++, 5)))
      }
    }
  }
}
