import { describe, expect, it } from "@effect/vitest"
import { LEADER_HINT_HEADER } from "@ekv/wire"
import { headers } from "@nats-io/transport-node"
import { LeaderRoute } from "../src/leaderRoute.ts"

const hint = (leader: string) => {
  const h = headers()
  h.set(LEADER_HINT_HEADER, leader)
  return h
}

describe("LeaderRoute", () => {
  it("uses the queue-group subjects until a reply names the leader", () => {
    const r = new LeaderRoute("ekv")
    expect(r.subject("put")).toBe("ekv.kv.put")
    r.onReply(undefined)
    r.onReply(headers())
    expect(r.leader).toBeNull()
    expect(r.subject("get")).toBe("ekv.kv.get")
  })

  it("follows a hint to the leader's own subjects, and a newer hint after that", () => {
    const r = new LeaderRoute("p1")
    r.onReply(hint("n2"))
    expect(r.leader).toBe("n2")
    expect(r.subject("put")).toBe("p1.kv.node.n2.put")
    expect(r.subject("scan")).toBe("p1.kv.node.n2.scan")
    r.onReply(undefined) // the leader answered itself: no hint, stay
    expect(r.subject("put")).toBe("p1.kv.node.n2.put")
    r.onReply(hint("n3")) // leadership moved; n2 relayed and named n3
    expect(r.subject("put")).toBe("p1.kv.node.n3.put")
    expect(r.subject("delete")).toBe("p1.kv.node.n3.delete")
  })

  it("goes back to the queue group when the node stops answering", () => {
    const r = new LeaderRoute("ekv")
    r.onReply(hint("n1"))
    r.onUnanswered()
    expect(r.leader).toBeNull()
    expect(r.subject("put")).toBe("ekv.kv.put")
  })

  it.each(["a.b", "*", ">", "N1", "x".repeat(65), "n1 n2"])(
    "ignores a hint that is no node id (%s): it could widen a subject",
    (bad) => {
      const r = new LeaderRoute("ekv")
      r.onReply(hint("n1"))
      r.onReply(hint(bad))
      expect(r.subject("put")).toBe("ekv.kv.node.n1.put")
    },
  )
})
