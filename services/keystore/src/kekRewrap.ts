// The wraps of a KEK rotation (SPEC.md §4.4 rewrap-deks, §5): every unretired
// DEK unwrapped with the current KEK and wrapped under the loaded next KEK
// (fresh random nonce, purpose and key id in the AAD, CONTRACT.md §7). Only
// the new wraps leave; each plaintext DEK is wiped as soon as it is rewrapped.
// Nothing changes here: the 0x05 entry carrying these wraps switches KEKs
// when it applies (applier.ts verifyRewrap).
import { Data, Effect } from "effect"
import { unwrapWith } from "./applier.ts"
import { unretiredKeyIds } from "./entryPlan.ts"
import type { KekMismatch } from "./errors.ts"
import type { KeystoreState } from "./keystoreState.ts"

/**
 * A rewrap this keystore cannot serve; `reason` is the CONTRACT.md §1
 * FailedPrecondition reason: no current KEK (KekNotConfigured), no DEKs yet
 * (NotBootstrapped), or a next KEK that is absent or not `next_kek_id`
 * (KekNextMismatch — §1 has no separate reason for "absent").
 */
export class RewrapRefused extends Data.TaggedError("RewrapRefused")<{
  readonly message: string
  readonly reason: "KekNotConfigured" | "NotBootstrapped" | "KekNextMismatch"
  /** The next KEK this keystore holds, null when none (KekNextMismatch only). */
  readonly loadedNextKekId?: string | null
}> {}

export interface RewrappedDek {
  readonly keyId: number
  /** The DEK wrapped under the next KEK; the plaintext never leaves. */
  readonly wrapped: Uint8Array
}

export const rewrapDeks = (
  state: KeystoreState,
  nextKekId: string,
): Effect.Effect<ReadonlyArray<RewrappedDek>, RewrapRefused | KekMismatch> =>
  // Under the lock: the wraps cover exactly the unretired DEKs of one sidecar.
  state.lock.withPermit(
    Effect.gen(function* () {
      const { current, next } = state.keks
      if (current === undefined)
        return yield* new RewrapRefused({ message: "no KEK is loaded", reason: "KekNotConfigured" })
      if (next?.kekId !== nextKekId) {
        return yield* new RewrapRefused({
          message:
            next === undefined
              ? `rewrap to KEK ${nextKekId}, but no EKV_KEK_NEXT_FILE is loaded`
              : `rewrap to KEK ${nextKekId}, but EKV_KEK_NEXT_FILE holds KEK ${next.kekId}`,
          reason: "KekNextMismatch",
          loadedNextKekId: next?.kekId ?? null,
        })
      }
      const sidecar = state.sidecar
      const ids = unretiredKeyIds(sidecar)
      if (ids.length === 0)
        return yield* new RewrapRefused({ message: "no DEKs exist yet", reason: "NotBootstrapped" })
      const out: Array<RewrappedDek> = []
      for (const keyId of ids) {
        const key = sidecar.keys[String(keyId)]!
        const dek = yield* unwrapWith(current, keyId, key.purpose, Buffer.from(key.wrapped, "base64"))
        const wrapped = yield* next
          .wrap({ dek, purpose: key.purpose, keyId })
          .pipe(Effect.ensuring(Effect.sync(() => dek.fill(0))))
        out.push({ keyId, wrapped })
      }
      return out
    }),
  )
