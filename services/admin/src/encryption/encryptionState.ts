// What the admin service reads from the leader's `state` (SPEC.md §5): the
// internal StateReply, read with two optional fields this service uses when
// the leader sends them — a registry row's `raft_index` (register-writer's
// `unchanged` answer) and `storage_envelope_index` (enable-storage-envelope's
// idempotent answer).
import { RegistryRow } from "@ekv/wire"
import { StateReply } from "@ekv/wire/consensus-admin-protocol"
import { Schema } from "effect"

const Int = Schema.Number.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0))

export const StateRegistryRow = Schema.Struct({
  ...RegistryRow.fields,
  /** The index of the entry that last wrote this row. */
  raft_index: Schema.optional(Int),
})
export type StateRegistryRow = typeof StateRegistryRow.Type

export const LeaderState = Schema.Struct({
  ...StateReply.fields,
  registry: Schema.Array(StateRegistryRow),
  /** Index of the applied enable-storage-envelope entry (0 or absent: none). */
  storage_envelope_index: Schema.optional(Int),
})
export type LeaderState = typeof LeaderState.Type
export type StateMember = LeaderState["members"][number]
export type StateKey = LeaderState["keys"][number]

/** DEKs exist (SPEC.md §5 phases: past `capable`). */
export const isBootstrapped = (s: LeaderState): boolean =>
  s.keys.length > 0 || s.active.storage !== 0 || s.active.raft !== 0

export const unretiredKeys = (s: LeaderState): ReadonlyArray<StateKey> => s.keys.filter((k) => !k.retired)

export const memberByFullNodeId = (s: LeaderState, id: bigint): StateMember | undefined =>
  s.members.find((m) => m.full_node_id === id)

export const memberByNode = (s: LeaderState, node: string): StateMember | undefined =>
  s.members.find((m) => m.node === node)
