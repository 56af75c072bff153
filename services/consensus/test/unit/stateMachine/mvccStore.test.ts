import * as path from "node:path"
import { ClassicLevel } from "classic-level"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import {
  ApplyOrderError,
  IncompleteInstall,
  InvalidArgument,
  StoreLocked,
  StoreUnavailable,
  ValueHeaderError,
  VersionCompacted,
} from "../../../src/stateMachine/errors.ts"
import { encodeU64, installMarkerKey } from "../../../src/stateMachine/keySpace.ts"
import { MvccStore, type Version } from "../../../src/stateMachine/mvccStore.ts"
import { EncryptionState, encodeStoredValue } from "../../../src/stateMachine/valueHeader.ts"
import { versionKey } from "../../../src/stateMachine/versionKey.ts"
import { makeTempDir } from "./tempDir.ts"

const utf8 = new TextEncoder()
const text = (b: Uint8Array): string => new TextDecoder().decode(b)
const clear = (s: string): Uint8Array => encodeStoredValue(EncryptionState.Cleartext, utf8.encode(s))
const sealed = (bytes: number[]): Uint8Array =>
  encodeStoredValue(EncryptionState.StorageEnvelope, Uint8Array.from(bytes))
const keysOf = (items: readonly Version[]): string[] => items.map((i) => i.key)

let tmp: { dir: string; cleanup: () => Promise<void> }
let dbPath: string
let store: MvccStore

beforeEach(async () => {
  tmp = await makeTempDir()
  dbPath = path.join(tmp.dir, "consensus", "state", "db")
  store = await MvccStore.open(dbPath)
})

afterEach(async () => {
  await store.close()
  await tmp.cleanup()
})

/** Applies entries one per index, all in one batch. */
const apply = async (
  entries: Array<[index: number, ops: Array<["put", string, Uint8Array] | ["del", string]>]>,
  sync = false,
): Promise<void> => {
  const b = store.batch()
  for (const [index, ops] of entries) {
    for (const op of ops) {
      if (op[0] === "put") b.put(op[1], index, op[2])
      else b.delete(op[1], index)
    }
    b.setApplied(index)
  }
  await b.commit({ sync })
}

describe("MVCC reads", () => {
  it("returns the newest version ≤ atIndex; a tombstone reads as absent", async () => {
    await apply([
      [1, [["put", "k", clear("v1")]]],
      [2, [["put", "other", clear("o")]]],
      [3, [["put", "k", clear("v3")]]],
      [5, [["del", "k"]]],
      [7, [["put", "k", sealed([1, 2, 3])]]],
    ])
    expect(store.appliedIndex()).toBe(7)
    const at = async (i?: number) => {
      const r = await store.get("k", i === undefined ? {} : { atIndex: i })
      return r.found ? [r.version, r.header.encryptionState, [...r.payload]] : "absent"
    }
    expect(await at(0)).toBe("absent")
    expect(await at(1)).toEqual([1, 0, [...utf8.encode("v1")]])
    expect(await at(2)).toEqual([1, 0, [...utf8.encode("v1")]])
    expect(await at(3)).toEqual([3, 0, [...utf8.encode("v3")]])
    expect(await at(4)).toEqual([3, 0, [...utf8.encode("v3")]])
    expect(await at(5)).toBe("absent")
    expect(await at(6)).toBe("absent")
    expect(await at(7)).toEqual([7, 1, [1, 2, 3]])
    expect(await at(100)).toEqual([7, 1, [1, 2, 3]])
    expect(await at()).toEqual([7, 1, [1, 2, 3]])
    expect((await store.get("missing")).found).toBe(false)
    const r = await store.get("k")
    expect(r.found && [...r.storageKey]).toEqual([...versionKey("k", 7)])
  })

  it("keeps the empty value distinct from absence", async () => {
    await apply([[1, [["put", "e", clear("")]]]])
    const r = await store.get("e")
    expect(r.found && r.payload.length).toBe(0)
  })

  it("reports a reserved header as a typed error naming key and version", async () => {
    // Written behind the store's back: the store itself refuses such values.
    await store.close()
    const raw = new ClassicLevel<Uint8Array, Uint8Array>(dbPath, {
      keyEncoding: "view",
      valueEncoding: "view",
    })
    await raw.put(versionKey("bad", 3), Uint8Array.of(0x04, 0xaa))
    await raw.close()
    store = await MvccStore.open(dbPath)
    const err = await store.get("bad").catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ValueHeaderError)
    expect(err).toMatchObject({ reason: "ReservedEncryptionState", key: "bad", version: 3 })
    await expect(store.scan({ limit: 10 })).rejects.toBeInstanceOf(ValueHeaderError)
  })
})

