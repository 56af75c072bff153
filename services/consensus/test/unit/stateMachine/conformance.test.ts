// The LevelDB store against the naive in-memory model (model.ts), on random
// command sequences: applies of many entries per batch, reads at random
// indexes, scans with every option, bounded GC at random horizons, rewrites,
// reopen, and snapshot export → install. Every read at or above the GC
// horizon must answer exactly as the model (which never collects anything).
import * as path from "node:path"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { VersionCompacted } from "../../../src/stateMachine/errors.ts"
import { MvccStore, type ReadResult, type Version } from "../../../src/stateMachine/mvccStore.ts"
import { EncryptionState, encodeStoredValue } from "../../../src/stateMachine/valueHeader.ts"
import { Model, type ModelItem } from "./model.ts"
import { makeTempDir } from "./tempDir.ts"

const utf8 = new TextEncoder()
const KEYS = ["", "a", "a\u0000", "a\u0000b", "a\u0001", "ab", "b", "é", "😀", "\uff61"]
const PREFIXES = ["", "a", "a\u0000", "b", "é", "z"]

type Op =
  | { readonly t: "put"; readonly key: string; readonly sealed: boolean; readonly value: Uint8Array }
  | { readonly t: "del"; readonly key: string }
  | { readonly t: "meta"; readonly name: string; readonly value: Uint8Array }
  | { readonly t: "reject"; readonly code: string }

type Cmd =
  | {
      readonly c: "apply"
      readonly entries: readonly (readonly Op[])[]
      readonly gap: number
      readonly commit: boolean
    }
  | { readonly c: "get"; readonly key: string; readonly back: number | undefined }
  | {
      readonly c: "scan"
      readonly prefix: string | undefined
      readonly after: string | undefined
      readonly limit: number
      readonly maxBytes: number | undefined
      readonly back: number | undefined
    }
  | {
      readonly c: "gc"
      readonly back: number
      readonly maxDeletes: number
      readonly maxScan: number
      readonly rounds: number
    }
  | { readonly c: "rewrite"; readonly key: string; readonly pick: number }
  | { readonly c: "reopen" }
  | { readonly c: "snapshot" }

