// The pure Raft core (SPEC §2): no I/O, no clock, no randomness of its own.
export {
  applyConfChange,
  applyConfChangeToState,
  type ConfChange,
  type ConfChangeResult,
  type Config,
  configFromState,
  configToState,
  decodeConfChange,
  encodeConfChange,
} from "./confChange.ts"
export { committedIndex, majority, VoteResult, voteResult } from "./quorum.ts"
export type {
  CommandResult,
  PersistedState,
  ProposalDroppedReason,
  ProposeOptions,
  ProposeResult,
  RaftOptions,
} from "./raft.ts"
export {
  bootstrapState,
  emptySnapshotMeta,
  emptyState,
  RawNode,
  type RawNodeOptions,
  type Ready,
  type Status,
} from "./rawNode.ts"
export * from "./types.ts"