describe("scan (CONTRACT §2)", () => {
  const keys = [
    "",
    "a",
    "a\u0000",
    "a\u0000b",
    "a\u0001",
    "ab",
    "abc",
    "b",
    "é",
    "€",
    "😀",
    "\uff61",
    "\u007f",
  ]

  beforeEach(async () => {
    await apply(keys.map((k, i) => [i + 1, [["put", k, clear(`v${i + 1}`)]]]))
  })

  const utf8Sorted = (ks: string[]): string[] =>
    [...ks].sort((x, y) => Buffer.compare(Buffer.from(x, "utf8"), Buffer.from(y, "utf8")))

  it("returns keys in ascending UTF-8 byte order (not UTF-16 order)", async () => {
    const r = await store.scan({ limit: 100 })
    expect(keysOf(r.items)).toEqual(utf8Sorted(keys))
    expect(r.more).toBe(false)
    // UTF-16 code units put "😀" (D83D) before "｡" (FF61); UTF-8 bytes put "｡" (EF) before "😀" (F0).
    expect(keysOf(r.items).slice(-4)).toEqual(["é", "€", "\uff61", "😀"])
  })

  it("pages with after (strictly greater) and limit, with more", async () => {
    const all = utf8Sorted(keys)
    const seen: string[] = []
    let after: string | undefined
    for (;;) {
      const r = await store.scan({ limit: 3, ...(after === undefined ? {} : { after }) })
      seen.push(...keysOf(r.items))
      if (!r.more) break
      expect(r.items.length).toBe(3)
      after = r.items.at(-1)!.key
    }
    expect(seen).toEqual(all)
    expect(keysOf((await store.scan({ after: "a", limit: 2 })).items)).toEqual(["a\u0000", "a\u0000b"])
    expect((await store.scan({ after: "😀", limit: 2 })).items).toEqual([])
    const lastTwo = await store.scan({ after: "é", limit: 2 })
    expect([keysOf(lastTwo.items), lastTwo.more]).toEqual([["€", "\uff61"], true])
  })

  it("filters by prefix, including prefixes ending in 0x00", async () => {
    expect(keysOf((await store.scan({ prefix: "a", limit: 100 })).items)).toEqual([
      "a",
      "a\u0000",
      "a\u0000b",
      "a\u0001",
      "ab",
      "abc",
    ])
    expect(keysOf((await store.scan({ prefix: "a\u0000", limit: 100 })).items)).toEqual([
      "a\u0000",
      "a\u0000b",
    ])
    expect(keysOf((await store.scan({ prefix: "ab", after: "ab", limit: 100 })).items)).toEqual(["abc"])
    const r = await store.scan({ prefix: "a", limit: 2 })
    expect([keysOf(r.items), r.more]).toEqual([["a", "a\u0000"], true])
    expect((await store.scan({ prefix: "zz", limit: 5 })).items).toEqual([])
    expect(keysOf((await store.scan({ prefix: "", limit: 100 })).items).length).toBe(keys.length)
  })

  it("stops early before maxBytes with more: true, and always returns one item", async () => {
    const r = await store.scan({ limit: 100, maxBytes: 7 })
    // "" + "v1" = 2 bytes, "a" + "v2" = 3 bytes, "a\0" + "v3" = 4 bytes
    expect([keysOf(r.items), r.more]).toEqual([["", "a"], true])
    const one = await store.scan({ limit: 100, maxBytes: 1 })
    expect([keysOf(one.items), one.more]).toEqual([[""], true])
  })

  it("skips tombstones, reads at an index, and says more only when a visible key follows", async () => {
    const b = store.batch()
    b.delete("b", 20)
    b.delete("é", 20)
    b.put("a", 20, clear("new"))
    b.setApplied(20)
    await b.commit()
    const r = await store.scan({ after: "abc", limit: 1 })
    expect([keysOf(r.items), r.more]).toEqual([["\u007f"], true])
    const afterDel = await store.scan({ after: "\u007f", limit: 1 })
    expect([keysOf(afterDel.items), afterDel.more]).toEqual([["€"], true])
    const onlyTombstonesAfter = await store.scan({ after: "abc", prefix: "b", limit: 1 })
    expect([keysOf(onlyTombstonesAfter.items), onlyTombstonesAfter.more]).toEqual([[], false])
    const before = await store.scan({ prefix: "b", limit: 5, atIndex: 19 })
    expect(keysOf(before.items)).toEqual(["b"])
    const a = await store.scan({ prefix: "a", limit: 1 })
    expect(text(a.items[0]!.payload)).toBe("new")
    const a19 = await store.scan({ prefix: "a", limit: 1, atIndex: 19 })
    expect(text(a19.items[0]!.payload)).toBe("v2")
    expect((await store.scan({ limit: 100, atIndex: 1 })).items.map((i) => i.key)).toEqual([""])
    expect((await store.scan({ limit: 100, atIndex: 0 })).items).toEqual([])
  })

  it("steps over many versions of one key", async () => {
    const b = store.batch()
    for (let i = 100; i < 160; i++) {
      b.put("a", i, clear(`a${i}`))
      b.setApplied(i)
    }
    await b.commit()
    const r = await store.scan({ prefix: "a", limit: 2, atIndex: 130 })
    expect(r.items.map((i) => [i.key, i.version])).toEqual([
      ["a", 130],
      ["a\u0000", 3],
    ])
    const latest = await store.scan({ prefix: "a", limit: 2 })
    expect(latest.items.map((i) => [i.key, i.version])).toEqual([
      ["a", 159],
      ["a\u0000", 3],
    ])
  })

  it("refuses bad arguments", async () => {
    await expect(store.scan({ limit: 0 })).rejects.toBeInstanceOf(InvalidArgument)
    await expect(store.scan({ limit: 1, maxBytes: 0 })).rejects.toBeInstanceOf(InvalidArgument)
    await expect(store.scan({ limit: 1, after: "\udc00" })).rejects.toBeInstanceOf(InvalidArgument)
  })
})