const keyArb = fc.constantFrom(...KEYS)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant("put" as const),
      key: keyArb,
      sealed: fc.boolean(),
      value: fc.uint8Array({ maxLength: 12 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant("del" as const), key: keyArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("meta" as const),
      name: fc.constantFrom("cluster_id", "encryption_state"),
      value: fc.uint8Array({ maxLength: 4 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant("reject" as const),
      code: fc.constantFrom("MalformedEntry", "UnknownEntryTag"),
    }),
  },
)
const backArb = fc.option(fc.nat({ max: 30 }), { nil: undefined })
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      c: fc.constant("apply" as const),
      entries: fc.array(fc.array(opArb, { maxLength: 4 }), { minLength: 1, maxLength: 6 }),
      gap: fc.nat({ max: 2 }),
      commit: fc.boolean().map((b) => b || Math.random() < 0.8),
    }),
  },
  { weight: 4, arbitrary: fc.record({ c: fc.constant("get" as const), key: keyArb, back: backArb }) },
  {
    weight: 4,
    arbitrary: fc.record({
      c: fc.constant("scan" as const),
      prefix: fc.option(fc.constantFrom(...PREFIXES), { nil: undefined }),
      after: fc.option(keyArb, { nil: undefined }),
      limit: fc.integer({ min: 1, max: 5 }),
      maxBytes: fc.option(fc.integer({ min: 1, max: 40 }), { nil: undefined }),
      back: backArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      c: fc.constant("gc" as const),
      back: fc.nat({ max: 15 }),
      maxDeletes: fc.integer({ min: 1, max: 4 }),
      maxScan: fc.integer({ min: 1, max: 8 }),
      rounds: fc.integer({ min: 1, max: 40 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ c: fc.constant("rewrite" as const), key: keyArb, pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ c: "reopen" as const }) },
  { weight: 1, arbitrary: fc.constant({ c: "snapshot" as const }) },
)

const stored = (op: { sealed: boolean; value: Uint8Array }): Uint8Array =>
  encodeStoredValue(op.sealed ? EncryptionState.StorageEnvelope : EncryptionState.Cleartext, op.value)

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex")
const fromStore = (r: ReadResult): string =>
  r.found ? `${r.version}:${r.header.encryptionState}:${hex(r.payload)}` : "absent"
const fromModel = (m: ModelItem | undefined): string =>
  m === undefined ? "absent" : `${m.version}:${m.stored[0]! >> 1}:${hex(m.stored.subarray(1))}`
const itemOf = (v: Version): string => `${JSON.stringify(v.key)}@${v.version}:${hex(v.payload)}`

/** CONTRACT §2 paging over the model's visible items. */
const modelScan = (
  all: ModelItem[],
  limit: number,
  maxBytes: number | undefined,
): { items: string[]; more: boolean } => {
  const items: ModelItem[] = []
  let bytes = 0
  for (const it of all) {
    const cost = utf8.encode(it.key).length + it.stored.length - 1
    if (items.length >= limit || (items.length > 0 && maxBytes !== undefined && bytes + cost > maxBytes))
      break
    items.push(it)
    bytes += cost
  }
  return {
    items: items.map((i) => `${JSON.stringify(i.key)}@${i.version}:${hex(i.stored.subarray(1))}`),
    more: all.length > items.length,
  }
}

const run = async (cmds: readonly Cmd[]): Promise<void> => {
  const tmp = await makeTempDir()
  let generation = 0
  const location = (): string => path.join(tmp.dir, `db${generation}`)
  let store = await MvccStore.open(location())
  const model = new Model()
  let next = 1
  try {
    for (const cmd of cmds) {
      const at = (back: number | undefined): number | undefined =>
        back === undefined ? undefined : Math.max(0, model.applied - back)
      switch (cmd.c) {
        case "apply": {
          const b = store.batch()
          const effects: Array<() => void> = []
          let index = next + cmd.gap
          for (const ops of cmd.entries) {
            const i = index
            for (const op of ops) {
              switch (op.t) {
                case "put":
                  b.put(op.key, i, stored(op))
                  effects.push(() => model.write(op.key, i, stored(op)))
                  break
                case "del":
                  b.delete(op.key, i)
                  effects.push(() => model.write(op.key, i, Uint8Array.of(1)))
                  break
                case "meta":
                  b.putMeta(op.name, op.value)
                  effects.push(() => model.meta.set(op.name, op.value))
                  break
                case "reject":
                  b.recordRejection(i, op.code, `at ${i}`)
                  effects.push(() => model.rejections.set(i, { code: op.code, reason: `at ${i}` }))
                  break
              }
            }
            b.setApplied(i)
            index++
          }
          if (cmd.commit) {
            await b.commit()
            for (const e of effects) e()
            model.applied = index - 1
            next = index
          }
          break
        }
        case "get": {
          const i = at(cmd.back)
          if (i !== undefined && i < store.gcHorizon()) {
            await expect(store.get(cmd.key, { atIndex: i })).rejects.toBeInstanceOf(VersionCompacted)
            break
          }
          const got = await store.get(cmd.key, i === undefined ? {} : { atIndex: i })
          expect(fromStore(got), `get ${JSON.stringify(cmd.key)} at ${i}`).toBe(
            fromModel(model.get(cmd.key, i)),
          )
          break
        }
        case "scan": {
          const i = at(cmd.back)
          const opts = {
            limit: cmd.limit,
            ...(cmd.prefix === undefined ? {} : { prefix: cmd.prefix }),
            ...(cmd.after === undefined ? {} : { after: cmd.after }),
            ...(cmd.maxBytes === undefined ? {} : { maxBytes: cmd.maxBytes }),
            ...(i === undefined ? {} : { atIndex: i }),
          }
          if (i !== undefined && i < store.gcHorizon()) {
            await expect(store.scan(opts)).rejects.toBeInstanceOf(VersionCompacted)
            break
          }
          const got = await store.scan(opts)
          const want = modelScan(
            model.visible({
              ...(cmd.prefix === undefined ? {} : { prefix: cmd.prefix }),
              ...(cmd.after === undefined ? {} : { after: cmd.after }),
              ...(i === undefined ? {} : { at: i }),
            }),
            cmd.limit,
            cmd.maxBytes,
          )
          expect({ items: got.items.map(itemOf), more: got.more }, `scan ${JSON.stringify(opts)}`).toEqual(
            want,
          )
          break
        }
        case "gc": {
          const h = Math.max(0, model.applied - cmd.back)
          for (let r = 0; r < cmd.rounds; r++) {
            const res = await store.gc(h, { maxDeletes: cmd.maxDeletes, maxScan: cmd.maxScan })
            expect(res.horizon).toBeLessThanOrEqual(model.applied)
            if (res.passComplete) break
          }
          break
        }
        case "rewrite": {
          const list = model.versions.get(cmd.key) ?? []
          const v = list[cmd.pick % Math.max(1, list.length)]
          if (v === undefined) break
          const next = encodeStoredValue(EncryptionState.StorageEnvelope, Uint8Array.of(0xee, v.index & 0xff))
          const ok = await store.rewriteInPlace(cmd.key, v.index, next)
          // GC may have collected it already; a tombstone is never rewritten.
          if (ok) {
            expect(v.stored[0]).not.toBe(0x01)
            model.write(cmd.key, v.index, next)
          }
          break
        }
        case "reopen":
          await store.close()
          store = await MvccStore.open(location())
          expect(store.appliedIndex()).toBe(model.applied)
          break
        case "snapshot": {
          const snap = await store.exportSnapshot(path.join(tmp.dir, "snapshots"))
          expect(snap.index).toBe(model.applied)
          const horizon = store.gcHorizon()
          await store.close()
          generation++
          store = await MvccStore.open(location())
          await store.installSnapshot(snap.path)
          expect(store.appliedIndex()).toBe(model.applied)
          expect(store.gcHorizon()).toBe(horizon)
          break
        }
      }
    }
    // Final full comparison at every index at or above the horizon.
    expect(store.appliedIndex()).toBe(model.applied)
    for (let i = store.gcHorizon(); i <= model.applied; i++) {
      for (const k of KEYS) {
        expect(fromStore(await store.get(k, { atIndex: i })), `final get ${JSON.stringify(k)} at ${i}`).toBe(
          fromModel(model.get(k, i)),
        )
      }
    }
    for (const [name, value] of model.meta) expect(await store.getMeta(name)).toEqual(value)
    for (let i = 0; i <= model.applied + 1; i++) {
      expect(await store.rejection(i)).toEqual(model.rejections.get(i))
    }
  } finally {
    await store.close()
    await tmp.cleanup()
  }
}

describe("MvccStore conforms to the in-memory model", () => {
  it("on random command sequences", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmdArb, { minLength: 1, maxLength: 40 }), (cmds) => run(cmds)),
      { numRuns: 60 },
    )
  })
})

