// Reading the events stream (CONTRACT.md §5) read-only: an ordered
// consumer from the first message to the stream's last at the time of the
// call (stream info, consumer create and next only — what the operator may do).
import { ClusterEvent, decodeRequest, EncryptionEvent, subjects } from "@ekv/wire"
import { JetStreamApiCodes, JetStreamApiError, jetstream, jetstreamManager } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { Result } from "effect"

export type HistoryEvent =
  | { readonly stream: "encryption"; readonly seq: number; readonly event: EncryptionEvent }
  | { readonly stream: "cluster"; readonly seq: number; readonly event: ClusterEvent }

export interface HistoryFilter {
  readonly node?: string | undefined
  /** Only events at or above this raft index (events without an index are left out). */
  readonly sinceIndex?: number | undefined
  /** At most this many, the most recent. */
  readonly limit?: number | undefined
}

const decodeEncryption = decodeRequest(EncryptionEvent)
const decodeCluster = decodeRequest(ClusterEvent)

/** One stored message as an event; undefined when it is neither kind (or fails its schema). */
export const parseEvent = (
  prefix: string,
  subject: string,
  seq: number,
  data: Uint8Array,
): HistoryEvent | undefined => {
  const base = `${prefix}.events.`
  if (!subject.startsWith(base)) return undefined
  const kind = subject.slice(base.length).split(".")[0]
  if (kind === "encryption") {
    const r = decodeEncryption(data)
    return Result.isSuccess(r) ? { stream: "encryption", seq, event: r.success } : undefined
  }
  if (kind === "cluster") {
    const r = decodeCluster(data)
    return Result.isSuccess(r) ? { stream: "cluster", seq, event: r.success } : undefined
  }
  return undefined
}

export const selectEvents = (
  events: ReadonlyArray<HistoryEvent>,
  filter: HistoryFilter,
): ReadonlyArray<HistoryEvent> => {
  const kept = events.filter((e) => {
    if (filter.node !== undefined && e.event.node !== filter.node) return false
    if (filter.sinceIndex !== undefined) {
      const index = e.event.index
      if (index === undefined || index < filter.sinceIndex) return false
    }
    return true
  })
  return filter.limit === undefined ? kept : kept.slice(Math.max(0, kept.length - filter.limit))
}

/** Every event in the stream now (an absent stream has none), in stream order. */
export const readEvents = async (
  nc: NatsConnection,
  prefix: string,
  onProgress?: (read: number, total: number) => void,
): Promise<ReadonlyArray<HistoryEvent>> => {
  const s = subjects(prefix)
  const jsm = await jetstreamManager(nc, { checkAPI: false })
  let last: number
  let total: number
  try {
    const info = await jsm.streams.info(s.events.stream)
    last = info.state.last_seq
    total = info.state.messages
  } catch (e) {
    if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.StreamNotFound) return []
    throw e
  }
  if (total === 0) return []
  // No subject filter: the stream holds only `<p>.events.>`, and multi-subject
  // filters need nats-server 2.10 (the project runs 2.9).
  const consumer = await jetstream(nc, { checkAPI: false }).consumers.get(s.events.stream)
  const out: HistoryEvent[] = []
  let read = 0
  for (;;) {
    // Ask for no more than remain, so the last fetch does not wait out its expiry.
    const batch = await consumer.fetch({
      max_messages: Math.max(1, Math.min(512, total - read)),
      expires: 2_000,
    })
    let got = 0
    let done = false
    for await (const m of batch) {
      got++
      read++
      const e = parseEvent(prefix, m.subject, m.seq, m.data)
      if (e !== undefined) out.push(e)
      if (m.seq >= last) done = true
    }
    onProgress?.(read, total)
    if (done || got === 0) break
  }
  return out
}
