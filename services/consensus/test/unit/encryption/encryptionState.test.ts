import { fullNodeId, generateDek, nodeId16, WriteCounter } from "@ekv/crypto"
import { type EncryptionPayload, encodeEntry, Tag } from "@ekv/wire"
import type { EncryptionStateExport } from "@ekv/wire/keystore-protocol"
import { describe, expect, it } from "vitest"
import {
  cutoverVerdict,
  decodeEncState,
  emptyEncState,
  encodeEncState,
  nextEncState,
} from "../../../src/encryption/encryptionState.ts"
import { floorsFromRows, raiseFromLog } from "../../../src/encryption/floors.ts"
import { preValidate } from "../../../src/encryption/preValidation.ts"
import { envelopeSealer } from "../../../src/fsm/valueSealer.ts"
import { decodeStoredValue } from "../../../src/stateMachine/valueHeader.ts"

const wrapped = new Uint8Array(61).fill(1)
const boot = (s: number, r: number, writers: { full_node_id: bigint; local_epoch: number }[] = []) =>
  ({
    tag: Tag.Bootstrap,
    bootstrap: {
      storage: { key_id: s, wrapped },
      raft: { key_id: r, wrapped },
      writers,
    },
  }) as unknown as EncryptionPayload

describe("encryption state transitions", () => {
  it("bootstrap, enable flags, rotate, retire; rejections only move indexes; round trip", () => {
    let s = nextEncState(emptyEncState, 5, boot(11, 12), "applied")
    expect(s.active).toEqual({ storage: 11, raft: 12 })
    expect(s.lastEncryptionIndex).toBe(5)
    expect(s.lastControlIndex).toBe(5)
    s = nextEncState(
      s,
      6,
      { tag: Tag.Control, control: { kind: "enable-storage-envelope" } } as never,
      "applied",
    )
    expect(s.storageEnvelopeActive).toBe(true)
    s = nextEncState(
      s,
      7,
      {
        tag: Tag.Control,
        control: { kind: "rotate-dek", purpose: "storage", dek: { key_id: 13, wrapped }, writers: [] },
      } as never,
      "applied",
    )
    expect(s.active.storage).toBe(13)
    s = nextEncState(
      s,
      8,
      { tag: Tag.Control, control: { kind: "retire-dek", key_id: 11 } } as never,
      "applied",
    )
    expect(s.keys["11"]).toEqual({ purpose: "storage", retired: true })
    const r = nextEncState(
      s,
      9,
      { tag: Tag.Control, control: { kind: "enable-raft-envelope" } } as never,
      "rejected",
    )
    expect(r.cutoverIndex).toBe(0)
    expect(r.lastControlIndex).toBe(9)
    s = nextEncState(
      r,
      10,
      { tag: Tag.Control, control: { kind: "enable-raft-envelope" } } as never,
      "applied",
    )
    expect(s.cutoverIndex).toBe(10)
    const reg = nextEncState(s, 11, { tag: Tag.Registration, registration: {} } as never, "applied")
    expect(reg.lastEncryptionIndex).toBe(11)
    expect(reg.lastControlIndex).toBe(10)
    expect(decodeEncState(encodeEncState(reg))).toEqual(reg)
  })

  it("cutover rules (SPEC §2.5)", () => {
    expect(cutoverVerdict(0, 5, false)).toBe("ok")
    expect(cutoverVerdict(0, 5, true)).toBe("SealedBeforeCutover")
    expect(cutoverVerdict(10, 10, true)).toBe("SealedBeforeCutover")
    expect(cutoverVerdict(10, 11, true)).toBe("ok")
    expect(cutoverVerdict(10, 11, false)).toBe("UnsealedAfterCutover")
    expect(cutoverVerdict(10, 10, false)).toBe("ok")
  })
})

describe("floors (SPEC §6)", () => {
  it("take the highest epoch from applied rows and unapplied log entries", () => {
    const me = fullNodeId("n1")
    const other = fullNodeId("n2")
    const rows = [
      {
        dek_id: 11,
        node_id16: nodeId16(me),
        full_node_id: me.toString(),
        first_seen_local_epoch: 0,
        last_seen_local_epoch: 3,
        last_session_id: null,
        raft_index: 4,
      },
      {
        dek_id: 11,
        node_id16: nodeId16(other),
        full_node_id: other.toString(),
        first_seen_local_epoch: 0,
        last_seen_local_epoch: 9,
        last_session_id: null,
        raft_index: 4,
      },
    ]
    const f = floorsFromRows(rows, me)
    expect(f).toEqual({ "11": 3 })
    const log = [
      encodeEntry({
        tag: Tag.Registration,
        registration: { dek_id: 11 as never, full_node_id: me, local_epoch: 7 as never },
      }),
      encodeEntry({
        tag: Tag.Registration,
        registration: { dek_id: 11 as never, full_node_id: other, local_epoch: 20 as never },
      }),
      encodeEntry({
        tag: Tag.Control,
        control: {
          kind: "rotate-dek",
          purpose: "raft",
          dek: { key_id: 14 as never, wrapped },
          writers: [{ full_node_id: me, local_epoch: 2 as never }],
        },
      }),
      encodeEntry({ tag: Tag.KvOp, op: { op: "put", key: "k" as never, value: new Uint8Array(1) } }),
    ]
    expect(raiseFromLog({ ...f }, log, me)).toEqual({ "11": 7, "14": 2 })
  })
})

