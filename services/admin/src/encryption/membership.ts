// Membership after activation (SPEC.md §5): once DEKs exist, a node joins
// (add-learner) or becomes a voter (promote) only if it is encryption-capable
// (PeerNotEncryptionCapable) and, before the change is proposed, holds a
// registry row under every unretired DEK (PeerNotEncryptionRegistered when a
// row is still missing).
//
// A missing row is inserted here, through the leader, at epoch 0 and without
// a session: a placeholder that says "a writer of this DEK, no epoch used
// yet". The candidate's epochs belong to its own writer session (SPEC §6):
// the session takes max(local, floor) + 1 ≥ 1 and registers that with its
// session_id. Registering the candidate at the epoch its capability report
// gives would race that session — the report's epoch IS the live session's —
// and whichever 0x03 applied second would be refused: the session's own
// refusal halts the node (LocalEpochRollback, "same epoch, another
// session"). An existing row is left alone for the same reason.
import { fullNodeId as fullNodeIdOf } from "@ekv/crypto"
import { ApiError, type KeyId, Tag } from "@ekv/wire"
import { Effect } from "effect"
import type { AdminConfig } from "../config.ts"
import { EncryptionBus } from "./encryptionBus.ts"
import { leaderContext, propose, type Services } from "./encryptionFlows.ts"
import { unretiredKeys } from "./encryptionState.ts"
import { registrationVerdict } from "./writers.ts"

/** The epoch of a candidate's placeholder row: below every epoch a writer session takes. */
export const PLACEHOLDER_EPOCH = 0

const notCapable = (node: string, why: string, extra?: Record<string, unknown>) =>
  ApiError.failedPrecondition(
    ApiError.PreconditionReason.PeerNotEncryptionCapable,
    `node ${node} is not encryption-capable: ${why}`,
    { node, ...extra },
  )

const notRegistered = (node: string, keys: ReadonlyArray<number>, cause?: ApiError.ApiError) =>
  ApiError.failedPrecondition(
    ApiError.PreconditionReason.PeerNotEncryptionRegistered,
    `node ${node} has no registry row under DEK ${keys.join(", ")}${cause === undefined ? "" : ` (${cause._tag}: ${cause.message})`}`,
    { node, dek_ids: keys, ...(cause === undefined ? {} : { cause: cause._tag }) },
  )

/**
 * Checks and registers `node` before add-learner / promote. Before
 * bootstrap (no DEKs) membership is not gated by encryption at all.
 */
export const admitCandidate = (
  node: string,
  config: AdminConfig,
): Effect.Effect<void, ApiError.ApiError, Services> =>
  Effect.gen(function* () {
    const bus = yield* EncryptionBus
    const found = yield* leaderContext.pipe(
      Effect.map((ctx) => ({ _tag: "State" as const, ctx })),
      // leaderContext already retried with a fresh leader. A leader that serves
      // cluster status but nothing on its encryption subjects has no encryption
      // support, hence no DEKs: membership is not gated.
      Effect.catchIf(
        (e) => e._tag === "Unavailable" && e.details?.reason === "NoResponders",
        (e) =>
          Effect.logWarning(`no encryption state from the leader (${e.message}); membership not gated`).pipe(
            Effect.as({ _tag: "NoEncryption" as const }),
          ),
      ),
    )
    if (found._tag === "NoEncryption") return
    const ctx = found.ctx
    const keys = unretiredKeys(ctx.state)
    if (keys.length === 0) return
    const expected = ctx.state.members.find((m) => m.node === node)?.full_node_id ?? fullNodeIdOf(node)
    const report = yield* bus
      .capability(node, config.electionTimeoutMs)
      .pipe(Effect.mapError((e) => notCapable(node, `its keystore does not answer (${e.message})`)))
    if (!report.encryption_capable)
      return yield* Effect.fail(notCapable(node, "its keystore reports not capable"))
    if (report.full_node_id !== expected)
      return yield* Effect.fail(
        notCapable(node, `it reports full_node_id ${report.full_node_id}, expected ${expected}`, {
          full_node_id: String(report.full_node_id),
        }),
      )
    for (const key of keys) {
      const reg = { dek_id: key.key_id, full_node_id: expected, local_epoch: PLACEHOLDER_EPOCH }
      const verdict = registrationVerdict(ctx.state.registry, reg)
      // Any row of this node (epoch ≥ 0) is its own: it is registered already.
      if (verdict._tag === "Rejected" && verdict.error._tag === "LocalEpochRollback") continue
      if (verdict._tag === "Rejected") return yield* Effect.fail(verdict.error)
      if (verdict._tag !== "Inserted") continue
      yield* propose(
        ctx,
        { tag: Tag.Registration, registration: { ...reg, dek_id: key.key_id as KeyId } },
        ApiError.PreconditionReason.PeerNotEncryptionRegistered,
      ).pipe(
        // The candidate's own session registered first: the row exists (checked below).
        Effect.catchIf(
          (e) => e._tag === "LocalEpochRollback",
          () => Effect.void,
        ),
        Effect.catchIf(
          (e) => e._tag !== "NodeIDCollision",
          (e) => Effect.fail(notRegistered(node, [key.key_id], e)),
        ),
      )
    }
    const after = yield* leaderContext
    const missing = unretiredKeys(after.state)
      .filter((k) => !after.state.registry.some((r) => r.dek_id === k.key_id && r.full_node_id === expected))
      .map((k) => k.key_id)
    if (missing.length > 0) return yield* Effect.fail(notRegistered(node, missing))
  })
