// Which key a writer session seals under (SPEC §6): the active DEK once its
// registration committed; while a handed-over active DEK waits for its own
// 0x03, the previous active DEK this session sealed under.
import { WriteCounter } from "@ekv/crypto"
import { ApiError } from "@ekv/wire"
import { describe, expect, it } from "vitest"
import { type EncState, emptyEncState, type Purpose } from "../../../src/encryption/encryptionState.ts"
import { EncryptionSession, type SessionDeps, type SessionKey } from "../../../src/encryption/session.ts"
import type { KeystoreClient } from "../../../src/keystore/keystoreClient.ts"
import type { Log } from "../../../src/log.ts"

const log: Log = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => log,
} as unknown as Log

const make = (
  state: () => EncState,
  register: SessionDeps["register"] = async () => ({ _tag: "Committed" }),
) =>
  new EncryptionSession({
    nodeId: "n1",
    fullNodeId: 1n,
    nodeSecret: async () => new Uint8Array(32),
    keystore: {} as KeystoreClient,
    state,
    floors: async () => ({ floors: {}, asOfIndex: 0 }),
    register,
    log,
  })

const key = (keyId: number, purpose: Purpose, registered: boolean): SessionKey => ({
  keyId,
  purpose,
  dek: new Uint8Array(32).fill(keyId),
  epoch: 1,
  registered,
  counter: new WriteCounter({ nodeId16: 1, localEpoch: 1 }),
})

const stateWith = (storage: number): EncState => ({
  ...emptyEncState,
  storageEnvelopeActive: true,
  active: { storage, raft: 9 },
  keys: {
    "1": { purpose: "storage", retired: false },
    "2": { purpose: "storage", retired: false },
    "3": { purpose: "storage", retired: false },
    "9": { purpose: "raft", retired: false },
  },
})

describe("EncryptionSession.sealingKey", () => {
  it("seals under the active DEK once registered, else the previous active one, never an older one", () => {
    let st = stateWith(2)
    const s = make(() => st)
    // Insertion order puts the oldest DEK (1) last: the fallback must not depend on it.
    s.keys.set(2, key(2, "storage", true))
    s.keys.set(9, key(9, "raft", true))
    s.keys.set(1, key(1, "storage", true))
    expect((s.sealingKey("storage") as SessionKey).keyId).toBe(2)
    // A rotation handed DEK 3 over unregistered (this node was missing from its batch).
    st = stateWith(3)
    s.keys.set(3, key(3, "storage", false))
    expect((s.sealingKey("storage") as SessionKey).keyId).toBe(2)
    // Its 0x03 committed: from now on DEK 3.
    s.keys.get(3)!.registered = true
    expect((s.sealingKey("storage") as SessionKey).keyId).toBe(3)
  })

  it("waits when the active DEK is not handed over yet or nothing registered is left", () => {
    const st = stateWith(3)
    const s = make(() => st)
    expect(s.sealingKey("storage")).toBe("wait")
    s.keys.set(3, key(3, "storage", false))
    expect(s.sealingKey("storage")).toBe("wait")
    s.exhausted.add(3)
    s.keys.delete(3)
    expect(s.sealingKey("storage")).toBe("exhausted")
  })
})

describe("EncryptionSession: its own registration refused (SPEC §6)", () => {
  const refusedBy = async (register: SessionDeps["register"]) => {
    let calls = 0
    const s = make(
      () => stateWith(3),
      (p) => {
        calls++
        return register(p)
      },
    )
    s.sessionId = "ab".repeat(16)
    s.keys.set(2, key(2, "storage", true))
    s.keys.set(3, key(3, "storage", false))
    await s.registerKey(3)
    return { s, calls: () => calls }
  }

  it("a verdict from the leader's pre-validation stops the retries and refuses sealing", async () => {
    const { s, calls } = await refusedBy(async () => {
      throw new ApiError.LocalEpochRollback({ message: "local_epoch 1 is already registered by session x" })
    })
    expect(calls()).toBe(1)
    expect(s.refusal).toEqual({
      code: "LocalEpochRollback",
      reason: "local_epoch 1 is already registered by session x",
    })
    // Not the superseded key (2) either: a verdict is not a pending registration.
    expect(s.sealingKey("storage")).toBe("refused")
    await s.registerKey(3)
    expect(calls()).toBe(1)
  })

  it("a rejection recorded at apply does the same", async () => {
    const { s, calls } = await refusedBy(async () => ({
      _tag: "Rejected",
      code: "NodeIDCollision",
      reason: "node_id16 1 belongs to another",
    }))
    expect(calls()).toBe(1)
    expect(s.refusal?.code).toBe("NodeIDCollision")
    expect(s.sealingKey("storage")).toBe("refused")
  })

  it("a transient failure is retried until the registration commits", async () => {
    let n = 0
    const { s, calls } = await refusedBy(async () => {
      if (n++ === 0)
        throw new ApiError.Unavailable({ message: "another encryption entry is being validated" })
      return { _tag: "Committed" }
    })
    expect(calls()).toBe(2)
    expect(s.refusal).toBeNull()
    expect((s.sealingKey("storage") as SessionKey).keyId).toBe(3)
  })
})
