// (6) Damage in a state-DB table (docs/reliability.md finding 2): a bit flipped
// in a value inside a live `.ldb` of a stopped follower. LevelDB never checks
// the block CRC, so without the scrubber the node starts healthy and serves the
// damaged value. With it, the node halts with CorruptState (naming file and
// offset), never leads, the others keep writing, and once wiped it rejoins
// through a snapshot with identical state. A damaged leader asked for a
// snapshot file finds the damage first, halts and ships nothing.
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { jetstreamManager } from "@nats-io/jetstream"
import { describe, expect, it } from "vitest"
import type { ProcessCluster } from "../../../../test/src/processCluster.ts"
import { useProcessCluster } from "../../../../test/src/useProcessCluster.ts"
import { liveTables } from "../../src/raftLog/levelDbFiles.ts"
import { maxIndex, missingFrom, readAllOn, sleep, startWriters } from "./load.ts"

let c: ProcessCluster

/** Fast enough that a pass over these small stores takes well under a second. */
const FAST_SCRUB = { EKV_SCRUB_BYTES_PER_SEC: String(64 << 20) }

useProcessCluster({ env: { EKV_ELECTION_TIMEOUT_MS: "500", EKV_SNAPSHOT_ENTRIES: "200" } }, (started) => {
  c = started
})

const stateDb = (node: string) => path.join(c.dataDir(node), "consensus", "state", "db")

const waitFor = async <A>(
  what: string,
  f: () => Promise<A | null | undefined | false>,
  timeoutMs = 60_000,
): Promise<A> => {
  const t0 = Date.now()
  for (;;) {
    const v = await f().catch(() => null)
    if (v !== null && v !== undefined && v !== false) return v
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(100)
  }
}

const lastClusterEvent = async (node: string): Promise<Record<string, unknown> | null> => {
  const jsm = await jetstreamManager(await c.client())
  const m = await jsm.streams
    .getMessage("EKV_EVENTS", { last_by_subj: `ekv.events.cluster.${node}` })
    .catch(() => null)
  return m === null ? null : (m.json() as Record<string, unknown>)
}

const MARK = "VALUE-"
/** Incompressible cleartext values with a findable marker: `VALUE-<key>-<hex>`. */
const coldValue = (key: string) => `${MARK}${key}-${randomBytes(450).toString("hex")}`

/** Puts `n` keys `<prefix>-<i>` with 8 concurrent clients; returns key → value. */
const putCold = async (prefix: string, n: number): Promise<Map<string, string>> => {
  const out = new Map<string, string>()
  let next = 0
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < n) {
        const key = `${prefix}-${next++}`
        const value = coldValue(key)
        const r = await c.kv.put(key, value, 10_000)
        if (!r.ok) throw new Error(`put ${key}: ${r.error.code}: ${r.error.message}`)
        out.set(key, value)
      }
    }),
  )
  return out
}

/**
 * Stops `node` and flips one bit in a value inside a data block of one of its
 * live state-DB tables (restarting it once first if its data is still only in
 * the write-ahead log: LevelDB turns the log into a table when it opens).
 */
const damageStateTable = async (node: string) => {
  await c.kill(node)
  let live = await liveTables(stateDb(node))
  if (live.tables.length === 0) {
    await c.start(node)
    await c.waitForHealth(node)
    await c.kill(node)
    live = await liveTables(stateDb(node))
  }
  for (const t of live.tables) {
    const file = path.join(stateDb(node), t.file)
    const bytes = await fs.readFile(file)
    // Inside a data block holding values (LevelDB may Snappy-compress the block, so the
    // bytes after the marker are not necessarily the value's literal text: any flip
    // inside the block breaks its CRC all the same).
    const at = bytes.indexOf(MARK)
    if (at < 0) continue
    const offset = Math.min(at + 40, bytes.length - 64)
    bytes[offset] = bytes[offset]! ^ 0x04
    await fs.writeFile(file, bytes)
    return { table: t.file, offset }
  }
  throw new Error(`${node}: no live state-DB table holds a value (${JSON.stringify(live)})`)
}

const leaderSeenBy = async (nodes: readonly string[]): Promise<string[]> => {
  const out: string[] = []
  for (const n of nodes) {
    const s = await c.clusterStatus(n, 1_000).catch(() => null)
    if (s?.ok && s.value.leader !== null) out.push(s.value.leader)
  }
  return out
}

