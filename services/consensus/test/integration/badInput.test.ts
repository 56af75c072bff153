// (7) Bad input on every KV subject gets a typed error reply and changes
// nothing: the commit index (and term) of the idle cluster stay the same.
import { describe, expect, it } from "vitest"
import { b64, type ProcessCluster } from "../../../../test/src/processCluster.ts"
import { useProcessCluster } from "../../../../test/src/useProcessCluster.ts"
import { sleep } from "./load.ts"

let c: ProcessCluster

useProcessCluster({ env: { EKV_ELECTION_TIMEOUT_MS: "500" } }, (started) => {
  c = started
})

const big = (n: number) => Buffer.alloc(n, 0x61).toString("base64")

const BAD: Record<string, unknown[]> = {
  put: [
    "not json",
    "[]",
    "",
    { key: "k" },
    { value: b64("v") },
    { key: "k", value: "***" },
    { key: "k", value: b64("v"), extra: 1 },
    { key: "", value: b64("v") },
    { key: "!encryption|x", value: b64("v") },
    { key: "k".repeat(4097), value: b64("v") },
    { key: "k", value: big(1024 * 1024 + 1) },
    { key: 5, value: b64("v") },
  ],
  get: ["{", { key: "k", consistency: "eventual" }, { key: "!x" }, { key: "k", extra: true }, {}],
  delete: [{}, { key: "!x" }, { key: "k", value: b64("v") }, "null"],
  batch: [
    { ops: [] },
    { ops: Array.from({ length: 1001 }, (_, i) => ({ op: "delete", key: `k${i}` })) },
    {
      ops: [
        { op: "put", key: "a", value: big(1024 * 1024) },
        { op: "put", key: "b", value: big(1024 * 1024 + 10) },
      ],
    },
    { ops: [{ op: "merge", key: "a" }] },
    { ops: [{ op: "put", key: "a" }] },
    { ops: [{ op: "delete", key: "!a" }] },
    { ops: "x" },
  ],
  scan: [
    { limit: 0 },
    { limit: 1001 },
    { limit: 1.5 },
    { prefix: "!enc" },
    { consistency: "strong" },
    { after: 3 },
    { prefix: "a", bogus: 1 },
    "[1]",
  ],
}

describe("bad input", () => {
  it("every KV subject answers bad requests with a typed error and proposes nothing", async () => {
    const leader = await c.waitForLeader()
    // Idle: cluster_id committed and applied everywhere (CONTRACT §1: an idle cluster appends nothing).
    for (;;) {
      const s = await c.clusterStatus(leader)
      if (
        s.ok &&
        s.value.cluster_id !== "" &&
        s.value.members.every((m) => m.applied_index === s.value.commit_index)
      )
        break
      await sleep(100)
    }
    const before = await c.clusterStatus(leader)
    if (!before.ok) throw new Error("status")
    let n = 0
    for (const [op, bodies] of Object.entries(BAD)) {
      for (const body of bodies) {
        const r = await c.request(`ekv.kv.${op}`, body)
        expect(r.ok, `${op} ${JSON.stringify(body).slice(0, 80)}`).toBe(false)
        if (!r.ok) {
          expect(r.error.code, `${op} ${JSON.stringify(body).slice(0, 80)}`).toBe("InvalidArgument")
          expect(r.status).toBe(400)
        }
        n++
      }
    }
    // A body over 3 MiB is InvalidArgument too.
    const huge = await c.request("ekv.kv.put", { key: "k", value: big(2_400_000) })
    expect(huge.ok === false && huge.error.code).toBe("InvalidArgument")
    await sleep(1_000)
    const after = await c.clusterStatus(leader)
    if (!after.ok) throw new Error("status")
    expect(after.value.term).toBe(before.value.term)
    expect(after.value.commit_index).toBe(before.value.commit_index)
    const found = await c.kv.get("k")
    expect(found.ok && found.value.found).toBe(false)
    console.log(`bad input: ${n + 1} requests refused, commit index stayed at ${after.value.commit_index}`)
  })
})
