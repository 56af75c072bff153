import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import {
  type CheckResult,
  checkHistory,
  type History,
  type HistoryEvent,
  HistoryRecorder,
  type KvInput,
  type KvOutput,
  loadHistory,
  outcomeOfError,
  renderResult,
  saveHistory,
  toOperations,
} from "../../src/linearizability/mod.ts"

// A hand-made history: each op is [process, input, outcome, call, ret].
type Outcome = KvOutput | "info" | "fail"
const hist = (...ops: Array<[string, KvInput, Outcome, number, number]>): History => {
  const events: Array<HistoryEvent & { seq: number }> = []
  ops.forEach(([process, input, outcome, call, ret], id) => {
    events.push({ type: "invoke", id, process, time: call, input, seq: 0 })
    if (outcome === "info") events.push({ type: "info", id, time: ret, error: "timeout", seq: 1 })
    else if (outcome === "fail")
      events.push({ type: "fail", id, time: ret, error: "InvalidArgument", seq: 1 })
    else events.push({ type: "ok", id, time: ret, output: outcome, seq: 1 })
  })
  events.sort((a, b) => a.time - b.time || a.seq - b.seq)
  return { version: 1, events: events.map(({ seq: _, ...e }) => e as HistoryEvent) }
}
const put = (key: string, value: string): KvInput => ({ f: "put", key, value })
const get = (key: string): KvInput => ({ f: "get", key })
const del = (key: string): KvInput => ({ f: "delete", key })
const batch = (...ops: Array<[string, string | null]>): KvInput => ({
  f: "batch",
  ops: ops.map(([key, value]) => (value === null ? { op: "delete", key } : { op: "put", key, value })),
})
const OK_PUT: KvOutput = { f: "put" }
const OK_BATCH: KvOutput = { f: "batch" }
const saw = (value: string | null): KvOutput =>
  value === null ? { f: "get", found: false } : { f: "get", found: true, value }
const deleted = (d: boolean): KvOutput => ({ f: "delete", deleted: d })

const verdict = (h: History): CheckResult => checkHistory(h, { timeoutMs: 5000 })

