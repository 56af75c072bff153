// The promise lane's reply discipline (pure logic; messages are plain objects
// here, the real-NATS path is covered by the KV integration tests).
import { ApiError } from "@ekv/wire"
import type { Msg } from "@nats-io/transport-node"
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import type { Outcome } from "../src/outcome.ts"
import { type LaneHandler, PromiseLane } from "../src/promiseLane.ts"

const msg = (data: string): Msg => ({ data: new TextEncoder().encode(data), subject: "s", reply: "r" }) as Msg

const harness = (options = { maxConcurrent: 2, maxPending: 4 }) => {
  const sent: Array<{ data: string; outcome: Outcome }> = []
  const defects: string[] = []
  const lane = new PromiseLane(
    {
      send: (_label, m, outcome) => sent.push({ data: new TextDecoder().decode(m.data), outcome }),
      logDefect: (id) => defects.push(id),
    },
    options,
  )
  return { lane, sent, defects }
}

const gate = () => {
  const waiting: Array<() => void> = []
  return {
    wait: () => new Promise<void>((r) => waiting.push(r)),
    openAll: () => {
      for (const r of waiting.splice(0)) r()
    },
    get count() {
      return waiting.length
    },
  }
}

const tick = () => new Promise((r) => setTimeout(r, 5))

const echo = (g?: ReturnType<typeof gate>): LaneHandler<string, string> => ({
  decode: (data) => {
    const s = new TextDecoder().decode(data)
    return s === "bad" ? Result.fail(new ApiError.InvalidArgument({ message: "bad" })) : Result.succeed(s)
  },
  encode: (rep) => new TextEncoder().encode(rep),
  handle: async (req) => {
    await g?.wait()
    if (req === "throw") throw new Error("boom")
    if (req === "typed") throw new ApiError.NotFound({ message: "no" })
    return `ok:${req}`
  },
})

const outcomeText = (o: Outcome) => (o._tag === "Success" ? new TextDecoder().decode(o.data) : o.error._tag)

describe("PromiseLane", () => {
  it("replies exactly once per request: success, decode failure, typed failure, defect as Internal", async () => {
    const { lane, sent, defects } = harness({ maxConcurrent: 8, maxPending: 8 })
    for (const d of ["a", "bad", "typed", "throw"]) lane.dispatch("t", echo(), msg(d))
    await tick()
    const byData = new Map(sent.map((s) => [s.data, s.outcome]))
    expect(sent).toHaveLength(4)
    expect([...byData].map(([d, o]) => [d, outcomeText(o)]).sort()).toEqual([
      ["a", "ok:a"],
      ["bad", "InvalidArgument"],
      ["throw", "Internal"],
      ["typed", "NotFound"],
    ])
    const internal = byData.get("throw")!
    expect(internal._tag === "Failure" && (internal.error.details as { id: string }).id).toBe(defects[0])
  })

  it("runs at most maxConcurrent at once, queues up to maxPending, sheds the rest as Overloaded", async () => {
    const g = gate()
    const { lane, sent } = harness({ maxConcurrent: 2, maxPending: 4 })
    for (const d of ["1", "2", "3", "4", "5"]) lane.dispatch("t", echo(g), msg(d))
    await tick()
    expect(g.count).toBe(2)
    expect(sent.map((s) => [s.data, outcomeText(s.outcome)])).toEqual([["5", "Unavailable"]])
    g.openAll()
    await tick()
    g.openAll()
    await tick()
    expect(sent.map((s) => s.data).sort()).toEqual(["1", "2", "3", "4", "5"])
    expect(lane.pending).toBe(0)
  })

  it("settle waits for running requests, then answers what is left ShuttingDown, once", async () => {
    const g = gate()
    const { lane, sent } = harness({ maxConcurrent: 1, maxPending: 4 })
    lane.dispatch("t", echo(g), msg("slow"))
    lane.dispatch("t", echo(g), msg("queued"))
    await lane.settle(30)
    expect(sent.map((s) => [s.data, outcomeText(s.outcome)])).toEqual([
      ["queued", "Unavailable"],
      ["slow", "Unavailable"],
    ])
    g.openAll()
    await tick()
    expect(sent).toHaveLength(2) // the late result is not sent a second time
    lane.dispatch("t", echo(), msg("after"))
    expect(outcomeText(sent[2]!.outcome)).toBe("Unavailable")
  })

  it("settle returns as soon as the last request is answered", async () => {
    const g = gate()
    const { lane, sent } = harness()
    lane.dispatch("t", echo(g), msg("x"))
    const settled = lane.settle(10_000)
    await tick()
    g.openAll()
    const t0 = performance.now()
    await settled
    expect(performance.now() - t0).toBeLessThan(1_000)
    expect(sent.map((s) => outcomeText(s.outcome))).toEqual(["ok:x"])
  })
})
