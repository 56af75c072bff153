// A KV write is answered once its outcome is known, before its apply batch
// reaches the state database (docs/performance.md, change 17); a read on the
// same node first waits for every write that node answered. Here every apply
// batch holds its state write back by DELAY_MS (a test-only fault standing
// for a slow disk): a put is still answered long before that, and a
// serializable get on the leader right after it returns the value.
import { describe, expect, it } from "vitest"
import { b64, type ProcessCluster, unb64 } from "../../../../test/src/processCluster.ts"
import { useProcessCluster } from "../../../../test/src/useProcessCluster.ts"

const DELAY_MS = 800

let c: ProcessCluster

useProcessCluster(
  {
    env: { EKV_ELECTION_TIMEOUT_MS: "500", EKV_TEST_FAULT_APPLY_WRITE_DELAY_MS: String(DELAY_MS) },
  },
  (started) => {
    c = started
  },
  60_000,
)

type Get = { found: boolean; value?: string; version?: number }

describe("writes answered before their state write", () => {
  it("answers a put before its batch is written; a read on the leader waits for the write", async () => {
    const leader = await c.waitForLeader()
    const on = (op: string) => `${c.prefix}.kv.node.${leader}.${op}`
    // The term's first batches (the leader's empty entry, the cluster id) are written by now.
    let warm = await c.request<{ index: number }>(on("put"), { key: "warm", value: b64("w") }, 30_000)
    for (let tries = 0; !warm.ok && warm.error.code === "Unavailable" && tries < 100; tries++) {
      await new Promise((r) => setTimeout(r, 100)) // the new leader has not applied its first entry yet
      warm = await c.request<{ index: number }>(on("put"), { key: "warm", value: b64("w") }, 30_000)
    }
    if (!warm.ok) throw new Error(JSON.stringify(warm))
    await c.waitForApplied(warm.value.index, [leader])

    for (const [i, consistency] of (["serializable", "linearizable"] as const).entries()) {
      const key = `k${i}`
      const t0 = performance.now()
      const put = await c.request<{ index: number }>(on("put"), { key, value: b64(`v${i}`) }, 30_000)
      const putMs = performance.now() - t0
      if (!put.ok) throw new Error(JSON.stringify(put))
      const get = await c.request<Get>(on("get"), { key, consistency }, 30_000)
      const bothMs = performance.now() - t0
      if (!get.ok) throw new Error(JSON.stringify(get))
      expect(get.value, consistency).toMatchObject({ found: true, version: put.value.index })
      expect(unb64(get.value.value ?? "")).toBe(`v${i}`)
      // Answered well before the write it waited for...
      expect(putMs, `put answered after ${putMs} ms`).toBeLessThan(DELAY_MS / 2)
      // ...which the read then waited for.
      expect(bothMs, `read answered after ${bothMs} ms`).toBeGreaterThan(DELAY_MS * 0.8)
      await c.waitForApplied(put.value.index, [leader])
    }
  })
})
