// The shipped docker-compose.yml, run with Debian's Compose v1
// (`docker-compose` 1.29: Testcontainers' compose support needs the v2 plugin,
// which Debian does not package) and the local images: compose-setup.sh
// makes the secrets, `up -d` brings NATS, three nodes and two admin services
// up, every ekv container turns healthy, the operator writes and reads with
// the credentials the setup wrote and through the compose `ekv` CLI service,
// metrics answer on the published ports, and `down -v` removes everything.
// Every host port is a free one (the compose file lets each be overridden).
import { execFile, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { eventually, parseMetrics, REPO_ROOT } from "./containerSystem.ts"

const run = promisify(execFile)
const hasCompose = spawnSync("docker-compose", ["version"]).status === 0
const ci = !["", "0", "false"].includes(process.env.CI ?? "")
/** docker-compose.yml's host metrics ports, each overridable (EKV_METRICS_HOST_PORT_<SERVICE>). */
const METRICS_SERVICES = [
  "CONSENSUS_N1",
  "CONSENSUS_N2",
  "CONSENSUS_N3",
  "KEYSTORE_N1",
  "KEYSTORE_N2",
  "KEYSTORE_N3",
  "ADMIN_1",
  "ADMIN_2",
]

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address()
      const bound = typeof addr === "object" && addr !== null ? addr.port : 0
      srv.close(() => resolve(bound))
    })
  })

const project = `ekv-e2e-${randomBytes(3).toString("hex")}`
let dir = ""
let env: NodeJS.ProcessEnv = {}
let operator: NatsConnection | undefined

const compose = (...args: string[]) =>
  run("docker-compose", ["-p", project, "--env-file", join(dir, "compose.env"), ...args], {
    cwd: REPO_ROOT,
    env,
    maxBuffer: 16 * 1024 * 1024,
  })

const ask = async (subject: string, body: unknown) => {
  const m = await operator!.request(subject, JSON.stringify(body), { timeout: 10_000 })
  return JSON.parse(new TextDecoder().decode(m.data)) as Record<string, unknown>
}

// In CI the tool is provisioned (scripts/setup-docker.sh), so its absence fails there.
describe.skipIf(!hasCompose && !ci)("docker-compose.yml with Compose v1 and the local images", () => {
  beforeAll(async () => {
    if (!hasCompose) throw new Error("docker-compose is not installed (scripts/setup-docker.sh installs it)")
    dir = mkdtempSync(join(tmpdir(), "ekv-compose-"))
    // Free host ports, so this runs beside a deployment or another run.
    env = { ...process.env, EKV_COMPOSE_DIR: dir, EKV_NATS_PORT: String(await freePort()) }
    for (const s of METRICS_SERVICES) env[`EKV_METRICS_HOST_PORT_${s}`] = String(await freePort())
    await run("bash", [join(REPO_ROOT, "scripts", "compose-setup.sh"), "--local"], { env })
    await compose("up", "-d")
  })

  afterAll(async () => {
    await operator?.close().catch(() => undefined)
    if (dir === "") return
    await compose("down", "-v", "--remove-orphans").catch((e: unknown) => console.error(`down: ${String(e)}`))
    rmSync(dir, { recursive: true, force: true })
  })

  it("brings every ekv service up healthy", async () => {
    const { stdout } = await compose("ps", "-q")
    const ids = stdout.split("\n").filter((l) => l.trim() !== "")
    expect(ids.length).toBe(9)
    const health = async () => {
      const { stdout } = await run("docker", [
        "inspect",
        "--format",
        "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
        ...ids,
      ])
      return stdout.trim().split("\n")
    }
    const states = await eventually(
      "all healthy",
      health,
      (lines) => lines.every((l) => l.endsWith(" healthy") || l.includes("_nats_")),
      120_000,
    )
    expect(states.filter((l) => l.endsWith(" healthy")).length).toBe(8)
  })

  it("serves the operator with the credentials compose-setup.sh wrote", async () => {
    const creds = JSON.parse(readFileSync(join(dir, "operator.json"), "utf8")) as {
      servers: string[]
      user: string
      pass: string
    }
    operator = await connect({
      servers: creds.servers,
      user: creds.user,
      pass: creds.pass,
      inboxPrefix: `_INBOX.${creds.user}`,
    })
    const status = await eventually(
      "a leader",
      () => ask("ekv.admin.cluster.status", {}),
      (s) => typeof s.leader === "string",
    )
    expect((status.members as unknown[]).length).toBe(3)
    const put = await ask("ekv.kv.put", { key: "compose", value: Buffer.from("v1").toString("base64") })
    expect(put.index).toBeGreaterThan(0)
    const got = await ask("ekv.kv.get", { key: "compose" })
    expect(Buffer.from(String(got.value), "base64").toString()).toBe("v1")

    // The compose CLI service, as the walkthrough uses it.
    const { stdout } = await compose("run", "--rm", "ekv", "kv", "get", "compose")
    expect(stdout).toMatch(/compose\s+\d+\s+v1/)

    const res = await fetch(`http://127.0.0.1:${env.EKV_METRICS_HOST_PORT_CONSENSUS_N1}/metrics`)
    const m = parseMetrics(await res.text())
    expect(m.get("ekv_raft_term")).toBe(status.term)
    expect(m.get("ekv_apply_halted")).toBe(0)
  })
})
