// Raft messages over core NATS, fire-and-forget (the core tolerates loss,
// duplication and reordering): every message for node X goes to
// `<p>.internal.<X>.raft.msg`, grouped per destination into one frame per
// send() call. Snapshot messages are not sent here (snapshotTransfer.ts).
import { subjects } from "@ekv/wire"
import type { NatsConnection, Subscription } from "@nats-io/transport-node"
import type { Message, NodeId } from "../raft/mod.ts"
import { decodeFrame, encodeFrameOf, encodeMessage } from "./raftMessageCodec.ts"

export interface TransportMetrics {
  readonly dropped: (reason: "garbage" | "wrong-destination" | "send-failed" | "too-large") => void
}

export interface RaftTransport {
  /** Sends (best effort); returns the peers a send failed to (to be reported unreachable). */
  send(msgs: readonly Message[]): NodeId[]
  close(): Promise<void>
}

/** Frames stay below this so they fit the default NATS max_payload of 1 MiB with room to spare. */
const FRAME_BUDGET = 768 * 1024

export const openNatsTransport = (
  nc: NatsConnection,
  prefix: string,
  self: NodeId,
  onMessages: (msgs: Message[]) => void,
  metrics: TransportMetrics,
): RaftTransport => {
  const s = subjects(prefix)
  const subjectOf = new Map<NodeId, string>()
  const subjectFor = (to: NodeId): string => {
    let subj = subjectOf.get(to)
    if (subj === undefined) {
      subj = s.internal(to).raft.kind("msg")
      subjectOf.set(to, subj)
    }
    return subj
  }
  const sub: Subscription = nc.subscribe(s.internal(self).raft.kind("msg"), {
    callback: (err, msg) => {
      if (err !== null) return
      const r = decodeFrame(msg.data)
      if (!r.ok) {
        metrics.dropped("garbage")
        return
      }
      const mine = r.value.filter((m) => m.to === self)
      if (mine.length !== r.value.length) metrics.dropped("wrong-destination")
      if (mine.length > 0) onMessages(mine)
    },
  })
  const maxPayload = (): number => Math.min(nc.info?.max_payload ?? 1024 * 1024, 64 * 1024 * 1024)

  const publish = (to: NodeId, group: Uint8Array[]): boolean => {
    try {
      nc.publish(subjectFor(to), encodeFrameOf(group))
      return true
    } catch {
      metrics.dropped("send-failed")
      return false
    }
  }

  return {
    send(msgs) {
      const byPeer = new Map<NodeId, Message[]>()
      for (const m of msgs) {
        if (m.type === "Snap") continue
        const l = byPeer.get(m.to)
        if (l === undefined) byPeer.set(m.to, [m])
        else l.push(m)
      }
      const failed: NodeId[] = []
      for (const [to, list] of byPeer) {
        let group: Uint8Array[] = []
        let bytes = 0
        let ok = true
        for (const m of list) {
          const body = encodeMessage(m)
          const size = body.length + 10
          if (size + 16 > maxPayload()) {
            metrics.dropped("too-large")
            ok = false
            continue
          }
          if (group.length > 0 && bytes + size > FRAME_BUDGET) {
            ok = publish(to, group) && ok
            group = []
            bytes = 0
          }
          group.push(body)
          bytes += size
        }
        if (group.length > 0) ok = publish(to, group) && ok
        if (!ok) failed.push(to)
      }
      return failed
    },
    async close() {
      sub.unsubscribe()
    },
  }
}
