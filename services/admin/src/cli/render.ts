// Human-readable output of the `ekv` CLI: aligned tables and short lines.
// Pure: values in, text out.
import type {
  ApiError,
  ClusterStatus,
  KvGetReply,
  KvScanReply,
  NodeHealthReply,
  SnapshotReply,
} from "@ekv/wire"

/** Left-aligned columns separated by two spaces; no trailing spaces. */
export const table = (headers: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd()
  return [line(headers), ...rows.map(line)].join("\n")
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

const isControl = (ch: string): boolean => {
  const c = ch.codePointAt(0) ?? 0
  return (c < 0x20 && c !== 0x09) || c === 0x7f
}

/** A value as text when it is printable UTF-8, else `base64:<...>`. */
export const displayValue = (bytes: Uint8Array): string => {
  try {
    const text = utf8.decode(bytes)
    // Control characters (other than tab) would garble a table.
    if (![...text].some(isControl)) return text
  } catch {
    // not UTF-8
  }
  return `base64:${Buffer.from(bytes).toString("base64")}`
}

export const renderClusterStatus = (s: ClusterStatus): string => {
  const head = [
    `cluster  ${s.cluster_id === "" ? "(unknown)" : s.cluster_id}`,
    `leader   ${s.leader ?? "(none)"}`,
    `term     ${s.term}`,
    `commit   ${s.commit_index}`,
    "",
  ]
  const rows = s.members.map((m) => [
    m.node + (m.node === s.leader ? " *" : ""),
    m.role,
    String(m.applied_index),
    m.match_index === undefined ? "-" : String(m.match_index),
    m.reachable ? "yes" : "no",
    m.halted === undefined ? "" : `halted at ${m.halted.index}: ${m.halted.reason}`,
  ])
  return [...head, table(["NODE", "ROLE", "APPLIED", "MATCH", "REACHABLE", "HALTED"], rows)].join("\n")
}

export const renderGet = (key: string, r: KvGetReply): string =>
  r.found && r.value !== undefined
    ? table(["KEY", "VERSION", "VALUE"], [[key, String(r.version ?? "-"), displayValue(r.value)]])
    : `${key}: not found`

export const renderScan = (r: KvScanReply): string => {
  if (r.items.length === 0) return r.more ? "(no keys in this page; more follow)" : "(no keys)"
  const body = table(
    ["KEY", "VERSION", "VALUE"],
    r.items.map((i) => [i.key, String(i.version), displayValue(i.value)]),
  )
  const last = r.items[r.items.length - 1]
  return r.more && last !== undefined
    ? `${body}\n(more: continue with --after ${JSON.stringify(last.key)})`
    : body
}

export const renderSnapshots = (r: SnapshotReply): string =>
  table(
    ["NODE", "INDEX"],
    r.snapshots.map((s) => [s.node, String(s.index)]),
  )

export const renderHealth = (h: NodeHealthReply): string =>
  [
    `node       ${h.node}`,
    `consensus  ${h.consensus}`,
    `keystore   ${h.keystore}`,
    `applied    ${h.applied_index}`,
    ...(h.halted === undefined ? [] : [`halted     at ${h.halted.index}: ${h.halted.reason}`]),
  ].join("\n")

/** `error: <Code>: <message>` and the details, one JSON line. */
export const renderError = (e: ApiError.ApiError): string => {
  const lines = [`error: ${e._tag}: ${e.message}`]
  if (e.details !== undefined && Object.keys(e.details).length > 0) {
    lines.push(`details: ${JSON.stringify(e.details, (_k, v) => (typeof v === "bigint" ? v.toString() : v))}`)
  }
  return lines.join("\n")
}
