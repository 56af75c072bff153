// Start-up and shutdown of one consensus process: a single-voter cluster
// serves writes; a second process on the same data dir refuses to start
// (DataDirLocked); invalid configuration is one line and a non-zero exit;
// SIGTERM shuts down cleanly and a restart keeps the data.
import { spawn } from "node:child_process"
import { describe, expect, it } from "vitest"
import { CONSENSUS_MAIN, type ProcessCluster, REPO_ROOT } from "../../../../test/src/processCluster.ts"
import { useProcessCluster } from "../../../../test/src/useProcessCluster.ts"

let c: ProcessCluster

useProcessCluster({ nodes: ["solo"], env: { EKV_ELECTION_TIMEOUT_MS: "300" } }, (started) => {
  c = started
})

const runMain = (env: Record<string, string>, args: string[] = []) =>
  new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, [CONSENSUS_MAIN, ...args], {
      env: { PATH: process.env.PATH ?? "", ...env },
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    })
    let out = ""
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString()
    })
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString()
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })

describe("consensus process start-up", () => {
  it("a single-voter cluster serves writes", async () => {
    // A new leader takes proposals only once it applied its first entry of the term
    // (SPEC §2): until then a write answers Unavailable, which clients retry.
    let r = await c.kv.put("solo-key", "1")
    for (let i = 0; !r.ok && r.status === 503 && i < 50; i++) {
      await new Promise((done) => setTimeout(done, 100))
      r = await c.kv.put("solo-key", "1")
    }
    expect(r.ok, JSON.stringify(r)).toBe(true)
    const g = await c.kv.get("solo-key")
    expect(g.ok && g.value.found).toBe(true)
  })

  it("refuses a second process on the same data dir with DataDirLocked", async () => {
    const r = await runMain({
      NATS_URL: c.servers.join(","),
      EKV_NODE_ID: "solo",
      EKV_PEERS: "solo",
      EKV_DATA_DIR: c.dataDir("solo"),
    })
    expect(r.code).not.toBe(0)
    expect(r.out).toMatch(/refusing to start: DataDirLocked/)
    expect(r.out.trim().split("\n").length).toBe(1)
  })

  it("refuses invalid configuration with one line", async () => {
    const r = await runMain({ NATS_URL: c.servers.join(",") }, ["--election-timeout-ms", "fast"])
    expect(r.code).not.toBe(0)
    expect(r.out).toMatch(/InvalidConfig/)
    expect(r.out.trim().split("\n").length).toBe(1)
  })

  it("shuts down cleanly on SIGTERM and keeps its data across a restart", async () => {
    const exit = await c.stop("solo")
    expect(exit).toEqual({ code: 0, signal: null })
    const log = await c.readLog("solo")
    expect(log).toContain('"msg":"shutting down"')
    await c.start("solo")
    await c.waitForLeader()
    const g = await c.kv.get("solo-key")
    expect(g.ok && g.value.found).toBe(true)
  })
})
