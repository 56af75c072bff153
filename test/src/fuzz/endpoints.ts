// Every public request/reply subject of CONTRACT.md §2–§4 as the fuzzer sees
// it: its subject, the shape of a valid request (field specs from which the
// near-valid mutations are derived, and a fast-check arbitrary of valid
// bodies), the wire schema its success reply must decode with, and whether a
// valid request may be sent at all (destructive cluster changes may not: their
// templates name a node that is not a member, so even a wrongly accepted
// near-valid request cannot take the cluster apart).
import * as W from "@ekv/wire"
import type { Schema } from "effect"
import fc from "fast-check"

/** What a field must hold, enough to produce valid values and near misses. */
export type FieldSpec =
  | { readonly t: "key" }
  | { readonly t: "keyBound" }
  | { readonly t: "base64"; readonly maxBytes: number }
  | { readonly t: "int"; readonly min: number; readonly max: number }
  | { readonly t: "number"; readonly min: number; readonly max: number }
  | { readonly t: "enum"; readonly values: ReadonlyArray<string> }
  | { readonly t: "nodeId"; readonly values: ReadonlyArray<string> }
  | { readonly t: "decimalU64" }
  | { readonly t: "hex32" }
  | { readonly t: "true" }
  | {
      readonly t: "array"
      readonly item: ReadonlyArray<ObjectSpec>
      readonly min: number
      readonly max: number
    }

export interface Field {
  readonly name: string
  readonly spec: FieldSpec
  readonly optional?: boolean
}

/** One object shape (a union is several ObjectSpecs). */
export type ObjectSpec = ReadonlyArray<Field>

export interface Endpoint {
  /** `kv.put`, `admin.encryption.status`, `node.n1.health`, ... */
  readonly name: string
  readonly subject: string
  /** Alternatives of the request body (a union), each an object shape. */
  readonly shapes: ReadonlyArray<ObjectSpec>
  /** Success reply schema (decoded with unknown fields rejected). */
  readonly reply: Schema.Top
  /** Valid requests may be generated (false for destructive cluster changes). */
  readonly validAllowed: boolean
  /** The request may change replicated state when valid. */
  readonly mutating: boolean
  /** A per-request timeout long enough for this endpoint's real work. */
  readonly timeoutMs: number
}

export interface CatalogOptions {
  readonly prefix?: string
  /** Member node ids (for node.* subjects and valid `node` fields). */
  readonly nodes: ReadonlyArray<string>
}

/** A node id no cluster of the tests has: the target of destructive templates. */
export const NON_MEMBER = "zz-fuzz"