describe("GC (SPEC §2.4)", () => {
  const historyArb = fc.array(fc.array(fc.tuple(keyArb, fc.boolean()), { maxLength: 3 }), {
    minLength: 1,
    maxLength: 40,
  })

  it("never changes a read at or above the horizon, and a full pass leaves exactly what is visible there", async () => {
    await fc.assert(
      fc.asyncProperty(
        historyArb,
        fc.nat(),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 10 }),
        fc.array(fc.tuple(keyArb, fc.boolean()), { maxLength: 6 }),
        async (history, hPick, maxDeletes, maxScan, during) => {
          const tmp = await makeTempDir()
          const store = await MvccStore.open(path.join(tmp.dir, "db"))
          const model = new Model()
          try {
            const b = store.batch()
            history.forEach((ops, n) => {
              const i = n + 1
              for (const [key, isPut] of ops) {
                const v = isPut ? encodeStoredValue(0, utf8.encode(`${key}@${i}`)) : Uint8Array.of(1)
                if (isPut) b.put(key, i, v)
                else b.delete(key, i)
                model.write(key, i, v)
              }
              b.setApplied(i)
            })
            await b.commit()
            model.applied = history.length
            const h = hPick % (history.length + 1)
            const check = async (all: boolean): Promise<void> => {
              const points = all
                ? Array.from({ length: model.applied - h + 1 }, (_, j) => h + j)
                : [h, h + 1, Math.floor((h + model.applied) / 2), model.applied].filter(
                    (i) => i <= model.applied,
                  )
              for (const i of points) {
                for (const k of KEYS) {
                  expect(fromStore(await store.get(k, { atIndex: i })), `${JSON.stringify(k)} at ${i}`).toBe(
                    fromModel(model.get(k, i)),
                  )
                }
                const scan = await store.scan({ limit: 100, atIndex: i })
                expect(scan.items.map(itemOf)).toEqual(
                  modelScan(model.visible({ at: i }), 100, undefined).items,
                )
              }
            }
            // Bounded rounds, with reads and new entries between them (GC runs beside apply).
            let n = model.applied
            for (let round = 0, passes = 0; passes < 2; round++) {
              const r = await store.gc(h, { maxDeletes, maxScan })
              expect(r.deleted).toBeLessThanOrEqual(maxDeletes + 1)
              if (r.passComplete) passes++
              await check(false)
              const extra = during[round]
              if (extra !== undefined) {
                n++
                const nb = store.batch()
                const v = extra[1] ? encodeStoredValue(0, utf8.encode(`late${n}`)) : Uint8Array.of(1)
                if (extra[1]) nb.put(extra[0], n, v)
                else nb.delete(extra[0], n)
                nb.setApplied(n)
                await nb.commit()
                model.write(extra[0], n, v)
                model.applied = n
              }
              expect(round).toBeLessThan(10_000)
            }
            await check(true)
            // Two complete passes at h: exactly the versions a read at ≥ h can reach remain.
            const left: string[] = []
            for await (const v of store.iterateVersions()) left.push(`${JSON.stringify(v.key)}@${v.index}`)
            const want = model.retainedAfterGc(h).map((r) => `${JSON.stringify(r.key)}@${r.index}`)
            expect(left.sort()).toEqual(want.sort())
          } finally {
            await store.close()
            await tmp.cleanup()
          }
        },
      ),
      { numRuns: 60 },
    )
  })
})
