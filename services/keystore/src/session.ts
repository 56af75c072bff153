// Writer sessions and DEK hand-over (SPEC.md §4.3, §6). Consensus opens a
// session with an ephemeral X25519 public key, a fresh session_id and, per
// DEK, the epoch floor it obtained from the leader. Every unretired DEK's
// local_epoch becomes max(local, floor) + 1 and is fsync'd in the sidecar
// BEFORE the reply carries the DEKs sealed to that key. A new session
// supersedes the previous one.
import { sealHandover } from "@ekv/crypto"
import { Data, Effect } from "effect"
import { unwrapWith } from "./applier.ts"
import type { KekMismatch, RegistryFailed, SidecarWriteFailed } from "./errors.ts"
import { type KeystoreState, persistSidecar } from "./keystoreState.ts"
import type { SessionRecord } from "./outcome.ts"
import type { Sidecar } from "./sidecarFile.ts"

export const MAX_EPOCH = 0xffff
/** Above this an epoch logs a warning (SPEC.md §4.3); the leader rotates (§5). */
export const EPOCH_WARNING = 0xff00

/** The session's public key is not a usable X25519 key. */
export class InvalidSessionKey extends Data.TaggedError("InvalidSessionKey")<{ readonly message: string }> {}

export interface SessionOpen {
  readonly sessionId: string
  readonly publicKey: Uint8Array
  /** dek_id → highest epoch registered for this node in the leader's log. */
  readonly floors: Readonly<Record<string, number>>
  /** Last index of the leader's log the floors cover. */
  readonly floorsAsOfIndex: number
}

export interface SessionOpened {
  /** sealHandover of every handed-over DEK with its new epoch. */
  readonly sealed: Uint8Array
  readonly keyIds: ReadonlyArray<number>
  /** Unretired DEKs left out: their epoch would pass 0xFFFF (consensus halts LocalEpochExhausted if it needs one). */
  readonly exhaustedKeyIds: ReadonlyArray<number>
  /** Handed-over DEKs whose new epoch is above 0xFF00. */
  readonly highEpochKeyIds: ReadonlyArray<number>
}

/** The new epochs, pure: max(local, floor) + 1, or exhausted. */
export const sessionEpochs = (
  sidecar: Sidecar,
  floors: Readonly<Record<string, number>>,
): { readonly epochs: ReadonlyMap<number, number>; readonly exhausted: ReadonlyArray<number> } => {
  const epochs = new Map<number, number>()
  const exhausted: Array<number> = []
  for (const [id, key] of Object.entries(sidecar.keys)) {
    if (key.retired) continue
    const epoch = Math.max(key.local_epoch, floors[id] ?? 0) + 1
    if (epoch > MAX_EPOCH) exhausted.push(Number(id))
    else epochs.set(Number(id), epoch)
  }
  return { epochs, exhausted: exhausted.sort((a, b) => a - b) }
}

export const openSession = (
  state: KeystoreState,
  req: SessionOpen,
): Effect.Effect<SessionOpened, KekMismatch | SidecarWriteFailed | RegistryFailed | InvalidSessionKey> =>
  state.lock.withPermit(
    Effect.gen(function* () {
      const { epochs, exhausted } = sessionEpochs(state.sidecar, req.floors)
      const keys: Array<{ keyId: number; purpose: "storage" | "raft"; dek: Uint8Array; localEpoch: number }> =
        []
      for (const [keyId, localEpoch] of [...epochs].sort((a, b) => a[0] - b[0])) {
        const k = state.sidecar.keys[String(keyId)]!
        const dek = yield* unwrapWith(state.keks.current, keyId, k.purpose, Buffer.from(k.wrapped, "base64"))
        keys.push({ keyId, purpose: k.purpose, dek, localEpoch })
      }
      let sealed: Uint8Array
      try {
        sealed = sealHandover({
          recipientPublicKey: req.publicKey,
          nodeSecret: state.config.nodeSecret,
          nodeId: state.config.nodeId,
          sessionId: req.sessionId,
          keys,
        })
      } catch (cause) {
        return yield* new InvalidSessionKey({ message: `cannot seal to the session key: ${String(cause)}` })
      } finally {
        for (const k of keys) k.dek.fill(0)
      }
      const nextKeys = { ...state.sidecar.keys }
      for (const [keyId, epoch] of epochs)
        nextKeys[String(keyId)] = { ...nextKeys[String(keyId)]!, local_epoch: epoch }
      // Durable before the reply: an epoch handed out is never handed out again.
      // With nothing handed out nothing changes, and no keys.json appears before bootstrap.
      if (epochs.size > 0) yield* persistSidecar(state, { ...state.sidecar, keys: nextKeys })
      const record: SessionRecord = {
        session_id: req.sessionId,
        public_key: Buffer.from(req.publicKey).toString("base64"),
        floors: { ...req.floors },
        floors_as_of_index: req.floorsAsOfIndex,
      }
      yield* state.store.putSession(record)
      const high = [...epochs].filter(([, e]) => e > EPOCH_WARNING).map(([id]) => id)
      if (high.length > 0) {
        yield* Effect.logWarning(`local_epoch above 0xFF00 for key ids ${high.join(", ")}; rotate these DEKs`)
      }
      if (exhausted.length > 0) {
        yield* Effect.logWarning(
          `key ids ${exhausted.join(", ")} left out of session ${req.sessionId}: local_epoch would pass 0xFFFF (LocalEpochExhausted until rotated)`,
        )
      }
      return { sealed, keyIds: keys.map((k) => k.keyId), exhaustedKeyIds: exhausted, highEpochKeyIds: high }
    }),
  )
