// This node's writer session (SPEC §4.3, §6): floors from the leader (or its
// own log), an ephemeral X25519 key and session_id, the keystore's sealed
// hand-over opened in memory only, then a 0x03 per active DEK proposed with
// the session_id — a (DEK, epoch) is sealed under only once its registration
// COMMITTED. DEKs handed over by dispatch replies are usable at once unless
// listed unregistered (then they need their own 0x03 first). A DEK of the
// replicated state that no hand-over brought (its entry reached the keystore
// under no session or a superseded one, e.g. while this one was opening
// during a log replay) is fetched by opening a new session (`reconcile`).

import type { KeyObject } from "node:crypto"
import { randomBytes } from "node:crypto"
import { generateHandoverKeyPair, nodeId16, openHandover, WriteCounter } from "@ekv/crypto"
import { encodeEntry, HaltCode, Tag } from "@ekv/wire"
import { Result } from "effect"
import type { KeystoreClient } from "../keystore/keystoreClient.ts"
import type { Log } from "../log.ts"
import { type EncState, type Purpose, unretiredKeyIds } from "./encryptionState.ts"

export interface SessionKey {
  readonly keyId: number
  readonly purpose: Purpose
  readonly dek: Uint8Array
  readonly epoch: number
  registered: boolean
  /** A 0x03 of this (DEK, epoch) is being proposed. */
  registering?: boolean
  /** write_count for this (DEK, epoch) in this process: starts at 0, never resets (SPEC §2.4). */
  readonly counter: WriteCounter
}

export interface Floors {
  readonly floors: Readonly<Record<string, number>>
  readonly asOfIndex: number
}

/** How a registration fared once proposed (through the leader). */
export type RegistrationResult =
  | { readonly _tag: "Committed" }
  | { readonly _tag: "Rejected"; readonly code: string; readonly reason: string }

/**
 * A verdict on this session's own registration (SPEC §6): its epoch is taken
 * (LocalEpochRollback) or its node id is someone else's (NodeIDCollision).
 * Retrying the same 0x03 can never succeed; the node halts with the code
 * where it would seal, and a restart opens a session above the registered epochs.
 */
export interface RegistrationRefusal {
  readonly code: typeof HaltCode.LocalEpochRollback | typeof HaltCode.NodeIDCollision
  readonly reason: string
}

const refusalOf = (code: string, reason: string): RegistrationRefusal | null =>
  code === HaltCode.LocalEpochRollback || code === HaltCode.NodeIDCollision ? { code, reason } : null

export interface SessionDeps {
  readonly nodeId: string
  readonly fullNodeId: bigint
  readonly nodeSecret: () => Promise<Uint8Array>
  readonly keystore: KeystoreClient
  /** The replicated encryption state as applied on this node. */
  readonly state: () => EncState
  /** Floors for this node from the leader (or computed locally when leader); throws when unknown. */
  readonly floors: () => Promise<Floors>
  /** Proposes a 0x03 (through the leader) and resolves once it committed; throws to retry. */
  readonly register: (payload: Uint8Array) => Promise<RegistrationResult>
  readonly log: Log
  readonly onKeysChanged?: () => void
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Back-off between sessions opened in a row that still lack a DEK (a keystore behind the log). */
const RENEW_MAX_DELAY_MS = 30_000

export class EncryptionSession {
  private readonly d: SessionDeps
  readonly nodeId16: number
  sessionId: string | null = null
  private publicKey: Uint8Array | null = null
  private privateKey: KeyObject | null = null
  private secret: Uint8Array | null = null
  /** Handed-over DEKs of the current session, by key id. */
  readonly keys = new Map<number, SessionKey>()
  /** Registered keys of the superseded session, until this session registers the same DEK. */
  private readonly previous = new Map<number, SessionKey>()
  /** Unretired DEKs the keystore left out (epoch would pass 0xFFFF). */
  readonly exhausted = new Set<number>()
  /** Per purpose, the active key id this session last sealed under (SPEC §6 hand-over fallback). */
  private readonly lastSealing: Record<Purpose, number> = { storage: 0, raft: 0 }
  private opening: Promise<void> | null = null
  /** An encryption-capable keystore answered and the session is not open yet (health waits: CONTRACT §4). */
  awaitingOpen = false
  /** Sessions opened in a row to fetch DEKs the previous one lacked (for the back-off). */
  private renewals = 0
  private renewTimer: ReturnType<typeof setTimeout> | null = null
  private closed = false
  /** Set when this session's own registration was refused; a new session clears it. */
  refusal: RegistrationRefusal | null = null
  private readyFlag = false
  private waiters: (() => void)[] = []

