// (6) Restart cost is bounded by snapshotting: after 100,000 writes with
// EKV_SNAPSHOT_ENTRIES=10000 a restarted node re-reads at most one snapshot
// interval of log. Times are reported (ratio vs. a node with few writes), not asserted.
import { describe, expect, it } from "vitest"
import type { ProcessCluster } from "../../../../test/src/processCluster.ts"
import { useProcessCluster } from "../../../../test/src/useProcessCluster.ts"

const SNAPSHOT_ENTRIES = 10_000
const WRITES = 100_000

let c: ProcessCluster

useProcessCluster(
  {
    env: { EKV_ELECTION_TIMEOUT_MS: "500", EKV_SNAPSHOT_ENTRIES: String(SNAPSHOT_ENTRIES) },
  },
  (started) => {
    c = started
  },
)

const enc = new TextEncoder()

const writeMany = async (count: number, concurrency: number): Promise<number> => {
  const nc = await c.client()
  let next = 0
  let top = 0
  const value = Buffer.alloc(64, 0x62).toString("base64")
  const worker = async () => {
    while (next < count) {
      const i = next++
      const body = enc.encode(JSON.stringify({ key: `bulk-${i}`, value }))
      for (;;) {
        try {
          const m = await nc.request("ekv.kv.put", body, { timeout: 10_000 })
          if (m.headers?.has("Nats-Service-Error-Code") !== true) {
            top = Math.max(top, (JSON.parse(new TextDecoder().decode(m.data)) as { index: number }).index)
            break
          }
        } catch {
          // retry
        }
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return top
}

/** Restarts `node` and measures time to health and to catching up with `index`. */
const restartTimed = async (node: string, index: number) => {
  await c.kill(node)
  const t0 = Date.now()
  await c.start(node)
  await c.waitForHealth(node, 120_000)
  const healthMs = Date.now() - t0
  await c.waitForApplied(index, [node], 120_000)
  const caughtUpMs = Date.now() - t0
  const ready = (await c.logEntries(node, "consensus ready")).at(-1) ?? {}
  return { healthMs, caughtUpMs, ready }
}

describe("restart cost", () => {
  it(`is bounded by the snapshot interval after ${WRITES} writes`, async () => {
    const leader = await c.waitForLeader()
    const node = c.nodes.find((n) => n !== leader)!
    const few = await writeMany(100, 16)
    const small = await restartTimed(node, few)
    const t0 = Date.now()
    const top = await writeMany(WRITES, 256)
    const writeS = (Date.now() - t0) / 1000
    await c.waitForApplied(top, c.running(), 120_000)
    const large = await restartTimed(node, top)
    const replayed = Number(large.ready.replayEntries)
    const loaded = Number(large.ready.loadedEntries)
    console.log(
      `restart cost: ${WRITES} writes in ${writeS.toFixed(1)} s (${(WRITES / writeS).toFixed(0)}/s); ` +
        `few writes: health ${small.healthMs} ms, caught up ${small.caughtUpMs} ms; ` +
        `after ${WRITES}: health ${large.healthMs} ms, caught up ${large.caughtUpMs} ms ` +
        `(ratio ${(large.caughtUpMs / Math.max(1, small.caughtUpMs)).toFixed(2)}); ` +
        `log entries loaded ${loaded}, replayable after the state machine ${replayed}, snapshot at ${large.ready.snapshotIndex}`,
    )
    expect(Number.isFinite(replayed)).toBe(true)
    expect(replayed).toBeLessThanOrEqual(SNAPSHOT_ENTRIES)
    expect(loaded).toBeLessThanOrEqual(2 * SNAPSHOT_ENTRIES)
    expect(Number(large.ready.snapshotIndex)).toBeGreaterThanOrEqual(top - 2 * SNAPSHOT_ENTRIES)
  }, 300_000)
})
