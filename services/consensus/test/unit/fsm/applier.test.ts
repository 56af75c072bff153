import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { encodeEntry, Tag } from "@ekv/wire"
import fc from "fast-check"
import { afterEach, describe, expect, it } from "vitest"
import { Applier, type EntryOutcome } from "../../../src/fsm/applier.ts"
import type { DispatchOutcome, EncryptionDispatcher } from "../../../src/fsm/encryptionDispatcher.ts"
import { keystoreUnavailableDispatcher } from "../../../src/fsm/encryptionDispatcher.ts"
import { type FaultInjector, noFaults, testFaultInjector } from "../../../src/fsm/halt.ts"
import { cleartextSealer } from "../../../src/fsm/valueSealer.ts"
import { type Entry, encodeConfChange } from "../../../src/raft/mod.ts"
import { MvccStore } from "../../../src/stateMachine/mvccStore.ts"

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})

const open = async (opts: { faults?: FaultInjector; dispatcher?: EncryptionDispatcher } = {}) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "ekv-applier-"))
  dirs.push(dir)
  const store = await MvccStore.open(path.join(dir, "db"))
  const applier = new Applier(store, {
    sealer: cleartextSealer,
    dispatcher: opts.dispatcher ?? keystoreUnavailableDispatcher,
    faults: opts.faults ?? noFaults,
  })
  await applier.reload()
  return { dir, store, applier }
}

const u8 = (s: string) => new TextEncoder().encode(s)
const normal = (index: number, data: Uint8Array, term = 1): Entry => ({ index, term, type: "Normal", data })
const put = (index: number, key: string, value: string) =>
  normal(index, encodeEntry({ tag: Tag.KvOp, op: { op: "put", key, value: u8(value) } }))
const del = (index: number, key: string) =>
  normal(index, encodeEntry({ tag: Tag.KvOp, op: { op: "delete", key } }))
const meta = (index: number, id: string) =>
  normal(index, encodeEntry({ tag: Tag.ClusterMeta, cluster_id: id }))
const value = async (store: MvccStore, key: string) => {
  const r = await store.get(key)
  return r.found ? new TextDecoder().decode(r.payload) : undefined
}

