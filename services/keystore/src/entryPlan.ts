// The deterministic part of applying an encryption entry (SPEC.md §4.4): from
// the replicated state (sidecar fields, registry rows) and the entry alone,
// either a rejection {code, reason} or the changes to make. Every replica
// computes the same plan. Node-local work (unwrapping with the KEK, epochs,
// hand-over) is the driver's (applier.ts) and never changes a verdict.
import type { EncryptionEventKind, EncryptionPayload, NewDek, RejectionCode } from "@ekv/wire"
import type { RegistryEntry } from "./registryStore.ts"
import type { Sidecar, SidecarKey } from "./sidecarFile.ts"
import {
  type BatchLine,
  decideRegistration,
  decideWriterBatch,
  nodeId16Of,
  type RegistrationOutcome,
  type WriterRow,
} from "./writerRegistry.ts"

export type Purpose = "storage" | "raft"

/** A DEK an entry creates: the driver unwraps it (KekMismatch if it cannot). */
export interface CreatedDek {
  readonly keyId: number
  readonly purpose: Purpose
  readonly wrapped: Uint8Array
  /** This node's line in the entry's writer batch, if it has one. */
  readonly batchEpoch: number | undefined
}

export type Plan =
  | {
      readonly _tag: "Rejected"
      readonly kind: EncryptionEventKind
      readonly keyIds: ReadonlyArray<number>
      readonly code: RejectionCode
      readonly reason: string
    }
  | {
      /** 0x03: one row (if it changed) + last_registry_index in one batch. */
      readonly _tag: "Registration"
      readonly kind: "registration"
      readonly keyIds: ReadonlyArray<number>
      readonly outcome: RegistrationOutcome
      readonly put: RegistryEntry | undefined
    }
  | {
      /** 0x04/0x05: registry changes first, then the sidecar (raft_applied_index = index) commits. */
      readonly _tag: "Control"
      readonly kind: EncryptionEventKind
      readonly keyIds: ReadonlyArray<number>
      readonly dropDeks: ReadonlyArray<number>
      readonly putRows: ReadonlyArray<RegistryEntry>
      /** The next sidecar; created DEKs carry local_epoch = batchEpoch ?? 0 until the driver decides. */
      readonly sidecar: Sidecar
      readonly created: ReadonlyArray<CreatedDek>
      /** rewrap-deks: the new wraps to verify under the next KEK before committing. */
      readonly rewrap: { readonly nextKekId: string; readonly wraps: ReadonlyArray<NewDek> } | undefined
    }

export interface PlanInput {
  readonly index: number
  readonly payload: EncryptionPayload
  readonly sidecar: Sidecar
  /** 0x03 only: the row for (dek_id, node_id16 of the registrant). */
  readonly row: WriterRow | undefined
  readonly selfFullNodeId: bigint
  /** ISO-8601 time for `created` of new DEKs (node-local, not replicated). */
  readonly now: string
}

export const kindOf = (payload: EncryptionPayload): EncryptionEventKind =>
  payload.tag === 0x03 ? "registration" : payload.tag === 0x04 ? "bootstrap" : payload.control.kind

export const keyIdsOf = (payload: EncryptionPayload): ReadonlyArray<number> => {
  switch (payload.tag) {
    case 0x03:
      return [payload.registration.dek_id]
    case 0x04:
      return [payload.bootstrap.storage.key_id, payload.bootstrap.raft.key_id]
    case 0x05: {
      const c = payload.control
      switch (c.kind) {
        case "rotate-dek":
          return [c.dek.key_id]
        case "rewrap-deks":
          return c.wraps.map((w) => w.key_id)
        case "retire-dek":
          return [c.key_id]
        case "enable-storage-envelope":
        case "enable-raft-envelope":
          return []
      }
    }
  }
}

export const unretiredKeyIds = (s: Sidecar): Array<number> =>
  Object.entries(s.keys)
    .filter(([, k]) => !k.retired)
    .map(([id]) => Number(id))
    .sort((a, b) => a - b)

const base64 = (b: Uint8Array): string => Buffer.from(b).toString("base64")

