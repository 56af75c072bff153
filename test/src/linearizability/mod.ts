// Linearizability checking of KV histories (CONTRACT.md §2).
//
//   const rec = new HistoryRecorder()            // performance.now() timestamps
//   const id = rec.invoke("client-3", { f: "put", key, value })
//   rec.ok(id, { f: "put", index })              // or rec.fail(id, code) / rec.info(id, "timeout")
//   ... outcomeOfError(input, code) says fail (InvalidArgument: never proposed) or info
//   const r = checkHistory(rec.history(), { timeoutMs: 30_000 })
//   r.verdict: "ok" | "illegal" | "unknown" (budget exhausted: neither proven nor refuted)
//   console.log(renderResult(r)); await saveHistory("history.json", rec.history())
//
// Model: one register per key; a batch is one atomic step over all its keys,
// so keys joined by batches are checked as one partition (after each key's
// own projection, which is cheap and exact per key). Keep batches within small
// key groups: the joined search is exponential in the keys it joins.
export * from "./checker.ts"
export * from "./history.ts"
export * from "./model.ts"
export * from "./render.ts"
export * from "./simulate.ts"
