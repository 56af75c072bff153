// retire-dek (SPEC.md §5): never the active key, and only once no node's
// stored versions, retained log entries or snapshots reference the key
// (every member's node-status counts). Pure.
import { ApiError } from "@ekv/wire"
import type { NodeStatusReply } from "@ekv/wire/consensus-admin-protocol"
import type { LeaderState } from "./encryptionState.ts"

export interface UnmetCriterion {
  readonly node: string
  readonly criterion: "stored-versions" | "log-entries" | "snapshots" | "node-status-unavailable"
  readonly count?: number
  readonly message?: string
}

/** NotFound (unknown or already retired key) or ActiveKey, checked before the gates' later steps. */
export const retireTarget = (
  state: LeaderState,
  keyId: number,
): { readonly _tag: "Ok" } | { readonly _tag: "Error"; readonly error: ApiError.ApiError } => {
  const key = state.keys.find((k) => k.key_id === keyId)
  if (key === undefined)
    return {
      _tag: "Error",
      error: new ApiError.NotFound({ message: `no DEK with key id ${keyId}`, details: { key_id: keyId } }),
    }
  if (key.retired)
    return {
      _tag: "Error",
      error: new ApiError.NotFound({
        message: `DEK ${keyId} is already retired`,
        details: { key_id: keyId, retired: true },
      }),
    }
  return { _tag: "Ok" }
}

export const activeKeyError = (
  state: LeaderState,
  keyId: number,
): ApiError.FailedPrecondition | undefined => {
  const purpose =
    state.active.storage === keyId ? "storage" : state.active.raft === keyId ? "raft" : undefined
  return purpose === undefined
    ? undefined
    : ApiError.failedPrecondition(
        ApiError.PreconditionReason.ActiveKey,
        `DEK ${keyId} is the active ${purpose} key`,
        {
          key_id: keyId,
          purpose,
        },
      )
}

/** Every member's references to `keyId`; a member that did not answer cannot prove it has none. */
export const unmetRetireCriteria = (
  members: ReadonlyArray<string>,
  keyId: number,
  statuses: ReadonlyMap<string, NodeStatusReply | ApiError.ApiError>,
): ReadonlyArray<UnmetCriterion> => {
  const k = String(keyId)
  const out: UnmetCriterion[] = []
  for (const node of members) {
    const s = statuses.get(node)
    if (s === undefined || !("node" in s) || s instanceof Error) {
      out.push({
        node,
        criterion: "node-status-unavailable",
        message: s instanceof Error ? s.message : "not asked",
      })
      continue
    }
    const counts = [
      ["stored-versions", s.versions_by_key_id[k] ?? 0],
      ["log-entries", s.log_entries_by_key_id[k] ?? 0],
      ["snapshots", s.snapshots_by_key_id[k] ?? 0],
    ] as const
    for (const [criterion, count] of counts) if (count > 0) out.push({ node, criterion, count })
  }
  return out
}

export const retireCriteriaError = (keyId: number, unmet: ReadonlyArray<UnmetCriterion>) =>
  ApiError.failedPrecondition(
    ApiError.PreconditionReason.RetireCriteriaUnmet,
    `DEK ${keyId} is still referenced: ${unmet
      .map((u) => `${u.node} ${u.criterion}${u.count === undefined ? "" : ` (${u.count})`}`)
      .join(", ")}`,
    { key_id: keyId, unmet },
  )
