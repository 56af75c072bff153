// resync-sidecar (SPEC.md §5), run while this node's consensus is stopped:
// the encryption entries after what this keystore applied are fetched from the
// leader and applied through the Applier (log-replay); when the leader has
// compacted past them, its full encryption state is installed like a snapshot
// restore (full-state), epochs by the rule of §6 — never the leader's.
import { decodeEntry, type EncryptionPayload } from "@ekv/wire"
import type { EncryptionStateExport } from "@ekv/wire/keystore-protocol"
import { Data, Effect, Result } from "effect"
import { restoreState } from "./encryptionState.ts"
import type { ApplyError, CorruptSidecar, KekMismatch, RegistryFailed, SidecarWriteFailed } from "./errors.ts"
import type { Keystore } from "./startup.ts"

export interface LogEntry {
  readonly index: number
  readonly prevEncryptionIndex: number
  /** The payload bytes as in the log (0x03–0x05). */
  readonly entry: Uint8Array
}

/** Where resync reads the leader's committed encryption history. */
export interface ResyncSource {
  /** Encryption entries (0x03–0x05) with index > `after`, ascending; "compacted" if the log no longer holds them all. */
  readonly entriesAfter: (after: number) => Effect.Effect<ReadonlyArray<LogEntry> | "compacted", ResyncFailed>
  readonly fullState: Effect.Effect<EncryptionStateExport, ResyncFailed>
}

/** The leader could not be read, or sent something unusable. */
export class ResyncFailed extends Data.TaggedError("ResyncFailed")<{ readonly message: string }> {}

export interface ResyncResult {
  readonly mode: "log-replay" | "full-state"
  readonly raftAppliedIndex: number
}

export const resync = (
  ks: Keystore,
  source: ResyncSource,
): Effect.Effect<
  ResyncResult,
  ResyncFailed | ApplyError | CorruptSidecar | KekMismatch | RegistryFailed | SidecarWriteFailed
> =>
  Effect.gen(function* () {
    const pending = yield* ks.state.store.restorePending
    // From the sidecar's index: the registry may be ahead of a rolled-back sidecar, and the
    // control entries in between must still apply (0x03s it already holds are skipped).
    const after = pending === undefined ? ks.state.sidecar.raft_applied_index : 0
    const lastRegistry = yield* ks.state.store.lastRegistryIndex
    const entries = pending === undefined ? yield* source.entriesAfter(after) : "compacted"
    if (entries !== "compacted") {
      for (const e of entries) {
        if (e.entry[0] === 0x03 && e.index <= lastRegistry) continue
        const decoded = decodeEntry(e.entry)
        if (Result.isFailure(decoded)) {
          return yield* new ResyncFailed({ message: `leader entry ${e.index}: ${decoded.failure.message}` })
        }
        const p = decoded.success
        if (p.tag !== 0x03 && p.tag !== 0x04 && p.tag !== 0x05) {
          return yield* new ResyncFailed({ message: `leader entry ${e.index} is not an encryption entry` })
        }
        yield* ks.applier.dispatch({
          index: e.index,
          prevEncryptionIndex: e.prevEncryptionIndex,
          payload: p as EncryptionPayload,
          session: undefined,
        })
      }
      return { mode: "log-replay", raftAppliedIndex: ks.state.sidecar.raft_applied_index } as const
    }
    yield* restoreState(ks.state, yield* source.fullState)
    return { mode: "full-state", raftAppliedIndex: ks.state.sidecar.raft_applied_index } as const
  })
