// SPEC.md §7 guards the keystore decides alone: each refusal is one clear log
// line naming the guard and a non-zero exit. DataDirLocked with two real
// processes; the lock is released when its holder dies.
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { kekId, wrapDek } from "@ekv/crypto"
import { type NatsFixture, startNats } from "@ekv/test"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { emptySidecar, renderSidecar, type Sidecar } from "../../src/sidecarFile.ts"

const MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url))
const KEK_A = new Uint8Array(32).fill(0xa1)
const KEK_B = new Uint8Array(32).fill(0xb2)

const kekFile = (dir: string, name: string, bytes: Uint8Array, mode = 0o600) => {
  const p = join(dir, name)
  writeFileSync(p, bytes, { mode })
  chmodSync(p, mode)
  return p
}

const sidecarUnder = (kek: Uint8Array): Sidecar => ({
  ...emptySidecar,
  raft_applied_index: 3,
  active: { storage: 7, raft: 8 },
  keys: {
    "7": {
      purpose: "storage",
      wrapped: Buffer.from(
        wrapDek({ kek, dek: new Uint8Array(32).fill(1), purpose: "storage", keyId: 7 }),
      ).toString("base64"),
      created: "2026-01-01T00:00:00.000Z",
      local_epoch: 1,
      retired: false,
    },
    "8": {
      purpose: "raft",
      wrapped: Buffer.from(
        wrapDek({ kek, dek: new Uint8Array(32).fill(2), purpose: "raft", keyId: 8 }),
      ).toString("base64"),
      created: "2026-01-01T00:00:00.000Z",
      local_epoch: 1,
      retired: false,
    },
  },
})

const withSidecar = (dataDir: string, text: string) => {
  mkdirSync(join(dataDir, "keystore"), { recursive: true })
  writeFileSync(join(dataDir, "keystore", "keys.json"), text, { mode: 0o600 })
}

const baseEnv = (dataDir: string, servers = "nats://127.0.0.1:1"): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("EKV_")) env[k] = v
  return { ...env, EKV_NODE_ID: "n1", EKV_DATA_DIR: dataDir, NATS_URL: servers }
}

const refusal = (env: Record<string, string>) => {
  const r = spawnSync(process.execPath, [MAIN], { env, encoding: "utf8", timeout: 30_000 })
  const lines = r.stderr
    .split("\n")
    .filter((l) => l.includes("refused-start"))
    .map((l) => JSON.parse(l) as { guard: string; message: string })
  return { status: r.status, lines, stderr: r.stderr }
}

describe("keystore startup guards (SPEC §7)", () => {
  const cases: Array<[string, (dir: string) => Record<string, string>]> = [
    ["KekRequired", (d) => ({ ...baseEnv(d), EKV_ENCRYPTION_ENABLED: "true" })],
    [
      "KekSourcesConflict",
      (d) => ({
        ...baseEnv(d),
        EKV_ENCRYPTION_ENABLED: "true",
        EKV_KEK_FILE: kekFile(d, "kek", KEK_A),
        EKV_KEK_BASE64: Buffer.from(KEK_A).toString("base64"),
      }),
    ],
    [
      "KekFileInsecure",
      (d) => ({
        ...baseEnv(d),
        EKV_ENCRYPTION_ENABLED: "true",
        EKV_KEK_FILE: kekFile(d, "kek", KEK_A, 0o644),
      }),
    ],
    [
      "SidecarPresentWithoutFlag",
      (d) => {
        withSidecar(d, renderSidecar(sidecarUnder(KEK_A)))
        return { ...baseEnv(d), EKV_KEK_FILE: kekFile(d, "kek", KEK_A) }
      },
    ],
    [
      "KekMismatch",
      (d) => {
        withSidecar(d, renderSidecar(sidecarUnder(KEK_A)))
        return {
          ...baseEnv(d),
          EKV_ENCRYPTION_ENABLED: "true",
          EKV_KEK_FILE: kekFile(d, "kek", KEK_B),
          EKV_KEK_NEXT_FILE: kekFile(d, "kek-next", new Uint8Array(32).fill(0xc3)),
        }
      },
    ],
    [
      "CorruptSidecar",
      (d) => {
        withSidecar(d, '{"version": 1, "raft_applied_index": ')
        return { ...baseEnv(d), EKV_ENCRYPTION_ENABLED: "true", EKV_KEK_FILE: kekFile(d, "kek", KEK_A) }
      },
    ],
    [
      "CorruptSidecar",
      (d) => {
        withSidecar(d, JSON.stringify({ ...sidecarUnder(KEK_A), version: 9 }))
        return { ...baseEnv(d), EKV_ENCRYPTION_ENABLED: "true", EKV_KEK_FILE: kekFile(d, "kek", KEK_A) }
      },
    ],
    [
      "UnsupportedFilesystem",
      (d) => ({
        ...baseEnv(d),
        EKV_ENCRYPTION_ENABLED: "true",
        EKV_KEK_FILE: kekFile(d, "kek", KEK_A),
        EKV_SIDECAR_PATH: "/proc/self/ekv-keystore/keys.json",
      }),
    ],
  ]
  for (const [guard, envOf] of cases) {
    it(`${guard}: one line naming it, exit non-zero`, () => {
      const dir = mkdtempSync(join(tmpdir(), "ekv-ks-guard-"))
      const r = refusal(envOf(dir))
      expect(r.status, r.stderr).toBe(2)
      expect(r.lines.length, r.stderr).toBe(1)
      expect(r.lines[0]!.guard).toBe(guard)
      // The KEK never appears in what is logged.
      for (const k of [KEK_A, KEK_B]) {
        expect(r.stderr).not.toContain(Buffer.from(k).toString("base64"))
        expect(r.stderr).not.toContain(Buffer.from(k).toString("hex"))
      }
    })
  }
})

