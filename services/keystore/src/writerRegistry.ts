// The writer registry's decision rules (SPEC.md §4.4), pure: given the row
// for (dek_id, node_id16) and a registration, the verdict and the new row.
// Replicas decide identically, so a rejection here is a deterministic result,
// never a halt. The I/O lives in registryStore.ts.

export interface WriterRow {
  readonly full_node_id: bigint
  readonly first_seen_local_epoch: number
  readonly last_seen_local_epoch: number
  /** Undefined for a row that only batch lines / session-less registrations wrote. */
  readonly last_session_id: string | undefined
  readonly raft_index: number
}

export interface RegistrationInput {
  readonly full_node_id: bigint
  readonly local_epoch: number
  /** Absent for an operator's register-writer and for batch lines: no session comparison. */
  readonly session_id?: string | undefined
}

export type RegistrationOutcome = "inserted" | "advanced" | "unchanged"
export type RegistrationRejection = "LocalEpochRollback" | "NodeIDCollision"

export type RegistrationDecision =
  | { readonly _tag: "Accepted"; readonly outcome: RegistrationOutcome; readonly row: WriterRow }
  | { readonly _tag: "Rejected"; readonly code: RegistrationRejection; readonly reason: string }

/** CONTRACT.md §7: the low 16 bits of full_node_id. */
export const nodeId16Of = (fullNodeId: bigint): number => Number(fullNodeId & 0xffffn)

/** The five outcomes of SPEC.md §4.4 plus the no-session rule. */
export const decideRegistration = (
  existing: WriterRow | undefined,
  reg: RegistrationInput,
  raftIndex: number,
): RegistrationDecision => {
  const session = reg.session_id
  if (existing === undefined) {
    return {
      _tag: "Accepted",
      outcome: "inserted",
      row: {
        full_node_id: reg.full_node_id,
        first_seen_local_epoch: reg.local_epoch,
        last_seen_local_epoch: reg.local_epoch,
        last_session_id: session,
        raft_index: raftIndex,
      },
    }
  }
  if (existing.full_node_id !== reg.full_node_id) {
    return {
      _tag: "Rejected",
      code: "NodeIDCollision",
      reason: `node_id16 ${nodeId16Of(reg.full_node_id)} is already a writer as full_node_id ${existing.full_node_id}; ${reg.full_node_id} cannot share it`,
    }
  }
  if (reg.local_epoch > existing.last_seen_local_epoch) {
    return {
      _tag: "Accepted",
      outcome: "advanced",
      row: {
        ...existing,
        last_seen_local_epoch: reg.local_epoch,
        // A session-less registration keeps the row's session (SPEC.md §4.4).
        last_session_id: session ?? existing.last_session_id,
        raft_index: raftIndex,
      },
    }
  }
  if (reg.local_epoch < existing.last_seen_local_epoch) {
    return {
      _tag: "Rejected",
      code: "LocalEpochRollback",
      reason: `local_epoch ${reg.local_epoch} is below the registered ${existing.last_seen_local_epoch} for full_node_id ${reg.full_node_id}`,
    }
  }
  // Equal epoch: a replay when it is the same session, or when there is no
  // session to compare. A different session at the same epoch would be two
  // writers sharing one (DEK, epoch): nonce reuse, so it is refused — also
  // when the row's epoch came from a session-less batch line.
  if (session === undefined || session === existing.last_session_id) {
    return { _tag: "Accepted", outcome: "unchanged", row: existing }
  }
  return {
    _tag: "Rejected",
    code: "LocalEpochRollback",
    reason: `local_epoch ${reg.local_epoch} is already registered for full_node_id ${reg.full_node_id} by ${existing.last_session_id === undefined ? "a writer batch" : `session ${existing.last_session_id}`}; session ${session} must use a higher epoch`,
  }
}

export interface BatchLine {
  readonly full_node_id: bigint
  readonly local_epoch: number
}

export type BatchDecision =
  | { readonly _tag: "Accepted"; readonly rows: ReadonlyMap<number, WriterRow> }
  | { readonly _tag: "Rejected"; readonly code: RegistrationRejection; readonly reason: string }

/**
 * The writer batch of a bootstrap or rotation: the lines registered in order
 * under a DEK that has no rows yet (its key id is new). Any line's rejection
 * rejects the whole entry.
 */
export const decideWriterBatch = (lines: ReadonlyArray<BatchLine>, raftIndex: number): BatchDecision => {
  const rows = new Map<number, WriterRow>()
  for (const line of lines) {
    const n16 = nodeId16Of(line.full_node_id)
    const d = decideRegistration(rows.get(n16), line, raftIndex)
    if (d._tag === "Rejected") return d
    rows.set(n16, d.row)
  }
  return { _tag: "Accepted", rows }
}