  constructor(d: SessionDeps) {
    this.d = d
    this.nodeId16 = nodeId16(d.fullNodeId)
  }

  /** The session as dispatches carry it. */
  get dispatchSession(): { session_id: string; public_key: Uint8Array } | undefined {
    return this.sessionId === null || this.publicKey === null
      ? undefined
      : { session_id: this.sessionId, public_key: this.publicKey }
  }

  /** True once a session is open, holds every active DEK and their registrations committed. */
  get ready(): boolean {
    if (!this.readyFlag) return false
    const st = this.d.state()
    return [st.active.storage, st.active.raft].every(
      (id) => id === 0 || this.keys.has(id) || this.exhausted.has(id),
    )
  }

  /** Whether the session holds every unretired DEK of the replicated state (reads can open anything). */
  get keysLoaded(): boolean {
    return this.sessionId !== null && this.missingKeyIds().length === 0
  }

  /**
   * Unretired DEKs of the replicated state this session neither holds nor was
   * told are exhausted: their entries reached the keystore outside this
   * session, so no hand-over brought them.
   */
  missingKeyIds(): number[] {
    return unretiredKeyIds(this.d.state()).filter((id) => !this.keys.has(id) && !this.exhausted.has(id))
  }

  close(): void {
    this.closed = true
    if (this.renewTimer !== null) clearTimeout(this.renewTimer)
    this.renewTimer = null
    this.wakeAll()
  }

  /**
   * Opens a new session (superseding any), retrying until it succeeds or the
   * node closes; resolves once its active DEKs are registered.
   */
  start(): Promise<void> {
    if (this.opening !== null) return this.opening
    this.opening = this.openLoop().finally(() => {
      this.opening = null
      // A DEK created while this session was opening may have missed it.
      setTimeout(() => this.reconcile(), 0)
    })
    return this.opening
  }

  /**
   * Makes this node's session whole, so the apply path never waits on what
   * the node can fix itself (SPEC §2.2, §6): no session → open one; a DEK of
   * the replicated state the session lacks → a new session (fresh epochs
   * above every floor, then a 0x03 per active DEK); an active DEK held but
   * not registered → its 0x03. Idempotent; cheap when nothing is missing.
   */
  reconcile(): void {
    if (this.closed || this.opening !== null || this.renewTimer !== null) return
    if (this.sessionId === null) {
      void this.start()
      return
    }
    const missing = this.missingKeyIds()
    if (missing.length > 0) {
      const delay = this.renewals === 0 ? 0 : Math.min(RENEW_MAX_DELAY_MS, 1_000 * 2 ** (this.renewals - 1))
      this.renewals++
      this.d.log.warn("the writer session lacks DEKs of the replicated state; opening a new session", {
        session_id: this.sessionId,
        missing_key_ids: missing,
        delay_ms: delay,
      })
      this.renewTimer = setTimeout(() => {
        this.renewTimer = null
        if (!this.closed && this.missingKeyIds().length > 0) void this.start()
      }, delay)
      return
    }
    this.renewals = 0
    const st = this.d.state()
    for (const id of [st.active.storage, st.active.raft]) {
      const k = this.keys.get(id)
      if (k !== undefined && !k.registered && k.registering !== true) void this.registerKey(id)
    }
  }

  private async openLoop(): Promise<void> {
    let attempt = 0
    while (!this.closed) {
      try {
        await this.openOnce()
        return
      } catch (e) {
        if (attempt++ % 10 === 0)
          this.d.log.warn("writer session not open yet; retrying", { error: String(e) })
        // Waiting for a leader (floors) is short: keep the retry close behind the election.
        await sleep(Math.min(this.awaitingOpen ? 250 : 2_000, 100 * 2 ** Math.min(attempt, 5)))
      }
    }
  }

