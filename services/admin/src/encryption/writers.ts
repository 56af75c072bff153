// Writer batches and registrations checked against the leader's view before
// anything is proposed (CONTRACT.md §1, §3; SPEC.md §4.4, §5). Pure.
import { fullNodeId as fullNodeIdOf } from "@ekv/crypto"
import { ApiError, nodeId16 } from "@ekv/wire"
import type { LeaderState, StateMember, StateRegistryRow } from "./encryptionState.ts"

/** A node allowed to be named as a writer: a member, or a pending candidate (in-progress add-learner). */
export interface WriterTarget {
  readonly node: string
  readonly full_node_id: bigint
  readonly pending: boolean
}

/** The member or pending candidate with this full_node_id. */
export const findWriterTarget = (
  state: LeaderState,
  pending: ReadonlyArray<string>,
  id: bigint,
): WriterTarget | undefined => {
  const m = state.members.find((x) => x.full_node_id === id)
  if (m !== undefined) return { node: m.node, full_node_id: m.full_node_id, pending: false }
  const c = pending.find((n) => fullNodeIdOf(n) === id && !state.members.some((x) => x.node === n))
  return c === undefined ? undefined : { node: c, full_node_id: id, pending: true }
}

export const notAMember = (ids: ReadonlyArray<bigint>) =>
  ApiError.failedPrecondition(
    ApiError.PreconditionReason.NotAMember,
    `full_node_id ${ids.join(", ")} is neither a member nor a pending candidate`,
    { full_node_ids: ids.map(String) },
  )

export interface BatchLine {
  readonly node: string
  readonly full_node_id: bigint
  readonly local_epoch: number
}

/**
 * An explicit bootstrap batch must list exactly Voters ∪ Learners: a writer
 * that is not a member (nor a pending candidate) → NotAMember; a member
 * missing → MemberNotRegistered.
 */
export const explicitBatch = (
  state: LeaderState,
  pending: ReadonlyArray<string>,
  writers: ReadonlyArray<{ readonly full_node_id: bigint; readonly local_epoch: number }>,
):
  | { readonly _tag: "Ok"; readonly lines: ReadonlyArray<BatchLine> }
  | { readonly _tag: "Error"; readonly error: ApiError.ApiError } => {
  const lines: BatchLine[] = []
  const strangers: bigint[] = []
  for (const w of writers) {
    const t = findWriterTarget(state, pending, w.full_node_id)
    if (t === undefined) strangers.push(w.full_node_id)
    else lines.push({ node: t.node, full_node_id: w.full_node_id, local_epoch: w.local_epoch })
  }
  if (strangers.length > 0) return { _tag: "Error", error: notAMember(strangers) }
  const missing = state.members.filter((m) => !lines.some((l) => l.full_node_id === m.full_node_id))
  if (missing.length > 0)
    return {
      _tag: "Error",
      error: ApiError.failedPrecondition(
        ApiError.PreconditionReason.MemberNotRegistered,
        `the batch must list every member; missing: ${missing.map((m) => m.node).join(", ")}`,
        { nodes: missing.map((m) => m.node) },
      ),
    }
  return { _tag: "Ok", lines }
}

/** Two members whose full_node_ids share a node_id16 cannot both be writers (SPEC.md §3). */
export const memberIdClash = (members: ReadonlyArray<StateMember>): ApiError.NodeIDCollision | undefined => {
  const seen = new Map<number, StateMember>()
  for (const m of members) {
    const id16 = nodeId16(m.full_node_id)
    const other = seen.get(id16)
    if (other !== undefined)
      return new ApiError.NodeIDCollision({
        message: `members ${other.node} and ${m.node} share node_id16 ${id16}`,
        details: { node_id16: id16, nodes: [other.node, m.node] },
      })
    seen.set(id16, m)
  }
  return undefined
}

export type RegistrationVerdict =
  | { readonly _tag: "Inserted" }
  | { readonly _tag: "Advanced"; readonly row: StateRegistryRow }
  | { readonly _tag: "Unchanged"; readonly row: StateRegistryRow }
  /** Same epoch with a session id: only the row's last_session_id decides; the leader does. */
  | { readonly _tag: "LeaderDecides"; readonly row: StateRegistryRow }
  | { readonly _tag: "Rejected"; readonly error: ApiError.NodeIDCollision | ApiError.LocalEpochRollback }

/** SPEC.md §4.4's registration cases against the leader's applied registry. */
export const registrationVerdict = (
  registry: ReadonlyArray<StateRegistryRow>,
  reg: {
    readonly dek_id: number
    readonly full_node_id: bigint
    readonly local_epoch: number
    readonly session_id?: string | undefined
  },
): RegistrationVerdict => {
  const id16 = nodeId16(reg.full_node_id)
  const row = registry.find((r) => r.dek_id === reg.dek_id && r.node_id16 === id16)
  if (row === undefined) return { _tag: "Inserted" }
  if (row.full_node_id !== reg.full_node_id)
    return {
      _tag: "Rejected",
      error: new ApiError.NodeIDCollision({
        message: `node_id16 ${id16} under DEK ${reg.dek_id} belongs to full_node_id ${row.full_node_id}`,
        details: { dek_id: reg.dek_id, node_id16: id16, registered: String(row.full_node_id) },
      }),
    }
  if (reg.local_epoch > row.last_seen_local_epoch) return { _tag: "Advanced", row }
  if (reg.local_epoch < row.last_seen_local_epoch)
    return {
      _tag: "Rejected",
      error: new ApiError.LocalEpochRollback({
        message: `local_epoch ${reg.local_epoch} is below ${row.last_seen_local_epoch} registered under DEK ${reg.dek_id}`,
        details: {
          dek_id: reg.dek_id,
          local_epoch: reg.local_epoch,
          last_seen_local_epoch: row.last_seen_local_epoch,
        },
      }),
    }
  return reg.session_id === undefined ? { _tag: "Unchanged", row } : { _tag: "LeaderDecides", row }
}

/** Members without a registry row under `dekId`. */
export const unregisteredMembers = (state: LeaderState, dekId: number): ReadonlyArray<StateMember> =>
  state.members.filter(
    (m) => !state.registry.some((r) => r.dek_id === dekId && r.full_node_id === m.full_node_id),
  )

export const memberNotRegistered = (dekId: number, missing: ReadonlyArray<StateMember>) =>
  ApiError.failedPrecondition(
    ApiError.PreconditionReason.MemberNotRegistered,
    `members without a registry row under DEK ${dekId}: ${missing.map((m) => m.node).join(", ")}`,
    { dek_id: dekId, nodes: missing.map((m) => m.node) },
  )
