// The keystore's Prometheus series (SPEC.md §9, CONTRACT.md §6): sidecar
// index, keystore apply latency, local epochs, active key ids, rejections.
import type { Registry } from "@ekv/metrics"
import type { DispatchOutcome } from "./applier.ts"
import type { KeystoreState } from "./keystoreState.ts"
import { EPOCH_WARNING } from "./session.ts"

export interface KeystoreMetrics {
  /** Re-reads the gauges from the live state (after an apply, a session, a restore). */
  readonly refresh: (state: KeystoreState) => void
  readonly observeDispatch: (outcome: DispatchOutcome, seconds: number) => void
}

export const keystoreMetrics = (registry: Registry): KeystoreMetrics => {
  const sidecarIndex = registry.gauge(
    "ekv_sidecar_raft_applied_index",
    "raft_applied_index of this node's sidecar",
  )
  const applySeconds = registry.histogram(
    "ekv_keystore_apply_seconds",
    "time to apply a dispatched encryption entry",
  )
  const localEpoch = registry.gauge("ekv_local_epoch", "this node's local_epoch per unretired DEK")
  const activeKey = registry.gauge("ekv_active_key_id", "active DEK key id per purpose (0 = none)")
  const rejected = registry.counter(
    "ekv_entries_rejected_total",
    "encryption entries applied as rejections, by code",
  )
  const highEpoch = registry.gauge(
    "ekv_local_epoch_high",
    "1 when a DEK's local_epoch is above 0xFF00 (rotate it)",
  )
  return {
    refresh: (state) => {
      const s = state.sidecar
      sidecarIndex.set(s.raft_applied_index)
      activeKey.set(s.active.storage, { purpose: "storage" })
      activeKey.set(s.active.raft, { purpose: "raft" })
      for (const [id, k] of Object.entries(s.keys)) {
        if (k.retired) {
          localEpoch.remove({ key_id: id })
          highEpoch.remove({ key_id: id })
        } else {
          localEpoch.set(k.local_epoch, { key_id: id })
          highEpoch.set(k.local_epoch > EPOCH_WARNING ? 1 : 0, { key_id: id })
        }
      }
    },
    observeDispatch: (outcome, seconds) => {
      if (outcome.replay) return
      applySeconds.observe(seconds)
      if (outcome.status === "rejected") rejected.inc({ code: outcome.code })
    },
  }
}
