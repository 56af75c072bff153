// Acceptance: leadership moves (transfer, or kill the leader) between
// proposing the cutover entry (enable-raft-envelope) and its apply, and
// again right after: no node halts, no user entry after the cutover is
// unsealed.
//
// How the window is hit from outside: the leader's keystore is slowed down
// (SIGSTOP/SIGCONT duty cycle), which stretches the leader's apply of the
// cutover (it waits for its keystore); a probe client writes in a tight loop,
// and the first Unavailable answer after the request was sent is the
// proposal barrier (SPEC §2.5: an unapplied enable-raft-envelope is in the
// leader's log). At that moment leadership is moved, and the old leader's
// applied index is recorded: it must be below the cutover index c (else the
// window was missed and the test says so). "Right after": as soon as the new
// leader reports c applied, leadership moves again.
import type { NatsConnection } from "@nats-io/transport-node"
import { afterEach, describe, expect, it } from "vitest"
import { collectEnvelopes } from "../../src/audit.ts"
import {
  checkAttempts,
  clusterEvents,
  firstMutator,
  halts,
  ok,
  randKey,
  Writers,
} from "../../src/lifecycle.ts"
import { type EkvSystem, parseReply, sleep, startSystem } from "../../src/system.ts"

let sys: EkvSystem | undefined

// A failed test keeps its system's directory and prints its logs (onTestFailed runs after afterEach).
afterEach(async (ctx) => {
  if (sys !== undefined && ctx.task.result?.state === "fail") {
    sys.markFailed()
    console.error(await sys.failureReport())
  }
  await sys?.stopAll()
  sys = undefined
})

/**
 * Puts from several loops until one answers Unavailable (the barrier) or
 * `deadline`. A put proposed just before the barrier waits for an apply the
 * validation pauses, so each loop gives up on a put after a few ms and sends
 * the next: some put reaches the leader inside the window, however short the
 * commit (early appends made it a few ms).
 */
const probeBarrier = async (
  nc: NatsConnection,
  deadline: number,
  stop: () => boolean,
): Promise<string | undefined> => {
  let seen: string | undefined
  const loop = async () => {
    while (seen === undefined && Date.now() < deadline && !stop()) {
      try {
        const m = await nc.request(
          "ekv.kv.put",
          JSON.stringify({ key: randKey("probe"), value: "cHJvYmU=" }),
          {
            timeout: 25,
          },
        )
        const r = parseReply(m.headers, m.data)
        if (!r.ok && r.error.code === "Unavailable")
          seen ??= `${r.error.message} ${JSON.stringify(r.error.details)}`
      } catch {
        // a timeout is not the barrier's answer
      }
    }
  }
  await Promise.all(Array.from({ length: 4 }, loop))
  return seen
}

const appliedOf = async (s: EkvSystem, node: string): Promise<number> => {
  const h = await s.health(node, 1_000)
  return h.ok ? h.value.applied_index : -1
}

