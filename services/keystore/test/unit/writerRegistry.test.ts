import { readFileSync } from "node:fs"
import { fullNodeId } from "@ekv/crypto"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  decideRegistration,
  decideWriterBatch,
  nodeId16Of,
  type WriterRow,
} from "../../src/writerRegistry.ts"

const vectors = JSON.parse(readFileSync("/work/shared/vectors/node_ids.json", "utf8")) as {
  node_id16_collision: { first_pair: { ids: Array<{ id: string; full_node_id: string; node_id16: number }> } }
}
const [a, b] = vectors.node_id16_collision.first_pair.ids as [
  { id: string; full_node_id: string; node_id16: number },
  { id: string; full_node_id: string; node_id16: number },
]
const A = BigInt(a.full_node_id)
const B = BigInt(b.full_node_id)
const s1 = "1".repeat(32)
const s2 = "2".repeat(32)

const row = (over: Partial<WriterRow> = {}): WriterRow => ({
  full_node_id: A,
  first_seen_local_epoch: 3,
  last_seen_local_epoch: 5,
  last_session_id: s1,
  raft_index: 10,
  ...over,
})

describe("decideRegistration (SPEC §4.4)", () => {
  it("the vector pair collides on node_id16 with distinct full ids", () => {
    expect(fullNodeId(a.id)).toBe(A)
    expect(fullNodeId(b.id)).toBe(B)
    expect(nodeId16Of(A)).toBe(nodeId16Of(B))
    expect(A).not.toBe(B)
  })

  it("1. no row → inserted", () => {
    const d = decideRegistration(undefined, { full_node_id: A, local_epoch: 4, session_id: s1 }, 20)
    expect(d).toEqual({
      _tag: "Accepted",
      outcome: "inserted",
      row: {
        full_node_id: A,
        first_seen_local_epoch: 4,
        last_seen_local_epoch: 4,
        last_session_id: s1,
        raft_index: 20,
      },
    })
  })

  it("2. higher epoch → advanced, first kept", () => {
    const d = decideRegistration(row(), { full_node_id: A, local_epoch: 6, session_id: s2 }, 20)
    expect(d).toEqual({
      _tag: "Accepted",
      outcome: "advanced",
      row: row({ last_seen_local_epoch: 6, last_session_id: s2, raft_index: 20 }),
    })
  })

  it("3. same epoch, same session → unchanged, row untouched", () => {
    const d = decideRegistration(row(), { full_node_id: A, local_epoch: 5, session_id: s1 }, 20)
    expect(d).toEqual({ _tag: "Accepted", outcome: "unchanged", row: row() })
  })

  it("4a. lower epoch → LocalEpochRollback", () => {
    const d = decideRegistration(row(), { full_node_id: A, local_epoch: 4, session_id: s1 }, 20)
    expect(d._tag === "Rejected" && d.code).toBe("LocalEpochRollback")
    expect(decideRegistration(row(), { full_node_id: A, local_epoch: 4 }, 20)._tag).toBe("Rejected")
  })

  it("4b. equal epoch with another session → LocalEpochRollback", () => {
    const d = decideRegistration(row(), { full_node_id: A, local_epoch: 5, session_id: s2 }, 20)
    expect(d._tag === "Rejected" && d.code).toBe("LocalEpochRollback")
  })

  it("4c. equal epoch with a session over a batch-written row → LocalEpochRollback", () => {
    const d = decideRegistration(
      row({ last_session_id: undefined }),
      { full_node_id: A, local_epoch: 5, session_id: s2 },
      20,
    )
    expect(d._tag === "Rejected" && d.code).toBe("LocalEpochRollback")
  })

  it("5. different full_node_id on the same node_id16 → NodeIDCollision", () => {
    const d = decideRegistration(row(), { full_node_id: B, local_epoch: 9, session_id: s1 }, 20)
    expect(d._tag === "Rejected" && d.code).toBe("NodeIDCollision")
  })

  it("no session: equal epoch → unchanged, keeps last_session_id", () => {
    const d = decideRegistration(row(), { full_node_id: A, local_epoch: 5 }, 20)
    expect(d).toEqual({ _tag: "Accepted", outcome: "unchanged", row: row() })
  })

  it("no session: advance keeps last_session_id", () => {
    const d = decideRegistration(row(), { full_node_id: A, local_epoch: 7 }, 20)
    expect(d._tag === "Accepted" && d.row).toEqual(row({ last_seen_local_epoch: 7, raft_index: 20 }))
  })

  it("property: epochs registered for one writer never go backwards, and equal epochs need the same session", () => {
    const reg = fc.record({
      local_epoch: fc.integer({ min: 0, max: 8 }),
      session_id: fc.option(fc.constantFrom(s1, s2), { nil: undefined }),
    })
    fc.assert(
      fc.property(fc.array(reg, { maxLength: 30 }), (regs) => {
        let current: WriterRow | undefined
        regs.forEach((r, i) => {
          const d = decideRegistration(current, { full_node_id: A, ...r }, i + 1)
          if (current === undefined) expect(d._tag).toBe("Accepted")
          if (d._tag === "Accepted") {
            if (current !== undefined) {
              expect(d.row.last_seen_local_epoch).toBeGreaterThanOrEqual(current.last_seen_local_epoch)
              expect(d.row.first_seen_local_epoch).toBe(current.first_seen_local_epoch)
              if (d.outcome === "unchanged") expect(d.row).toBe(current)
              if (r.local_epoch === current.last_seen_local_epoch && r.session_id !== undefined)
                expect(r.session_id).toBe(current.last_session_id)
            }
            current = d.row
          } else {
            expect(current).toBeDefined()
            expect(
              r.local_epoch < current!.last_seen_local_epoch ||
                (r.local_epoch === current!.last_seen_local_epoch &&
                  r.session_id !== current!.last_session_id),
            ).toBe(true)
          }
        })
      }),
    )
  })
})

describe("decideWriterBatch", () => {
  it("inserts every line", () => {
    const d = decideWriterBatch(
      [
        { full_node_id: fullNodeId("n1"), local_epoch: 0 },
        { full_node_id: fullNodeId("n2"), local_epoch: 2 },
      ],
      7,
    )
    expect(d._tag).toBe("Accepted")
    if (d._tag === "Accepted") {
      expect(d.rows.size).toBe(2)
      expect(d.rows.get(nodeId16Of(fullNodeId("n2")))?.last_seen_local_epoch).toBe(2)
      expect(d.rows.get(nodeId16Of(fullNodeId("n2")))?.last_session_id).toBeUndefined()
      expect(d.rows.get(nodeId16Of(fullNodeId("n2")))?.raft_index).toBe(7)
    }
  })

  it("two lines sharing a node_id16 → NodeIDCollision for the entry", () => {
    const d = decideWriterBatch(
      [
        { full_node_id: A, local_epoch: 0 },
        { full_node_id: B, local_epoch: 0 },
      ],
      7,
    )
    expect(d._tag === "Rejected" && d.code).toBe("NodeIDCollision")
  })
})