const batchEpochOf = (lines: ReadonlyArray<BatchLine>, self: bigint): number | undefined => {
  let e: number | undefined
  // The last line for this node wins, as decideWriterBatch registers them in order.
  for (const l of lines)
    if (l.full_node_id === self) e = e === undefined ? l.local_epoch : Math.max(e, l.local_epoch)
  return e
}

const rowsFor = (dekId: number, rows: ReadonlyMap<number, WriterRow>): Array<RegistryEntry> =>
  [...rows].map(([nodeId16, row]) => ({ dekId, nodeId16, row }))

export const planEntry = (input: PlanInput): Plan => {
  const { payload, sidecar, index } = input
  const kind = kindOf(payload)
  const keyIds = keyIdsOf(payload)
  const reject = (code: RejectionCode, reason: string): Plan => ({
    _tag: "Rejected",
    kind,
    keyIds,
    code,
    reason,
  })
  const committed = (next: Omit<Sidecar, "raft_applied_index">): Sidecar => ({
    ...next,
    raft_applied_index: index,
  })
  const control = (p: {
    sidecar: Sidecar
    dropDeks?: ReadonlyArray<number>
    putRows?: ReadonlyArray<RegistryEntry>
    created?: ReadonlyArray<CreatedDek>
    rewrap?: { nextKekId: string; wraps: ReadonlyArray<NewDek> }
  }): Plan => ({
    _tag: "Control",
    kind,
    keyIds,
    dropDeks: p.dropDeks ?? [],
    putRows: p.putRows ?? [],
    sidecar: p.sidecar,
    created: p.created ?? [],
    rewrap: p.rewrap,
  })
  const newKey = (purpose: Purpose, dek: NewDek, batchEpoch: number | undefined): SidecarKey => ({
    purpose,
    wrapped: base64(dek.wrapped),
    created: input.now,
    local_epoch: batchEpoch ?? 0,
    retired: false,
  })

  switch (payload.tag) {
    case 0x03: {
      const reg = payload.registration
      const key = sidecar.keys[String(reg.dek_id)]
      if (key === undefined) return reject("PreconditionFailed", `DEK ${reg.dek_id} does not exist`)
      if (key.retired) return reject("PreconditionFailed", `DEK ${reg.dek_id} is retired`)
      const d = decideRegistration(input.row, reg, index)
      if (d._tag === "Rejected") return reject(d.code, d.reason)
      return {
        _tag: "Registration",
        kind: "registration",
        keyIds,
        outcome: d.outcome,
        put:
          d.outcome === "unchanged"
            ? undefined
            : { dekId: reg.dek_id, nodeId16: nodeId16Of(reg.full_node_id), row: d.row },
      }
    }
    case 0x04: {
      const b = payload.bootstrap
      if (Object.keys(sidecar.keys).length > 0) {
        return reject("AlreadyBootstrapped", "DEKs already exist; bootstrap applies once per cluster")
      }
      if (b.storage.key_id === b.raft.key_id) {
        return reject("PreconditionFailed", `storage and raft DEKs share key id ${b.storage.key_id}`)
      }
      const batch = decideWriterBatch(b.writers, index)
      if (batch._tag === "Rejected") return reject(batch.code, batch.reason)
      const epoch = batchEpochOf(b.writers, input.selfFullNodeId)
      return control({
        // Rows under a DEK the sidecar does not hold can only be leftovers of
        // an interrupted attempt at this same entry: replaced, not merged.
        dropDeks: [b.storage.key_id, b.raft.key_id],
        putRows: [...rowsFor(b.storage.key_id, batch.rows), ...rowsFor(b.raft.key_id, batch.rows)],
        sidecar: committed({
          ...sidecar,
          active: { storage: b.storage.key_id, raft: b.raft.key_id },
          keys: {
            ...sidecar.keys,
            [String(b.storage.key_id)]: newKey("storage", b.storage, epoch),
            [String(b.raft.key_id)]: newKey("raft", b.raft, epoch),
          },
        }),
        created: [
          { keyId: b.storage.key_id, purpose: "storage", wrapped: b.storage.wrapped, batchEpoch: epoch },
          { keyId: b.raft.key_id, purpose: "raft", wrapped: b.raft.wrapped, batchEpoch: epoch },
        ],
      })
    }
    case 0x05: {
      const c = payload.control
      const bootstrapped = sidecar.active.storage !== 0 && sidecar.active.raft !== 0
      switch (c.kind) {
        case "rotate-dek": {
          if (!bootstrapped) return reject("PreconditionFailed", "rotate-dek before bootstrap")
          if (sidecar.keys[String(c.dek.key_id)] !== undefined) {
            return reject("PreconditionFailed", `key id ${c.dek.key_id} was already used`)
          }
          const batch = decideWriterBatch(c.writers, index)
          if (batch._tag === "Rejected") return reject(batch.code, batch.reason)
          const epoch = batchEpochOf(c.writers, input.selfFullNodeId)
          return control({
            dropDeks: [c.dek.key_id],
            putRows: rowsFor(c.dek.key_id, batch.rows),
            sidecar: committed({
              ...sidecar,
              active: { ...sidecar.active, [c.purpose]: c.dek.key_id },
              keys: { ...sidecar.keys, [String(c.dek.key_id)]: newKey(c.purpose, c.dek, epoch) },
            }),
            created: [{ keyId: c.dek.key_id, purpose: c.purpose, wrapped: c.dek.wrapped, batchEpoch: epoch }],
          })
        }
        case "rewrap-deks": {
          if (!bootstrapped) return reject("PreconditionFailed", "rewrap-deks before bootstrap")
          const want = unretiredKeyIds(sidecar)
          const got = c.wraps.map((w) => w.key_id).sort((a, b) => a - b)
          if (
            new Set(got).size !== got.length ||
            want.length !== got.length ||
            want.some((id, i) => got[i] !== id)
          ) {
            return reject(
              "PreconditionFailed",
              `rewrap-deks must wrap exactly the unretired DEKs [${want.join(", ")}], got [${got.join(", ")}]`,
            )
          }
          const keys = { ...sidecar.keys }
          for (const w of c.wraps)
            keys[String(w.key_id)] = { ...keys[String(w.key_id)]!, wrapped: base64(w.wrapped) }
          return control({
            sidecar: committed({ ...sidecar, keys }),
            rewrap: { nextKekId: c.next_kek_id, wraps: c.wraps },
          })
        }
        case "retire-dek": {
          const key = sidecar.keys[String(c.key_id)]
          if (key === undefined) return reject("PreconditionFailed", `DEK ${c.key_id} does not exist`)
          if (key.retired) return reject("PreconditionFailed", `DEK ${c.key_id} is already retired`)
          if (sidecar.active.storage === c.key_id || sidecar.active.raft === c.key_id) {
            return reject("PreconditionFailed", `DEK ${c.key_id} is the active ${key.purpose} DEK`)
          }
          return control({
            dropDeks: [c.key_id],
            sidecar: committed({
              ...sidecar,
              // The entry stays so the key id is never reused (SPEC.md §4.2).
              keys: { ...sidecar.keys, [String(c.key_id)]: { ...key, wrapped: "", retired: true } },
            }),
          })
        }
        case "enable-storage-envelope": {
          if (sidecar.active.storage === 0)
            return reject("PreconditionFailed", "storage envelope before bootstrap")
          if (sidecar.storage_envelope_active)
            return reject("PreconditionFailed", "storage envelope already active")
          return control({ sidecar: committed({ ...sidecar, storage_envelope_active: true }) })
        }
        case "enable-raft-envelope": {
          if (!sidecar.storage_envelope_active) {
            return reject("PreconditionFailed", "raft envelope before the storage envelope is active")
          }
          if (sidecar.active.raft === 0)
            return reject("PreconditionFailed", "raft envelope without a raft DEK")
          if (sidecar.raft_envelope_cutover_index !== 0) {
            return reject(
              "PreconditionFailed",
              `raft envelope already enabled at cutover index ${sidecar.raft_envelope_cutover_index}`,
            )
          }
          return control({ sidecar: committed({ ...sidecar, raft_envelope_cutover_index: index }) })
        }
      }
    }
  }
}
