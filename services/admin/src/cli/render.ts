// Human-readable output of the `ekv` CLI: aligned tables and short lines.
// Pure: values in, text out.
import type {
  ApiError,
  BootstrapReply,
  CapabilityReply,
  CapabilityReport,
  ClusterStatus,
  EncryptionStatus,
  KvGetReply,
  KvScanReply,
  NodeHealthReply,
  SidecarStateReport,
  SnapshotReply,
} from "@ekv/wire"
import type { HistoryEvent } from "../encryption/eventHistory.ts"

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

// ---- encryption

const kv = (record: Readonly<Record<string, number>>): string => {
  const entries = Object.entries(record)
  return entries.length === 0 ? "-" : entries.map(([k, v]) => `${k}:${v}`).join(" ")
}

/** One node's rewrite state: `-` (never started), `done`, `NN%`, or `stopped at NN%: why`. */
export const renderRewrite = (r: EncryptionStatus["nodes"][number]["rewrite"]): string =>
  r === undefined
    ? "-"
    : r.done
      ? "done"
      : r.error !== undefined
        ? `stopped at ${Math.round(r.progress * 100)}%: ${r.error}`
        : `${Math.round(r.progress * 100)}%`

export const renderEncryptionStatus = (s: EncryptionStatus): string => {
  const head = [
    `phase   ${s.phase}`,
    `active  storage ${s.active.storage === 0 ? "-" : s.active.storage}  raft ${s.active.raft === 0 ? "-" : s.active.raft}`,
    "",
  ]
  const keys =
    s.keys.length === 0
      ? "(no DEKs)"
      : table(
          ["KEY", "PURPOSE", "CREATED", "STATE"],
          s.keys.map((k) => [
            String(k.key_id),
            k.purpose,
            k.created,
            k.retired
              ? "retired"
              : k.key_id === s.active.storage || k.key_id === s.active.raft
                ? "active"
                : "unretired",
          ]),
        )
  const nodes = table(
    ["NODE", "ROLE", "SIDECAR", "EPOCHS", "VERSIONS", "CLEARTEXT", "LOG", "REWRITE", "HALTED"],
    s.nodes.map((n) => [
      n.node,
      n.role,
      String(n.sidecar_raft_applied_index),
      kv(n.local_epochs),
      kv(n.versions_by_key_id),
      String(n.cleartext_versions),
      kv(n.log_entries_by_key_id),
      renderRewrite(n.rewrite),
      n.halted === undefined ? "" : `at ${n.halted.index}: ${n.halted.reason}`,
    ]),
  )
  const registry =
    s.registry.length === 0
      ? "(no writers registered)"
      : table(
          ["DEK", "NODE_ID16", "FULL_NODE_ID", "FIRST_EPOCH", "LAST_EPOCH"],
          s.registry.map((r) => [
            String(r.dek_id),
            String(r.node_id16),
            String(r.full_node_id),
            String(r.first_seen_local_epoch),
            String(r.last_seen_local_epoch),
          ]),
        )
  return [...head, keys, "", nodes, "", registry].join("\n")
}

const capabilityRow = (node: string, role: string, r: CapabilityReport | undefined, error?: string) =>
  r === undefined
    ? [node, role, "no", "-", "-", "-", "-", error ?? ""]
    : [
        node,
        role,
        r.encryption_capable ? "yes" : "no",
        String(r.full_node_id),
        String(r.local_epoch),
        r.kek_id ?? "-",
        r.next_kek_id ?? "-",
        r.sidecar_present ? "sidecar" : "",
      ]

const CAPABILITY_HEADERS = ["NODE", "ROLE", "CAPABLE", "FULL_NODE_ID", "EPOCH", "KEK", "NEXT_KEK", "NOTE"]

export const renderCapability = (r: CapabilityReply): string =>
  "members" in r
    ? table(
        CAPABILITY_HEADERS,
        r.members.map((m) =>
          capabilityRow(
            m.node,
            m.role,
            m.report,
            m.error === undefined ? undefined : `${m.error.code}: ${m.error.message}`,
          ),
        ),
      )
    : table(CAPABILITY_HEADERS, [capabilityRow(r.node, "-", r)])

export const renderSidecarState = (r: SidecarStateReport): string =>
  [
    `active             storage ${r.active_storage_id || "-"}  raft ${r.active_raft_id || "-"}`,
    `storage envelope   ${r.storage_envelope_active ? "active" : "off"}`,
    `raft cutover       ${r.raft_envelope_cutover_index || "-"}`,
    `applied index      ${r.latest_applied_index}`,
    `wrapped DEKs       ${Object.keys(r.wrapped_deks_by_id).join(", ") || "-"}`,
  ].join("\n")

export const renderBootstrap = (r: BootstrapReply): string =>
  [
    `bootstrapped at index ${r.index}: storage DEK ${r.storage_key_id}, raft DEK ${r.raft_key_id}`,
    "",
    table(
      ["NODE", "FULL_NODE_ID", "NODE_ID16", "EPOCH"],
      r.writers.map((w) => [w.node, String(w.full_node_id), String(w.node_id16), String(w.local_epoch)]),
    ),
  ].join("\n")

export const renderHistory = (events: ReadonlyArray<HistoryEvent>): string =>
  events.length === 0
    ? "(no events)"
    : table(
        ["KIND", "NODE", "INDEX", "OUTCOME", "CODE", "KEYS", "AT"],
        events.map(({ stream, event: e }) =>
          stream === "encryption"
            ? [e.kind, e.node, String(e.index), e.outcome, e.code ?? "", e.key_ids.join(",") || "-", e.at]
            : [
                e.kind,
                e.node,
                e.index === undefined ? (e.term === undefined ? "-" : `term ${e.term}`) : String(e.index),
                "-",
                e.code ?? "",
                "-",
                e.at,
              ],
        ),
      )
