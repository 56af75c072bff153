// (1) Acknowledged writes survive a leader SIGKILL under concurrent load.
// (2) Reads never return a value older than an acknowledged write.
import { describe, expect, it } from "vitest"
import type { ProcessCluster } from "../../../../test/src/processCluster.ts"
import { useProcessCluster } from "../../../../test/src/useProcessCluster.ts"
import { maxIndex, missingFrom, readAllLinearizable, readAllOn, sleep, startWriters } from "./load.ts"

let c: ProcessCluster

useProcessCluster({ env: { EKV_ELECTION_TIMEOUT_MS: "500" } }, (started) => {
  c = started
})

describe("consensus processes", () => {
  it("keeps every acknowledged write when the leader is SIGKILLed under load", async () => {
    const t0 = Date.now()
    const w = startWriters(c, 8, "crash")
    await sleep(1_500)
    const oldLeader = await c.waitForLeader()
    const ackedBeforeKill = w.acked.length
    await c.kill(oldLeader)
    const killedAt = Date.now()
    const survivors = c.running()
    const newLeader = await c.waitForLeader(20_000, survivors)
    const electedMs = Date.now() - killedAt
    // Writes in flight to the killed leader time out; then the new leader takes them.
    const resumeBy = Date.now() + 15_000
    while (w.acked.length <= ackedBeforeKill + 50 && Date.now() < resumeBy) await sleep(100)
    const resumedMs = Date.now() - killedAt
    await sleep(1_000)
    await w.stop()
    expect(newLeader).not.toBe(oldLeader)
    expect(ackedBeforeKill).toBeGreaterThan(0)
    expect(w.acked.length).toBeGreaterThan(ackedBeforeKill)

    const top = maxIndex(w.acked)
    await c.waitForApplied(top, survivors)
    for (const n of survivors) {
      const state = await readAllOn(c, n, "crash-")
      expect(missingFrom(w.acked, state), `missing on ${n}`).toEqual([])
    }
    expect(missingFrom(w.acked, await readAllLinearizable(c, "crash-"))).toEqual([])

    await c.start(oldLeader)
    await c.waitForHealth(oldLeader)
    await c.waitForApplied(top, [oldLeader])
    expect(missingFrom(w.acked, await readAllOn(c, oldLeader, "crash-"))).toEqual([])
    console.log(
      `leader crash: ${w.acked.length} acknowledged writes (${w.failed} failed/retryable), new leader after ${electedMs} ms, writes resumed after ${resumedMs} ms, total ${Date.now() - t0} ms`,
    )
  })

  it("never returns a value older than an acknowledged write", async () => {
    let acked = 0
    let stop = false
    const violations: string[] = []
    let reads = 0
    const writer = (async () => {
      for (let v = 1; !stop; v++) {
        const r = await c.kv.put("register", String(v), 4_000).catch(() => null)
        if (r?.ok === true) acked = Math.max(acked, v)
      }
    })()
    const reader = async () => {
      while (!stop) {
        const floor = acked
        const r = await c.kv.get("register", undefined, 4_000).catch(() => null)
        if (r === null || !r.ok) continue
        reads++
        const seen = r.value.found ? Number(Buffer.from(r.value.value!, "base64").toString()) : 0
        if (seen < floor) violations.push(`read ${seen} after ${floor} was acknowledged`)
      }
    }
    const readers = [reader(), reader(), reader()]
    await sleep(3_000)
    stop = true
    await Promise.all([writer, ...readers])
    expect(violations).toEqual([])
    expect(acked).toBeGreaterThan(10)
    expect(reads).toBeGreaterThan(10)
    console.log(`register: ${acked} writes acknowledged, ${reads} linearizable reads, no stale read`)
  })
})