describe("with a bus", () => {
  let nats: NatsFixture
  beforeAll(async () => {
    nats = await startNats({ jetstream: true })
  })
  afterAll(async () => {
    await nats?.stop()
  })

  const startServing = (env: Record<string, string>): Promise<ChildProcess & { out: () => string }> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [MAIN], { env, stdio: ["ignore", "pipe", "pipe"] })
      let out = ""
      const onData = (b: Buffer) => {
        out += b.toString()
        if (out.includes("serving on")) resolve(Object.assign(child, { out: () => out }))
      }
      child.stdout.on("data", onData)
      child.stderr.on("data", onData)
      child.once("exit", (code) => reject(new Error(`keystore exited ${code}: ${out}`)))
      setTimeout(() => reject(new Error(`keystore did not start: ${out}`)), 30_000)
    })

  it("DataDirLocked: a second keystore on the same directory refuses; the lock dies with its holder", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ekv-ks-lock-"))
    const env = {
      ...baseEnv(dir, nats.servers.join(",")),
      EKV_ENCRYPTION_ENABLED: "true",
      EKV_KEK_FILE: kekFile(dir, "kek", KEK_A),
    }
    const first = await startServing(env)
    try {
      const r = refusal(env)
      expect(r.status, r.stderr).toBe(2)
      expect(r.lines.map((l) => l.guard)).toEqual(["DataDirLocked"])
      // With the bus reachable, the refusal is also a cluster event.
      const nc = await connect({ servers: nats.servers })
      try {
        const jsm = await jetstreamManager(nc)
        const m = await jsm.streams.getMessage("EKV_EVENTS", { last_by_subj: "ekv.events.cluster.n1" })
        expect(m?.json()).toMatchObject({
          node: "n1",
          kind: "refused-start",
          code: "DataDirLocked",
          cluster_id: "",
        })
      } finally {
        await nc.close()
      }
    } finally {
      first.kill("SIGKILL")
      await new Promise((res) => first.once("exit", res))
    }
    const again = await startServing(env)
    again.kill("SIGTERM")
    const code = await new Promise((res) => again.once("exit", (c) => res(c)))
    expect(code).toBe(0)
  })

  it("starts with the next KEK as current when only it unwraps the sidecar (restart after a rewrap)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ekv-ks-next-"))
    withSidecar(dir, renderSidecar(sidecarUnder(KEK_B)))
    const env = {
      ...baseEnv(dir, nats.servers.join(",")),
      EKV_ENCRYPTION_ENABLED: "true",
      EKV_KEK_FILE: kekFile(dir, "kek", KEK_A),
      EKV_KEK_NEXT_FILE: kekFile(dir, "kek-next", KEK_B),
    }
    const child = await startServing(env)
    expect(child.out()).toContain(`kek ${kekId(KEK_B)}`)
    child.kill("SIGTERM")
    expect(await new Promise((res) => child.once("exit", (c) => res(c)))).toBe(0)
  })
})
