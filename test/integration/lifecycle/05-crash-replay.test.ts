// Acceptance: crash/replay.
// (a) Kill the keystore while an encryption entry is being applied → that
//     node halts at that index while the others go on; restart the keystore
//     → it resumes, and its registry and sidecar end identical to the other
//     nodes'.
// (b) Kill a node between the keystore's commit and consensus persisting its
//     applied index → replay returns the recorded outcome.
//
// Windows from outside: (a) the follower's keystore is slowed down
// (SIGSTOP/SIGCONT duty cycle) so its apply of a rotate-dek is still running
// when the leader answers; it is then SIGKILLed. (b) the follower's consensus
// is slowed down instead; its keystore's event for the entry (CONTRACT §5,
// published after the keystore's durable commit) triggers an immediate
// SIGKILL of that consensus; the state machine's persisted applied index,
// read from disk afterwards, proves it had not recorded the entry.
import { afterEach, describe, expect, it } from "vitest"
import {
  type RegistryRow,
  readSidecarFile,
  registryRows,
  replicatedSidecar,
  stateAppliedIndex,
} from "../../src/audit.ts"
import { firstMutator, halts, ok, readBack, writeSet } from "../../src/lifecycle.ts"
import { type EkvSystem, type EventMsg, sleep, startSystem } from "../../src/system.ts"

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

const applied = async (s: EkvSystem, node: string) => {
  const h = await s.health(node, 2_000)
  return h.ok ? h.value.applied_index : -1
}

/** Registry rows and replicated sidecar of every node (processes must be stopped). */
const keystoreStates = async (s: EkvSystem) => {
  const out: Record<string, { rows: RegistryRow[]; sidecar: unknown }> = {}
  for (const n of s.nodes) {
    const sc = await readSidecarFile(s.sidecarPath(n))
    out[n] = {
      rows: await registryRows(s.keystoreDir(n)),
      sidecar: sc === undefined ? null : replicatedSidecar(sc),
    }
  }
  return out
}

const expectIdentical = (states: Record<string, { rows: RegistryRow[]; sidecar: unknown }>) => {
  const [first, ...rest] = Object.keys(states)
  if (first === undefined) throw new Error("no nodes")
  expect(states[first]?.rows.length).toBeGreaterThan(0)
  for (const n of rest) {
    expect(states[n]?.rows, `${n} registry vs ${first}`).toEqual(states[first]?.rows)
    expect(states[n]?.sidecar, `${n} sidecar vs ${first}`).toEqual(states[first]?.sidecar)
  }
}

describe("crash and replay of encryption entries", () => {
  it("a keystore killed mid-apply halts only its node, which resumes after a restart", async () => {
    const s = await startSystem({ name: "crash-keystore" })
    sys = s
    await s.waitForReady()
    ok("enable-storage-envelope", await firstMutator(s, "enable-storage-envelope"))
    const data = await writeSet(s, "a", 10)
    const leader = await s.waitForLeader()
    const f = s.nodes.find((n) => n !== leader) as string
    const before = await applied(s, f)
    const unthrottle = s.throttle(`keystore-${f}`, 3, 150)
    let rot: { index: number; key_id: number }
    try {
      rot = ok(
        "rotate-dek",
        await s.encryption<{ index: number; key_id: number }>("rotate-dek", { purpose: "storage" }, 60_000),
      )
      const fApplied = await applied(s, f)
      expect(fApplied, "the follower had not applied the rotation when its keystore was killed").toBeLessThan(
        rot.index,
      )
      expect(fApplied).toBeGreaterThanOrEqual(before)
      await s.kill(`keystore-${f}`)
    } finally {
      unthrottle()
    }
    const halt = await s.waitForHalted(f, 90_000)
    expect(halt).toEqual({ index: rot.index, reason: "KeystoreUnavailable" })
    // The others go on.
    const more = await writeSet(s, "b", 10)
    const lastIndex = more[more.length - 1]?.index ?? 0
    await s.waitForApplied(
      lastIndex,
      s.nodes.filter((n) => n !== f),
    )
    expect(await applied(s, f)).toBe(rot.index - 1)
    expect(ok(`health ${f}`, await s.health(f))).toMatchObject({ consensus: "halted", halted: halt })

    await s.start(`keystore-${f}`)
    await s.waitForApplied(lastIndex, s.nodes, 90_000)
    expect(await halts(s)).toEqual([])
    expect(await readBack(s, [...data, ...more])).toEqual([])
    const st = ok("status", await s.encryptionStatus())
    expect(st.active.storage).toBe(rot.key_id)

    await s.kill("admin")
    for (const n of s.nodes) await s.killNode(n)
    expectIdentical(await keystoreStates(s))
  })

  it("a node killed between its keystore's commit and its applied index replays the recorded outcome", async () => {
    const s = await startSystem({ name: "crash-replay" })
    sys = s
    await s.waitForReady()
    ok("enable-storage-envelope", await firstMutator(s, "enable-storage-envelope"))
    const data = await writeSet(s, "a", 10)
    const leader = await s.waitForLeader()
    const f = s.nodes.find((n) => n !== leader) as string

    const seen: EventMsg[] = []
    let killed: Promise<unknown> | undefined
    let target = Number.POSITIVE_INFINITY
    const stopWatch = await s.watchEvents((e) => {
      seen.push(e)
      if (killed === undefined && Number(e.body.index) >= target) killed = s.kill(`consensus-${f}`)
    }, `ekv.events.encryption.${f}`)
    const commitNow = ok("cluster status", await s.status()).commit_index
    target = commitNow + 1
    const unthrottle = s.throttle(`consensus-${f}`, 3, 150)
    let rot: { index: number; key_id: number }
    try {
      rot = ok(
        "rotate-dek",
        await s.encryption<{ index: number; key_id: number }>("rotate-dek", { purpose: "storage" }, 60_000),
      )
      await s.until(
        "the follower's keystore event",
        async () => (killed === undefined ? undefined : true),
        30_000,
        20,
      )
      await killed
    } finally {
      unthrottle()
      await stopWatch()
    }
    const ev = seen.find((e) => Number(e.body.index) === rot.index)
    expect(ev?.body).toMatchObject({ node: f, index: rot.index, kind: "rotate-dek", outcome: "applied" })
    await s.kill(`keystore-${f}`)
    // The keystore committed the entry; consensus had not persisted it as applied.
    const sc = await readSidecarFile(s.sidecarPath(f))
    expect(sc?.raft_applied_index).toBe(rot.index)
    expect(
      await stateAppliedIndex(s.stateDir(f)),
      "consensus persisted the entry before it was killed",
    ).toBeLessThan(rot.index)

    await s.startNode(f)
    await s.waitForHealthy(f, 90_000)
    const more = await writeSet(s, "b", 5)
    await s.waitForApplied(more[more.length - 1]?.index ?? 0, s.nodes, 60_000)
    expect(await halts(s)).toEqual([])
    expect(await readBack(s, [...data, ...more])).toEqual([])
    await sleep(1_000)
    // Replay returned the recorded outcome: no second event for the index, the same state everywhere.
    const events = (await s.events(`ekv.events.encryption.${f}`)).filter(
      (e) => Number(e.body.index) === rot.index,
    )
    expect(events.map((e) => e.body.outcome)).toEqual(["applied"])
    await s.kill("admin")
    for (const n of s.nodes) await s.killNode(n)
    expectIdentical(await keystoreStates(s))
  })
})
