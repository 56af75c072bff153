import { type ApiError, clusterApi, encryptionApi, kvApi, nodeApi } from "@ekv/wire"
import { Result } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  type Endpoint,
  endpointCatalog,
  garbagePayload,
  HUGE_BYTES,
  Mutation,
  nearValidPayload,
  payloadArbitrary,
  samplePayloads,
  validPayload,
} from "../../src/fuzz/mod.ts"

const NODES = ["n1", "n2", "n3"]
const catalog = endpointCatalog({ nodes: NODES })

const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
// The wire's own request decoder for an endpoint (what every service runs first).
const wireDecoder = (e: Endpoint): ((b: Uint8Array) => Result.Result<unknown, ApiError.ApiError>) => {
  const parts = e.name.split(".")
  const table: Record<
    string,
    Record<string, { decodeRequest: (b: Uint8Array) => Result.Result<unknown, ApiError.ApiError> }>
  > = {
    kv: kvApi,
    encryption: encryptionApi,
    cluster: clusterApi,
    node: nodeApi,
  }
  const group = parts[0] === "admin" ? (parts[1] as string) : (parts[0] as string)
  const op = camel(parts[parts.length - 1] as string)
  const ep = table[group]?.[op]
  if (ep === undefined) throw new Error(`no wire endpoint for ${e.name}`)
  return ep.decodeRequest
}

describe("fuzz endpoint catalog", () => {
  it("covers every public subject of CONTRACT §2–§4", () => {
    const names = catalog.map((e) => e.name)
    expect(names.filter((n) => n.startsWith("kv."))).toHaveLength(5)
    expect(names.filter((n) => n.startsWith("admin.encryption."))).toHaveLength(12)
    expect(names.filter((n) => n.startsWith("admin.cluster."))).toHaveLength(6)
    expect(names.filter((n) => n.startsWith("node."))).toHaveLength(2 * NODES.length)
    expect(catalog.find((e) => e.name === "node.n2.health")?.subject).toBe("ekv.node.n2.health")
  })

  it("never allows valid destructive cluster changes", () => {
    for (const n of [
      "admin.cluster.remove",
      "admin.cluster.transfer-leader",
      "admin.cluster.add-learner",
      "admin.encryption.resync-sidecar",
    ])
      expect(catalog.find((e) => e.name === n)?.validAllowed).toBe(false)
  })
})

describe("fuzz generators produce what they claim", () => {
  for (const e of catalog) {
    it(`${e.name}: valid payloads decode with the wire request schema`, () => {
      const decode = wireDecoder(e)
      for (const p of fc.sample(validPayload(e), { numRuns: 40, seed: 1 })) {
        const r = decode(p.body)
        if (Result.isFailure(r))
          throw new Error(`${new TextDecoder().decode(p.body).slice(0, 300)}: ${r.failure.message}`)
      }
    })

    it(`${e.name}: near-valid payloads are refused as InvalidArgument or LocalEpochOutOfRange`, () => {
      const decode = wireDecoder(e)
      const seen = new Set<string>()
      for (const p of fc.sample(nearValidPayload(e), { numRuns: 150, seed: 2 })) {
        expect(p.kind).toBe("near-valid")
        expect(p.mutation).toBeDefined()
        seen.add(p.mutation as string)
        // The wire decoder overflows the stack on deep nesting: a finding of its own (below).
        if (p.mutation === Mutation.deepNesting) continue
        const r = decode(p.body)
        if (Result.isSuccess(r))
          throw new Error(
            `accepted ${p.mutation} (${p.note}): ${new TextDecoder().decode(p.body).slice(0, 300)}`,
          )
        expect(["InvalidArgument", "LocalEpochOutOfRange"]).toContain(r.failure._tag)
      }
      const hasFields = e.shapes.some((shape) => shape.length > 0)
      const expected = [Mutation.extraField, Mutation.hugeString, Mutation.deepNesting, Mutation.notAnObject]
      for (const m of hasFields ? [...expected, Mutation.wrongType] : expected) expect(seen).toContain(m)
    })
  }

  it("near-valid payloads carry their defect: sizes, UTF-8, base64, missing fields", () => {
    const put = catalog.find((e) => e.name === "kv.put") as Endpoint
    const all = fc.sample(nearValidPayload(put), { numRuns: 400, seed: 3 })
    const by = (m: string) => all.filter((p) => p.mutation === m)
    for (const p of by(Mutation.hugeString)) expect(p.body.length).toBeGreaterThan(HUGE_BYTES)
    for (const p of by(Mutation.invalidUtf8))
      expect(() => new TextDecoder("utf-8", { fatal: true }).decode(p.body)).toThrow()
    for (const p of by(Mutation.missingField)) {
      const o = JSON.parse(new TextDecoder().decode(p.body)) as object
      expect(Object.keys(o)).toHaveLength(1)
    }
    for (const p of by(Mutation.invalidBase64))
      expect(JSON.parse(new TextDecoder().decode(p.body)).value).not.toMatch(/^([A-Za-z0-9+/]{4})*$/)
    for (const m of [
      Mutation.missingField,
      Mutation.invalidBase64,
      Mutation.invalidUtf8,
      Mutation.outOfRange,
    ])
      expect(by(m).length).toBeGreaterThan(0)
  })

  it("array fields get defects inside one element (batch ops, bootstrap writers)", () => {
    for (const name of ["kv.batch", "admin.encryption.bootstrap"]) {
      const e = catalog.find((x) => x.name === name) as Endpoint
      const nested = fc
        .sample(nearValidPayload(e), { numRuns: 300, seed: 5 })
        .filter((p) => p.mutation === Mutation.nested)
      expect(nested.length).toBeGreaterThan(10)
      const decode = wireDecoder(e)
      for (const p of nested) expect(Result.isFailure(decode(p.body)), `${p.note}`).toBe(true)
    }
  })

  it("garbage payloads are labelled, and sampling is reproducible from the seed", () => {
    const get = catalog.find((e) => e.name === "kv.get") as Endpoint
    const g = fc.sample(garbagePayload(get), { numRuns: 100, seed: 4 })
    expect(new Set(g.map((p) => p.mutation))).toEqual(
      new Set([Mutation.emptyBody, Mutation.binaryGarbage, Mutation.truncatedJson, Mutation.randomJson]),
    )
    const arb = payloadArbitrary(catalog)
    const a = [...samplePayloads(arb, 300, 42, 100)]
    const b = [...samplePayloads(arb, 300, 42, 100)]
    expect(a).toHaveLength(300)
    expect(a.map((p) => [p.endpoint, p.kind, p.mutation, Buffer.from(p.body).toString("base64")])).toEqual(
      b.map((p) => [p.endpoint, p.kind, p.mutation, Buffer.from(p.body).toString("base64")]),
    )
    // Destructive endpoints never get a valid payload.
    expect(
      a.some(
        (p) => p.kind === "valid" && /remove|transfer-leader|add-learner|resync-sidecar/.test(p.endpoint),
      ),
    ).toBe(false)
  })
})

describe("fuzz findings in @ekv/wire", () => {
  // Found by the fuzzer: the local_epoch search of the request decoder once
  // recursed per nesting level and overflowed the stack on deep bodies.
  it("a deeply nested request body is refused as InvalidArgument, not a stack overflow", () => {
    const body = new TextEncoder().encode(`{"key":${"[".repeat(20_000)}1${"]".repeat(20_000)}}`)
    const r = kvApi.get.decodeRequest(body)
    expect(Result.isFailure(r) && r.failure._tag).toBe("InvalidArgument")
  })
})