describe("apply batches", () => {
  it("commits many entries and their applied index in one batch; it survives reopen", async () => {
    const b = store.batch()
    b.put("x", 1, clear("1"))
    b.setApplied(1)
    b.recordRejection(2, "MalformedEntry", "bad body")
    b.setApplied(2)
    b.putMeta("cluster_id", utf8.encode("c0ffee"))
    b.put("y", 3, clear("3"))
    b.setApplied(3)
    expect(store.appliedIndex()).toBe(0)
    await b.commit({ sync: true })
    expect(store.appliedIndex()).toBe(3)
    await store.close()
    store = await MvccStore.open(dbPath)
    expect(store.appliedIndex()).toBe(3)
    expect((await store.get("x")).found).toBe(true)
    expect((await store.get("y")).found).toBe(true)
    expect(await store.rejection(2)).toEqual({ code: "MalformedEntry", reason: "bad body" })
    expect(await store.rejection(1)).toBeUndefined()
    expect(text((await store.getMeta("cluster_id"))!)).toBe("c0ffee")
    expect(await store.getMeta("raft_membership")).toBeUndefined()
  })

  it("an uncommitted batch leaves nothing", async () => {
    await apply([[1, [["put", "a", clear("1")]]]])
    const b = store.batch()
    b.put("a", 2, clear("2"))
    b.put("b", 2, clear("2"))
    b.setApplied(2)
    await store.close()
    store = await MvccStore.open(dbPath)
    expect(store.appliedIndex()).toBe(1)
    const a = await store.get("a")
    expect(a.found && a.version).toBe(1)
    expect((await store.get("b")).found).toBe(false)
  })

  it("several ops on one key at one index: the last wins; reads in the batch see its writes", async () => {
    await apply([[1, [["put", "k", clear("old")]]]])
    const b = store.batch()
    b.put("k", 2, clear("first"))
    expect(text(((await b.get("k")) as Version).payload)).toBe("first")
    b.delete("k", 2)
    expect((await b.get("k")).found).toBe(false)
    b.put("k", 2, clear("last"))
    b.put("j", 2, clear("j"))
    b.delete("j", 2)
    b.putMeta("m", Uint8Array.of(1))
    expect(await b.getMeta("m")).toEqual(Uint8Array.of(1))
    b.deleteMeta("m")
    expect(await b.getMeta("m")).toBeUndefined()
    b.setApplied(2)
    expect((await store.get("k")).found && text(((await store.get("k")) as Version).payload)).toBe("old")
    await b.commit()
    const k = await store.get("k")
    expect(k.found && [k.version, text(k.payload)]).toEqual([2, "last"])
    expect((await store.get("j")).found).toBe(false)
    expect(await store.getMeta("m")).toBeUndefined()
    expect((await store.get("k", { atIndex: 1 })).found).toBe(true)
  })

  it("enforces apply order and refuses a committed batch", async () => {
    await apply([[5, [["put", "k", clear("5")]]]])
    const b = store.batch()
    expect(() => b.put("k", 5, clear("x"))).toThrow(ApplyOrderError)
    expect(() => b.setApplied(5)).toThrow(ApplyOrderError)
    b.put("k", 7, clear("7"))
    expect(() => b.put("k", 6, clear("6"))).toThrow(ApplyOrderError)
    expect(() => b.setApplied(6)).toThrow(ApplyOrderError)
    await expect(b.commit()).rejects.toBeInstanceOf(ApplyOrderError) // effects without setApplied
    const c = store.batch()
    c.put("k", 6, clear("6"))
    c.setApplied(6)
    expect(() => c.put("k", 6, clear("again"))).toThrow(ApplyOrderError)
    await c.commit()
    await expect(c.commit()).rejects.toBeInstanceOf(InvalidArgument)
    expect(() => c.put("k", 9, clear("9"))).toThrow(InvalidArgument)
    // A batch built before another one committed cannot commit stale effects.
    const stale1 = store.batch()
    const stale2 = store.batch()
    stale1.put("k", 7, clear("7"))
    stale1.setApplied(7)
    stale2.put("k", 7, clear("other"))
    stale2.setApplied(7)
    await stale1.commit()
    await expect(stale2.commit()).rejects.toBeInstanceOf(ApplyOrderError)
    const k = await store.get("k")
    expect(k.found && text(k.payload)).toBe("7")
    expect(() => store.batch().put("k", 8, Uint8Array.of(0x01))).toThrow(InvalidArgument)
    expect(() => store.batch().put("k", 8, Uint8Array.of(0x06))).toThrow(ValueHeaderError)
  })

  it("a batch of only an applied index (a no-op entry) advances it", async () => {
    const b = store.batch()
    b.setApplied(4)
    await b.commit()
    expect(store.appliedIndex()).toBe(4)
  })
})

