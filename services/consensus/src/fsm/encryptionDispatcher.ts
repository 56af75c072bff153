// The FSM's hand-off of encryption entries (0x03–0x05) to this node's own
// keystore (SPEC §2.3): request/reply, at-least-once, and the outcome decides
// whether the entry is applied, rejected (deterministic) or halts this node.
import type { EncryptionPayload, HaltCode, RejectionCode } from "@ekv/wire"

export interface DispatchRequest {
  readonly index: number
  /** Index of the previous encryption entry this node applied (0 if none). */
  readonly prevEncryptionIndex: number
  readonly payload: EncryptionPayload
  /** The payload bytes exactly as in the log. */
  readonly entry: Uint8Array
  /** The cluster's id once this node knows it ("" before). */
  readonly clusterId: string
}

export type DispatchOutcome =
  | { readonly _tag: "Applied"; readonly outcome?: string; readonly keyIds?: readonly number[] }
  | { readonly _tag: "Rejected"; readonly code: RejectionCode; readonly reason: string }
  /** Node-local: halt at this index; `transient` causes are retried with backoff. */
  | { readonly _tag: "Failed"; readonly code: HaltCode; readonly reason: string; readonly transient: boolean }

export interface EncryptionDispatcher {
  dispatch(request: DispatchRequest): Promise<DispatchOutcome>
}

/**
 * No keystore on this node: every encryption entry halts this node
 * (transient: retried).
 */
export const keystoreUnavailableDispatcher: EncryptionDispatcher = {
  dispatch: async () => ({
    _tag: "Failed",
    code: "KeystoreUnavailable",
    reason: "no keystore dispatcher is configured on this node",
    transient: true,
  }),
}
