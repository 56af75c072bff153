// Node-addressed KV subjects (`<p>.kv.node.<n>.<op>`, CONTRACT §2) on three
// consensus processes: a follower's copy relays and names the leader in
// `Ekv-Leader`, the leader's copy answers itself with no hint, bad input is a
// typed error there too, and a client following the hints (`LeaderRoute`)
// reaches the leader without relays and follows it across a leadership
// transfer and a leader that stops answering.
import { LeaderRoute, parseErrorReply } from "@ekv/bus"
import { LEADER_HINT_HEADER } from "@ekv/wire"
import { describe, expect, it } from "vitest"
import { b64, type ProcessCluster, unb64 } from "../../../../test/src/processCluster.ts"
import { useProcessCluster } from "../../../../test/src/useProcessCluster.ts"

let c: ProcessCluster

useProcessCluster({ env: { EKV_ELECTION_TIMEOUT_MS: "500" } }, (started) => {
  c = started
})

const enc = new TextEncoder()
const dec = new TextDecoder()

const raw = async (subject: string, body: unknown) => {
  const nc = await c.client()
  return nc.request(subject, enc.encode(typeof body === "string" ? body : JSON.stringify(body)), {
    timeout: 10_000,
  })
}

/** Puts through a LeaderRoute, as a long-lived client does; returns the subjects used. */
const putRouted = async (route: LeaderRoute, keys: readonly string[]) => {
  const used: string[] = []
  for (const key of keys) {
    for (let attempt = 0; ; attempt++) {
      const subject = route.subject("put")
      let m: Awaited<ReturnType<typeof raw>>
      try {
        m = await raw(subject, { key, value: b64(key) })
      } catch (e) {
        // no responders / timeout: the node is gone; back to the queue group
        route.onUnanswered()
        if (attempt < 20) continue
        throw e
      }
      const err = parseErrorReply(m.headers, m.data)
      if (err?._tag === "Unavailable") {
        route.onUnanswered()
        if (attempt < 20) {
          await new Promise((r) => setTimeout(r, 100))
          continue
        }
      }
      expect(err, `${subject} ${key}`).toBeUndefined()
      route.onReply(m.headers)
      used.push(subject)
      break
    }
  }
  return used
}

describe("node-addressed KV subjects", () => {
  it("a follower's copy relays and names the leader; the leader's copy answers without a hint", async () => {
    const leader = await c.waitForLeader()
    const followers = c.running().filter((n) => n !== leader)
    for (const f of followers) {
      const m = await raw(`${c.prefix}.kv.node.${f}.put`, { key: `via-${f}`, value: b64("x") })
      expect(parseErrorReply(m.headers, m.data)).toBeUndefined()
      expect(m.headers?.get(LEADER_HINT_HEADER)).toBe(leader)
      const g = await raw(`${c.prefix}.kv.node.${f}.get`, { key: `via-${f}`, consistency: "linearizable" })
      expect(JSON.parse(dec.decode(g.data))).toMatchObject({ found: true, value: b64("x") })
      expect(g.headers?.get(LEADER_HINT_HEADER)).toBe(leader)
    }
    const m = await raw(`${c.prefix}.kv.node.${leader}.put`, { key: "via-leader", value: b64("y") })
    expect(parseErrorReply(m.headers, m.data)).toBeUndefined()
    expect(m.headers?.get(LEADER_HINT_HEADER) ?? "").toBe("")
    // A serializable read is answered by the node addressed, from its own state: no relay, no hint.
    await c.waitForApplied(JSON.parse(dec.decode(m.data)).index, followers)
    const s = await raw(`${c.prefix}.kv.node.${followers[0]}.get`, {
      key: "via-leader",
      consistency: "serializable",
    })
    expect(unb64(JSON.parse(dec.decode(s.data)).value)).toBe("y")
    expect(s.headers?.get(LEADER_HINT_HEADER) ?? "").toBe("")
  })

  it("answers bad input on a node subject with a typed error, relayed or not", async () => {
    const leader = await c.waitForLeader()
    for (const n of c.running()) {
      for (const body of [
        "not json",
        { key: "", value: b64("x") },
        { key: "k", value: "%%%" },
        { key: "k" },
      ]) {
        const m = await raw(`${c.prefix}.kv.node.${n}.put`, body)
        expect(parseErrorReply(m.headers, m.data)?._tag, `${n} ${JSON.stringify(body)}`).toBe(
          "InvalidArgument",
        )
      }
    }
    expect(await c.waitForLeader()).toBe(leader)
  })

  it("a client following the hints reaches the leader directly and follows it when leadership moves", async () => {
    const route = new LeaderRoute(c.prefix)
    const first = await c.waitForLeader()
    const used = await putRouted(
      route,
      Array.from({ length: 60 }, (_, i) => `routed-a-${i}`),
    )
    // Queue group until the first relayed reply named the leader, then only the leader's subject.
    const queue = `${c.prefix}.kv.put`
    const direct = `${c.prefix}.kv.node.${first}.put`
    const switchedAt = used.indexOf(direct)
    expect(route.leader).toBe(first)
    expect(switchedAt).toBeGreaterThanOrEqual(0)
    expect(used.slice(0, switchedAt).every((s) => s === queue)).toBe(true)
    expect(used.slice(switchedAt).every((s) => s === direct)).toBe(true)
    expect(switchedAt).toBeLessThan(10)

    const next = c.running().find((n) => n !== first)!
    const t = await c.cluster(first, "transfer-leader", { node: next })
    expect(t.ok).toBe(true)
    expect(await c.waitForLeader()).toBe(next)
    const after = await putRouted(
      route,
      Array.from({ length: 20 }, (_, i) => `routed-b-${i}`),
    )
    // The first request after the transfer was relayed by the old leader, which named the new one.
    expect(after[0]).toBe(`${c.prefix}.kv.node.${first}.put`)
    expect(after.slice(1).every((s) => s === `${c.prefix}.kv.node.${next}.put`)).toBe(true)
    expect(route.leader).toBe(next)

    // The leader stops answering: the client goes back to the queue group and finds the next leader.
    await c.kill(next)
    const survivors = c.running()
    const third = await c.waitForLeader(20_000, survivors)
    await putRouted(
      route,
      Array.from({ length: 20 }, (_, i) => `routed-c-${i}`),
    )
    expect(route.leader).toBe(third)
    for (const key of ["routed-a-59", "routed-b-19", "routed-c-19"]) {
      const g = await raw(`${c.prefix}.kv.get`, { key, consistency: "linearizable" })
      expect(unb64(JSON.parse(dec.decode(g.data)).value)).toBe(key)
    }
  })
})