describe("rewrite in place", () => {
  it("replaces the bytes at the same storage key, with no new version", async () => {
    await apply([
      [1, [["put", "k", clear("plain")]]],
      [2, [["del", "t"]]],
    ])
    const before = await store.get("k")
    expect(await store.rewriteInPlace("k", 1, sealed([9, 9]), { expected: clear("other") })).toBe(false)
    expect(await store.rewriteInPlace("k", 1, sealed([9, 9]), { expected: clear("plain") })).toBe(true)
    const after = await store.get("k")
    expect(after.found && [after.version, after.header.encryptionState, [...after.payload]]).toEqual([
      1,
      1,
      [9, 9],
    ])
    expect(before.found && after.found && Buffer.compare(before.storageKey, after.storageKey)).toBe(0)
    expect(await store.rewriteInPlace("k", 2, sealed([1]))).toBe(false) // no such version
    expect(await store.rewriteInPlace("t", 2, sealed([1]))).toBe(false) // tombstone
    expect((await store.get("t")).found).toBe(false)
    await expect(store.rewriteInPlace("k", 1, Uint8Array.of(0x01))).rejects.toBeInstanceOf(InvalidArgument)
    expect(store.appliedIndex()).toBe(2)
    let n = 0
    for await (const _ of store.iterateVersions()) n++
    expect(n).toBe(2)
  })
})