describe("state-DB damage", () => {
  it("a follower with a flipped bit in a state table halts with CorruptState, never leads, and rejoins once wiped", async () => {
    const cold = await putCold("cold", 3000)
    const leader = await c.waitForLeader()
    const victim = c.nodes.find((n) => n !== leader)!
    const others = c.nodes.filter((n) => n !== victim)
    const damage = await damageStateTable(victim)
    const probe = [...cold.keys()][0]!

    // No writes while it was down: it catches up from the log (a snapshot install would shadow
    // the damaged version with fresh copies), so the damaged value is what it would serve.
    const t0 = Date.now()
    await c.start(victim, FAST_SCRUB)
    await c.waitForHealth(victim)
    const w = startWriters(c, 4, "during")
    const leaders = new Set<string>()
    const halted = await waitFor(
      "the victim halted",
      async () => {
        for (const l of await leaderSeenBy(c.nodes)) leaders.add(l)
        const h = await c.health(victim)
        return h.ok && h.value.consensus === "halted" ? h.value : null
      },
      20_000,
    )
    const haltMs = Date.now() - t0
    expect(halted.halted?.reason).toBe("CorruptState")
    // One clear line naming the file and the damaged block's offset.
    const lines = await c.logEntries(victim, "apply halted")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ reason: "CorruptState", index: halted.halted!.index })
    expect(String(lines[0]!.message)).toContain(`LevelDB file ${damage.table} offset `)
    await waitFor("the halted event", async () => {
      const ev = await lastClusterEvent(victim)
      return ev?.kind === "halted" && ev.code === "CorruptState"
    })
    // The damaged value is never served: reads on the victim answer Halted.
    const read = await c.kv.getOn(victim, probe)
    expect(read.ok === false && read.error.code).toBe("Halted")

    // It never leads, even when asked to, and the others keep accepting writes.
    const before = w.acked.length
    const asked = await c.cluster(others[0]!, "transfer-leader", { node: victim })
    expect(asked.ok).toBe(false)
    const until = Date.now() + 4_000
    while (Date.now() < until) {
      for (const l of await leaderSeenBy(c.nodes)) leaders.add(l)
      await sleep(200)
    }
    expect([...leaders]).not.toContain(victim)
    expect(w.acked.length).toBeGreaterThan(before + 20)
    // It does not resume by itself: the damage stays.
    const still = await c.health(victim)
    expect(still.ok && still.value.halted?.reason).toBe("CorruptState")

    // Recovery: wipe its data and restart it; it rejoins through a snapshot.
    await c.kill(victim)
    await c.wipe(victim)
    await c.start(victim)
    await c.waitForHealth(victim)
    await sleep(1_000)
    await w.stop()
    await c.waitForApplied(maxIndex(w.acked), c.running(), 60_000)
    expect((await c.logEntries(victim, "snapshot installed")).length).toBeGreaterThan(0)
    const health = await c.health(victim)
    expect(health.ok && health.value.consensus).toBe("ok")
    const ref = await readAllOn(c, others[0]!, "")
    const mine = await readAllOn(c, victim, "")
    expect(missingFrom(w.acked, mine)).toEqual([])
    expect(mine.get(probe)).toBe(cold.get(probe))
    expect(mine.size).toBe(ref.size)
    expect([...mine].sort()).toEqual([...ref].sort())
    console.log(
      `${victim}: bit flipped in ${damage.table} at ${damage.offset} ; halted CorruptState ${haltMs} ms after start; ${w.acked.length} writes meanwhile; rejoined`,
    )
  })

  it("a damaged leader asked for a snapshot file finds the damage first, halts and sends nothing", async () => {
    await putCold("cold2", 1500)
    const leader0 = await c.waitForLeader()
    const victim = c.nodes.find((n) => n !== leader0)!
    const damage = await damageStateTable(victim)
    // No background passes: only the check before an export can find it.
    await c.start(victim, { EKV_SCRUB_BYTES_PER_SEC: "0" })
    await c.waitForHealth(victim)
    const halts0 = (await c.logEntries(victim, "apply halted")).length
    const sent0 = (await c.logEntries(victim, "snapshot file written to send")).length
    await waitFor("the victim leads", async () => {
      const leader = await c.waitForLeader(5_000)
      if (leader === victim) return true
      await c.cluster(leader, "transfer-leader", { node: victim })
      return false
    })
    // A wiped follower needs a snapshot file from the (damaged) leader: its log was compacted long ago.
    const follower = c.nodes.find((n) => n !== victim)!
    await c.kill(follower)
    await c.wipe(follower)
    const sentBy0 = (await c.logEntries(victim, "sending snapshot")).length
    const w = startWriters(c, 4, "compact")
    while (w.acked.length < 400) await sleep(100)
    // The writes stop and the third node catches up first: once the leader halts, the wiped
    // follower (rejoining) does not vote, so the third node can only be elected with the halted
    // node's vote, which needs its log to be as long (with two of three nodes impaired there is
    // no quorum otherwise — Raft tolerates one).
    await w.stop()
    const third = c.nodes.find((n) => n !== victim && n !== follower)!
    await c.waitForApplied(maxIndex(w.acked), [victim, third], 60_000)
    await c.start(follower)

    const halted = await waitFor("the damaged leader halted", async () => {
      const h = await c.health(victim)
      return h.ok && h.value.consensus === "halted" ? h.value : null
    })
    expect(halted.halted?.reason).toBe("CorruptState")
    const lines = await c.logEntries(victim, "apply halted")
    expect(lines).toHaveLength(halts0 + 1)
    expect(String(lines.at(-1)?.message)).toContain(`LevelDB file ${damage.table} offset `)
    expect(await c.logEntries(victim, "snapshot file written to send")).toHaveLength(sent0)
    const newLeader = await c.waitForLeader(30_000)
    expect(newLeader).not.toBe(victim)

    await c.waitForHealth(follower, 60_000)
    await c.waitForApplied(maxIndex(w.acked), [newLeader, follower], 60_000)
    // The follower caught up from the new leader (through its snapshot file or, when that leader
    // had not compacted past what it needed, its log) with the same state; never from the victim.
    expect(await c.logEntries(victim, "sending snapshot")).toHaveLength(sentBy0)
    const ref = await readAllOn(c, newLeader, "")
    const mine = await readAllOn(c, follower, "")
    expect(missingFrom(w.acked, mine)).toEqual([])
    expect([...mine].sort()).toEqual([...ref].sort())
  })
})
