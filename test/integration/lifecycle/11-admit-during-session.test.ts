// Acceptance (SPEC §5 "Membership after activation", §6): admitting a node
// never takes an epoch its own writer session holds. A new node gets a
// placeholder row (epoch 0, no session) under every unretired DEK, which its
// session then advances; a node that already has rows is not registered again
// — also when it is promoted while a new session of it is opening, the race
// of docs/reliability.md bug 5: its keystore already reports the session's
// epoch, the session's own 0x03 is not in the log yet. Registering the node
// at that epoch first (without a session) made the session's 0x03 "same
// epoch, another session": refused, and the node could never seal again.
//
// The harness orders the race: a copy of the session request (under the
// keystore's bus user) freezes the node's consensus (SIGSTOP) before it can
// forward its 0x03; the keystore still opens the session (its capability
// shows the new epoch); then the promote; then the consensus goes on.
import { fullNodeId } from "@ekv/crypto"
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import { firstMutator, halts, nextOn, ok, readBack, spyAs, writeSet } from "../../src/lifecycle.ts"
import { type EkvSystem, startSystem } from "../../src/system.ts"

const NEW = "n4"
let sys: EkvSystem

beforeAll(async () => {
  sys = await startSystem({ name: "admit-session", extraNodes: [NEW] })
  await sys.waitForReady()
})

afterAll(async () => {
  await sys?.stopAll()
})

describe("admitting a node during its writer session", () => {
  it("keeps the session's epochs: a placeholder for a new node, nothing for one with rows", async () => {
    onTestFailed(async () => {
      sys.markFailed()
      console.error(await sys.failureReport())
    })
    const boot = ok(
      "bootstrap",
      await firstMutator<{ storage_key_id: number; raft_key_id: number }>(sys, "bootstrap", {
        discover: true,
      }),
    )
    ok("enable-storage-envelope", await sys.encryption("enable-storage-envelope", {}, 60_000))
    const data = await writeSet(sys, "a", 5)
    const fid = fullNodeId(NEW).toString()
    const rowsOf = async () => {
      const st = ok("encryption status", await sys.encryptionStatus())
      return Object.fromEntries(
        st.registry.filter((r) => r.full_node_id === fid).map((r) => [r.dek_id, r.last_seen_local_epoch]),
      )
    }
    const storageEpoch = async () => ok(`capability ${NEW}`, await sys.capability(NEW, 5_000)).local_epoch

    // 1. A new node: placeholder rows at epoch 0, then its session's own registrations advance them.
    await sys.start(`keystore-${NEW}`)
    await sys.start(`consensus-${NEW}`, { waitReady: false })
    const added = ok(
      "add-learner",
      await sys.cluster<{ index: number }>("add-learner", { node: NEW }, 30_000),
    )
    await sys.waitForApplied(added.index, ["n1", "n2", "n3"])
    await sys.waitForHealthy(NEW, 60_000)
    data.push(...(await writeSet(sys, "b", 5)))
    await sys.waitForApplied(data[data.length - 1]?.index ?? 0, [...sys.nodes], 60_000)
    const first = await storageEpoch()
    expect(first).toBeGreaterThanOrEqual(1)
    expect(await rowsOf()).toEqual({ [boot.storage_key_id]: first, [boot.raft_key_id]: expect.any(Number) })

    // 2. A new session of it opens (consensus restart) and is frozen before its 0x03 leaves.
    const spy = await spyAs(sys, `keystore-${NEW}`)
    let paused = false
    try {
      const sessions = spy.subscribe(`${sys.prefix}.internal.${NEW}.keystore.session`)
      await sys.kill(`consensus-${NEW}`)
      await sys.start(`consensus-${NEW}`, { waitReady: false })
      await nextOn(sessions, "session request", 30_000)
      sys.pause(`consensus-${NEW}`)
      paused = true
      const second = await sys.until(
        `${NEW}'s keystore opened the new session`,
        async () => {
          const e = await storageEpoch()
          return e > first ? e : undefined
        },
        10_000,
      )
      // The race needs the promote inside the session request's 5 s timeout (it takes well under
      // a second; no fan-out status call meanwhile, it would wait on the frozen process). Later,
      // the node opens yet another session (above `second`) and the race is simply missed.
      const promoted = ok("promote", await sys.cluster<{ index: number }>("promote", { node: NEW }, 15_000))
      sys.resume(`consensus-${NEW}`)
      paused = false
      expect(promoted.index).toBeGreaterThan(added.index)

      // 3. Its session registers `second` itself (nothing took that epoch), and it seals again.
      await sys.until(
        `${NEW}'s row at the new session's epoch`,
        async () => (((await rowsOf())[boot.storage_key_id] ?? 0) >= second ? true : undefined),
        30_000,
      )
    } finally {
      if (paused) sys.resume(`consensus-${NEW}`)
      await spy.close().catch(() => undefined)
    }
    await sys.waitForHealthy(NEW, 60_000)
    data.push(...(await writeSet(sys, "c", 5)))
    await sys.waitForApplied(data[data.length - 1]?.index ?? 0, [...sys.nodes], 60_000)
    expect(await halts(sys)).toEqual([])
    const status = ok("cluster status", await sys.status())
    expect(status.members.find((m) => m.node === NEW)?.role).toBe("voter")
    expect(await readBack(sys, data)).toEqual([])
  })
})