const exportOf = (over: Partial<EncryptionStateExport> = {}): EncryptionStateExport => ({
  raft_applied_index: 0,
  last_registry_index: 0,
  storage_envelope_active: false,
  raft_envelope_cutover_index: 0,
  active: { storage: 0, raft: 0 },
  keys: [],
  writers: [],
  ...over,
})

describe("pre-validation (SPEC §2.2, §4.4)", () => {
  const me = fullNodeId("n1")
  const booted = exportOf({
    raft_applied_index: 3,
    active: { storage: 11, raft: 12 },
    keys: [
      { key_id: 11, purpose: "storage", wrapped: "x", created: "", retired: false },
      { key_id: 12, purpose: "raft", wrapped: "x", created: "", retired: false },
    ],
    writers: [
      {
        dek_id: 11,
        node_id16: nodeId16(me),
        full_node_id: me.toString(),
        first_seen_local_epoch: 1,
        last_seen_local_epoch: 5,
        last_session_id: "a".repeat(32),
        raft_index: 3,
      },
    ],
  })
  const reg = (epoch: number, full = me, session?: string) =>
    ({
      tag: Tag.Registration,
      registration: {
        dek_id: 11,
        full_node_id: full,
        local_epoch: epoch,
        ...(session === undefined ? {} : { session_id: session }),
      },
    }) as never
  it("registration verdicts", () => {
    expect(preValidate(booted, reg(6), 10)).toBeNull()
    expect(preValidate(booted, reg(4), 10)?._tag).toBe("LocalEpochRollback")
    expect(preValidate(booted, reg(5, me, "b".repeat(32)), 10)?._tag).toBe("LocalEpochRollback")
    expect(preValidate(booted, reg(5, me, "a".repeat(32)), 10)).toBeNull()
    const collide = (me ^ 0x10000n) as bigint
    expect(preValidate(booted, reg(9, collide), 10)?._tag).toBe("NodeIDCollision")
  })
  it("bootstrap twice, control preconditions", () => {
    const e = preValidate(booted, boot(20, 21), 10)
    expect(e?._tag).toBe("FailedPrecondition")
    expect((e?.details as { reason: string } | undefined)?.reason).toBe("AlreadyBootstrapped")
    const reason = (p: unknown, s = booted) =>
      (preValidate(s, p as never, 10)?.details as { reason?: string } | undefined)?.reason
    expect(reason({ tag: Tag.Control, control: { kind: "enable-raft-envelope" } })).toBe(
      "StorageEnvelopeNotActive",
    )
    expect(reason({ tag: Tag.Control, control: { kind: "retire-dek", key_id: 11 } })).toBe("ActiveKey")
    expect(reason({ tag: Tag.Control, control: { kind: "enable-storage-envelope" } }, exportOf())).toBe(
      "NotBootstrapped",
    )
    expect(
      preValidate(booted, { tag: Tag.Control, control: { kind: "enable-storage-envelope" } } as never, 10),
    ).toBeNull()
    expect(preValidate(exportOf(), boot(20, 21, [{ full_node_id: me, local_epoch: 0 }]), 10)).toBeNull()
  })
})

describe("storage envelope sealer", () => {
  it("seals under the registered key with the exact storage key as AAD; reads open; moved bytes fail", () => {
    const dek = generateDek()
    const counter = new WriteCounter({ nodeId16: 7, localEpoch: 3 })
    let active = false
    const sealer = envelopeSealer({
      active: () => active,
      sealingKey: () => ({ keyId: 42, dek, next: () => counter.next() }),
      dek: (id) => (id === 42 ? dek : undefined),
      sessionOpen: () => true,
      changed: async () => undefined,
    })
    const clear = sealer.seal("k", 5, new TextEncoder().encode("hello"))
    expect(decodeStoredValue(clear).header.encryptionState).toBe(0)
    active = true
    const value = new TextEncoder().encode("secret ".repeat(20))
    const stored = sealer.seal("k", 6, value)
    const d = decodeStoredValue(stored)
    expect(d.header.encryptionState).toBe(1)
    expect(Buffer.from(stored).includes(Buffer.from("secret"))).toBe(false)
    const v = (key: string, version: number) => ({
      key,
      version,
      header: d.header,
      payload: d.payload,
      storageKey: storageKey(key, version),
    })
    expect(sealer.open(v("k", 6) as never)).toEqual(value)
    expect(() => sealer.open(v("k", 7) as never)).toThrow(/IntegrityError/)
    expect(counter.writeCount).toBe(1n)
  })

  it("halts for good with the refusal's code when this node's registration was refused", async () => {
    const refused = envelopeSealer({
      active: () => true,
      sealingKey: () => "refused",
      refusal: () => ({ code: "LocalEpochRollback", reason: "local_epoch 2 is already registered" }),
      dek: () => undefined,
      sessionOpen: () => true,
      changed: async () => undefined,
    })
    const halt = await refused.prepare?.()
    expect(halt).toMatchObject({ reason: "LocalEpochRollback", transient: false })
    expect(halt?.message).toContain("local_epoch 2 is already registered")
    // A refusal that arrives while prepare waits for the registration ends the wait with it.
    let waited = 0
    const pending = envelopeSealer({
      active: () => true,
      sealingKey: () => (waited++ < 2 ? "wait" : "refused"),
      refusal: () => ({ code: "NodeIDCollision", reason: "taken" }),
      dek: () => undefined,
      sessionOpen: () => true,
      changed: async () => undefined,
    })
    expect(await pending.prepare?.()).toMatchObject({ reason: "NodeIDCollision", transient: false })
  })
})

import { storageKeyOf as storageKey } from "../../../src/fsm/valueSealer.ts"
