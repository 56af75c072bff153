// Fuzzes every public subject (CONTRACT §2–§4) of a real system — NATS with
// the §9 permissions, three nodes (keystore + consensus each) and the admin
// service, encryption on — as the operator, with ≥ 10,000 payloads from a
// fixed seed: valid requests (no destructive cluster changes), near-valid ones
// and garbage. Every request must get a typed error or a reply that decodes
// with its wire schema within its timeout; every process must survive with
// its memory in bounds; and no rejected request may move the commit index of
// the quiet cluster.
import { readFile } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FuzzReport, renderFuzzReport, runFuzz } from "../src/fuzz/mod.ts"
import { type EkvSystem, startSystem } from "../src/system.ts"

const NODES = ["n1", "n2", "n3"]
const SEED = 20261122
const COUNT = Number(process.env.EKV_FUZZ_COUNT ?? 10_000)

const rssKiB = async (pid: number | undefined): Promise<number> => {
  if (pid === undefined) return Number.NaN
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "")
  const m = /VmRSS:\s+(\d+) kB/.exec(status)
  return m === null ? Number.NaN : Number(m[1])
}

let sys: EkvSystem
const pids = new Map<string, number | undefined>()

beforeAll(async () => {
  sys = await startSystem({ name: "fuzz", start: false })
  try {
    for (const n of NODES) pids.set(`keystore-${n}`, (await sys.start(`keystore-${n}`)).child.pid)
    for (const n of NODES) pids.set(`consensus-${n}`, (await sys.start(`consensus-${n}`)).child.pid)
    pids.set("admin", (await sys.startAdmin()).child.pid)
    await sys.waitForReady()
  } catch (e) {
    sys.markFailed()
    throw new Error(`${e instanceof Error ? e.message : String(e)}\n${await sys.failureReport()}`)
  }
})

afterAll(async () => {
  await sys?.stopAll()
})

describe("fuzzing every public subject", () => {
  it(`answers ${COUNT} fuzzed requests with typed errors or valid replies, and survives`, async () => {
    const rssBefore = new Map<string, number>()
    for (const [name, pid] of pids) rssBefore.set(name, await rssKiB(pid))
    const nc = await sys.operatorConnection()
    let report: FuzzReport
    try {
      report = await runFuzz({
        nc,
        nodes: NODES,
        subjects: [
          "ekv.kv.*",
          "ekv.admin.cluster.*",
          "ekv.admin.encryption.*",
          "ekv.node.*.health",
          "ekv.node.*.capability",
        ],
        count: COUNT,
        seed: SEED,
      })
    } finally {
      await nc.close()
    }
    console.log(renderFuzzReport(report))
    const rss: string[] = []
    for (const [name, pid] of pids) {
      const after = await rssKiB(pid)
      const before = rssBefore.get(name) ?? Number.NaN
      rss.push(`${name} ${Math.round(before / 1024)}→${Math.round(after / 1024)} MiB`)
      expect(sys.isRunning(name), `${name} still running`).toBe(true)
      expect(after, `${name} RSS ${before} → ${after} KiB`).toBeLessThan(before + 512 * 1024)
    }
    console.log(`RSS: ${rss.join(", ")}`)
    if (report.findings.length > 0 || report.rejectedCommitChanges.length > 0) sys.markFailed()
    expect(report.count).toBe(COUNT)
    expect(report.findings, renderFuzzReport(report)).toEqual([])
    expect(report.rejectedCommitChanges, renderFuzzReport(report)).toEqual([])
    expect(report.rejectedChecked).toBeGreaterThan(COUNT / 2)
    // A typed Internal reply is a bug (a defect caught by the responder).
    expect(report.internal.map((r) => `${r.endpoint} ${r.note}`)).toEqual([])
    // Still a working cluster afterwards.
    const leader = await sys.waitForLeader()
    expect(NODES).toContain(leader)
    for (const n of NODES) expect((await sys.health(n)).ok).toBe(true)
  })
})
