import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import {
  ApiError,
  clusterApi,
  decodeErrorReply,
  encodeErrorReply,
  encryptionApi,
  nodeApi,
  nodeId16,
} from "../src/mod.ts"

const enc = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v))
const dec = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b))

type Decoder = (
  bytes: Uint8Array,
) => Result.Result<unknown, { readonly _tag: string; readonly message: string }>
const ok = (d: Decoder, body: unknown) => {
  const r = d(enc(body))
  if (Result.isFailure(r)) throw new Error(`expected success, got ${r.failure._tag}: ${r.failure.message}`)
  return r.success
}
const fail = (d: Decoder, body: unknown, tag = "InvalidArgument") => {
  const r = d(enc(body))
  if (Result.isSuccess(r)) throw new Error(`expected ${tag} for ${JSON.stringify(body)}`)
  expect(r.failure._tag).toBe(tag)
  return r.failure.message
}

const MAX_U64 = "18446744073709551615"
const SID = "0123456789abcdef0123456789abcdef"

describe("full_node_id travels as a canonical decimal uint64 string", () => {
  const d = encryptionApi.registerWriter.decodeRequest
  const body = (full_node_id: unknown) => ({ dek_id: 1, full_node_id, local_epoch: 0 })
  it("accepts 1 … 2^64−1 as bigint", () => {
    expect(ok(d, body("1"))).toEqual({ dek_id: 1, full_node_id: 1n, local_epoch: 0 })
    expect(ok(d, body(MAX_U64))).toMatchObject({ full_node_id: 2n ** 64n - 1n })
  })
  it("rejects anything else", () => {
    for (const bad of [
      "18446744073709551616",
      "99999999999999999999",
      "-1",
      "+1",
      "01",
      " 1",
      "1 ",
      "1e3",
      "0x10",
      "",
      "1.0",
    ]) {
      fail(d, body(bad))
    }
    fail(d, body(5))
    fail(d, body(null))
  })
  it("agrees with BigInt on every decimal string", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: 2n ** 70n }), (n) => {
        const r = d(enc(body(n.toString())))
        expect(Result.isSuccess(r)).toBe(n < 2n ** 64n)
      }),
    )
  })
  it("encodes back to the decimal string", () => {
    const bytes = encryptionApi.registerWriter.encodeRequest({
      dek_id: 7,
      full_node_id: 2n ** 64n - 1n,
      local_epoch: 3,
    } as never)
    expect(dec(bytes)).toEqual({ dek_id: 7, full_node_id: MAX_U64, local_epoch: 3 })
  })
})

describe("local_epoch range (CONTRACT §1 order of checks)", () => {
  const rw = encryptionApi.registerWriter.decodeRequest
  const bs = encryptionApi.bootstrap.decodeRequest
  it("65535 is accepted, 65536 is LocalEpochOutOfRange", () => {
    ok(rw, { dek_id: 1, full_node_id: "5", local_epoch: 65535 })
    fail(rw, { dek_id: 1, full_node_id: "5", local_epoch: 65536 }, "LocalEpochOutOfRange")
    fail(rw, { dek_id: 1, full_node_id: "5", local_epoch: 2 ** 40 }, "LocalEpochOutOfRange")
    expect(
      fail(
        bs,
        {
          writers: [
            { full_node_id: "5", local_epoch: 0 },
            { full_node_id: "6", local_epoch: 70000 },
          ],
        },
        "LocalEpochOutOfRange",
      ),
    ).toContain("writers[1].local_epoch")
  })
  it("a schema failure elsewhere wins over the epoch (schema first)", () => {
    fail(rw, { dek_id: 1, full_node_id: "5", local_epoch: 65536, extra: true })
    fail(rw, { dek_id: 0, full_node_id: "5", local_epoch: 65536 })
    fail(bs, { writers: [{ full_node_id: "x", local_epoch: 65536 }] })
  })
  it("negative or fractional epochs are InvalidArgument", () => {
    fail(rw, { dek_id: 1, full_node_id: "5", local_epoch: -1 })
    fail(rw, { dek_id: 1, full_node_id: "5", local_epoch: 1.5 })
    fail(rw, { dek_id: 1, full_node_id: "5", local_epoch: "1" })
  })
  it("the epoch check comes before the id checks", () => {
    fail(bs, { writers: [{ full_node_id: "0", local_epoch: 65536 }] }, "LocalEpochOutOfRange")
    fail(rw, { dek_id: 1, full_node_id: "0", local_epoch: 65536 }, "LocalEpochOutOfRange")
  })
  it("replies are held to the same rule", () => {
    const report = {
      node: "n1",
      encryption_capable: true,
      build_sha: "abc",
      sidecar_present: true,
      full_node_id: "42",
      local_epoch: 65536,
      kek_id: "0011223344556677",
      next_kek_id: null,
    }
    fail(nodeApi.capability.decodeReply, report, "LocalEpochOutOfRange")
    ok(nodeApi.capability.decodeReply, { ...report, local_epoch: 3 })
  })
})