const scenario = async (variant: "transfer" | "kill") => {
  const s = await startSystem({ name: `cutover-${variant}` })
  sys = s
  await s.waitForReady()
  const ese = ok(
    "enable-storage-envelope",
    await firstMutator<{ index: number }>(s, "enable-storage-envelope"),
  )
  await s.waitForApplied(ese.index)
  const writers = await Writers.start(s, "cw", 8)
  await sleep(1_000)

  const old = await s.waitForLeader()
  const [target, third] = s.nodes.filter((n) => n !== old) as [string, string]
  const probe = await s.operatorConnection()
  const unthrottle = s.throttle(`keystore-${old}`, 5, 80)
  let oldAppliedAtMove = -1
  let newLeader = target
  try {
    const sent = Date.now()
    const enable = s.encryption<{ index: number; cutover_index: number }>("enable-raft-envelope", {}, 60_000)
    let settled: unknown
    enable.then(
      (r) => {
        settled = r
      },
      (e: unknown) => {
        settled = e instanceof Error ? e.message : e
      },
    )
    const barrier = await probeBarrier(probe, sent + 20_000, () => settled !== undefined)
    expect(
      barrier,
      `the proposal barrier was never observed; enable-raft-envelope answered ${JSON.stringify(settled)}`,
    ).toBeDefined()
    oldAppliedAtMove = await appliedOf(s, old)
    if (variant === "transfer") {
      const t = await s.cluster<{ leader: string }>("transfer-leader", { node: target }, 30_000)
      expect(t.ok, JSON.stringify(t)).toBe(true)
    } else {
      await s.kill(`consensus-${old}`)
    }
    unthrottle()
    if (variant === "kill") await s.start(`consensus-${old}`, { waitReady: false })
    // The cutover's reply (a killed leader may have lost the request: ask again, the call is idempotent).
    let r = await enable.catch((e: unknown) => ({
      ok: false as const,
      error: { code: String(e), message: "" },
      status: 0,
    }))
    const t0 = Date.now()
    while (!r.ok && Date.now() - t0 < 60_000) {
      await sleep(500)
      r = await s.encryption<{ index: number; cutover_index: number }>("enable-raft-envelope", {}, 30_000)
    }
    const c = ok("enable-raft-envelope", r).cutover_index
    expect(oldAppliedAtMove, "leadership moved before the old leader applied the cutover").toBeLessThan(c)

    // Again, right after: as soon as the new leader applied c, move leadership once more.
    newLeader = await s.waitForLeader(30_000)
    await s.until(
      "new leader applied c",
      async () => ((await appliedOf(s, newLeader)) >= c ? true : undefined),
      30_000,
      5,
    )
    if (variant === "transfer") {
      const next = newLeader === target ? third : target
      ok("transfer-leader again", await s.cluster("transfer-leader", { node: next }, 30_000))
    } else {
      await s.waitForHealthy(old, 60_000)
      await s.kill(`consensus-${newLeader}`)
      await s.waitForLeader(
        30_000,
        s.nodes.filter((n) => n !== newLeader),
      )
      await sleep(1_000)
      await s.start(`consensus-${newLeader}`)
    }
    await sleep(2_000)
    await writers.stop()
    for (const n of s.nodes) await s.waitForHealthy(n, 60_000)
    const last = await s.putRetry("zz/last", "x")
    await s.waitForApplied(last)

    expect(await halts(s)).toEqual([])
    expect(await clusterEvents(s, ["halted"])).toEqual([])
    const cutoverRejections = (await clusterEvents(s, ["rejected"])).filter(
      (e) => e.code === "UnsealedAfterCutover" || e.code === "SealedBeforeCutover",
    )
    expect(cutoverRejections).toEqual([])
    expect(writers.acknowledged().some((a) => (a.index ?? 0) > c)).toBe(true)
    expect(await checkAttempts(s, writers.attempts)).toEqual([])

    await s.kill("admin")
    for (const n of s.nodes) await s.killNode(n)
    const col = await collectEnvelopes(
      s.nodes.map((n) => ({ node: n, stateDir: s.stateDir(n), raftDir: s.raftDir(n) })),
    )
    expect(
      col.unsealedEntries.filter((u) => u.index > c),
      "unsealed user entries after the cutover",
    ).toEqual([])
    expect(col.envelopes.filter((e) => e.kind === "raft" && e.index <= c).map((e) => e.source)).toEqual([])
    expect(col.envelopes.some((e) => e.kind === "raft")).toBe(true)
  } finally {
    unthrottle()
    await writers.stop()
    await probe.close().catch(() => undefined)
  }
}

describe("leadership moves around the raft cutover", () => {
  it("transfer-leader between proposal and apply, and right after", async () => {
    await scenario("transfer")
  })

  it("leader killed between proposal and apply, and right after", async () => {
    await scenario("kill")
  })
})
