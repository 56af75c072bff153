import { describe, expect, it } from "vitest"
import { metricsPortFromEnv, Registry, serveMetrics } from "../src/mod.ts"

describe("Registry", () => {
  it("renders counters, gauges and histograms in the text format", () => {
    const r = new Registry()
    const rejected = r.counter("ekv_entries_rejected_total", "Entries applied as rejections")
    rejected.inc({ code: "MalformedEntry" })
    rejected.inc({ code: "MalformedEntry" }, 2)
    rejected.inc({ code: "UnknownEntryTag" })
    r.gauge("ekv_apply_halted", "1 while apply is halted").set(1)
    r.gauge("ekv_active_key_id", "Active key id per purpose").set(2654435769, { purpose: "storage" })
    const h = r.histogram("ekv_keystore_apply_seconds", "Keystore apply latency", [0.01, 0.1])
    h.observe(0.005)
    h.observe(0.05)
    h.observe(3)
    const text = r.render()
    expect(text).toContain("# TYPE ekv_entries_rejected_total counter")
    expect(text).toContain('ekv_entries_rejected_total{code="MalformedEntry"} 3')
    expect(text).toContain('ekv_entries_rejected_total{code="UnknownEntryTag"} 1')
    expect(text).toContain("ekv_apply_halted 1")
    expect(text).toContain('ekv_active_key_id{purpose="storage"} 2654435769')
    expect(text).toContain('ekv_keystore_apply_seconds_bucket{le="0.01"} 1')
    expect(text).toContain('ekv_keystore_apply_seconds_bucket{le="0.1"} 2')
    expect(text).toContain('ekv_keystore_apply_seconds_bucket{le="+Inf"} 3')
    expect(text).toContain("ekv_keystore_apply_seconds_count 3")
    expect(text).toContain("ekv_keystore_apply_seconds_sum 3.055")
  })

  it("escapes label values and keeps one metric per name", () => {
    const r = new Registry()
    r.counter("x_total", "x").inc({ reason: 'a"b\\c\nd' })
    expect(r.render()).toContain('x_total{reason="a\\"b\\\\c\\nd"} 1')
    expect(r.counter("x_total", "x")).toBe(r.counter("x_total", "again"))
    expect(() => r.gauge("x_total", "x")).toThrow(/registered as counter/)
    expect(() => r.counter("bad name", "x")).toThrow(/invalid metric name/)
    expect(() => r.counter("y_total", "y").inc(undefined, -1)).toThrow(RangeError)
  })

  it("keeps one series per label set, however many values one label takes and in any name order", () => {
    const r = new Registry()
    const c = r.counter("per_key_total", "per key")
    // Past the rendered-key cache's bound (1,024 per label name), and every value twice.
    for (let round = 0; round < 2; round++) for (let i = 0; i < 3_000; i++) c.inc({ key_id: String(i) })
    expect(c.get({ key_id: "0" })).toBe(2)
    expect(c.get({ key_id: "2999" })).toBe(2)
    expect(
      r
        .render()
        .split("\n")
        .filter((l) => l.startsWith("per_key_total{")),
    ).toHaveLength(3_000)
    const g = r.gauge("two_labels", "two")
    g.set(1, { b: "y", a: "x" })
    g.set(2, { a: "x", b: "y" })
    expect(g.get({ a: "x", b: "y" })).toBe(2)
    expect(r.render()).toContain('two_labels{a="x",b="y"} 2')
  })

  it("serves /metrics over HTTP and 404s elsewhere", async () => {
    const r = new Registry()
    r.gauge("ekv_raft_term", "term").set(7)
    const ep = await serveMetrics(r, 0, "127.0.0.1")
    try {
      const res = await fetch(`http://127.0.0.1:${ep.port}/metrics`)
      expect(res.status).toBe(200)
      expect(res.headers.get("content-type")).toContain("text/plain")
      expect(await res.text()).toContain("ekv_raft_term 7")
      expect((await fetch(`http://127.0.0.1:${ep.port}/other`)).status).toBe(404)
    } finally {
      await ep.close()
    }
  })

  it("parses EKV_METRICS_PORT", () => {
    expect(metricsPortFromEnv(undefined)).toBeUndefined()
    expect(metricsPortFromEnv("")).toBeUndefined()
    expect(metricsPortFromEnv("9464")).toBe(9464)
    expect(() => metricsPortFromEnv("70000")).toThrow(RangeError)
    expect(() => metricsPortFromEnv("abc")).toThrow(RangeError)
  })
})
