import { describe, expect, it } from "@effect/vitest"
import { busPermissions } from "../src/mod.ts"

// NATS subject matching, enough to check the matrix: `*` one token, `>` the rest.
const matches = (pattern: string, subject: string): boolean => {
  const p = pattern.split(".")
  const s = subject.split(".")
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i
    if (i >= s.length) return false
    if (p[i] !== "*" && p[i] !== s[i]) return false
  }
  return p.length === s.length
}
const can = (allowed: ReadonlyArray<string>, subject: string) => allowed.some((p) => matches(p, subject))

describe("bus permissions (CONTRACT §9)", () => {
  const op = busPermissions("ekv", { kind: "operator" })
  const admin = busPermissions("ekv", { kind: "admin" })
  const c1 = busPermissions("ekv", { kind: "consensus", node: "n1" })
  const k1 = busPermissions("ekv", { kind: "keystore", node: "n1" })

  it("operator: admin, kv, node health/capability, discovery; nothing internal, own inbox only", () => {
    expect(can(op.publish, "ekv.admin.encryption.bootstrap")).toBe(true)
    expect(can(op.publish, "ekv.kv.put")).toBe(true)
    expect(can(op.publish, "ekv.node.n2.health")).toBe(true)
    expect(can(op.publish, "$SRV.PING.ekv-admin")).toBe(true)
    expect(can(op.publish, "ekv.internal.n1.keystore.session")).toBe(false)
    expect(can(op.publish, "ekv.internal.n1.keystore.resync")).toBe(false)
    expect(can(op.publish, "$JS.API.STREAM.DELETE.EKV_EVENTS")).toBe(false)
    expect(can(op.publish, "$JS.API.STREAM.PURGE.EKV_EVENTS")).toBe(false)
    expect(op.subscribe).toEqual(["_INBOX.operator.>"])
    expect(can(op.subscribe, "ekv.internal.n1.raft.append")).toBe(false)
  })
  it("only consensus-n1 reaches n1's keystore, except resync which admin may call", () => {
    for (const sub of ["session", "dispatch", "export", "restore", "generate-dek", "resync"]) {
      expect(can(c1.publish, `ekv.internal.n1.keystore.${sub}`)).toBe(true)
      expect(
        can(
          busPermissions("ekv", { kind: "consensus", node: "n2" }).publish,
          `ekv.internal.n1.keystore.${sub}`,
        ),
      ).toBe(false)
      expect(can(admin.publish, `ekv.internal.n1.keystore.${sub}`)).toBe(sub === "resync")
    }
  })
  it("keystore serves its own node only and reads the leader's log for resync", () => {
    expect(can(k1.subscribe, "ekv.internal.n1.keystore.session")).toBe(true)
    expect(can(k1.subscribe, "ekv.internal.n2.keystore.session")).toBe(false)
    expect(can(k1.subscribe, "ekv.node.n1.capability")).toBe(true)
    expect(can(k1.publish, "ekv.internal.n3.admin.log.entries")).toBe(true)
    expect(can(k1.publish, "ekv.internal.n3.admin.propose")).toBe(false)
    expect(can(k1.publish, "ekv.events.encryption.n1")).toBe(true)
    expect(can(k1.publish, "ekv.events.encryption.n2")).toBe(false)
  })
  it("consensus serves kv, its own health, raft and admin subjects", () => {
    expect(can(c1.subscribe, "ekv.kv.get")).toBe(true)
    expect(can(c1.subscribe, "ekv.node.n1.health")).toBe(true)
    expect(can(c1.subscribe, "ekv.node.n2.health")).toBe(false)
    expect(can(c1.subscribe, "ekv.internal.n1.raft.append")).toBe(true)
    expect(can(c1.publish, "ekv.internal.n2.raft.append")).toBe(true)
    expect(can(c1.publish, "ekv.events.cluster.n1")).toBe(true)
    expect(can(c1.publish, "ekv.events.encryption.n1")).toBe(false)
  })
  it("follows the prefix", () => {
    const p = busPermissions("blue", { kind: "operator" })
    expect(can(p.publish, "blue.kv.put")).toBe(true)
    expect(can(p.publish, "ekv.kv.put")).toBe(false)
    expect(can(p.publish, "$JS.API.STREAM.INFO.BLUE_EVENTS")).toBe(true)
  })
})
