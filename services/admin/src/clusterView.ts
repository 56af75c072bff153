// Pure reasoning about what the consensus nodes say of the cluster: which
// node leads, whose status to trust, which nodes exist. The admin service
// holds no state of its own (SPEC.md §5); this only picks among answers.
import type { ClusterStatus } from "@ekv/wire"

/** One node's answer to `<p>.internal.<n>.admin.cluster.status`. */
export interface NodeAnswer {
  readonly node: string
  readonly status: ClusterStatus
}

export type View =
  /** A leader is known; `status` is its own view when it was among the answers. */
  | { readonly _tag: "Leader"; readonly leader: string; readonly status: ClusterStatus | undefined }
  /** Nodes answered but none knows a leader: the freshest of their views. */
  | { readonly _tag: "NoLeader"; readonly status: ClusterStatus }
  /** Nobody answered. */
  | { readonly _tag: "Silent" }

const fresher = (a: ClusterStatus, b: ClusterStatus): boolean =>
  a.term !== b.term ? a.term > b.term : a.commit_index > b.commit_index

/**
 * The leader named in the highest term (ties: the highest commit index), and
 * the leader's own answer if it agrees that it leads in that term.
 */
export const chooseView = (answers: ReadonlyArray<NodeAnswer>): View => {
  if (answers.length === 0) return { _tag: "Silent" }
  let best: NodeAnswer | undefined
  for (const a of answers) {
    if (a.status.leader === null) continue
    if (best === undefined || fresher(a.status, best.status)) best = a
  }
  if (best === undefined) {
    let freshest = answers[0] as NodeAnswer
    for (const a of answers) if (fresher(a.status, freshest.status)) freshest = a
    return { _tag: "NoLeader", status: freshest.status }
  }
  const leader = best.status.leader as string
  const own = answers.find(
    (a) => a.node === leader && a.status.leader === leader && a.status.term >= best.status.term,
  )
  return { _tag: "Leader", leader, status: own?.status }
}

/** The nodes to ask, most promising first, without duplicates. */
export const candidateNodes = (
  leader: string | undefined,
  ...groups: ReadonlyArray<ReadonlyArray<string>>
): ReadonlyArray<string> => {
  const out = new Set<string>()
  if (leader !== undefined) out.add(leader)
  for (const g of groups) for (const n of g) out.add(n)
  return [...out]
}

export const memberNodes = (status: ClusterStatus): ReadonlyArray<string> => status.members.map((m) => m.node)

export const isMember = (status: ClusterStatus, node: string): boolean =>
  status.members.some((m) => m.node === node)

const NODE_ID = "[a-z0-9-]{1,64}"
const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * Node ids named by `$SRV.INFO` replies of the `ekv-node` service: every
 * endpoint subject `<p>.node.<n>.health` or `<p>.node.<n>.capability`.
 * Replies are read leniently (they are discovery hints, not requests).
 */
export const nodesFromServiceInfo = (
  prefix: string,
  replies: ReadonlyArray<unknown>,
): ReadonlyArray<string> => {
  const pattern = new RegExp(`^${escapeRegExp(prefix)}\\.node\\.(${NODE_ID})\\.(health|capability)$`)
  const out = new Set<string>()
  for (const r of replies) {
    if (typeof r !== "object" || r === null || !("endpoints" in r) || !Array.isArray(r.endpoints)) continue
    for (const e of r.endpoints as ReadonlyArray<unknown>) {
      if (typeof e !== "object" || e === null || !("subject" in e) || typeof e.subject !== "string") continue
      const m = pattern.exec(e.subject)
      if (m?.[1] !== undefined) out.add(m[1])
    }
  }
  return [...out].sort()
}
