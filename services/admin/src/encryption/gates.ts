// The gates of SPEC.md §5 in CONTRACT.md §1's order: the leader's gate (its
// node encryption-capable: flag AND KEK AND applier), then the member poll
// over Voters ∪ Learners. Pure: answers in, verdict out.
import { ApiError, type CapabilityReport } from "@ekv/wire"
import type { StateMember } from "./encryptionState.ts"

/** One node's capability answer: its report, or the error asking it gave. */
export type CapabilityAnswer =
  | { readonly _tag: "Report"; readonly report: CapabilityReport }
  | { readonly _tag: "NoAnswer"; readonly error: ApiError.ApiError }

export type GateVerdict =
  | { readonly _tag: "Open"; readonly report: CapabilityReport }
  | { readonly _tag: "Closed"; readonly reason: ApiError.PreconditionReason; readonly message: string }

/**
 * The leader's gate. A keystore with the flag on and no KEK, or whose
 * directory fails the durability probe, refuses to start (SPEC.md §7), so a
 * keystore that answers "not capable" has its flag off → EncryptionDisabled;
 * one that does not answer → KekNotConfigured; a capable keystore whose
 * consensus does not yet count it capable (session not open) → ApplierNotReady.
 */
export const leaderGate = (leader: string, leaderCapable: boolean, answer: CapabilityAnswer): GateVerdict => {
  if (answer._tag === "NoAnswer")
    return {
      _tag: "Closed",
      reason: ApiError.PreconditionReason.KekNotConfigured,
      message: `the leader ${leader}'s keystore does not answer (${answer.error.message}); no KEK is available`,
    }
  const r = answer.report
  if (!r.encryption_capable)
    return {
      _tag: "Closed",
      reason: ApiError.PreconditionReason.EncryptionDisabled,
      message: `encryption is not enabled on the leader ${leader} (its keystore is not encryption-capable)`,
    }
  if (r.kek_id === null)
    return {
      _tag: "Closed",
      reason: ApiError.PreconditionReason.KekNotConfigured,
      message: `the leader ${leader}'s keystore has no KEK`,
    }
  if (!leaderCapable)
    return {
      _tag: "Closed",
      reason: ApiError.PreconditionReason.ApplierNotReady,
      message: `the leader ${leader} is not ready to apply encryption entries yet`,
    }
  return { _tag: "Open", report: r }
}

export const gateError = (leader: string, v: Extract<GateVerdict, { _tag: "Closed" }>) =>
  ApiError.failedPrecondition(v.reason, v.message, { leader })

export interface PolledMember {
  readonly node: string
  readonly role: StateMember["role"]
  readonly full_node_id: bigint
  readonly report: CapabilityReport
}

export interface PollFailure {
  readonly node: string
  readonly reason: string
}

/**
 * The member poll: every member answered, is capable, and reports the
 * identity the leader's configuration has for it.
 */
export const memberPoll = (
  members: ReadonlyArray<StateMember>,
  answers: ReadonlyMap<string, CapabilityAnswer>,
):
  | { readonly _tag: "Ok"; readonly members: ReadonlyArray<PolledMember> }
  | { readonly _tag: "Failed"; readonly nodes: ReadonlyArray<PollFailure> } => {
  const ok: PolledMember[] = []
  const failed: PollFailure[] = []
  for (const m of members) {
    const a = answers.get(m.node)
    if (a === undefined || a._tag === "NoAnswer") {
      failed.push({ node: m.node, reason: a === undefined ? "NotPolled" : `Unreachable: ${a.error.message}` })
      continue
    }
    const r = a.report
    if (!r.encryption_capable) failed.push({ node: m.node, reason: "NotEncryptionCapable" })
    else if (r.kek_id === null) failed.push({ node: m.node, reason: "KekNotConfigured" })
    else if (m.full_node_id !== 0n && r.full_node_id !== m.full_node_id)
      failed.push({
        node: m.node,
        reason: `FullNodeIdMismatch: reports ${r.full_node_id}, the configuration has ${m.full_node_id}`,
      })
    else
      ok.push({
        node: m.node,
        role: m.role,
        full_node_id: m.full_node_id === 0n ? r.full_node_id : m.full_node_id,
        report: r,
      })
  }
  return failed.length === 0 ? { _tag: "Ok", members: ok } : { _tag: "Failed", nodes: failed }
}

export const pollError = (nodes: ReadonlyArray<PollFailure>) =>
  new ApiError.CapabilityCheckFailed({
    message: `members not encryption-capable: ${nodes.map((n) => `${n.node} (${n.reason})`).join(", ")}`,
    details: { nodes: nodes.map((n) => ({ node: n.node, reason: n.reason })) },
  })

/**
 * rewrap-deks (SPEC.md §5): every member reports the same non-null
 * next_kek_id; that is the KEK the new wraps go under.
 */
export const commonNextKek = (
  polled: ReadonlyArray<PolledMember>,
):
  | { readonly _tag: "Ok"; readonly nextKekId: string }
  | { readonly _tag: "Mismatch"; readonly error: ApiError.FailedPrecondition } => {
  const ids = new Set(polled.map((p) => p.report.next_kek_id))
  const only = [...ids][0]
  if (ids.size === 1 && only !== null && only !== undefined) return { _tag: "Ok", nextKekId: only }
  return {
    _tag: "Mismatch",
    error: ApiError.failedPrecondition(
      ApiError.PreconditionReason.KekNextMismatch,
      ids.has(null)
        ? `members without a next KEK: ${polled
            .filter((p) => p.report.next_kek_id === null)
            .map((p) => p.node)
            .join(", ")}`
        : "members report different next KEKs",
      { nodes: polled.map((p) => ({ node: p.node, next_kek_id: p.report.next_kek_id })) },
    ),
  }
}