describe("ids inside one request", () => {
  const bs = encryptionApi.bootstrap.decodeRequest
  const w = (full_node_id: string, local_epoch = 0) => ({ full_node_id, local_epoch })
  it("rejects zero, duplicate and node_id16-sharing writers", () => {
    expect(fail(bs, { writers: [w("0")] })).toContain("must not be 0")
    expect(fail(bs, { writers: [w("7"), w("7", 1)] })).toContain("duplicate")
    // 65537 and 1 share node_id16 = 1
    expect(fail(bs, { writers: [w("1"), w("65537")] })).toContain("node_id16 1")
    expect(nodeId16(65537n)).toBe(1)
    expect(nodeId16(2n ** 64n - 1n)).toBe(0xffff)
  })
  it("accepts distinct writers", () => {
    expect(ok(bs, { writers: [w("1"), w("2", 5), w(MAX_U64)] })).toEqual({
      writers: [
        { full_node_id: 1n, local_epoch: 0 },
        { full_node_id: 2n, local_epoch: 5 },
        { full_node_id: 2n ** 64n - 1n, local_epoch: 0 },
      ],
    })
  })
  it("register-writer rejects full_node_id 0", () => {
    fail(encryptionApi.registerWriter.decodeRequest, { dek_id: 1, full_node_id: "0", local_epoch: 0 })
  })
})

describe("encryption admin requests", () => {
  const e = encryptionApi
  it("bootstrap is an explicit batch or { discover: true }", () => {
    ok(e.bootstrap.decodeRequest, { discover: true })
    fail(e.bootstrap.decodeRequest, { discover: false })
    fail(e.bootstrap.decodeRequest, {})
    fail(e.bootstrap.decodeRequest, { writers: [] })
    fail(e.bootstrap.decodeRequest, { discover: true, writers: [{ full_node_id: "1", local_epoch: 0 }] })
  })
  it("register-writer: dek_id is a non-zero uint32, session_id 32 lowercase hex", () => {
    ok(e.registerWriter.decodeRequest, {
      dek_id: 4294967295,
      full_node_id: "1",
      local_epoch: 0,
      session_id: SID,
    })
    fail(e.registerWriter.decodeRequest, { dek_id: 4294967296, full_node_id: "1", local_epoch: 0 })
    fail(e.registerWriter.decodeRequest, { dek_id: 0, full_node_id: "1", local_epoch: 0 })
    fail(e.registerWriter.decodeRequest, {
      dek_id: 1,
      full_node_id: "1",
      local_epoch: 0,
      session_id: SID.toUpperCase(),
    })
    fail(e.registerWriter.decodeRequest, { dek_id: 1, full_node_id: "1", local_epoch: 0, session_id: "abc" })
  })
  it("empty requests reject every field", () => {
    for (const ep of [
      e.status,
      e.rewrapDeks,
      e.enableStorageEnvelope,
      e.enableRaftEnvelope,
      clusterApi.status,
    ]) {
      ok(ep.decodeRequest, {})
      ok(ep.decodeRequest, "")
      expect(fail(ep.decodeRequest, { force: true })).toContain("force")
      fail(ep.decodeRequest, [])
      fail(ep.decodeRequest, '"x"')
    }
  })
  it("capability, sidecar-state, rotate, retire, resync, rewrite", () => {
    ok(e.capability.decodeRequest, {})
    ok(e.capability.decodeRequest, { node: "n1" })
    fail(e.capability.decodeRequest, { node: "N1" })
    ok(e.sidecarState.decodeRequest, { caller_full_node_id: "12" })
    fail(e.sidecarState.decodeRequest, { caller_full_node_id: 12 })
    ok(e.rotateDek.decodeRequest, { purpose: "raft" })
    fail(e.rotateDek.decodeRequest, { purpose: "both" })
    ok(e.retireDek.decodeRequest, { key_id: 9 })
    fail(e.retireDek.decodeRequest, { key_id: "9" })
    ok(e.resyncSidecar.decodeRequest, { node: "n-3" })
    fail(e.resyncSidecar.decodeRequest, {})
    ok(e.rewrite.decodeRequest, {})
    ok(e.rewrite.decodeRequest, { rate_mib_s: 2.5 })
    fail(e.rewrite.decodeRequest, { rate_mib_s: 0 })
    fail(e.rewrite.decodeRequest, { rate_mib_s: -1 })
  })
})

