// The system from its images (containerSystem.ts), driven only through public
// NATS subjects as the operator: cluster status and health, writes and reads,
// Prometheus metrics of every process, an injected apply halt seen in metrics
// and health and then cleared, the leader's consensus container killed
// (`docker kill`) under a stream of writes — a new leader takes over and every
// acknowledged write survives — the killed node rejoining, and a keystore
// container restarted (`docker restart`).
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest"
import {
  type ContainerSystem,
  eventually,
  ReplyError,
  series,
  sleep,
  startContainerSystem,
} from "./containerSystem.ts"

let system: ContainerSystem
const acked = new Map<string, string>()
let lastIndex = 0

const write = async (key: string, value: string): Promise<void> => {
  lastIndex = Math.max(lastIndex, await system.put(key, value))
  acked.set(key, value)
}

const metric = (m: ReadonlyMap<string, number>, name: string): number => {
  const v = m.get(name)
  if (v === undefined) throw new Error(`metric ${name} missing`)
  return v
}

const report = () => onTestFailed(() => console.error(system?.logTail(60)))

beforeAll(async () => {
  system = await startContainerSystem({ encryption: true })
})

afterAll(async () => {
  await system?.stop()
})

describe("ekv from its images", () => {
  it("forms a cluster: a leader, three voters, every node healthy", async () => {
    report()
    const s = await eventually(
      "all members reachable",
      () => system.status(),
      (s) => s.leader !== null && s.members.length === 3 && s.members.every((m) => m.reachable),
    )
    expect(s.members.map((m) => m.node).sort()).toEqual(["n1", "n2", "n3"])
    expect(s.members.every((m) => m.role === "voter")).toBe(true)
    expect(s.cluster_id).toMatch(/^[0-9a-f]{32}$/)
    for (const n of system.nodes) {
      const h = await eventually(
        `${n} healthy`,
        () => system.health(n),
        (h) => h.consensus === "ok",
      )
      expect(h).toMatchObject({ node: n, consensus: "ok", keystore: "ok" })
    }
  })

  it("writes and reads through any node, the operator's only way in", async () => {
    report()
    for (let i = 0; i < 20; i++) await write(`k${String(i).padStart(2, "0")}`, `v${i}`)
    for (const [k, v] of acked) expect(await system.get(k)).toBe(v)
    const scan = await system.call<{ items: Array<{ key: string }>; more: boolean }>("ekv.kv.scan", {
      prefix: "k",
      limit: 100,
    })
    expect(scan.items.map((i) => i.key)).toEqual([...acked.keys()].sort())
    expect(await system.get("absent")).toBeUndefined()
    // The operator cannot reach internal subjects (CONTRACT §9).
    const nc = await system.operator()
    await expect(nc.request("ekv.internal.n1.raft.append", "{}", { timeout: 2_000 })).rejects.toThrow()
  })

  it("exposes Prometheus metrics from every process", async () => {
    report()
    const s = await system.status()
    for (const n of system.nodes) {
      const m = await eventually(
        `consensus-${n} metrics caught up`,
        () => system.metrics(`consensus-${n}`),
        (m) => (m.get("ekv_raft_applied_index") ?? 0) >= lastIndex,
      )
      expect(metric(m, "ekv_raft_term")).toBe(s.term)
      expect(metric(m, "ekv_raft_commit_index")).toBeGreaterThanOrEqual(lastIndex)
      expect(metric(m, "ekv_apply_halted")).toBe(0)
      expect(metric(m, "ekv_raft_is_leader")).toBe(n === s.leader ? 1 : 0)

      const k = await system.metrics(`keystore-${n}`)
      // No DEKs yet: the active key ids are reported as 0.
      expect(series(k, "ekv_active_key_id").sort()).toEqual([
        ['ekv_active_key_id{purpose="raft"}', 0],
        ['ekv_active_key_id{purpose="storage"}', 0],
      ])
      expect(k.has("ekv_sidecar_raft_applied_index")).toBe(true)
    }
    const a = await system.metrics("admin")
    expect(series(a, "ekv_admin_requests_total").length).toBeGreaterThan(0)
  })

  it("reports every service container healthy through the image's HEALTHCHECK", async () => {
    report()
    const names = [...system.containers.keys()].filter((n) => n !== "nats")
    for (const name of names) {
      // First check after the 10 s interval; a pass during the start period counts at once.
      expect(
        await eventually(
          `${name} healthy`,
          () => system.dockerHealth(name),
          (h) => h === "healthy",
          90_000,
        ),
      ).toBe("healthy")
    }
  })

  it("reports an apply halt in metrics and health, and resumes when the cause is gone", async () => {
    report()
    const s = await system.status()
    const follower = system.nodes.find((n) => n !== s.leader)!
    const at = s.commit_index + 1
    system.injectHalt(follower, at)
    // The next entry halts the follower's apply; the majority keeps committing.
    await write("halt-trigger", "x")
    const halted = await eventually(
      `${follower} halted`,
      () => system.metrics(`consensus-${follower}`),
      (m) => m.get("ekv_apply_halted") === 1,
    )
    expect(metric(halted, "ekv_raft_applied_index")).toBe(at - 1)
    const h = await eventually(
      `${follower} health halted`,
      () => system.health(follower),
      (h) => h.consensus === "halted",
    )
    expect(h.halted?.index).toBe(at)
    expect(h.halted?.reason).toBe("KeystoreUnavailable")
    // The image's healthcheck calls a halted consensus unhealthy.
    const check = await system.healthcheck(`consensus-${follower}`)
    expect(check.exitCode, check.output).toBe(1)
    expect(check.output).toContain("halted")
    // Writes still commit on the other two.
    await write("during-halt", "y")
    expect(await system.get("during-halt")).toBe("y")

    system.clearHalt(follower)
    const resumed = await eventually(
      `${follower} resumed`,
      () => system.metrics(`consensus-${follower}`),
      (m) => m.get("ekv_apply_halted") === 0 && (m.get("ekv_raft_applied_index") ?? 0) >= lastIndex,
    )
    expect(metric(resumed, "ekv_apply_halted")).toBe(0)
    expect((await system.health(follower)).consensus).toBe("ok")
    expect((await system.healthcheck(`consensus-${follower}`)).exitCode).toBe(0)
  })

  it("survives `docker kill` of the leader's consensus under writes; the node rejoins", async () => {
    report()
    const before = await system.status()
    const leader = before.leader!
    let stop = false
    let failed = 0
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        const key = `w${String(i).padStart(5, "0")}`
        try {
          lastIndex = Math.max(lastIndex, await system.put(key, `value-${i}`))
          acked.set(key, `value-${i}`)
        } catch (e) {
          // Unavailable or a timeout during the election: not acknowledged, may or may not exist.
          if (!(e instanceof ReplyError) && !(e instanceof Error)) throw e
          failed++
          await sleep(100)
        }
      }
    })()
    await eventually(
      "writes flowing",
      async () => acked.size,
      (n) => n >= 40,
    )
    const ackedBeforeKill = acked.size
    await system.kill(`consensus-${leader}`)
    const after = await eventually(
      "a new leader",
      () => system.status(),
      (s) => s.leader !== null && s.leader !== leader && s.term > before.term,
      30_000,
    )
    expect(after.leader).not.toBe(leader)
    await eventually(
      "writes after failover",
      async () => acked.size,
      (n) => n >= ackedBeforeKill + 20,
      30_000,
    )
    stop = true
    await writer
    console.log(`kill ${leader}: ${acked.size} writes acknowledged, ${failed} failed during the election`)

    // Every acknowledged write is there, read linearizably from the new leader's view.
    for (const [k, v] of acked) expect(await system.get(k), k).toBe(v)

    // The killed node comes back and catches up.
    await system.start(`consensus-${leader}`)
    const h = await eventually(
      `${leader} rejoined`,
      () => system.health(leader),
      (h) => h.consensus === "ok" && h.applied_index >= lastIndex,
    )
    expect(h.keystore).toBe("ok")
    const m = await system.metrics(`consensus-${leader}`)
    expect(metric(m, "ekv_raft_term")).toBeGreaterThanOrEqual(after.term)
    expect(metric(m, "ekv_apply_halted")).toBe(0)
  })

  it("keeps serving across `docker restart` of a keystore", async () => {
    report()
    const s = await system.status()
    const node = s.leader!
    await system.restart(`keystore-${node}`)
    const cap = await eventually(
      `${node} capability`,
      () =>
        system.call<{ node: string; encryption_capable: boolean }>(`ekv.node.${node}.capability`, {}, 5_000),
      (c) => c.node === node,
    )
    expect(cap.node).toBe(node)
    await eventually(
      `${node} keystore ok`,
      () => system.health(node),
      (h) => h.keystore === "ok",
    )
    await write("after-keystore-restart", "z")
    expect(await system.get("after-keystore-restart")).toBe("z")
    const k = await system.metrics(`keystore-${node}`)
    expect(k.has("ekv_sidecar_raft_applied_index")).toBe(true)
    for (const [key, v] of acked) expect(await system.get(key), key).toBe(v)
  })
})
