import { describe, expect, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import fc from "fast-check"
import {
  decodeEntry,
  type EntryPayload,
  EntryPayload as EntryPayloadSchema,
  encodeEntry,
  InvalidEntryPayload,
  type KeyId,
  MAX_BATCH_OPS,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  RAFT_ENVELOPE_ENTRY_HEADROOM,
  raftEnvelopeEntryInPlace,
  Tag,
} from "../src/mod.ts"

const isPayload = Schema.is(EntryPayloadSchema)
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex")
const unhex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"))
const utf8 = (s: string) => new TextEncoder().encode(s)

// ---- arbitraries of valid payloads, one per tag and sub-kind
const key = fc
  .oneof(
    fc.string({ minLength: 1, maxLength: 24 }),
    fc.string({ unit: "binary", minLength: 1, maxLength: 12 }),
  )
  .filter((s) => !s.startsWith("!") && s.isWellFormed() && utf8(s).length <= MAX_KEY_BYTES)
const value = fc.uint8Array({ maxLength: 48 })
const kvOp = fc.oneof(
  fc.record({ op: fc.constant("put" as const), key, value }),
  fc.record({ op: fc.constant("delete" as const), key }),
)
const keyId = fc.integer({ min: 1, max: 0xffffffff }).map((n) => n as KeyId)
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
const epoch = fc.integer({ min: 0, max: 0xffff })
const hexId = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map(hex)
const newDek = fc.record({ key_id: keyId, wrapped: fc.uint8Array({ minLength: 61, maxLength: 61 }) })
const writers = fc.array(fc.record({ full_node_id: u64, local_epoch: epoch }), { maxLength: 6 })

const payload: fc.Arbitrary<EntryPayload> = fc.oneof(
  fc.record({ tag: fc.constant(Tag.KvOp), op: kvOp }),
  fc.record({ tag: fc.constant(Tag.KvBatch), ops: fc.array(kvOp, { minLength: 1, maxLength: 8 }) }),
  fc.record({ tag: fc.constant(Tag.ClusterMeta), cluster_id: hexId(16) }),
  fc.record({
    tag: fc.constant(Tag.Registration),
    registration: fc.record(
      { dek_id: keyId, full_node_id: u64, local_epoch: epoch, session_id: hexId(16) },
      { requiredKeys: ["dek_id", "full_node_id", "local_epoch"] },
    ),
  }),
  fc.record({
    tag: fc.constant(Tag.Bootstrap),
    bootstrap: fc.record({ storage: newDek, raft: newDek, writers }),
  }),
  fc.record({
    tag: fc.constant(Tag.Control),
    control: fc.oneof(
      fc.record({
        kind: fc.constant("rotate-dek" as const),
        purpose: fc.constantFrom("storage" as const, "raft" as const),
        dek: newDek,
        writers,
      }),
      fc.record({
        kind: fc.constant("rewrap-deks" as const),
        next_kek_id: hexId(8),
        wraps: fc.array(newDek, { maxLength: 4 }),
      }),
      fc.record({ kind: fc.constant("retire-dek" as const), key_id: keyId }),
      fc.record({ kind: fc.constant("enable-storage-envelope" as const) }),
      fc.record({ kind: fc.constant("enable-raft-envelope" as const) }),
    ),
  }),
  fc.record({
    tag: fc.constant(Tag.RaftEnvelope),
    envelope: fc.uint8Array({ minLength: 34, maxLength: 80 }),
  }),
)

const errTag = (bytes: Uint8Array): string => {
  const r = decodeEntry(bytes)
  return Result.isFailure(r) ? r.failure._tag : "ok"
}
const withByte = (b: Uint8Array, i: number, v: number) => {
  const c = b.slice()
  c[i] = v
  return c
}

describe("entryCodec properties", () => {
  it("round-trips every valid payload of every tag and sub-kind", () => {
    fc.assert(
      fc.property(payload, (p) => {
        expect(isPayload(p)).toBe(true)
        const bytes = encodeEntry(p)
        expect(bytes[0]).toBe(p.tag)
        const r = decodeEntry(bytes)
        expect(Result.isSuccess(r) && r.success).toEqual(p)
        // Views decode to the same payload; the encoding is exactly sized (no spare bytes).
        const v = decodeEntry(bytes, { copy: false })
        expect(Result.isSuccess(v) && v.success).toEqual(p)
        expect(bytes.buffer.byteLength).toBe(bytes.length)
      }),
      { numRuns: 2000 },
    )
  })

  it("rejects every strict prefix as MalformedEntry", () => {
    fc.assert(
      fc.property(payload, (p) => {
        const bytes = encodeEntry(p)
        for (let n = 0; n < bytes.length; n++) {
          const prefix = bytes.subarray(0, n)
          // A 0x06 body is the rest of the bytes: a prefix of ≥ 34 is still an envelope.
          if (p.tag === Tag.RaftEnvelope && n - 1 >= 34) continue
          expect(errTag(prefix)).toBe("MalformedEntry")
        }
      }),
      { numRuns: 300 },
    )
  })

  it("rejects trailing bytes as MalformedEntry", () => {
    const nonEnvelope = payload.filter((p) => p.tag !== Tag.RaftEnvelope)
    fc.assert(
      fc.property(nonEnvelope, fc.uint8Array({ minLength: 1, maxLength: 8 }), (p, extra) => {
        const bytes = encodeEntry(p)
        const longer = new Uint8Array(bytes.length + extra.length)
        longer.set(bytes)
        longer.set(extra, bytes.length)
        expect(errTag(longer)).toBe("MalformedEntry")
      }),
    )
  })

  it("rejects unknown tags as UnknownEntryTag", () => {
    fc.assert(
      fc.property(fc.integer({ min: 7, max: 255 }), fc.uint8Array({ maxLength: 32 }), (tag, body) => {
        const r = decodeEntry(Uint8Array.of(tag, ...body))
        expect(Result.isFailure(r) && r.failure._tag === "UnknownEntryTag" && r.failure.tag === tag).toBe(
          true,
        )
      }),
    )
  })

  it("never throws on random bytes, and whatever it accepts satisfies the schema and re-encodes canonically", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const r = decodeEntry(bytes)
        if (Result.isSuccess(r)) {
          expect(isPayload(r.success)).toBe(true)
          expect(hex(encodeEntry(r.success))).toBe(hex(bytes))
        } else expect(["UnknownEntryTag", "MalformedEntry"]).toContain(r.failure._tag)
      }),
      { numRuns: 5000 },
    )
  })

  it("mutated valid encodings never throw; accepted ones re-encode to the same bytes", () => {
    fc.assert(
      fc.property(payload, fc.nat(), fc.integer({ min: 0, max: 255 }), (p, at, v) => {
        const bytes = encodeEntry(p)
        const mutated = withByte(bytes, at % bytes.length, v)
        const r = decodeEntry(mutated)
        if (Result.isSuccess(r)) {
          expect(isPayload(r.success)).toBe(true)
          expect(hex(encodeEntry(r.success))).toBe(hex(mutated))
        }
      }),
      { numRuns: 3000 },
    )
  })

  it("returns copies, not views of the input", () => {
    const bytes = encodeEntry({ tag: Tag.KvOp, op: { op: "put", key: "k", value: Uint8Array.of(1, 2, 3) } })
    const r = decodeEntry(bytes)
    bytes.fill(0)
    expect(Result.isSuccess(r) && r.success).toEqual({
      tag: Tag.KvOp,
      op: { op: "put", key: "k", value: Uint8Array.of(1, 2, 3) },
    })
  })

  it("returns views into the input when asked not to copy", () => {
    const bytes = encodeEntry({ tag: Tag.KvOp, op: { op: "put", key: "k", value: Uint8Array.of(1, 2, 3) } })
    const r = decodeEntry(bytes, { copy: false })
    const value =
      Result.isSuccess(r) && r.success.tag === Tag.KvOp && r.success.op.op === "put"
        ? r.success.op.value
        : null
    expect(value?.buffer).toBe(bytes.buffer)
    bytes.fill(0)
    expect(value).toEqual(Uint8Array.of(0, 0, 0))
  })
})