describe("linearizability checker: hand-made histories", () => {
  it("accepts an empty history and a sequential one", () => {
    expect(verdict(hist()).verdict).toBe("ok")
    expect(
      verdict(
        hist(
          ["a", put("x", "1"), OK_PUT, 0, 1],
          ["a", get("x"), saw("1"), 2, 3],
          ["a", get("y"), saw(null), 4, 5],
        ),
      ).verdict,
    ).toBe("ok")
  })

  it("rejects a stale read after an acknowledged write", () => {
    const r = verdict(
      hist(
        ["a", put("x", "1"), OK_PUT, 0, 1],
        ["a", put("x", "2"), OK_PUT, 2, 3],
        ["b", get("x"), saw("1"), 4, 5],
      ),
    )
    expect(r.verdict).toBe("illegal")
    const cx = r.counterexample
    expect(cx?.keys).toEqual(["x"])
    expect(cx?.minimal).toBe(true)
    expect(cx?.ops.map((o) => o.id)).toEqual([0, 1, 2])
    expect(cx?.stuck.id).toBe(2)
    expect(renderResult(r)).toContain("cannot linearize next: #2")
  })

  it("accepts a read concurrent with the overwrite seeing either value", () => {
    for (const v of ["1", "2"])
      expect(
        verdict(
          hist(
            ["a", put("x", "1"), OK_PUT, 0, 1],
            ["a", put("x", "2"), OK_PUT, 2, 6],
            ["b", get("x"), saw(v), 3, 5],
          ),
        ).verdict,
      ).toBe("ok")
  })

  it("concurrent writes: reads may order them either way, but consistently", () => {
    const w = (v: string): [string, KvInput, Outcome, number, number] => [`w${v}`, put("x", v), OK_PUT, 0, 10]
    // Both readers see 1 then 2: fine.
    expect(
      verdict(
        hist(
          w("1"),
          w("2"),
          ["r1", get("x"), saw("1"), 1, 2],
          ["r1", get("x"), saw("2"), 3, 4],
          ["r2", get("x"), saw("2"), 5, 6],
        ),
      ).verdict,
    ).toBe("ok")
    // r1 sees 1 then 2, r2 (after r1) sees 2 then 1: the writes cannot be ordered.
    const r = verdict(
      hist(
        w("1"),
        w("2"),
        ["r1", get("x"), saw("1"), 1, 2],
        ["r1", get("x"), saw("2"), 3, 4],
        ["r2", get("x"), saw("1"), 5, 6],
      ),
    )
    expect(r.verdict).toBe("illegal")
    expect(r.counterexample?.ops.length).toBe(5)
  })

  it("a timed-out write may take effect later: a later read seeing it is linearizable", () => {
    expect(
      verdict(
        hist(
          ["a", put("x", "1"), OK_PUT, 0, 1],
          ["b", put("x", "2"), "info", 2, 3],
          ["c", get("x"), saw("1"), 10, 11],
          ["c", get("x"), saw("2"), 100, 101],
        ),
      ).verdict,
    ).toBe("ok")
    // ...or never take effect at all.
    expect(
      verdict(
        hist(
          ["a", put("x", "1"), OK_PUT, 0, 1],
          ["b", put("x", "2"), "info", 2, 3],
          ["c", get("x"), saw("1"), 100, 101],
        ),
      ).verdict,
    ).toBe("ok")
  })

  it("a timed-out write cannot be seen by a read that finished before it was invoked", () => {
    const r = verdict(hist(["c", get("x"), saw("2"), 0, 1], ["b", put("x", "2"), "info", 2, 3]))
    expect(r.verdict).toBe("illegal")
    expect(r.counterexample?.stuck.id).toBe(0)
  })

  it("a failed write never takes effect", () => {
    const r = verdict(hist(["b", put("x", "2"), "fail", 0, 1], ["c", get("x"), saw("2"), 2, 3]))
    expect(r.verdict).toBe("illegal")
  })

  it("deletes: absent afterwards, and `deleted` says whether a value existed", () => {
    expect(
      verdict(
        hist(
          ["a", put("x", "1"), OK_PUT, 0, 1],
          ["a", del("x"), deleted(true), 2, 3],
          ["a", get("x"), saw(null), 4, 5],
          ["a", del("x"), deleted(false), 6, 7],
        ),
      ).verdict,
    ).toBe("ok")
    expect(verdict(hist(["a", del("x"), deleted(true), 0, 1])).verdict).toBe("illegal")
    expect(
      verdict(hist(["a", put("x", "1"), OK_PUT, 0, 1], ["a", del("x"), deleted(false), 2, 3])).verdict,
    ).toBe("illegal")
    expect(
      verdict(
        hist(
          ["a", put("x", "1"), OK_PUT, 0, 1],
          ["a", del("x"), deleted(true), 2, 3],
          ["b", get("x"), saw("1"), 4, 5],
        ),
      ).verdict,
    ).toBe("illegal")
    // Two concurrent deletes of a live value: exactly one may report deleted=true.
    const two = (a: boolean, b: boolean) =>
      verdict(
        hist(
          ["a", put("x", "1"), OK_PUT, 0, 1],
          ["a", del("x"), deleted(a), 2, 5],
          ["b", del("x"), deleted(b), 2, 5],
        ),
      ).verdict
    expect(two(true, false)).toBe("ok")
    expect(two(true, true)).toBe("illegal")
    expect(two(false, false)).toBe("illegal")
    // A timed-out delete may have removed the value.
    expect(
      verdict(
        hist(
          ["a", put("x", "1"), OK_PUT, 0, 1],
          ["a", del("x"), "info", 2, 3],
          ["b", get("x"), saw(null), 9, 10],
        ),
      ).verdict,
    ).toBe("ok")
  })

  it("a timed-out put no read saw can still explain a later deleted=true", () => {
    const h = (call: number) =>
      hist(
        ["a", put("x", "1"), OK_PUT, 0, 1],
        ["b", put("x", "2"), "info", call, call + 1],
        ["a", del("x"), deleted(true), 4, 5],
        ["a", del("x"), deleted(true), 6, 7],
      )
    expect(verdict(h(2)).verdict).toBe("ok")
    expect(verdict(h(8)).verdict).toBe("illegal")
  })

  it("a timed-out delete can explain an absent read, but not a value coming back", () => {
    const h = (...more: Array<[string, KvInput, Outcome, number, number]>) =>
      hist(
        ["a", put("x", "1"), OK_PUT, 0, 1],
        ["b", del("x"), "info", 2, 3],
        ["c", get("x"), saw(null), 4, 5],
        ...more,
      )
    expect(verdict(h()).verdict).toBe("ok")
    expect(verdict(h(["c", del("x"), deleted(false), 6, 7])).verdict).toBe("ok")
    expect(verdict(h(["c", get("x"), saw("1"), 6, 7])).verdict).toBe("illegal")
    // Two absent reads around a re-put need two deletes; only one timed out.
    expect(
      verdict(
        h(
          ["a", put("x", "3"), OK_PUT, 6, 7],
          ["c", get("x"), saw("3"), 8, 9],
          ["c", get("x"), saw(null), 10, 11],
        ),
      ).verdict,
    ).toBe("illegal")
    expect(
      verdict(
        h(
          ["a", put("x", "3"), OK_PUT, 6, 7],
          ["c", get("x"), saw("3"), 8, 9],
          ["d", del("x"), "info", 9.5, 9.6],
          ["c", get("x"), saw(null), 10, 11],
        ),
      ).verdict,
    ).toBe("ok")
  })

  it("batches are atomic across keys", () => {
    const b: [string, KvInput, Outcome, number, number] = [
      "a",
      batch(["x", "1"], ["y", "1"]),
      OK_BATCH,
      0,
      10,
    ]
    // A reader sees x=1 then y absent, after which... the batch is atomic, so y must be 1 once x is.
    const r = verdict(hist(b, ["r", get("x"), saw("1"), 1, 2], ["r", get("y"), saw(null), 3, 4]))
    expect(r.verdict).toBe("illegal")
    expect(r.counterexample?.keys).toEqual(["x", "y"])
    expect(renderResult(r)).toContain("joined by batches")
    // The other order is fine (y read before the batch, x after).
    expect(verdict(hist(b, ["r", get("y"), saw(null), 1, 2], ["r", get("x"), saw("1"), 3, 4])).verdict).toBe(
      "ok",
    )
    // Several ops on one key inside a batch: the last wins.
    expect(
      verdict(
        hist(
          ["a", batch(["x", "1"], ["x", null], ["x", "2"]), OK_BATCH, 0, 1],
          ["r", get("x"), saw("2"), 2, 3],
        ),
      ).verdict,
    ).toBe("ok")
    expect(
      verdict(hist(["a", batch(["x", "1"], ["x", null]), OK_BATCH, 0, 1], ["r", get("x"), saw("1"), 2, 3]))
        .verdict,
    ).toBe("illegal")
  })

  it("batches join partitions transitively; unrelated keys are checked apart", () => {
    const r = verdict(
      hist(
        ["a", batch(["x", "1"], ["y", "1"]), OK_BATCH, 0, 1],
        ["a", batch(["y", "2"], ["z", "2"]), OK_BATCH, 2, 3],
        ["b", put("w", "0"), OK_PUT, 0, 1],
        ["c", get("z"), saw("2"), 4, 5],
      ),
    )
    expect(r.verdict).toBe("ok")
    // Single keys, then each key of the joined partition alone, then the joined partition.
    expect(r.partitions.map((p) => [[...p.keys].sort(), p.projectionOf !== undefined])).toEqual([
      [["w"], false],
      [["x"], true],
      [["y"], true],
      [["z"], true],
      [["x", "y", "z"], false],
    ])
  })

  it("rejects a read of a value never written", () => {
    const r = verdict(hist(["a", put("x", "1"), OK_PUT, 0, 1], ["b", get("x"), saw("nope"), 0, 2]))
    expect(r.verdict).toBe("illegal")
    expect(r.counterexample?.ops.map((o) => o.id)).toEqual([1])
    expect(r.counterexample?.linearized).toEqual([])
  })

  it("the counterexample keeps the writes its reads depend on", () => {
    // A long irrelevant prefix on x, then a stale read.
    const ops: Array<[string, KvInput, Outcome, number, number]> = []
    for (let i = 0; i < 20; i++) ops.push(["a", put("x", `p${i}`), OK_PUT, 2 * i, 2 * i + 1])
    ops.push(["a", put("x", "new"), OK_PUT, 100, 101], ["b", get("x"), saw("p19"), 102, 103])
    const r = verdict(hist(...ops))
    expect(r.verdict).toBe("illegal")
    expect(r.counterexample?.ops.map((o) => o.id)).toEqual([19, 20, 21])
    expect(r.counterexample?.partitionOps).toBe(22)
  })

  it("reports unknown, not illegal, when the budget runs out", () => {
    // Many concurrent writes and a contradiction only at the very end: exponential without memo hits.
    const ops: Array<[string, KvInput, Outcome, number, number]> = []
    for (let i = 0; i < 60; i++) ops.push([`w${i}`, batch(["x", `v${i}`], [`y${i}`, "1"]), OK_BATCH, 0, 100])
    ops.push(["r", get("x"), saw("never"), 200, 201])
    const r = checkHistory(hist(...ops), { timeoutMs: 0 })
    expect(r.verdict).toBe("unknown")
    expect(renderResult(r)).toContain("neither proven linearizable nor refuted")
  })
})

