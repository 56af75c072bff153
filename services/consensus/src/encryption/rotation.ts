// Rotations the leader proposes by itself (SPEC §5): one per purpose when the
// node was started with EKV_ROTATE_ON_STARTUP and is leader during this
// process load, and one for a purpose when any member's epoch for its active
// DEK passes 0xFF00 (SPEC §4.3).
import { fullNodeId } from "@ekv/crypto"
import { encodeEntry, Tag } from "@ekv/wire"
import type { RaftNode } from "../node/raftNode.ts"
import type { EncryptionHandlers } from "./adminEndpoints.ts"
import { type EncState, hasDeks, type Purpose } from "./encryptionState.ts"
import type { EncryptionRuntime } from "./runtime.ts"

export const EPOCH_ROTATE_ABOVE = 0xff00
const POLL_MS = 1_000

/** Proposes a rotate-dek of `purpose` registering every member at epoch 0; resolves with its index. */
export const rotate = async (
  rt: EncryptionRuntime,
  node: RaftNode,
  h: EncryptionHandlers,
  purpose: Purpose,
) => {
  const { deks } = await rt.keystore.generateDek([purpose])
  const dek = deks[0]!
  const st = node.status()
  const writers = st.members.map((m) => ({ full_node_id: fullNodeId(m.node), local_epoch: 0 as never }))
  const entry = encodeEntry({
    tag: Tag.Control,
    control: {
      kind: "rotate-dek",
      purpose,
      dek: { key_id: dek.key_id as never, wrapped: dek.wrapped },
      writers,
    },
  })
  return h.propose({ entry })
}

/**
 * The purposes whose active DEK must rotate now (SPEC §4.3, §5): some member's
 * registered epoch for it passed 0xFF00, and no rotation of that key was
 * proposed yet by this leader (`rotatedFor`).
 */
export const rotationsDue = (
  st: EncState,
  writers: readonly { readonly dek_id: number; readonly last_seen_local_epoch: number }[],
  rotatedFor: ReadonlySet<number>,
): Purpose[] => {
  if (!hasDeks(st)) return []
  const due: Purpose[] = []
  for (const p of ["storage", "raft"] as const) {
    const id = st.active[p]
    if (id === 0 || rotatedFor.has(id) || st.keys[String(id)]?.retired === true) continue
    if (writers.some((w) => w.dek_id === id && w.last_seen_local_epoch > EPOCH_ROTATE_ABOVE)) due.push(p)
  }
  return due
}

export const startRotationWatch = (rt: EncryptionRuntime, node: RaftNode, h: EncryptionHandlers): void => {
  const rotatedFor = new Set<number>()
  let busy = false
  const tick = async () => {
    if (busy || !node.isLeader || node.haltInfo !== null) return
    busy = true
    try {
      const st = rt.state
      const req = rt.rotateRequested
      if (req.requested && !req.done) {
        if (!hasDeks(st)) rt.markRotated()
        else if (rt.session.sessionId !== null) {
          for (const p of ["storage", "raft"] as const) await rotate(rt, node, h, p)
          rt.markRotated()
          rt.o.log.info("rotated on startup", {
            storage: rt.state.active.storage,
            raft: rt.state.active.raft,
          })
        }
      }
      if (hasDeks(st)) {
        const exp = await rt.keystore.exportState()
        for (const p of rotationsDue(st, exp.writers, rotatedFor)) {
          const id = st.active[p]
          rotatedFor.add(id)
          rt.o.log.warn("an epoch passed 0xFF00: rotating", { purpose: p, key_id: id })
          await rotate(rt, node, h, p).catch((e) => {
            rotatedFor.delete(id)
            throw e
          })
        }
      }
    } catch (e) {
      rt.o.log.warn("leader rotation not done yet", { error: String(e) })
    } finally {
      busy = false
    }
  }
  const t = setInterval(() => void tick(), POLL_MS)
  t.unref?.()
}
