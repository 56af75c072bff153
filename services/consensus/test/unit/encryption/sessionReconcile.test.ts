// A session that no hand-over reached (SPEC §6 "New DEKs", bug 1 in
// docs/reliability.md): a wiped node replaying the log opened its session
// before the bootstrap, and the bootstrap reached its keystore under no
// session. The session notices the DEKs of the replicated state it lacks,
// opens a new one (epochs max(local, floor) + 1 from the keystore) and
// registers the active DEKs; reads answer Unavailable, never IntegrityError,
// meanwhile.
import { sealHandover } from "@ekv/crypto"
import { decodeEntry, Tag } from "@ekv/wire"
import { Result } from "effect"
import { describe, expect, it } from "vitest"
import { type EncState, emptyEncState } from "../../../src/encryption/encryptionState.ts"
import { EncryptionSession, type SessionKey } from "../../../src/encryption/session.ts"
import type { KeystoreClient } from "../../../src/keystore/keystoreClient.ts"
import type { Log } from "../../../src/log.ts"

const log: Log = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => log,
} as unknown as Log

const NODE_SECRET = new Uint8Array(32).fill(7)
const bootstrapped: EncState = {
  ...emptyEncState,
  storageEnvelopeActive: true,
  active: { storage: 11, raft: 12 },
  lastEncryptionIndex: 5,
  lastControlIndex: 5,
  keys: { "11": { purpose: "storage", retired: false }, "12": { purpose: "raft", retired: false } },
}

/** A keystore holding `held` DEKs (from local epoch `local`), sealing each session's hand-over. */
const fakeKeystore = (held: () => readonly number[], local: number) => {
  const sessions: string[] = []
  const epochs = new Map<number, number>()
  const next = (id: number, floor: number) => {
    const e = Math.max(epochs.get(id) ?? local, floor) + 1
    epochs.set(id, e)
    return e
  }
  const ks = {
    liveness: async () => ({ ready: true, encryption_capable: true }),
    session: async (req: { session_id: string; public_key: Uint8Array; floors: Record<string, number> }) => {
      sessions.push(req.session_id)
      const ids = held()
      return {
        sealed: sealHandover({
          recipientPublicKey: req.public_key,
          nodeSecret: NODE_SECRET,
          nodeId: "n1",
          sessionId: req.session_id,
          keys: ids.map((id) => ({
            keyId: id,
            purpose: id === 12 ? ("raft" as const) : ("storage" as const),
            dek: new Uint8Array(32).fill(id),
            localEpoch: next(id, req.floors[String(id)] ?? 0),
          })),
        }),
        key_ids: [...ids],
        exhausted_key_ids: [],
      }
    },
  }
  return { ks: ks as unknown as KeystoreClient, sessions }
}

const registrations = (payloads: Uint8Array[]) =>
  payloads.map((p) => {
    const d = decodeEntry(p)
    if (Result.isFailure(d) || d.success.tag !== Tag.Registration) throw new Error("not a registration")
    return { dek: d.success.registration.dek_id, epoch: d.success.registration.local_epoch }
  })

