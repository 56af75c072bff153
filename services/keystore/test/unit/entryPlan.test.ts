// The deterministic part of apply, without I/O: same inputs → same verdict on
// every replica; a rejection changes nothing.
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { epochForCreatedDek } from "../../src/applier.ts"
import { planEntry } from "../../src/entryPlan.ts"
import { sessionEpochs } from "../../src/session.ts"
import { emptySidecar, type Sidecar } from "../../src/sidecarFile.ts"
import { bootstrap, control, N2, registration, rotate, SELF } from "./harness.ts"

const wrapped = Buffer.alloc(61, 1).toString("base64")
const boot: Sidecar = {
  ...emptySidecar,
  raft_applied_index: 2,
  active: { storage: 5, raft: 6 },
  keys: {
    "5": { purpose: "storage", wrapped, created: "2026-01-01T00:00:00.000Z", local_epoch: 3, retired: false },
    "6": { purpose: "raft", wrapped, created: "2026-01-01T00:00:00.000Z", local_epoch: 3, retired: false },
    "4": {
      purpose: "storage",
      wrapped: "",
      created: "2025-01-01T00:00:00.000Z",
      local_epoch: 1,
      retired: true,
    },
  },
}
const now = "2026-02-02T00:00:00.000Z"

const payloads = [
  bootstrap(7, 8, [{ full_node_id: SELF, local_epoch: 0 }]),
  registration(5, N2, 1),
  registration(4, N2, 1),
  registration(99, N2, 1),
  rotate("storage", 9, [{ full_node_id: SELF, local_epoch: 2 }]),
  rotate("raft", 5, []),
  control({ kind: "retire-dek", key_id: 5 }),
  control({ kind: "retire-dek", key_id: 4 }),
  control({ kind: "enable-storage-envelope" }),
  control({ kind: "enable-raft-envelope" }),
  control({ kind: "rewrap-deks", next_kek_id: "0".repeat(16), wraps: [] }),
]

describe("planEntry", () => {
  it("is a function of its inputs, and a rejection carries no change", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...payloads),
        fc.constantFrom(emptySidecar, boot),
        fc.integer({ min: 3, max: 1000 }),
        (payload, sidecar, index) => {
          const a = planEntry({ index, payload, sidecar, row: undefined, selfFullNodeId: SELF, now })
          const b = planEntry({ index, payload, sidecar, row: undefined, selfFullNodeId: SELF, now })
          expect(a).toEqual(b)
          // The verdict does not depend on which node computes it.
          const other = planEntry({ index, payload, sidecar, row: undefined, selfFullNodeId: N2, now })
          expect(other._tag).toBe(a._tag)
          if (a._tag === "Rejected" && other._tag === "Rejected") expect(other.code).toBe(a.code)
          if (a._tag === "Control") expect(a.sidecar.raft_applied_index).toBe(index)
        },
      ),
    )
  })

  it("verdicts on a bootstrapped sidecar", () => {
    const at = (p: (typeof payloads)[number]) =>
      planEntry({ index: 10, payload: p, sidecar: boot, row: undefined, selfFullNodeId: SELF, now })
    expect(at(payloads[0]!)).toMatchObject({ _tag: "Rejected", code: "AlreadyBootstrapped" })
    expect(at(payloads[1]!)).toMatchObject({ _tag: "Registration", outcome: "inserted" })
    expect(at(payloads[2]!)).toMatchObject({ _tag: "Rejected", code: "PreconditionFailed" })
    expect(at(payloads[3]!)).toMatchObject({ _tag: "Rejected", code: "PreconditionFailed" })
    const rot = at(payloads[4]!)
    expect(rot).toMatchObject({ _tag: "Control", kind: "rotate-dek", dropDeks: [9] })
    if (rot._tag === "Control") {
      expect(rot.sidecar.active).toEqual({ storage: 9, raft: 6 })
      expect(rot.sidecar.keys["9"]).toMatchObject({ local_epoch: 2, created: now, retired: false })
      expect(rot.created).toMatchObject([{ keyId: 9, purpose: "storage", batchEpoch: 2 }])
    }
    expect(at(payloads[5]!)).toMatchObject({ _tag: "Rejected", code: "PreconditionFailed" })
    expect(at(payloads[6]!)).toMatchObject({ _tag: "Rejected", code: "PreconditionFailed" })
    expect(at(payloads[7]!)).toMatchObject({ _tag: "Rejected", code: "PreconditionFailed" })
    expect(at(payloads[8]!)).toMatchObject({ _tag: "Control", kind: "enable-storage-envelope" })
    expect(at(payloads[9]!)).toMatchObject({ _tag: "Rejected", code: "PreconditionFailed" })
    expect(at(payloads[10]!)).toMatchObject({ _tag: "Rejected", code: "PreconditionFailed" })
  })
})

describe("epochs", () => {
  const session = { session_id: "a".repeat(32), public_key: "", floors: { "9": 4 }, floors_as_of_index: 10 }
  it("a created DEK: batch epoch when appended after the floors, else max(batch, floor)+1", () => {
    expect(epochForCreatedDek({ index: 11, keyId: 9, batchEpoch: 2, session })).toEqual({
      epoch: 2,
      registered: true,
    })
    expect(epochForCreatedDek({ index: 10, keyId: 9, batchEpoch: 2, session })).toEqual({
      epoch: 5,
      registered: false,
    })
    expect(epochForCreatedDek({ index: 11, keyId: 9, batchEpoch: undefined, session })).toEqual({
      epoch: 5,
      registered: false,
    })
    expect(epochForCreatedDek({ index: 11, keyId: 8, batchEpoch: undefined, session })).toEqual({
      epoch: 1,
      registered: false,
    })
    expect(epochForCreatedDek({ index: 11, keyId: 9, batchEpoch: 7, session: undefined })).toMatchObject({
      epoch: 7,
    })
  })

  it("a session: max(local, floor)+1 for unretired DEKs; past 0xFFFF left out", () => {
    const r = sessionEpochs(boot, { "5": 10, "6": 0xffff, "4": 100 })
    expect([...r.epochs]).toEqual([[5, 11]])
    expect(r.exhausted).toEqual([6])
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        (local, floor) => {
          const s: Sidecar = { ...boot, keys: { "5": { ...boot.keys["5"]!, local_epoch: local } } }
          const e = sessionEpochs(s, { "5": floor })
          const want = Math.max(local, floor) + 1
          if (want > 0xffff) expect(e.exhausted).toEqual([5])
          else {
            expect(e.epochs.get(5)).toBe(want)
            expect(want).toBeGreaterThan(local)
            expect(want).toBeGreaterThan(floor)
          }
        },
      ),
    )
  })
})
