import { describe, expect, it } from "vitest"
import { AppliedWaiters, ProposalWaiters, ReadRounds } from "../../../src/node/waiters.ts"

const write = (index: number, term: number) => ({ kind: "write" as const, index, term, deleted: false })

describe("proposal waiters", () => {
  it("resolve when their index applies with the same term", async () => {
    const w = new ProposalWaiters(5_000)
    const p = w.wait(7, 3)
    w.applied(write(6, 3))
    w.applied(write(7, 3))
    await expect(p).resolves.toMatchObject({ index: 7, term: 3 })
    expect(w.size).toBe(0)
  })

  it("fail Unavailable when another term's entry applies at their index", async () => {
    const w = new ProposalWaiters(5_000)
    const p = w.wait(7, 3)
    w.applied(write(7, 4))
    await expect(p).rejects.toMatchObject({ _tag: "Unavailable", details: { reason: "ProposalLost" } })
  })

  it("fail Unavailable on leadership loss, a snapshot skipping them, or a timeout", async () => {
    const w = new ProposalWaiters(50)
    const a = w.wait(1, 1)
    const b = w.wait(2, 1)
    const c = w.wait(3, 1)
    w.skippedThrough(1)
    await expect(a).rejects.toMatchObject({ _tag: "Unavailable", details: { reason: "OutcomeUnknown" } })
    w.failAll(new Error("lost"))
    await expect(b).rejects.toThrow("lost")
    await expect(c).rejects.toThrow("lost")
    await expect(w.wait(9, 1)).rejects.toMatchObject({ _tag: "Unavailable", details: { reason: "Timeout" } })
  })
})

describe("applied waiters", () => {
  it("resolve once the applied index reaches them, in any order", async () => {
    const w = new AppliedWaiters(5, 5_000)
    await expect(w.wait(5)).resolves.toBeUndefined()
    const order: number[] = []
    const p9 = w.wait(9).then(() => order.push(9))
    const p7 = w.wait(7).then(() => order.push(7))
    w.advance(8)
    await p7
    expect(order).toEqual([7])
    w.advance(9)
    await p9
    expect(order).toEqual([7, 9])
  })
})

describe("read rounds", () => {
  it("batch reads queued while a round is in flight into the next round", async () => {
    const started: string[] = []
    const r = new ReadRounds("n1", 5_000, (ctx) => {
      started.push(ctx)
      return null
    })
    const a = r.request()
    const b = r.request()
    const c = r.request()
    expect(started.length).toBe(1)
    r.confirmed([{ ctx: started[0]!, index: 10 }])
    await expect(a).resolves.toBe(10)
    expect(started.length).toBe(2)
    r.confirmed([
      { ctx: "unrelated", index: 99 },
      { ctx: started[1]!, index: 12 },
    ])
    await expect(b).resolves.toBe(12)
    await expect(c).resolves.toBe(12)
  })

  it("fail every waiter of a refused round and abandon unconfirmed rounds", async () => {
    let refuse = true
    const started: string[] = []
    const r = new ReadRounds("n1", 60, (ctx) => {
      started.push(ctx)
      return refuse ? new Error("not leader") : null
    })
    await expect(r.request()).rejects.toThrow("not leader")
    refuse = false
    const p = r.request()
    await expect(p).rejects.toMatchObject({ _tag: "Unavailable" })
    // A later read gets a fresh round.
    const before = started.length
    const q = r.request()
    while (started.length === before) await new Promise((res) => setTimeout(res, 5))
    r.confirmed([{ ctx: started.at(-1)!, index: 3 }])
    await expect(q).resolves.toBe(3)
  })
})
