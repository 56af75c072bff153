// Epoch floors (SPEC §6): per DEK, the highest epoch registered for a node
// anywhere in the leader's log — applied registry rows and registrations not
// yet applied (0x03 entries, bootstrap and rotation batch lines) alike.
import { decodeEntry, Tag } from "@ekv/wire"
import type { EncryptionStateExport } from "@ekv/wire/keystore-protocol"
import { Result } from "effect"

const raise = (floors: Record<string, number>, dek: number, epoch: number): void => {
  const k = String(dek)
  floors[k] = Math.max(floors[k] ?? 0, epoch)
}

/** Floors from the applied registry rows of `fullNodeId`. */
export const floorsFromRows = (
  writers: EncryptionStateExport["writers"],
  fullNodeId: bigint,
): Record<string, number> => {
  const floors: Record<string, number> = {}
  for (const w of writers)
    if (BigInt(w.full_node_id) === fullNodeId) raise(floors, w.dek_id, w.last_seen_local_epoch)
  return floors
}

/** Raises `floors` with the registrations of `fullNodeId` in log payloads (applied or not). */
export const raiseFromLog = (
  floors: Record<string, number>,
  payloads: Iterable<Uint8Array>,
  fullNodeId: bigint,
): Record<string, number> => {
  for (const data of payloads) {
    if (data.length === 0 || data[0]! < Tag.Registration || data[0]! > Tag.Control) continue
    const d = decodeEntry(data)
    if (Result.isFailure(d)) continue
    const p = d.success
    if (p.tag === Tag.Registration) {
      if (p.registration.full_node_id === fullNodeId)
        raise(floors, p.registration.dek_id, p.registration.local_epoch)
    } else if (p.tag === Tag.Bootstrap) {
      for (const w of p.bootstrap.writers)
        if (w.full_node_id === fullNodeId) {
          raise(floors, p.bootstrap.storage.key_id, w.local_epoch)
          raise(floors, p.bootstrap.raft.key_id, w.local_epoch)
        }
    } else if (p.tag === Tag.Control && p.control.kind === "rotate-dek") {
      for (const w of p.control.writers)
        if (w.full_node_id === fullNodeId) raise(floors, p.control.dek.key_id, w.local_epoch)
    }
  }
  return floors
}