const until = async (what: string, f: () => boolean, ms = 2_000): Promise<void> => {
  const t0 = Date.now()
  while (!f()) {
    if (Date.now() - t0 > ms) throw new Error(`not ${what} after ${ms} ms`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

describe("EncryptionSession.reconcile", () => {
  it("opens a new session for DEKs created outside it and registers them above the floors", async () => {
    let st: EncState = emptyEncState
    let keystoreHas: number[] = []
    const { ks, sessions } = fakeKeystore(() => keystoreHas, 0)
    const proposed: Uint8Array[] = []
    const s = new EncryptionSession({
      nodeId: "n1",
      fullNodeId: 1n,
      nodeSecret: async () => NODE_SECRET,
      keystore: ks,
      state: () => st,
      // The node's registrations from before its wipe are in the leader's log.
      floors: async () => ({ floors: { "11": 3, "12": 2 }, asOfIndex: 40 }),
      register: async (payload) => {
        proposed.push(payload)
        return { _tag: "Committed" }
      },
      log,
    })
    try {
      // Opened before the replay reached the bootstrap: nothing to hand over.
      await s.start()
      expect(s.keys.size).toBe(0)
      expect(s.ready).toBe(true)
      // The bootstrap reached the keystore under no session and applied: no hand-over.
      keystoreHas = [11, 12]
      st = bootstrapped
      expect(s.missingKeyIds()).toEqual([11, 12])
      expect(s.keysLoaded).toBe(false)
      expect(s.ready).toBe(false)
      expect(s.sealingKey("storage")).toBe("wait")

      s.reconcile()
      await until(
        "registered",
        () => s.keys.get(11)?.registered === true && s.keys.get(12)?.registered === true,
      )
      expect(sessions.length).toBe(2)
      expect(s.sessionId).toBe(sessions[1])
      expect(registrations(proposed)).toEqual(
        expect.arrayContaining([
          { dek: 11, epoch: 4 },
          { dek: 12, epoch: 3 },
        ]),
      )
      expect((s.sealingKey("storage") as SessionKey).keyId).toBe(11)
      expect(s.keysLoaded).toBe(true)
      expect(s.ready).toBe(true)

      // Whole again: reconcile opens nothing more.
      s.reconcile()
      await new Promise((r) => setTimeout(r, 20))
      expect(sessions.length).toBe(2)
    } finally {
      s.close()
    }
  })

  it("keeps sealing under the superseded session's registered key until the new one's 0x03 commits", async () => {
    const st = bootstrapped
    const { ks, sessions } = fakeKeystore(() => [11, 12], 0)
    const gates: (() => void)[] = []
    let hold = false
    const s = new EncryptionSession({
      nodeId: "n1",
      fullNodeId: 1n,
      nodeSecret: async () => NODE_SECRET,
      keystore: ks,
      state: () => st,
      floors: async () => ({ floors: {}, asOfIndex: 40 }),
      register: async () => {
        if (hold) await new Promise<void>((r) => gates.push(r))
        return { _tag: "Committed" }
      },
      log,
    })
    try {
      await s.start()
      const first = s.sealingKey("storage") as SessionKey
      expect(first.epoch).toBe(1)
      first.counter.next()
      hold = true
      const second = s.start()
      await until(
        "superseded",
        () => sessions.length === 2 && s.sessionId === sessions[1] && gates.length > 0,
      )
      // The new session's key waits for its 0x03: the old (registered) one keeps sealing, same counter.
      expect(s.sealingKey("storage")).toBe(first)
      expect(s.dek(11)).toEqual(new Uint8Array(32).fill(11))
      hold = false
      for (const g of gates.splice(0)) g()
      await second
      const now = s.sealingKey("storage") as SessionKey
      expect(now).not.toBe(first)
      expect(now.epoch).toBe(2)
      // The superseded DEK copy is wiped once it is no longer usable.
      expect(first.dek.every((b) => b === 0)).toBe(true)
    } finally {
      s.close()
    }
  })

  it("backs off when a new session still lacks the DEK (a keystore behind the log)", async () => {
    const st = bootstrapped
    const { ks, sessions } = fakeKeystore(() => [12], 0)
    const s = new EncryptionSession({
      nodeId: "n1",
      fullNodeId: 1n,
      nodeSecret: async () => NODE_SECRET,
      keystore: ks,
      state: () => st,
      floors: async () => ({ floors: {}, asOfIndex: 40 }),
      register: async () => ({ _tag: "Committed" }),
      log,
    })
    try {
      await s.start()
      // start() itself re-checks once it opened: one renewal right away, the next after 1 s.
      await until("renewed once", () => sessions.length === 2)
      await new Promise((r) => setTimeout(r, 300))
      s.reconcile()
      await new Promise((r) => setTimeout(r, 200))
      expect(sessions.length).toBe(2)
      expect(s.missingKeyIds()).toEqual([11])
    } finally {
      s.close()
    }
  })
})
