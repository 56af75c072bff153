import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import { EncryptionOpName, parsePrefix, subjects } from "../src/mod.ts"

describe("subjects", () => {
  const s = subjects()
  it("match CONTRACT §2–§5 under the default prefix", () => {
    expect(s.kv.put).toBe("ekv.kv.put")
    expect(s.kv.all).toBe("ekv.kv.>")
    expect(s.admin.encryption.bootstrap).toBe("ekv.admin.encryption.bootstrap")
    expect(s.admin.encryption.sidecarState).toBe("ekv.admin.encryption.sidecar-state")
    expect(s.admin.encryption.enableRaftEnvelope).toBe("ekv.admin.encryption.enable-raft-envelope")
    expect(s.admin.cluster.status).toBe("ekv.admin.cluster.status")
    expect(s.admin.cluster.transferLeader).toBe("ekv.admin.cluster.transfer-leader")
    expect(s.node("n1").health).toBe("ekv.node.n1.health")
    expect(s.node("n1").capability).toBe("ekv.node.n1.capability")
    expect(s.nodes.health).toBe("ekv.node.*.health")
    expect(s.events.encryption("n2")).toBe("ekv.events.encryption.n2")
    expect(s.events.cluster("n2")).toBe("ekv.events.cluster.n2")
    expect(s.events.stream).toBe("EKV_EVENTS")
    expect(s.service).toEqual({ kv: "ekv-kv", admin: "ekv-admin", node: "ekv-node" })
  })
  it("every encryption op has a subject", () => {
    for (const op of EncryptionOpName) expect(s.admin.encryption.op(op)).toBe(`ekv.admin.encryption.${op}`)
  })
  it("internal subjects sit under <p>.internal.<node> as CONTRACT §9 expects", () => {
    const i = s.internal("n3")
    expect(i.raft.kind("append")).toBe("ekv.internal.n3.raft.append")
    expect(i.raft.all).toBe("ekv.internal.n3.raft.>")
    expect(i.keystore.session).toBe("ekv.internal.n3.keystore.session")
    expect(i.keystore.generateDek).toBe("ekv.internal.n3.keystore.generate-dek")
    expect(i.keystore.resync).toBe("ekv.internal.n3.keystore.resync")
    expect(i.admin.op("propose")).toBe("ekv.internal.n3.admin.propose")
    expect(i.admin.log.op("entries")).toBe("ekv.internal.n3.admin.log.entries")
    expect(s.internalAny.keystoreResync).toBe("ekv.internal.*.keystore.resync")
    expect(s.internalAny.adminLog).toBe("ekv.internal.*.admin.log.>")
  })
  it("follow another prefix everywhere", () => {
    const t = subjects("blue-2")
    expect(t.kv.get).toBe("blue-2.kv.get")
    expect(t.events.stream).toBe("BLUE-2_EVENTS")
    expect(t.internal("n1").keystore.dispatch).toBe("blue-2.internal.n1.keystore.dispatch")
    expect(t.service.admin).toBe("blue-2-admin")
  })
  it("refuse tokens that would widen a subject", () => {
    for (const bad of ["", "a.b", "*", ">", "N1", "a b", "x".repeat(65)]) {
      expect(() => s.node(bad)).toThrow()
      expect(() => s.internal(bad)).toThrow()
    }
    expect(() => s.internal("n1").raft.kind("a.b")).toThrow()
  })
  it("parsePrefix validates EKV_PREFIX", () => {
    expect(Result.getOrThrow(parsePrefix(undefined))).toBe("ekv")
    expect(Result.getOrThrow(parsePrefix(""))).toBe("ekv")
    expect(Result.getOrThrow(parsePrefix("a"))).toBe("a")
    expect(Result.getOrThrow(parsePrefix(`a${"b".repeat(31)}`))).toHaveLength(32)
    for (const bad of ["1ekv", "Ekv", "ekv.x", "ekv_", `a${"b".repeat(32)}`, "-a"]) {
      expect(Result.isFailure(parsePrefix(bad))).toBe(true)
      expect(() => subjects(bad)).toThrow()
    }
  })
})
