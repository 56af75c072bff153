// The consensus process's Prometheus series (CONTRACT §6, SPEC §9).
import { Registry } from "@ekv/metrics"

export const makeConsensusMetrics = (registry: Registry = new Registry()) => ({
  registry,
  term: registry.gauge("ekv_raft_term", "Current Raft term"),
  commitIndex: registry.gauge("ekv_raft_commit_index", "Highest log index known committed"),
  appliedIndex: registry.gauge("ekv_raft_applied_index", "Highest log index applied to the state machine"),
  isLeader: registry.gauge("ekv_raft_is_leader", "1 when this node is the leader"),
  applyHalted: registry.gauge("ekv_apply_halted", "1 while apply is halted on a node-local fault"),
  rejected: registry.counter(
    "ekv_entries_rejected_total",
    "Entries applied as deterministic rejections, by code",
  ),
  proposals: registry.counter("ekv_raft_proposals_total", "Proposals by outcome (accepted, dropped reason)"),
  fsyncSeconds: registry.histogram("ekv_raft_fsync_seconds", "Latency of one synchronous Raft log batch"),
  persistEntries: registry.counter("ekv_raft_persisted_entries_total", "Entries written to the Raft log"),
  applySeconds: registry.histogram(
    "ekv_raft_apply_batch_seconds",
    "Latency of one state-machine apply batch",
  ),
  snapshots: registry.counter("ekv_raft_snapshots_total", "Snapshots taken (local) or installed (received)"),
  transportDropped: registry.counter("ekv_raft_transport_dropped_total", "Raft messages dropped, by reason"),
  activeKeyId: registry.gauge("ekv_active_key_id", "Active DEK key id per purpose (0 = none)"),
  localEpoch: registry.gauge("ekv_local_epoch", "This node's session epoch per DEK key id"),
  writesPerDek: registry.counter("ekv_writes_per_dek_total", "Values and log entries sealed per DEK key id"),
  decryptFailures: registry.counter(
    "ekv_decrypt_failures_total",
    "Stored values or envelopes that failed to open, by reason",
  ),
  sidecarIndex: registry.gauge(
    "ekv_sidecar_raft_applied_index",
    "The keystore sidecar's raft_applied_index as last seen",
  ),
  keystoreApplySeconds: registry.histogram("ekv_keystore_apply_seconds", "Latency of one keystore dispatch"),
  scrubPasses: registry.counter(
    "ekv_scrub_passes_total",
    "Completed background passes over every live table of the state database",
  ),
  scrubBytes: registry.counter(
    "ekv_scrub_bytes_total",
    "State-database table bytes read and checked (background passes and checks before a snapshot export)",
  ),
  scrubCorruptions: registry.counter(
    "ekv_scrub_corruptions_total",
    "Damaged live state-database tables found (the node halts with CorruptState)",
  ),
  scrubLastPassSeconds: registry.gauge(
    "ekv_scrub_last_pass_seconds",
    "Duration of the last completed background pass over the state database's tables",
  ),
})

export type ConsensusMetrics = ReturnType<typeof makeConsensusMetrics>