export const endpointCatalog = (o: CatalogOptions): Endpoint[] => {
  const s = W.subjects(o.prefix ?? W.DEFAULT_PREFIX)
  const member: FieldSpec = { t: "nodeId", values: o.nodes }
  const nonMember: FieldSpec = { t: "nodeId", values: [NON_MEMBER] }
  const consistency: Field = {
    name: "consistency",
    spec: { t: "enum", values: ["linearizable", "serializable"] },
    optional: true,
  }
  const kv = (
    name: string,
    subject: string,
    shapes: ObjectSpec[],
    reply: Schema.Top,
    mutating: boolean,
  ): Endpoint => ({
    name: `kv.${name}`,
    subject,
    shapes,
    reply,
    validAllowed: true,
    mutating,
    timeoutMs: 5_000,
  })
  const admin = (
    group: "encryption" | "cluster",
    op: string,
    shapes: ObjectSpec[],
    reply: Schema.Top,
    flags: { mutating: boolean; validAllowed?: boolean },
  ): Endpoint => ({
    name: `admin.${group}.${op}`,
    subject: `${s.prefix}.admin.${group}.${op}`,
    shapes,
    reply,
    validAllowed: flags.validAllowed ?? true,
    mutating: flags.mutating,
    timeoutMs: 15_000,
  })
  const batchPut: ObjectSpec = [
    { name: "op", spec: { t: "enum", values: ["put"] } },
    { name: "key", spec: { t: "key" } },
    { name: "value", spec: { t: "base64", maxBytes: W.MAX_VALUE_BYTES } },
  ]
  const batchDelete: ObjectSpec = [
    { name: "op", spec: { t: "enum", values: ["delete"] } },
    { name: "key", spec: { t: "key" } },
  ]
  const empty: ObjectSpec = []
  return [
    kv(
      "put",
      s.kv.put,
      [
        [
          { name: "key", spec: { t: "key" } },
          { name: "value", spec: { t: "base64", maxBytes: W.MAX_VALUE_BYTES } },
        ],
      ],
      W.KvPutReply,
      true,
    ),
    kv("get", s.kv.get, [[{ name: "key", spec: { t: "key" } }, consistency]], W.KvGetReply, false),
    kv("delete", s.kv.delete, [[{ name: "key", spec: { t: "key" } }]], W.KvDeleteReply, true),
    kv(
      "batch",
      s.kv.batch,
      [[{ name: "ops", spec: { t: "array", item: [batchPut, batchDelete], min: 1, max: W.MAX_BATCH_OPS } }]],
      W.KvBatchReply,
      true,
    ),
    kv(
      "scan",
      s.kv.scan,
      [
        [
          { name: "prefix", spec: { t: "keyBound" }, optional: true },
          { name: "after", spec: { t: "keyBound" }, optional: true },
          { name: "limit", spec: { t: "int", min: 1, max: W.MAX_SCAN_LIMIT }, optional: true },
          consistency,
        ],
      ],
      W.KvScanReply,
      false,
    ),
    admin("encryption", "status", [empty], W.EncryptionStatusReply, { mutating: false }),
    admin("encryption", "capability", [[{ name: "node", spec: member, optional: true }]], W.CapabilityReply, {
      mutating: false,
    }),
    admin(
      "encryption",
      "sidecar-state",
      [[{ name: "caller_full_node_id", spec: { t: "decimalU64" }, optional: true }]],
      W.SidecarStateReply,
      { mutating: false },
    ),
    admin(
      "encryption",
      "bootstrap",
      [
        [{ name: "discover", spec: { t: "true" } }],
        [
          {
            name: "writers",
            spec: {
              t: "array",
              item: [
                [
                  { name: "full_node_id", spec: { t: "decimalU64" } },
                  { name: "local_epoch", spec: { t: "int", min: 0, max: W.MAX_LOCAL_EPOCH } },
                ],
              ],
              min: 1,
              max: 5,
            },
          },
        ],
      ],
      W.BootstrapReply,
      { mutating: true },
    ),
    admin(
      "encryption",
      "register-writer",
      [
        [
          { name: "dek_id", spec: { t: "int", min: 1, max: 0xffffffff } },
          { name: "full_node_id", spec: { t: "decimalU64" } },
          { name: "local_epoch", spec: { t: "int", min: 0, max: W.MAX_LOCAL_EPOCH } },
          { name: "session_id", spec: { t: "hex32" }, optional: true },
        ],
      ],
      W.RegisterWriterReply,
      { mutating: true },
    ),
    admin(
      "encryption",
      "rotate-dek",
      [[{ name: "purpose", spec: { t: "enum", values: ["storage", "raft"] } }]],
      W.RotateDekReply,
      { mutating: true },
    ),
    admin("encryption", "rewrap-deks", [empty], W.RewrapDeksReply, { mutating: true }),
    admin(
      "encryption",
      "retire-dek",
      [[{ name: "key_id", spec: { t: "int", min: 1, max: 0xffffffff } }]],
      W.RetireDekReply,
      { mutating: true },
    ),
    admin("encryption", "enable-storage-envelope", [empty], W.EnableStorageEnvelopeReply, { mutating: true }),
    admin("encryption", "enable-raft-envelope", [empty], W.EnableRaftEnvelopeReply, { mutating: true }),
    // Meant for a stopped node: never aimed at a member.
    admin("encryption", "resync-sidecar", [[{ name: "node", spec: nonMember }]], W.ResyncSidecarReply, {
      mutating: true,
      validAllowed: false,
    }),
    admin(
      "encryption",
      "rewrite",
      [
        [
          {
            name: "rate_mib_s",
            spec: { t: "number", min: 0.001, max: W.MAX_REWRITE_RATE_MIB_S },
            optional: true,
          },
        ],
      ],
      W.RewriteReply,
      { mutating: true },
    ),
    admin("cluster", "status", [empty], W.ClusterStatusReply, { mutating: false }),
    admin("cluster", "add-learner", [[{ name: "node", spec: nonMember }]], W.AddLearnerReply, {
      mutating: true,
      validAllowed: false,
    }),
    admin("cluster", "promote", [[{ name: "node", spec: nonMember }]], W.PromoteReply, {
      mutating: true,
      validAllowed: false,
    }),
    admin("cluster", "remove", [[{ name: "node", spec: nonMember }]], W.RemoveReply, {
      mutating: true,
      validAllowed: false,
    }),
    admin("cluster", "transfer-leader", [[{ name: "node", spec: nonMember }]], W.TransferLeaderReply, {
      mutating: true,
      validAllowed: false,
    }),
    admin("cluster", "snapshot", [[{ name: "node", spec: member, optional: true }]], W.SnapshotReply, {
      mutating: false,
    }),
    ...o.nodes.flatMap((n): Endpoint[] => [
      {
        name: `node.${n}.health`,
        subject: s.node(n).health,
        shapes: [empty],
        reply: W.NodeHealthReply,
        validAllowed: true,
        mutating: false,
        timeoutMs: 5_000,
      },
      {
        name: `node.${n}.capability`,
        subject: s.node(n).capability,
        shapes: [empty],
        reply: W.NodeCapabilityReply,
        validAllowed: true,
        mutating: false,
        timeoutMs: 5_000,
      },
    ]),
  ]
}