  private async openOnce(): Promise<void> {
    this.awaitingOpen = false
    const live = await this.d.keystore.liveness()
    if (!live.encryption_capable) throw new Error("the keystore is not encryption-capable")
    this.awaitingOpen = true
    this.secret ??= await this.d.nodeSecret()
    const floors = await this.d.floors()
    const kp = generateHandoverKeyPair()
    const sessionId = randomBytes(16).toString("hex")
    const r = await this.d.keystore.session({
      session_id: sessionId as never,
      public_key: kp.publicKey,
      floors: floors.floors as never,
      floors_as_of_index: floors.asOfIndex,
    })
    const opened = openHandover({
      privateKey: kp.privateKey,
      nodeSecret: this.secret,
      nodeId: this.d.nodeId,
      sessionId,
      sealed: r.sealed,
    })
    if (Result.isFailure(opened))
      throw new Error(`the session hand-over does not open: ${opened.failure.message}`)
    this.readyFlag = false
    // The superseded session's registered keys stay usable until this one's
    // registration of the same DEK commits: an apply between its prepare and
    // its seal keeps a key, and writes do not pause while the new 0x03s commit.
    for (const k of this.previous.values()) k.dek.fill(0)
    this.previous.clear()
    for (const k of this.keys.values()) {
      if (k.registered) this.previous.set(k.keyId, k)
      else k.dek.fill(0)
    }
    this.keys.clear()
    this.exhausted.clear()
    this.sessionId = sessionId
    this.refusal = null
    this.awaitingOpen = false
    this.publicKey = kp.publicKey
    this.privateKey = kp.privateKey
    for (const h of opened.success) this.addKey(h.keyId, h.purpose, h.dek, h.localEpoch, false)
    for (const id of r.exhausted_key_ids) this.exhausted.add(id)
    this.d.log.info("writer session opened", {
      session_id: sessionId,
      key_ids: r.key_ids,
      exhausted_key_ids: r.exhausted_key_ids,
      floors_as_of_index: floors.asOfIndex,
    })
    this.d.onKeysChanged?.()
    this.wakeAll()
    await this.registerActive()
  }

  private addKey(keyId: number, purpose: Purpose, dek: Uint8Array, epoch: number, registered: boolean): void {
    const old = this.keys.get(keyId)
    // Never two counters for one (DEK, epoch) in a process: keep the existing one.
    if (old !== undefined && old.epoch === epoch) {
      if (registered) old.registered = true
      return
    }
    this.keys.set(keyId, {
      keyId,
      purpose,
      dek,
      epoch,
      registered,
      counter: new WriteCounter({ nodeId16: this.nodeId16, localEpoch: epoch }),
    })
    this.exhausted.delete(keyId)
  }

  /** Proposes the 0x03 of every active DEK not registered yet in this session; resolves when all committed. */
  async registerActive(): Promise<void> {
    const st = this.d.state()
    const ids = [st.active.storage, st.active.raft].filter((id) => id !== 0)
    await Promise.all(ids.map((id) => this.registerKey(id)))
    this.markReadyIfRegistered()
  }

  /** The session becomes ready once every active DEK it holds is registered (or exhausted). */
  private markReadyIfRegistered(): void {
    if (this.readyFlag || this.sessionId === null) return
    const st = this.d.state()
    const ids = [st.active.storage, st.active.raft].filter((id) => id !== 0)
    if (ids.every((id) => this.keys.get(id)?.registered === true || this.exhausted.has(id))) {
      this.readyFlag = true
      this.wakeAll()
    }
  }

  /** Registers one handed-over DEK at its session epoch (idempotent; retried until committed). */
  async registerKey(keyId: number): Promise<void> {
    const k = this.keys.get(keyId)
    if (k === undefined || k.registered || k.registering === true || this.refusal !== null) return
    const session = this.sessionId
    if (session === null) return
    k.registering = true
    try {
      const payload = encodeEntry({
        tag: Tag.Registration,
        registration: {
          dek_id: keyId as never,
          full_node_id: this.d.fullNodeId,
          local_epoch: k.epoch as never,
          session_id: session as never,
        },
      })
      let attempt = 0
      while (!this.closed && this.sessionId === session && this.keys.get(keyId) === k) {
        try {
          const r = await this.d.register(payload)
          if (r._tag === "Rejected") {
            this.refused(keyId, r.code, r.reason)
            return
          }
          k.registered = true
          this.previous.get(keyId)?.dek.fill(0)
          this.previous.delete(keyId)
          this.d.log.info("registration committed", {
            key_id: keyId,
            local_epoch: k.epoch,
            session_id: session,
          })
          this.markReadyIfRegistered()
          this.wakeAll()
          this.d.onKeysChanged?.()
          return
        } catch (e) {
          // The leader's pre-validation gives the verdict apply would record: final, not transient.
          const tag = (e as { readonly _tag?: unknown })._tag
          if (typeof tag === "string" && refusalOf(tag, "") !== null) {
            this.refused(keyId, tag, (e as Error).message)
            return
          }
          if (attempt++ % 10 === 0)
            this.d.log.warn("registration not committed yet; retrying", { key_id: keyId, error: String(e) })
          await sleep(Math.min(2_000, 100 * 2 ** Math.min(attempt, 5)))
        }
      }
    } finally {
      k.registering = false
    }
  }

