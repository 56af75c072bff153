import { describe, expect, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import {
  ClusterEvent,
  clusterEventMsgId,
  decodeRequest,
  EncryptionEvent,
  encodeJson,
  encryptionEventMsgId,
  HaltCode,
  RefusedStartCode,
  RejectionCode,
} from "../src/mod.ts"

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v))

describe("events", () => {
  const decodeEnc = decodeRequest(EncryptionEvent)
  const decodeCluster = decodeRequest(ClusterEvent)
  const at = "2026-11-22T21:00:00.123Z"
  it("encryption event round-trips", () => {
    const e = {
      cluster_id: "00112233445566778899aabbccddeeff",
      node: "n1",
      index: 12,
      kind: "registration",
      key_ids: [5],
      outcome: "rejected",
      code: "LocalEpochRollback",
      at,
    }
    const r = decodeEnc(enc(e))
    expect(Result.isSuccess(r)).toBe(true)
    if (Result.isSuccess(r))
      expect(JSON.parse(new TextDecoder().decode(encodeJson(EncryptionEvent)(r.success)))).toEqual(e)
  })
  it("encryption event rejects halt codes, unknown kinds and bad timestamps", () => {
    const base = {
      cluster_id: "",
      node: "n1",
      index: 1,
      kind: "bootstrap",
      key_ids: [1, 2],
      outcome: "applied",
      at,
    }
    expect(Result.isSuccess(decodeEnc(enc(base)))).toBe(true)
    expect(Result.isFailure(decodeEnc(enc({ ...base, code: "KekMismatch" })))).toBe(true)
    expect(Result.isFailure(decodeEnc(enc({ ...base, kind: "wipe" })))).toBe(true)
    expect(Result.isFailure(decodeEnc(enc({ ...base, at: "yesterday" })))).toBe(true)
    expect(Result.isFailure(decodeEnc(enc({ ...base, cluster_id: "XYZ" })))).toBe(true)
  })
  it("cluster event carries halt, rejection or refused-start codes", () => {
    for (const code of [
      HaltCode.CorruptLog,
      RejectionCode.UnsealedAfterCutover,
      RefusedStartCode.DataDirLocked,
    ]) {
      const r = decodeCluster(
        enc({ cluster_id: "", node: "n1", kind: "halted", index: 3, code, reason: "x", at }),
      )
      expect(Result.isSuccess(r)).toBe(true)
    }
    expect(
      Result.isFailure(decodeCluster(enc({ cluster_id: "", node: "n1", kind: "leader", code: "Nope", at }))),
    ).toBe(true)
  })
  it("msg ids follow CONTRACT §5", () => {
    expect(encryptionEventMsgId("c1", "n1", 42)).toBe("c1:n1:42")
    expect(clusterEventMsgId("c1", "n1", "leader", 7)).toBe("c1:n1:leader:7")
  })
  it("code sets are closed and named like their values", () => {
    for (const o of [RejectionCode, HaltCode, RefusedStartCode]) {
      for (const [k, v] of Object.entries(o)) expect(k).toBe(v)
    }
    expect(Object.keys(RejectionCode)).toHaveLength(8)
    expect(Schema.is(ClusterEvent)({ cluster_id: "", node: "n1", kind: "resumed", at })).toBe(true)
  })
})