// The format is on disk (Raft log, snapshots): these bytes must never change.
describe("entryCodec golden bytes", () => {
  const wrappedA = new Uint8Array(61).fill(0xaa)
  const vectors: ReadonlyArray<[string, EntryPayload, string]> = [
    ["kv put", { tag: 0, op: { op: "put", key: "a", value: Uint8Array.of(1, 2) } }, "00 00 01 61 02 0102"],
    ["kv delete", { tag: 0, op: { op: "delete", key: "é" } }, "00 01 02 c3a9"],
    [
      "batch",
      {
        tag: 1,
        ops: [
          { op: "delete", key: "x" },
          { op: "put", key: "y", value: new Uint8Array(0) },
        ],
      },
      "01 02 01 01 78 00 01 79 00",
    ],
    [
      "cluster meta",
      { tag: 2, cluster_id: "00112233445566778899aabbccddeeff" },
      "02 00112233445566778899aabbccddeeff",
    ],
    [
      "registration without session",
      {
        tag: 3,
        registration: { dek_id: 7 as KeyId, full_node_id: 0x0102030405060708n, local_epoch: 0x0a0b },
      },
      "03 00000007 0102030405060708 0a0b 00",
    ],
    [
      "registration with session",
      {
        tag: 3,
        registration: {
          dek_id: 0xffffffff as KeyId,
          full_node_id: 2n ** 64n - 1n,
          local_epoch: 0xffff,
          session_id: "0123456789abcdef0123456789abcdef",
        },
      },
      "03 ffffffff ffffffffffffffff ffff 01 0123456789abcdef0123456789abcdef",
    ],
    [
      "bootstrap",
      {
        tag: 4,
        bootstrap: {
          storage: { key_id: 1 as KeyId, wrapped: wrappedA },
          raft: { key_id: 2 as KeyId, wrapped: wrappedA },
          writers: [{ full_node_id: 5n, local_epoch: 1 }],
        },
      },
      `04 00000001 ${"aa".repeat(61)} 00000002 ${"aa".repeat(61)} 01 0000000000000005 0001`,
    ],
    [
      "rotate-dek",
      {
        tag: 5,
        control: {
          kind: "rotate-dek",
          purpose: "raft",
          dek: { key_id: 9 as KeyId, wrapped: wrappedA },
          writers: [],
        },
      },
      `05 00 01 00000009 ${"aa".repeat(61)} 00`,
    ],
    [
      "rewrap-deks",
      {
        tag: 5,
        control: {
          kind: "rewrap-deks",
          next_kek_id: "0011223344556677",
          wraps: [{ key_id: 3 as KeyId, wrapped: wrappedA }],
        },
      },
      `05 01 0011223344556677 01 00000003 ${"aa".repeat(61)}`,
    ],
    [
      "retire-dek",
      { tag: 5, control: { kind: "retire-dek", key_id: 0x01020304 as KeyId } },
      "05 02 01020304",
    ],
    ["enable-storage-envelope", { tag: 5, control: { kind: "enable-storage-envelope" } }, "05 03"],
    ["enable-raft-envelope", { tag: 5, control: { kind: "enable-raft-envelope" } }, "05 04"],
    ["raft envelope", { tag: 6, envelope: new Uint8Array(34).fill(1) }, `06 ${"01".repeat(34)}`],
  ]
  for (const [name, p, expected] of vectors) {
    it(name, () => {
      expect(hex(encodeEntry(p))).toBe(expected.replace(/\s+/g, ""))
      const r = decodeEntry(unhex(expected))
      expect(Result.isSuccess(r) && r.success).toEqual(p)
    })
  }

  it("encodes a 300-byte value length as a two-byte varint", () => {
    const b = encodeEntry({ tag: 0, op: { op: "put", key: "k", value: new Uint8Array(300) } })
    expect(hex(b.subarray(0, 6))).toBe("0000016bac02")
  })
})