describe("cluster admin requests", () => {
  it("node targets are [a-z0-9-]{1,64}", () => {
    for (const ep of [
      clusterApi.addLearner,
      clusterApi.promote,
      clusterApi.remove,
      clusterApi.transferLeader,
    ]) {
      ok(ep.decodeRequest, { node: "n4" })
      ok(ep.decodeRequest, { node: "a".repeat(64) })
      fail(ep.decodeRequest, { node: "a".repeat(65) })
      fail(ep.decodeRequest, { node: "n.4" })
      fail(ep.decodeRequest, { node: "" })
      fail(ep.decodeRequest, {})
    }
    ok(clusterApi.snapshot.decodeRequest, {})
    ok(clusterApi.snapshot.decodeRequest, { node: "n1" })
    fail(clusterApi.snapshot.decodeRequest, { nodes: ["n1"] })
    fail(nodeApi.health.decodeRequest, { verbose: true })
    fail(nodeApi.capability.decodeRequest, { x: 1 })
  })
})

describe("replies round-trip through JSON", () => {
  const wrapped = Buffer.alloc(61, 1).toString("base64")
  const samples: ReadonlyArray<
    [
      string,
      {
        decodeReply: (b: Uint8Array) => Result.Result<unknown, unknown>
        encodeReply: (v: never) => Uint8Array
      },
      unknown,
    ]
  > = [
    [
      "bootstrap",
      encryptionApi.bootstrap,
      {
        index: 5,
        storage_key_id: 11,
        raft_key_id: 12,
        writers: [{ node: "n1", full_node_id: MAX_U64, node_id16: 65535, local_epoch: 0 }],
      },
    ],
    ["register-writer", encryptionApi.registerWriter, { index: 9, outcome: "unchanged" }],
    ["rotate-dek", encryptionApi.rotateDek, { index: 9, key_id: 77 }],
    ["rewrap-deks", encryptionApi.rewrapDeks, { index: 9, key_ids: [1, 2] }],
    ["retire-dek", encryptionApi.retireDek, { index: 9 }],
    ["enable-storage-envelope", encryptionApi.enableStorageEnvelope, { index: 9, bootstrapped: true }],
    ["enable-raft-envelope", encryptionApi.enableRaftEnvelope, { index: 9, cutover_index: 9 }],
    [
      "resync-sidecar",
      encryptionApi.resyncSidecar,
      { node: "n2", mode: "full-state", raft_applied_index: 40 },
    ],
    ["rewrite", encryptionApi.rewrite, { started: ["n1", "n2"] }],
    [
      "sidecar-state",
      encryptionApi.sidecarState,
      {
        wrapped_deks_by_id: { "11": wrapped, "12": wrapped },
        active_storage_id: 11,
        active_raft_id: 0,
        storage_envelope_active: true,
        raft_envelope_cutover_index: 0,
        latest_applied_index: 30,
        writer_registry_for_caller: { "11": 4 },
      },
    ],
    [
      "capability fan-out",
      encryptionApi.capability,
      {
        members: [
          {
            node: "n1",
            role: "voter",
            report: {
              node: "n1",
              encryption_capable: false,
              build_sha: "dev",
              sidecar_present: false,
              full_node_id: "0",
              local_epoch: 0,
              kek_id: null,
              next_kek_id: null,
            },
          },
          { node: "n2", role: "learner", error: { code: "Unavailable", message: "timeout" } },
        ],
      },
    ],
    [
      "encryption status",
      encryptionApi.status,
      {
        phase: "storage-envelope",
        active: { storage: 11, raft: 12 },
        keys: [{ key_id: 11, purpose: "storage", created: "2026-11-22T10:00:00.000Z", retired: false }],
        nodes: [
          {
            node: "n1",
            role: "voter",
            sidecar_raft_applied_index: 9,
            local_epochs: { "11": 3 },
            versions_by_key_id: { "11": 100 },
            cleartext_versions: 2,
            log_entries_by_key_id: {},
            rewrite: { done: false, progress: 0.5 },
            halted: { index: 10, reason: "KekMismatch" },
          },
        ],
        registry: [
          {
            dek_id: 11,
            node_id16: 7,
            full_node_id: "7",
            first_seen_local_epoch: 0,
            last_seen_local_epoch: 3,
          },
        ],
      },
    ],
    [
      "cluster status",
      clusterApi.status,
      {
        cluster_id: "00112233445566778899aabbccddeeff",
        leader: null,
        term: 3,
        commit_index: 10,
        members: [{ node: "n1", role: "voter", applied_index: 10, match_index: 10, reachable: true }],
      },
    ],
    ["transfer-leader", clusterApi.transferLeader, { leader: "n2" }],
    ["snapshot", clusterApi.snapshot, { snapshots: [{ node: "n1", index: 100 }] }],
    [
      "health",
      nodeApi.health,
      {
        node: "n1",
        consensus: "halted",
        keystore: "down",
        applied_index: 4,
        halted: { index: 5, reason: "KeystoreUnavailable" },
      },
    ],
  ]
  for (const [name, ep, json] of samples) {
    it(name, () => {
      const r = ep.decodeReply(enc(json))
      if (Result.isFailure(r)) throw new Error(String((r.failure as { message: string }).message))
      expect(dec(ep.encodeReply(r.success as never))).toEqual(json)
    })
  }
  it("rejects unknown fields and unknown codes in replies", () => {
    fail(clusterApi.status.decodeReply, {
      cluster_id: "",
      leader: "n1",
      term: 1,
      commit_index: 1,
      members: [],
      extra: 1,
    })
    fail(nodeApi.health.decodeReply, {
      node: "n1",
      consensus: "halted",
      keystore: "ok",
      applied_index: 4,
      halted: { index: 5, reason: "Oops" },
    })
    fail(encryptionApi.status.decodeReply, {
      phase: "capable",
      active: { storage: 0, raft: 0 },
      keys: [],
      nodes: [
        {
          node: "n1",
          role: "voter",
          sidecar_raft_applied_index: 0,
          local_epochs: { "0": 1 },
          versions_by_key_id: {},
          cleartext_versions: 0,
          log_entries_by_key_id: {},
        },
      ],
      registry: [],
    })
  })
  it("a status whose local_epochs holds 65536 is LocalEpochOutOfRange", () => {
    fail(
      encryptionApi.status.decodeReply,
      {
        phase: "capable",
        active: { storage: 0, raft: 0 },
        keys: [],
        nodes: [
          {
            node: "n1",
            role: "voter",
            sidecar_raft_applied_index: 0,
            local_epochs: { "5": 65536 },
            versions_by_key_id: {},
            cleartext_versions: 0,
            log_entries_by_key_id: {},
          },
        ],
        registry: [],
      },
      "LocalEpochOutOfRange",
    )
  })
})

describe("error replies", () => {
  it("round-trip through the error body", () => {
    const e = ApiError.failedPrecondition("NotBootstrapped", "not yet")
    const back = decodeErrorReply(encodeErrorReply(ApiError.toBody(e)))
    expect(back._tag).toBe("FailedPrecondition")
    expect(back.details).toEqual({ reason: "NotBootstrapped" })
  })
  it("an unreadable error body is Internal", () => {
    expect(decodeErrorReply(enc("nope"))._tag).toBe("Internal")
    expect(decodeErrorReply(enc({ error: { code: "Weird", message: "x" } }))._tag).toBe("Internal")
  })
})