describe("lifecycle", () => {
  it("a second open of the same directory is StoreLocked", async () => {
    await expect(MvccStore.open(dbPath)).rejects.toBeInstanceOf(StoreLocked)
  })

  it("a closed store refuses reads and writes", async () => {
    await store.close()
    await expect(store.get("k")).rejects.toBeInstanceOf(StoreUnavailable)
    expect(() => store.batch()).toThrow(StoreUnavailable)
    store = await MvccStore.open(dbPath)
  })

  it("a leftover install marker is IncompleteInstall on open; the guarded store refuses everything", async () => {
    await apply([[3, [["put", "k", clear("v")]]]])
    await store.close()
    const raw = new ClassicLevel<Uint8Array, Uint8Array>(dbPath, {
      keyEncoding: "view",
      valueEncoding: "view",
    })
    await raw.put(installMarkerKey, encodeU64(40))
    await raw.close()
    const err = await MvccStore.open(dbPath).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(IncompleteInstall)
    expect(err).toMatchObject({ snapshotIndex: 40 })
    store = await MvccStore.open(dbPath, { allowIncompleteInstall: true })
    expect(store.state).toBe("incomplete-install")
    await expect(store.get("k")).rejects.toBeInstanceOf(IncompleteInstall)
    await expect(store.scan({ limit: 1 })).rejects.toBeInstanceOf(IncompleteInstall)
    expect(() => store.batch()).toThrow(IncompleteInstall)
    await expect(store.gc(1)).rejects.toBeInstanceOf(IncompleteInstall)
    await expect(store.exportSnapshot(path.join(tmp.dir, "snaps"))).rejects.toBeInstanceOf(IncompleteInstall)
  })

  it("reads below the GC horizon are refused", async () => {
    await apply([
      [1, [["put", "k", clear("1")]]],
      [9, [["put", "k", clear("9")]]],
    ])
    const r = await store.gc(5)
    expect(r.horizon).toBe(5)
    await expect(store.get("k", { atIndex: 4 })).rejects.toBeInstanceOf(VersionCompacted)
    await expect(store.scan({ limit: 1, atIndex: 4 })).rejects.toBeInstanceOf(VersionCompacted)
    expect((await store.get("k", { atIndex: 5 })).found).toBe(true)
    // never moves down; clamped to the applied index; persisted
    expect((await store.gc(3)).horizon).toBe(5)
    expect((await store.gc(1000)).horizon).toBe(9)
    await store.close()
    store = await MvccStore.open(dbPath)
    expect(store.gcHorizon()).toBe(9)
  })
})

describe("iteration and retention of records", () => {
  it("iterateVersions lists every version, tombstones included, and resumes after a storage key", async () => {
    await apply([
      [1, [["put", "b", clear("b1")]]],
      [
        2,
        [
          ["put", "a", clear("a2")],
          ["del", "b"],
        ],
      ],
      [3, [["put", "a", sealed([3])]]],
    ])
    const all: string[] = []
    for await (const v of store.iterateVersions())
      all.push(`${v.key}@${v.index}:${v.header.tombstone ? "t" : v.header.encryptionState}`)
    expect(all).toEqual(["a@3:1", "a@2:0", "b@2:t", "b@1:0"])
    const rest: string[] = []
    for await (const v of store.iterateVersions({ after: versionKey("a", 2) }))
      rest.push(`${v.key}@${v.index}`)
    expect(rest).toEqual(["b@2", "b@1"])
  })

  it("pruneRejections drops old verdicts, bounded per call", async () => {
    const b = store.batch()
    for (let i = 1; i <= 10; i++) {
      b.recordRejection(i, "MalformedEntry", `r${i}`)
      b.setApplied(i)
    }
    await b.commit()
    expect(await store.pruneRejections(6, { maxDeletes: 3 })).toBe(3)
    expect(await store.pruneRejections(6, { maxDeletes: 3 })).toBe(2)
    expect(await store.pruneRejections(6)).toBe(0)
    expect(await store.rejection(5)).toBeUndefined()
    expect(await store.rejection(6)).toEqual({ code: "MalformedEntry", reason: "r6" })
  })
})