describe("entryCodec rejections", () => {
  const cases: ReadonlyArray<[string, string, string]> = [
    ["empty payload", "", "MalformedEntry"],
    ["tag 0x07", "07", "UnknownEntryTag"],
    ["tag 0xff", "ff 00", "UnknownEntryTag"],
    ["unknown kv op", "00 02 01 61", "MalformedEntry"],
    ["empty key", "00 01 00", "MalformedEntry"],
    ["key starting with !", "00 01 02 2161", "MalformedEntry"],
    ["key not UTF-8", "00 01 01 ff", "MalformedEntry"],
    ["key with a lone surrogate (CESU)", "00 01 03 eda080", "MalformedEntry"],
    ["overlong varint", "00 01 8100 61", "MalformedEntry"],
    ["varint over 5 bytes", "00 01 8080808080 00", "MalformedEntry"],
    ["varint above 2^32", "00 01 ffffffff1f", "MalformedEntry"],
    ["empty batch", "01 00", "MalformedEntry"],
    ["batch count beyond bytes", "01 64 01 01 61", "MalformedEntry"],
    ["cluster meta short", "02 0011", "MalformedEntry"],
    ["registration dek_id 0", "03 00000000 0000000000000001 0001 00", "MalformedEntry"],
    [
      "registration session flag 2",
      `03 00000001 0000000000000001 0001 02 ${"00".repeat(16)}`,
      "MalformedEntry",
    ],
    [
      "bootstrap storage key id 0",
      `04 00000000 ${"aa".repeat(61)} 00000002 ${"aa".repeat(61)} 00`,
      "MalformedEntry",
    ],
    ["bootstrap wrapped DEK short", `04 00000001 ${"aa".repeat(60)}`, "MalformedEntry"],
    [
      "bootstrap writer count beyond bytes",
      `04 00000001 ${"aa".repeat(61)} 00000002 ${"aa".repeat(61)} 05 0000000000000005 0001`,
      "MalformedEntry",
    ],
    ["unknown control sub-kind", "05 05", "MalformedEntry"],
    ["missing control sub-kind", "05", "MalformedEntry"],
    ["rotate-dek unknown purpose", `05 00 02 00000009 ${"aa".repeat(61)} 00`, "MalformedEntry"],
    ["rotate-dek key id 0", `05 00 00 00000000 ${"aa".repeat(61)} 00`, "MalformedEntry"],
    ["rewrap-deks key id 0", `05 01 0011223344556677 01 00000000 ${"aa".repeat(61)}`, "MalformedEntry"],
    ["retire-dek key id 0", "05 02 00000000", "MalformedEntry"],
    ["enable with a body", "05 03 00", "MalformedEntry"],
    ["raft envelope of 33 bytes", `06 ${"01".repeat(33)}`, "MalformedEntry"],
    ["raft envelope empty", "06", "MalformedEntry"],
  ]
  for (const [name, bytes, code] of cases) {
    it(name, () => expect(errTag(unhex(bytes))).toBe(code))
  }

  const varint = (n: number): string => {
    const out: number[] = []
    while (n >= 0x80) {
      out.push((n & 0x7f) | 0x80)
      n = Math.floor(n / 128)
    }
    out.push(n)
    return hex(Uint8Array.from(out))
  }

  it("key of 4096 bytes decodes, 4097 is malformed", () => {
    expect(errTag(unhex(`00 01 ${varint(4096)} ${"61".repeat(4096)}`))).toBe("ok")
    expect(errTag(unhex(`00 01 ${varint(4097)} ${"61".repeat(4097)}`))).toBe("MalformedEntry")
  })

  it("value of 1 MiB decodes, 1 MiB + 1 is malformed", () => {
    const head = (n: number) => unhex(`00 00 01 61 ${varint(n)}`)
    const make = (n: number) => {
      const h = head(n)
      const b = new Uint8Array(h.length + n)
      b.set(h)
      return b
    }
    expect(errTag(make(MAX_VALUE_BYTES))).toBe("ok")
    expect(errTag(make(MAX_VALUE_BYTES + 1))).toBe("MalformedEntry")
  })

  it("batch of 1000 ops decodes, 1001 is malformed", () => {
    const del = "01 01 61"
    expect(errTag(unhex(`01 ${varint(MAX_BATCH_OPS)} ${del.repeat(MAX_BATCH_OPS)}`))).toBe("ok")
    expect(errTag(unhex(`01 ${varint(MAX_BATCH_OPS + 1)} ${del.repeat(MAX_BATCH_OPS + 1)}`))).toBe(
      "MalformedEntry",
    )
  })

  it("batch values above 2 MiB in total are malformed", () => {
    const big = { op: "put" as const, key: "k", value: new Uint8Array(MAX_VALUE_BYTES) }
    const ok = encodeEntry({ tag: 1, ops: [big, big] })
    expect(errTag(ok)).toBe("ok")
    // Append a third 1-byte put by hand (encodeEntry refuses to build it).
    const extra = unhex("00 01 6b 01 00")
    const tooBig = new Uint8Array(ok.length + extra.length)
    tooBig.set(ok)
    tooBig.set(extra, ok.length)
    tooBig[1] = 3
    expect(errTag(tooBig)).toBe("MalformedEntry")
  })

  it("encodeEntry refuses payloads outside the schema", () => {
    const bad: ReadonlyArray<EntryPayload> = [
      { tag: 0, op: { op: "put", key: "!x", value: new Uint8Array(0) } },
      { tag: 0, op: { op: "delete", key: "" } },
      { tag: 0, op: { op: "delete", key: "\ud800" } },
      { tag: 0, op: { op: "delete", key: "a".repeat(MAX_KEY_BYTES + 1) } },
      { tag: 1, ops: [] },
      { tag: 3, registration: { dek_id: 0 as KeyId, full_node_id: 1n, local_epoch: 0 } },
      { tag: 3, registration: { dek_id: 1 as KeyId, full_node_id: 1n, local_epoch: 0x10000 } },
      { tag: 3, registration: { dek_id: 1 as KeyId, full_node_id: 2n ** 64n, local_epoch: 0 } },
      { tag: 5, control: { kind: "retire-dek", key_id: (2 ** 32) as KeyId } },
      { tag: 5, control: { kind: "rewrap-deks", next_kek_id: "XYZ", wraps: [] } },
      {
        tag: 4,
        bootstrap: {
          storage: { key_id: 1 as KeyId, wrapped: new Uint8Array(60) },
          raft: { key_id: 2 as KeyId, wrapped: new Uint8Array(61) },
          writers: [],
        },
      },
      { tag: 6, envelope: new Uint8Array(10) },
    ]
    for (const p of bad) expect(() => encodeEntry(p)).toThrow(InvalidEntryPayload)
  })

  it("a 0x06 payload built in place is the bytes encodeEntry gives, and refuses what it refuses", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 34, maxLength: 300 }), (envelope) => {
        const inPlace = new Uint8Array(RAFT_ENVELOPE_ENTRY_HEADROOM + envelope.length)
        inPlace.set(envelope, RAFT_ENVELOPE_ENTRY_HEADROOM)
        expect(hex(raftEnvelopeEntryInPlace(inPlace))).toBe(
          hex(encodeEntry({ tag: Tag.RaftEnvelope, envelope })),
        )
      }),
    )
    expect(() => raftEnvelopeEntryInPlace(new Uint8Array(RAFT_ENVELOPE_ENTRY_HEADROOM + 33))).toThrow(
      InvalidEntryPayload,
    )
  })
})
