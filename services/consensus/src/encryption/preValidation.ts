// The leader's pre-validation of a 0x03–0x05 proposal against its fully
// applied state (SPEC §2.2, §5): the keystore Applier's own planner run on
// the leader keystore's exported state, so the verdict is the one apply
// would record; mapped to the CONTRACT §1 error a proposer gets.
import { type Plan, planEntry, type Sidecar } from "@ekv/keystore"
import { ApiError, type EncryptionPayload } from "@ekv/wire"
import type { EncryptionStateExport } from "@ekv/wire/keystore-protocol"

const sidecarOf = (exp: EncryptionStateExport): Sidecar => ({
  version: 1,
  raft_applied_index: exp.raft_applied_index,
  storage_envelope_active: exp.storage_envelope_active,
  raft_envelope_cutover_index: exp.raft_envelope_cutover_index,
  active: { storage: exp.active.storage, raft: exp.active.raft },
  keys: Object.fromEntries(
    exp.keys.map((k) => [
      String(k.key_id),
      { purpose: k.purpose, wrapped: k.wrapped, created: k.created, local_epoch: 0, retired: k.retired },
    ]),
  ),
})

/** The verdict apply would record for `payload` appended at `index` on the exported state. */
export const planOn = (exp: EncryptionStateExport, payload: EncryptionPayload, index: number): Plan => {
  let row: Parameters<typeof planEntry>[0]["row"]
  if (payload.tag === 0x03) {
    const reg = payload.registration
    const n16 = Number(reg.full_node_id & 0xffffn)
    const w = exp.writers.find((x) => x.dek_id === reg.dek_id && x.node_id16 === n16)
    row =
      w === undefined
        ? undefined
        : {
            full_node_id: BigInt(w.full_node_id),
            first_seen_local_epoch: w.first_seen_local_epoch,
            last_seen_local_epoch: w.last_seen_local_epoch,
            last_session_id: w.last_session_id ?? undefined,
            raft_index: w.raft_index,
          }
  }
  return planEntry({
    index,
    payload,
    sidecar: sidecarOf(exp),
    row,
    selfFullNodeId: 0n,
    now: new Date(0).toISOString(),
  })
}

const fp = (reason: ApiError.PreconditionReason, message: string) =>
  new ApiError.FailedPrecondition({ message, details: { reason } })

/** null when the entry would apply; else the error for the proposer (nothing is appended). */
export const preValidate = (
  exp: EncryptionStateExport,
  payload: EncryptionPayload,
  index: number,
): ApiError.ApiError | null => {
  const plan = planOn(exp, payload, index)
  if (plan._tag !== "Rejected") return null
  const { code, reason } = plan
  if (code === "LocalEpochRollback") return new ApiError.LocalEpochRollback({ message: reason })
  if (code === "NodeIDCollision") return new ApiError.NodeIDCollision({ message: reason })
  if (code === "AlreadyBootstrapped") return fp("AlreadyBootstrapped", reason)
  const bootstrapped = exp.active.storage !== 0
  if (!bootstrapped && payload.tag !== 0x04) return fp("NotBootstrapped", reason)
  if (payload.tag === 0x03) {
    const k = exp.keys.find((x) => x.key_id === payload.registration.dek_id)
    return k === undefined
      ? new ApiError.NotFound({ message: reason, details: { key_id: payload.registration.dek_id } })
      : fp("RetireCriteriaUnmet", reason)
  }
  if (payload.tag === 0x05) {
    const c = payload.control
    switch (c.kind) {
      case "retire-dek": {
        const k = exp.keys.find((x) => x.key_id === c.key_id)
        if (k === undefined) return new ApiError.NotFound({ message: reason, details: { key_id: c.key_id } })
        if (exp.active.storage === c.key_id || exp.active.raft === c.key_id) return fp("ActiveKey", reason)
        return fp("RetireCriteriaUnmet", reason)
      }
      case "rewrap-deks":
        return fp("KekNextMismatch", reason)
      case "enable-raft-envelope":
        if (!exp.storage_envelope_active) return fp("StorageEnvelopeNotActive", reason)
        return fp("AlreadyBootstrapped", reason)
      case "enable-storage-envelope":
        return fp("AlreadyBootstrapped", reason)
      case "rotate-dek":
        return new ApiError.InvalidArgument({ message: reason })
    }
  }
  return new ApiError.InvalidArgument({ message: reason })
}
