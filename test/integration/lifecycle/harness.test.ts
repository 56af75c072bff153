// The end-to-end harness itself (test/src/system.ts): a 3-node system as
// real processes with the §9 bus permissions, driven as the operator.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { type EkvSystem, startSystem } from "../../src/system.ts"

let sys: EkvSystem

beforeAll(async () => {
  sys = await startSystem({ name: "harness" })
})

afterAll(async () => {
  await sys?.stopAll()
})

describe("harness", () => {
  it("starts keystores, consensus and admin; the operator reads and writes", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const leader = await sys.waitForLeader()
    expect(sys.nodes).toContain(leader)
    const put = await sys.putRetry("harness/a", "1")
    expect(put).toBeGreaterThan(0)
    const got = await sys.kv.get("harness/a")
    expect(got.ok && got.value.found).toBe(true)
    for (const n of sys.nodes) {
      const cap = await sys.capability(n)
      expect(cap.ok, JSON.stringify(cap)).toBe(true)
      if (cap.ok) expect(cap.value.node).toBe(n)
    }
    // The operator may not use internal subjects.
    await expect(sys.request(`ekv.internal.n1.admin.cluster.status`, {}, 2_000)).rejects.toThrow()
  })

  it("kills, pauses and restarts single processes", async () => {
    sys.pause("keystore-n2")
    const cap = await sys.capability("n2", 1_000).catch((e: unknown) => e)
    expect(cap).toBeInstanceOf(Error)
    sys.resume("keystore-n2")
    expect((await sys.capability("n2", 5_000)).ok).toBe(true)
    const exit = await sys.kill("consensus-n3")
    expect(exit?.signal).toBe("SIGKILL")
    await sys.start("consensus-n3")
    await sys.waitForHealthy("n3")
    expect(sys.logPaths().length).toBe(7)
  })
})
