import { Registry } from "@ekv/metrics"
import { describe, expect, it } from "vitest"
import { keystoreMetrics } from "../../src/keystoreMetrics.ts"
import { bootstrap, control, dispatch, openAt, SELF, tempDir } from "./harness.ts"

describe("keystore metrics", () => {
  it("sidecar index, active ids, local epochs, rejections and apply latency", async () => {
    const o = await openAt(tempDir())
    const registry = new Registry()
    const m = keystoreMetrics(registry)
    const t0 = performance.now()
    const a = await dispatch(o, 3, 0, bootstrap(11, 12, [{ full_node_id: SELF, local_epoch: 4 }]))
    m.observeDispatch(a, (performance.now() - t0) / 1000)
    const r = await dispatch(o, 4, 3, control({ kind: "enable-raft-envelope" }))
    m.observeDispatch(r, 0.001)
    m.refresh(o.ks.state)
    const text = registry.render()
    expect(text).toContain("ekv_sidecar_raft_applied_index 4")
    expect(text).toContain('ekv_active_key_id{purpose="storage"} 11')
    expect(text).toContain('ekv_local_epoch{key_id="12"} 4')
    expect(text).toContain('ekv_entries_rejected_total{code="PreconditionFailed"} 1')
    expect(text).toContain("ekv_keystore_apply_seconds_count 2")
    await o.close()
  })
})