// ---- valid values -----------------------------------------------------------

const utf8Len = (s: string): number => new TextEncoder().encode(s).length

/** Keys: mostly short ASCII (so reads hit earlier writes), some Unicode, some at the 4096-byte limit. */
export const keyArb: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 6, arbitrary: fc.constantFrom("a", "b", "c", "fuzz/1", "fuzz/2", "k") },
    { weight: 3, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) },
    {
      weight: 2,
      arbitrary: fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }),
    },
    { weight: 1, arbitrary: fc.constant("k".repeat(W.MAX_KEY_BYTES)) },
  )
  .filter((k) => !k.startsWith("!") && k.isWellFormed() && utf8Len(k) >= 1 && utf8Len(k) <= W.MAX_KEY_BYTES)

const keyBoundArb: fc.Arbitrary<string> = fc
  .oneof(fc.constantFrom("", "a", "fuzz/"), fc.string({ maxLength: 20 }))
  .filter((k) => k.isWellFormed() && !k.startsWith("!"))

const base64Arb = (maxBytes: number): fc.Arbitrary<string> =>
  fc
    .oneof(
      { weight: 8, arbitrary: fc.uint8Array({ maxLength: 64 }) },
      { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 4096 }).map((n) => new Uint8Array(n)) },
    )
    .map((b) => Buffer.from(b.subarray(0, maxBytes)).toString("base64"))

const decimalU64Arb: fc.Arbitrary<string> = fc
  .bigInt({ min: 1n, max: 2n ** 64n - 1n })
  .map((b) => b.toString())

/** A valid value for `spec`. */
export const validValue = (spec: FieldSpec): fc.Arbitrary<unknown> => {
  switch (spec.t) {
    case "key":
      return keyArb
    case "keyBound":
      return keyBoundArb
    case "base64":
      return base64Arb(spec.maxBytes)
    case "int":
      return fc.integer({ min: spec.min, max: spec.max })
    case "number":
      return fc.double({ min: spec.min, max: spec.max, noNaN: true, noDefaultInfinity: true })
    case "enum":
      return fc.constantFrom(...spec.values)
    case "nodeId":
      return fc.constantFrom(...spec.values)
    case "decimalU64":
      return decimalU64Arb
    case "hex32":
      return fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString("hex"))
    case "true":
      return fc.constant(true)
    case "array":
      return fc.array(fc.oneof(...spec.item.map(validObject)), {
        minLength: spec.min,
        maxLength: Math.min(spec.max, 5),
      })
  }
}

/** A valid object of one shape (optional fields present or absent). */
export const validObject = (shape: ObjectSpec): fc.Arbitrary<Record<string, unknown>> => {
  const entries = shape.map((f) =>
    f.optional
      ? fc.option(validValue(f.spec), { nil: undefined }).map((v) => [f.name, v] as const)
      : validValue(f.spec).map((v) => [f.name, v] as const),
  )
  return fc.tuple(...entries).map((kvs) => {
    const o: Record<string, unknown> = {}
    for (const [k, v] of kvs) if (v !== undefined) o[k] = v
    return o
  })
}

/** A valid request body of `e` (any of its shapes). */
export const validRequest = (e: Endpoint): fc.Arbitrary<Record<string, unknown>> =>
  fc.oneof(...e.shapes.map(validObject))
