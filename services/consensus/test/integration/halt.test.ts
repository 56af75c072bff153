// (5) A halted node (test-only fault) does not block the others' writes,
// reports halted {index, reason} in health, status and the events stream,
// and resumes from the halted index once the fault is cleared.
import { jetstreamManager } from "@nats-io/jetstream"
import { describe, expect, it } from "vitest"
import type { ProcessCluster } from "../../../../test/src/processCluster.ts"
import { useProcessCluster } from "../../../../test/src/useProcessCluster.ts"
import { maxIndex, missingFrom, readAllOn, sleep, startWriters } from "./load.ts"

let c: ProcessCluster

useProcessCluster({ env: { EKV_ELECTION_TIMEOUT_MS: "500" } }, (started) => {
  c = started
})

const lastClusterEvent = async (node: string): Promise<Record<string, unknown> | null> => {
  const jsm = await jetstreamManager(await c.client())
  try {
    const m = await jsm.streams.getMessage("EKV_EVENTS", { last_by_subj: `ekv.events.cluster.${node}` })
    return m === null ? null : (m.json() as Record<string, unknown>)
  } catch {
    return null
  }
}

const waitFor = async <A>(
  what: string,
  f: () => Promise<A | null | undefined | false>,
  timeoutMs = 20_000,
): Promise<A> => {
  const t0 = Date.now()
  for (;;) {
    const v = await f().catch(() => null)
    if (v !== null && v !== undefined && v !== false) return v
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(100)
  }
}

describe("halts", () => {
  it("a halted leader steps down, the others keep writing, and it resumes when the fault clears", async () => {
    const victim = await c.waitForLeader()
    const r0 = await c.kv.put("before-halt", "1")
    expect(r0.ok).toBe(true)
    const st0 = await c.clusterStatus(victim)
    if (!st0.ok) throw new Error("status")
    const haltAt = st0.value.commit_index + 1
    await c.setFault(victim, haltAt)

    const w = startWriters(c, 4, "halt")
    const halted = await waitFor("the halt in health", async () => {
      const h = await c.health(victim)
      return h.ok && h.value.consensus === "halted" ? h.value : null
    })
    expect(halted.halted).toEqual({ index: haltAt, reason: "KeystoreUnavailable" })
    expect(halted.applied_index).toBe(haltAt - 1)

    // The cluster moves on without it.
    const newLeader = await c.waitForLeader(
      20_000,
      c.nodes.filter((n) => n !== victim),
    )
    expect(newLeader).not.toBe(victim)
    const acked = w.acked.length
    await waitFor("writes after the halt", async () => w.acked.length >= acked + 50)
    const st = await c.clusterStatus(newLeader)
    if (!st.ok) throw new Error("status")
    expect(st.value.members.find((m) => m.node === victim)?.halted).toEqual({
      index: haltAt,
      reason: "KeystoreUnavailable",
    })
    const h2 = await c.health(victim)
    expect(h2.ok && h2.value.applied_index).toBe(haltAt - 1)
    expect(
      await waitFor("the halted event", async () => {
        const e = await lastClusterEvent(victim)
        return e?.kind === "halted" ? e : null
      }),
    ).toMatchObject({ kind: "halted", index: haltAt, code: "KeystoreUnavailable", node: victim })
    // A serializable read on the halted node is refused, not served stale.
    const stale = await c.kv.getOn(victim, "before-halt")
    expect(stale.ok === false && stale.error.code).toBe("Halted")

    await c.setFault(victim, null)
    await waitFor("the resume", async () => {
      const h = await c.health(victim)
      return h.ok && h.value.consensus === "ok" && h.value.halted === undefined
    })
    await w.stop()
    const top = maxIndex(w.acked)
    await c.waitForApplied(top, c.running())
    expect(missingFrom(w.acked, await readAllOn(c, victim, "halt-"))).toEqual([])
    expect(
      await waitFor("the resumed event", async () => {
        const e = await lastClusterEvent(victim)
        return e?.kind === "resumed" ? e : null
      }),
    ).toMatchObject({ kind: "resumed", index: haltAt })
    console.log(
      `halt: ${victim} halted at ${haltAt}; ${w.acked.length} writes acknowledged meanwhile; resumed and caught up to ${top}`,
    )
  })
})