  private refused(keyId: number, code: string, reason: string): void {
    this.d.log.error("own registration refused", { key_id: keyId, code, reason, session_id: this.sessionId })
    this.refusal ??= refusalOf(code, reason)
    this.wakeAll()
  }

  /** New DEKs from a dispatch reply (SPEC §4.3, §6). */
  acceptHandover(sealed: Uint8Array, unregistered: readonly number[], sessionId: string): void {
    if (this.privateKey === null || this.secret === null || sessionId !== this.sessionId) return
    const opened = openHandover({
      privateKey: this.privateKey,
      nodeSecret: this.secret,
      nodeId: this.d.nodeId,
      sessionId,
      sealed,
    })
    if (Result.isFailure(opened)) {
      this.d.log.error("a dispatch hand-over does not open; opening a new session", {
        error: opened.failure.message,
      })
      void this.start()
      return
    }
    for (const h of opened.success) {
      const registered = !unregistered.includes(h.keyId)
      this.addKey(h.keyId, h.purpose, h.dek, h.localEpoch, registered)
      if (!registered) void this.registerKey(h.keyId)
    }
    this.d.onKeysChanged?.()
    this.wakeAll()
  }

  markExhausted(ids: readonly number[]): void {
    for (const id of ids) this.exhausted.add(id)
  }

  /** The DEK of `keyId` for opening (any unretired DEK this session holds). */
  dek(keyId: number): Uint8Array | undefined {
    return (this.keys.get(keyId) ?? this.previous.get(keyId))?.dek
  }

  /**
   * The key to seal `purpose` under now: the active DEK if registered; while
   * its own 0x03 is pending, a registered DEK of the same purpose (SPEC §6
   * exception); "refused" when this session's own registration was refused
   * (the node halts with `refusal`: a superseded session's key is no way
   * around a verdict), "exhausted" / "wait" otherwise.
   */
  sealingKey(purpose: Purpose): SessionKey | "exhausted" | "wait" | "refused" {
    const st = this.d.state()
    const active = st.active[purpose]
    if (active === 0) return "wait"
    const k = this.keys.get(active)
    // This session's registered key, else the superseded session's until this one's 0x03 commits.
    const registered = (id: number): SessionKey | undefined => {
      const c = this.keys.get(id)
      return c?.registered === true ? c : this.previous.get(id)
    }
    const current = registered(active)
    if (current !== undefined && (this.refusal === null || current === k)) {
      this.lastSealing[purpose] = active
      return current
    }
    if (this.refusal !== null) return "refused"
    // The previous active DEK this session sealed under, else any registered one of the purpose.
    const usable = (c: SessionKey | undefined) =>
      c !== undefined && c.purpose === purpose && c.registered && st.keys[String(c.keyId)]?.retired !== true
    let fallback: SessionKey | undefined = registered(this.lastSealing[purpose])
    if (!usable(fallback)) {
      fallback = undefined
      for (const c of [...this.previous.values(), ...this.keys.values()]) if (usable(c)) fallback = c
    }
    if (k !== undefined && fallback !== undefined) return fallback
    if (this.exhausted.has(active)) return "exhausted"
    return "wait"
  }

  /** Resolves when something changed (a key registered, a hand-over) or after `ms`. */
  changed(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done)
        resolve()
      }, ms)
      const done = () => {
        clearTimeout(t)
        resolve()
      }
      this.waiters.push(done)
    })
  }

  private wakeAll(): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}