describe("history recording", () => {
  it("records invoke/ok/fail/info with monotonic times and round-trips through JSON", async () => {
    let t = 0
    const rec = new HistoryRecorder(() => t++)
    const a = rec.invoke("p0", put("x", "1"))
    const b = rec.invoke("p1", get("x"))
    rec.ok(a, { f: "put", index: 7 })
    rec.ok(b, { f: "get", found: true, value: "1", version: 7 })
    const c = rec.invoke("p0", put("x", ""))
    rec.fail(c, "InvalidArgument")
    const d = rec.invoke("p0", del("x"))
    rec.info(d, "timeout")
    rec.invoke("p2", put("y", "2"))
    expect(() => rec.ok(a, OK_PUT)).toThrow(/not pending/)
    const h = rec.history()
    const ops = toOperations(h)
    expect(ops.map((o) => [o.id, o.output === undefined])).toEqual([
      [0, false],
      [1, false],
      [3, true],
      [4, true],
    ])
    expect(ops[2]?.ret).toBe(Number.POSITIVE_INFINITY)
    const dir = await mkdtemp(join(tmpdir(), "ekv-lin-"))
    try {
      await saveHistory(join(dir, "h.json"), h)
      expect(await loadHistory(join(dir, "h.json"))).toEqual(h)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
    expect(checkHistory(h).verdict).toBe("ok")
  })

  it("rejects malformed histories", () => {
    expect(() =>
      toOperations({ version: 1, events: [{ type: "ok", id: 0, time: 0, output: OK_PUT }] }),
    ).toThrow(/before it was invoked/)
    expect(() =>
      toOperations({
        version: 1,
        events: [
          { type: "invoke", id: 0, process: "a", time: 0, input: put("x", "1") },
          { type: "ok", id: 0, time: 1, output: saw("1") },
        ],
      }),
    ).toThrow(/completed with a get result/)
  })

  it("classifies error replies: only InvalidArgument proves a write was not applied", () => {
    expect(outcomeOfError(put("x", "1"), "InvalidArgument")).toBe("fail")
    expect(outcomeOfError(put("x", "1"), "Unavailable")).toBe("info")
    expect(outcomeOfError(batch(["x", "1"]), "Internal")).toBe("info")
    expect(outcomeOfError(get("x"), "Unavailable")).toBe("fail")
  })
})
