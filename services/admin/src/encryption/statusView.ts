// EncryptionStatus (CONTRACT.md §3) assembled from the leader's `state`, its
// gate and each member's `node-status`. Pure.
import type { EncryptionPhase, EncryptionStatus } from "@ekv/wire"
import type { NodeStatusReply } from "@ekv/wire/consensus-admin-protocol"
import { isBootstrapped, type LeaderState } from "./encryptionState.ts"

/**
 * `disabled` — the leader's node is not encryption-capable (its keystore
 * says so, or does not answer); `capable` — it is, no DEKs; `bootstrapped` —
 * DEKs, storage envelope off; `storage-envelope`; `raft-envelope` (a cutover
 * index exists). A leader whose applier is merely not ready yet keeps the
 * cluster's phase.
 */
export const phaseOf = (state: LeaderState, leaderNodeCapable: boolean): EncryptionPhase => {
  if (!leaderNodeCapable) return "disabled"
  if (state.raft_envelope_cutover_index > 0) return "raft-envelope"
  if (state.storage_envelope_active) return "storage-envelope"
  return isBootstrapped(state) ? "bootstrapped" : "capable"
}

type StatusNode = EncryptionStatus["nodes"][number]

const nodeView = (r: NodeStatusReply): StatusNode => ({
  node: r.node,
  role: r.role,
  sidecar_raft_applied_index: r.sidecar_raft_applied_index as StatusNode["sidecar_raft_applied_index"],
  local_epochs: r.local_epochs,
  versions_by_key_id: r.versions_by_key_id,
  cleartext_versions: r.cleartext_versions,
  log_entries_by_key_id: r.log_entries_by_key_id,
  ...(r.rewrite === undefined ? {} : { rewrite: r.rewrite }),
  ...(r.halted === undefined ? {} : { halted: r.halted }),
})

/**
 * Nodes in member order; a member whose node-status did not answer is left
 * out (the shape has no place for an error; the caller logs it).
 */
export const assembleStatus = (
  state: LeaderState,
  leaderNodeCapable: boolean,
  nodeStatus: ReadonlyMap<string, NodeStatusReply>,
): EncryptionStatus => ({
  phase: phaseOf(state, leaderNodeCapable),
  active: { storage: state.active.storage, raft: state.active.raft },
  keys: state.keys.map((k) => ({
    key_id: k.key_id as EncryptionStatus["keys"][number]["key_id"],
    purpose: k.purpose,
    created: k.created,
    retired: k.retired,
  })),
  nodes: state.members.flatMap((m) => {
    const r = nodeStatus.get(m.node)
    return r === undefined ? [] : [{ ...nodeView(r), role: m.role }]
  }),
  registry: state.registry.map((r) => ({
    dek_id: r.dek_id,
    node_id16: r.node_id16,
    full_node_id: r.full_node_id,
    first_seen_local_epoch: r.first_seen_local_epoch,
    last_seen_local_epoch: r.last_seen_local_epoch,
  })),
})
