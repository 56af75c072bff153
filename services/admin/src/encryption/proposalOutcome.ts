// What the leader's `propose` reply means for the admin API: an applied entry
// is the answer; a rejection recorded at apply (SPEC.md §2.2, the same on
// every replica) becomes the matching CONTRACT.md §1 error. Pure.
import { ApiError } from "@ekv/wire"
import type { ProposeReply } from "@ekv/wire/consensus-admin-protocol"

/**
 * `preconditionReason`: the reason a PreconditionFailed rejection of this
 * entry stands for (e.g. NotBootstrapped for a rotation).
 */
export const proposalResult = (
  reply: ProposeReply,
  preconditionReason: ApiError.PreconditionReason,
):
  | { readonly _tag: "Applied"; readonly reply: ProposeReply }
  | { readonly _tag: "Rejected"; readonly error: ApiError.ApiError } => {
  if (reply.status === "applied") return { _tag: "Applied", reply }
  const details = { index: reply.index, kind: reply.kind, code: reply.code, rejected: true }
  const message = `the ${reply.kind} entry at index ${reply.index} was rejected: ${reply.code ?? "?"}${reply.reason === undefined ? "" : ` (${reply.reason})`}`
  switch (reply.code) {
    case "LocalEpochRollback":
      return { _tag: "Rejected", error: new ApiError.LocalEpochRollback({ message, details }) }
    case "NodeIDCollision":
      return { _tag: "Rejected", error: new ApiError.NodeIDCollision({ message, details }) }
    case "AlreadyBootstrapped":
      return { _tag: "Rejected", error: ApiError.failedPrecondition("AlreadyBootstrapped", message, details) }
    case "PreconditionFailed":
      return { _tag: "Rejected", error: ApiError.failedPrecondition(preconditionReason, message, details) }
    default:
      return { _tag: "Rejected", error: new ApiError.Internal({ message, details }) }
  }
}
