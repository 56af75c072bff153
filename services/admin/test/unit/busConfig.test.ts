import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { busPermissions } from "@ekv/wire"
import { describe, expect, it } from "vitest"
import {
  busUsers,
  envPasswords,
  generatePasswords,
  literalPasswords,
  natsServerConfig,
  passwordEnvVar,
} from "../../src/busConfig.ts"
import { staticNatsConfig } from "../../src/busConfigMain.ts"

const root = join(dirname(fileURLToPath(import.meta.url)), "../../../..")

describe("busConfig", () => {
  it("has one user per role", () => {
    expect(busUsers(["n1", "n2"])).toEqual([
      "operator",
      "admin",
      "consensus-n1",
      "keystore-n1",
      "consensus-n2",
      "keystore-n2",
    ])
  })

  it("names password variables after users", () => {
    expect(passwordEnvVar("consensus-n1")).toBe("EKV_NATS_PASS_CONSENSUS_N1")
    expect(passwordEnvVar("operator")).toBe("EKV_NATS_PASS_OPERATOR")
  })

  it("writes every subject of the §9 matrix, quoted, and allow_responses only for responders", () => {
    const passwords = generatePasswords(busUsers(["n1"]))
    // nats-server reads `$VAR` passwords as config values: a leading digit would turn one into a number.
    for (const pw of Object.values(passwords)) expect(pw).toMatch(/^[a-z][0-9a-z]{34}$/)
    const conf = natsServerConfig({ prefix: "ekv", nodes: ["n1"], password: literalPasswords(passwords) })
    for (const role of [
      { kind: "operator" },
      { kind: "admin" },
      { kind: "consensus", node: "n1" },
      { kind: "keystore", node: "n1" },
    ] as const) {
      const p = busPermissions("ekv", role)
      for (const s of [...p.publish, ...p.subscribe]) expect(conf).toContain(JSON.stringify(s))
      expect(conf).toContain(`password: ${JSON.stringify(passwords[p.user])}`)
    }
    expect(conf.match(/allow_responses: true/g)?.length).toBe(3)
    expect(conf).toContain("max_payload: 4194304")
    expect(conf).toContain("jetstream: enabled")
    expect(conf).not.toContain("no_auth_user")
  })

  it("refuses a missing password and duplicate nodes", () => {
    expect(() => natsServerConfig({ prefix: "ekv", nodes: ["n1"], password: literalPasswords({}) })).toThrow(
      /no password/,
    )
    expect(() => natsServerConfig({ prefix: "ekv", nodes: ["n1", "n1"], password: envPasswords })).toThrow(
      /duplicate/,
    )
  })

  it("config/nats/nats.conf is the generator's output", () => {
    const committed = readFileSync(join(root, "config/nats/nats.conf"), "utf8")
    expect(committed).toBe(
      staticNatsConfig({
        prefix: "ekv",
        nodes: ["n1", "n2", "n3"],
        listen: "0.0.0.0:4222",
        storeDir: "/data/jetstream",
      }),
    )
    expect(committed).toContain("password: $EKV_NATS_PASS_KEYSTORE_N3")
  })
})
