// Value types of the pure Raft core (SPEC §2). Everything here is immutable
// once handed out: the core never mutates an Entry or a Message it emitted.

export type NodeId = string

export const EntryType = {
  /** A state-machine payload; `data` is opaque to the core. */
  Normal: "Normal",
  /** The entry a new leader appends at the start of its term. */
  Empty: "Empty",
  /** A membership change; `data` is an encoded ConfChange (confChange.ts). */
  ConfChange: "ConfChange",
} as const
export type EntryType = (typeof EntryType)[keyof typeof EntryType]

export interface Entry {
  readonly term: number
  readonly index: number
  readonly type: EntryType
  readonly data: Uint8Array
}

/** What must be durable before any message that depends on it is sent. */
export interface HardState {
  readonly term: number
  /** The node voted for in `term`, or null. */
  readonly vote: NodeId | null
  /** Highest index known committed; persisted so restarts re-apply nothing twice. */
  readonly commit: number
  /**
   * Set (true) only on a node whose durable state was lost and that rejoins an
   * existing cluster: it neither votes nor campaigns until a leader has caught
   * it up (raft.ts, "Rejoining"). Absent otherwise.
   */
  readonly rejoining?: boolean
}

/** A configuration: voters ∪ learners is the member set; voters ∩ learners = ∅. */
export interface ConfState {
  readonly voters: readonly NodeId[]
  readonly learners: readonly NodeId[]
}

/** Describes the prefix of the log a snapshot replaces. */
export interface SnapshotMeta {
  readonly index: number
  readonly term: number
  /** The configuration as of `index`. */
  readonly confState: ConfState
}

/** `data` is opaque to the core: the driver decides what it means (e.g. a handle on the files it streams). */
export interface Snapshot {
  readonly meta: SnapshotMeta
  readonly data: Uint8Array
}

export const Role = {
  Follower: "Follower",
  PreCandidate: "PreCandidate",
  Candidate: "Candidate",
  Leader: "Leader",
} as const
export type Role = (typeof Role)[keyof typeof Role]

interface Envelope {
  readonly from: NodeId
  readonly to: NodeId
  readonly term: number
}

/** `term` is the term the sender would campaign in (current term + 1 for PreVote). */
export interface VoteRequest extends Envelope {
  readonly type: "PreVote" | "Vote"
  readonly lastIndex: number
  readonly lastTerm: number
  /** Set by a leader transfer (TimeoutNow): voters ignore their leader lease. */
  readonly force: boolean
}

export interface VoteResponse extends Envelope {
  readonly type: "PreVoteResp" | "VoteResp"
  readonly reject: boolean
}

export interface AppendRequest extends Envelope {
  readonly type: "App"
  readonly prevIndex: number
  readonly prevTerm: number
  readonly entries: readonly Entry[]
  readonly commit: number
}

/**
 * Accepted: `index` is the last index now known to match the leader's log.
 * Rejected: `index` is the rejected prevIndex; (`hintIndex`, `hintTerm`) is the
 * largest index ≤ min(prevIndex, follower's last) whose term ≤ the leader's
 * prevTerm, so the leader can skip a whole conflicting term per round trip.
 */
export interface AppendResponse extends Envelope {
  readonly type: "AppResp"
  readonly index: number
  readonly reject: boolean
  readonly hintIndex: number
  readonly hintTerm: number
}

export interface Heartbeat extends Envelope {
  readonly type: "Heartbeat"
  /** min(follower's match, leader's commit): never beyond what the follower is known to hold. */
  readonly commit: number
  /** The ReadIndex round this heartbeat confirms, if any. */
  readonly ctx: string | null
}

export interface HeartbeatResponse extends Envelope {
  readonly type: "HeartbeatResp"
  readonly ctx: string | null
}

export interface SnapshotRequest extends Envelope {
  readonly type: "Snap"
  readonly snapshot: Snapshot
}

export interface TimeoutNow extends Envelope {
  readonly type: "TimeoutNow"
}

/** A follower forwarding a linearizable read to its leader. */
export interface ReadIndexRequest extends Envelope {
  readonly type: "ReadIndex"
  readonly ctx: string
}

export interface ReadIndexResponse extends Envelope {
  readonly type: "ReadIndexResp"
  readonly ctx: string
  readonly index: number
}

export type Message =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | Heartbeat
  | HeartbeatResponse
  | SnapshotRequest
  | TimeoutNow
  | ReadIndexRequest
  | ReadIndexResponse

export type MessageType = Message["type"]

/** A read that is linearizable once the state machine has applied `index`. */
export interface ReadState {
  readonly index: number
  readonly ctx: string
}

export interface SoftState {
  readonly leader: NodeId | null
  readonly role: Role
  readonly term: number
}

/** Approximate in-memory/wire size of an entry, for batching limits. */
export const entrySize = (e: Entry): number => e.data.byteLength + 24