describe("applier", () => {
  it("applies puts, deletes and batches and advances the applied index in the same batch", async () => {
    const { store, applier } = await open()
    const batch = normal(
      4,
      encodeEntry({
        tag: Tag.KvBatch,
        ops: [
          { op: "put", key: "x", value: u8("1") },
          { op: "put", key: "x", value: u8("2") },
          { op: "delete", key: "a" },
        ],
      }),
    )
    const r = await applier.apply([
      put(1, "a", "A"),
      del(2, "missing"),
      { index: 3, term: 1, type: "Empty", data: new Uint8Array() },
      batch,
    ])
    expect(r.halt).toBeNull()
    expect(r.appliedIndex).toBe(4)
    expect(store.appliedIndex()).toBe(4)
    expect(r.outcomes.map((o) => o.kind)).toEqual(["write", "write", "other", "write"])
    expect((r.outcomes[1] as EntryOutcome & { deleted: boolean }).deleted).toBe(false)
    expect((r.outcomes[3] as EntryOutcome & { deleted: boolean }).deleted).toBe(true)
    expect(await value(store, "x")).toBe("2")
    expect(await value(store, "a")).toBeUndefined()
    const stored = await store.get("x")
    expect(stored.found && stored.header.encryptionState).toBe(0)
    expect(stored.found && stored.version).toBe(4)
  })

  it("records decode failures and a second cluster_id as rejections, identically on two replicas", async () => {
    const log: Entry[] = [
      meta(1, "0123456789abcdef0123456789abcdef"),
      normal(2, Uint8Array.of(0x7f, 1, 2)),
      normal(3, Uint8Array.of(Tag.KvOp, 0x09)),
      meta(4, "ffffffffffffffffffffffffffffffff"),
      normal(5, encodeEntry({ tag: Tag.RaftEnvelope, envelope: new Uint8Array(40) })),
      put(6, "k", "v"),
      normal(7, new Uint8Array()),
    ]
    const a = await open()
    const b = await open()
    // Different batch boundaries on the two replicas: the same verdicts.
    await a.applier.apply(log)
    await b.applier.apply(log.slice(0, 2))
    await b.applier.apply(log.slice(2, 5))
    await b.applier.apply(log.slice(5))
    for (const { store, applier } of [a, b]) {
      expect(store.appliedIndex()).toBe(7)
      expect(applier.clusterId).toBe("0123456789abcdef0123456789abcdef")
    }
    const codes: (string | undefined)[] = []
    for (let i = 1; i <= 7; i++) {
      const ra = await a.store.rejection(i)
      const rb = await b.store.rejection(i)
      expect(ra).toEqual(rb)
      codes.push(ra?.code)
    }
    expect(codes).toEqual([
      undefined,
      "UnknownEntryTag",
      "MalformedEntry",
      "PreconditionFailed",
      "SealedBeforeCutover",
      undefined,
      "MalformedEntry",
    ])
    expect(await value(a.store, "k")).toBe("v")
  })

  it("gives identical state and verdicts for random logs on two replicas with different batching", async () => {
    const entryArb = fc.oneof(
      fc
        .record({ k: fc.constantFrom("a", "b", "c"), v: fc.string({ maxLength: 4 }) })
        .map((x) => ({ kind: "put" as const, ...x })),
      fc.constantFrom("a", "b", "c").map((k) => ({ kind: "del" as const, k })),
      fc.uint8Array({ maxLength: 6 }).map((b) => ({ kind: "raw" as const, b })),
    )
    await fc.assert(
      fc.asyncProperty(
        fc.array(entryArb, { minLength: 1, maxLength: 25 }),
        fc.array(fc.nat(5), { maxLength: 6 }),
        async (xs, cuts) => {
          const log = xs.map((x, i) =>
            x.kind === "put" ? put(i + 1, x.k, x.v) : x.kind === "del" ? del(i + 1, x.k) : normal(i + 1, x.b),
          )
          const a = await open()
          const b = await open()
          await a.applier.apply(log)
          let at = 0
          for (const c of cuts) {
            const n = Math.min(log.length, at + c)
            await b.applier.apply(log.slice(at, n))
            at = n
          }
          await b.applier.apply(log.slice(at))
          expect(b.store.appliedIndex()).toBe(log.length)
          for (let i = 1; i <= log.length; i++)
            expect(await a.store.rejection(i)).toEqual(await b.store.rejection(i))
          for (const k of ["a", "b", "c"]) expect(await value(a.store, k)).toEqual(await value(b.store, k))
          await a.store.close()
          await b.store.close()
        },
      ),
      { numRuns: 25 },
    )
  })

  it("is atomic: a batch that fails to commit leaves nothing applied", async () => {
    const { store, applier } = await open()
    await applier.apply([put(1, "a", "1")])
    // An entry at or below the applied index breaks apply order: the whole call fails.
    await expect(applier.apply([put(2, "b", "2"), put(2, "c", "3")])).rejects.toThrow()
    expect(store.appliedIndex()).toBe(1)
    expect(await value(store, "b")).toBeUndefined()
  })

  it("halts at a faulted entry without marking it applied, and resumes once the fault is cleared", async () => {
    const { dir, store, applier: _ } = await open()
    const faultFile = path.join(dir, "fault")
    const applier = new Applier(store, {
      sealer: cleartextSealer,
      dispatcher: keystoreUnavailableDispatcher,
      faults: testFaultInjector(faultFile, undefined),
    })
    await fs.writeFile(faultFile, "3")
    const log = [put(1, "a", "1"), put(2, "b", "2"), put(3, "c", "3"), put(4, "d", "4")]
    const r = await applier.apply(log)
    expect(r.halt).toMatchObject({ index: 3, reason: "KeystoreUnavailable", transient: true })
    expect(r.appliedIndex).toBe(2)
    expect(store.appliedIndex()).toBe(2)
    expect(await value(store, "c")).toBeUndefined()
    // Still halted on retry.
    expect((await applier.apply(log.slice(2))).halt?.index).toBe(3)
    await fs.rm(faultFile)
    const r2 = await applier.apply(log.slice(2))
    expect(r2.halt).toBeNull()
    expect(store.appliedIndex()).toBe(4)
    expect(await value(store, "d")).toBe("4")
  })

  it("halts on an encryption entry when the keystore is unavailable, committing what came before", async () => {
    const { store, applier } = await open()
    const reg = normal(
      2,
      encodeEntry({
        tag: Tag.Registration,
        registration: { dek_id: 7 as never, full_node_id: 5n, local_epoch: 1 },
      }),
    )
    const r = await applier.apply([put(1, "a", "1"), reg, put(3, "b", "2")])
    expect(r.halt).toMatchObject({ index: 2, reason: "KeystoreUnavailable" })
    expect(store.appliedIndex()).toBe(1)
    expect(await value(store, "a")).toBe("1")
  })

  it("records a keystore's deterministic rejection and applies after an applied outcome", async () => {
    const outcomes: DispatchOutcome[] = [
      { _tag: "Rejected", code: "LocalEpochRollback", reason: "epoch went backwards" },
      { _tag: "Applied" },
    ]
    const seen: number[] = []
    const dispatcher: EncryptionDispatcher = {
      dispatch: async (req) => {
        seen.push(req.prevEncryptionIndex)
        return outcomes.shift()!
      },
    }
    const { store, applier } = await open({ dispatcher })
    const reg = (i: number) =>
      normal(
        i,
        encodeEntry({
          tag: Tag.Registration,
          registration: { dek_id: 7 as never, full_node_id: 5n, local_epoch: i },
        }),
      )
    await applier.apply([reg(1), put(2, "a", "1"), reg(3)])
    expect(store.appliedIndex()).toBe(3)
    expect((await store.rejection(1))?.code).toBe("LocalEpochRollback")
    expect(await store.rejection(3)).toBeUndefined()
    expect(seen).toEqual([0, 1])
    expect(applier.lastEncryptionIndex).toBe(3)
  })

  it("keeps the membership as state-machine metadata through ConfChange entries", async () => {
    const { store, applier } = await open()
    const cc = (index: number, c: Parameters<typeof encodeConfChange>[0]): Entry => ({
      index,
      term: 1,
      type: "ConfChange",
      data: encodeConfChange(c),
    })
    await applier.apply([
      cc(1, { type: "Bootstrap", voters: ["n1", "n2", "n3"] }),
      cc(2, { type: "AddLearner", node: "n4" }),
      cc(3, { type: "AddLearner", node: "n4" }), // invalid: already a member → no-op
      cc(4, { type: "PromoteLearner", node: "n4" }),
      cc(5, { type: "RemoveNode", node: "n2" }),
      { index: 6, term: 1, type: "ConfChange", data: u8("garbage") },
    ])
    expect(store.appliedIndex()).toBe(6)
    expect(applier.membership).toEqual({ voters: ["n1", "n3", "n4"], learners: [] })
    const again = new Applier(store, {
      sealer: cleartextSealer,
      dispatcher: keystoreUnavailableDispatcher,
      faults: noFaults,
    })
    await again.reload()
    expect(again.membership).toEqual(applier.membership)
  })
})
