// The per-node endpoints of CONTRACT.md §4 (service `ekv-node`).
import { Schema } from "effect"
import { EmptyRequest } from "./admin.ts"
import { NodeId, RaftIndex } from "./ids.ts"
import { CapabilityReport, HaltedInfo } from "./reports.ts"

/** `<p>.node.<n>.capability`, served by that node's keystore. */
export const NodeCapabilityRequest = EmptyRequest
export const NodeCapabilityReply = CapabilityReport

/** `<p>.node.<n>.health`, served by that node's consensus. */
export const NodeHealthRequest = EmptyRequest
export const NodeHealthReply = Schema.Struct({
  node: NodeId,
  consensus: Schema.Literals(["ok", "halted"]),
  keystore: Schema.Literals(["ok", "down"]),
  applied_index: RaftIndex,
  halted: Schema.optional(HaltedInfo),
})
export type NodeHealthReply = typeof NodeHealthReply.Type
