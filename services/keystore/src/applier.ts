// The Applier (SPEC.md §4.4): applies the encryption entries (0x03–0x05) its
// node's FSM dispatches, one at a time in index order, idempotently.
//
// Crash order:
// - 0x03: the row and last_registry_index = i (and the outcome) in one sync batch.
// - 0x04/0x05: registry rows and the outcome first (rows carry raft_index, so
//   redoing them is harmless), then the sidecar with raft_applied_index = i —
//   the commit point. A rejected 0x04/0x05 commits the same way.
// - index ≤ applied → the recorded outcome, no effect.
// The verdict comes from entryPlan.ts (replicated state only); this driver adds
// the node-local parts: KEK unwraps, this node's epochs, the sealed hand-over.
import { sealHandover } from "@ekv/crypto"
import type { EncryptionEventKind, EncryptionPayload, RejectionCode } from "@ekv/wire"
import { Deferred, Effect } from "effect"
import { type Plan, type Purpose, planEntry } from "./entryPlan.ts"
import {
  type ApplyError,
  KekMismatch,
  KekNextMissing,
  OutcomeNotRetained,
  SidecarBehindRaftLog,
} from "./errors.ts"
import type { KekProvider } from "./kekProvider.ts"
import { appliedIndex, type KeystoreState, persistSidecar } from "./keystoreState.ts"
import type { HandoverLine, RecordedOutcome, SessionRecord } from "./outcome.ts"
import type { Sidecar } from "./sidecarFile.ts"
import { nodeId16Of } from "./writerRegistry.ts"

const MAX_EPOCH = 0xffff

/** The writer session a dispatch is made under (SPEC.md §4.3: each dispatch carries its public key). */
export interface DispatchSession {
  readonly sessionId: string
  /** Raw X25519 public key (32 bytes). */
  readonly publicKey: Uint8Array
}

export interface DispatchInput {
  /** Raft index of the entry. */
  readonly index: number
  /** Index of the previous encryption entry (0x03–0x05) in the log, 0 if none. */
  readonly prevEncryptionIndex: number
  readonly payload: EncryptionPayload
  readonly session: DispatchSession | undefined
}

/** New DEKs sealed to the session (crypto sealHandover); epochs only inside `sealed`. */
export interface DispatchHandover {
  readonly sealed: Uint8Array
  readonly keyIds: ReadonlyArray<number>
  /** DEKs whose epoch must be registered (a 0x03 committed) before sealing under them (SPEC.md §6). */
  readonly unregisteredKeyIds: ReadonlyArray<number>
}

export type DispatchOutcome =
  | {
      readonly status: "applied"
      readonly index: number
      readonly kind: EncryptionEventKind
      /** "inserted" | "advanced" | "unchanged" for 0x03, "applied" otherwise. */
      readonly outcome: "inserted" | "advanced" | "unchanged" | "applied"
      readonly keyIds: ReadonlyArray<number>
      /** true when this index was applied before (a recorded outcome, no effect). */
      readonly replay: boolean
      readonly handover: DispatchHandover | undefined
      /** New DEKs left out of the hand-over because their epoch would pass 0xFFFF. */
      readonly exhaustedKeyIds: ReadonlyArray<number>
    }
  | {
      readonly status: "rejected"
      readonly index: number
      readonly kind: EncryptionEventKind
      readonly keyIds: ReadonlyArray<number>
      readonly code: RejectionCode
      readonly reason: string
      readonly replay: boolean
    }

export interface Applier {
  readonly dispatch: (input: DispatchInput) => Effect.Effect<DispatchOutcome, ApplyError>
}

const base64 = (b: Uint8Array): string => Buffer.from(b).toString("base64")

/** The stored session if the dispatch is made under it (same id and key), else undefined. */
export const matchingSession = (
  state: KeystoreState,
  session: DispatchSession | undefined,
): Effect.Effect<SessionRecord | undefined, ApplyError> =>
  session === undefined
    ? Effect.succeed(undefined)
    : state.store.session.pipe(
        Effect.map((s) =>
          s !== undefined && s.session_id === session.sessionId && s.public_key === base64(session.publicKey)
            ? s
            : undefined,
        ),
      )

/** Unwraps a DEK with `kek`; failure is node-local (KekMismatch). */
export const unwrapWith = (
  kek: KekProvider | undefined,
  keyId: number,
  purpose: Purpose,
  wrapped: Uint8Array,
): Effect.Effect<Uint8Array, KekMismatch> =>
  kek === undefined
    ? Effect.fail(new KekMismatch({ message: `no KEK is loaded to unwrap ${purpose} DEK ${keyId}`, keyId }))
    : kek.unwrap({ wrapped, purpose, keyId }).pipe(
        Effect.mapError(
          (e) =>
            new KekMismatch({
              message: `KEK ${kek.kekId} does not unwrap ${purpose} DEK ${keyId}: ${e.message}`,
              keyId,
            }),
        ),
      )

/** Seals `lines` for the session; undefined when there is nothing to hand over. */
const seal = (
  state: KeystoreState,
  session: SessionRecord,
  lines: ReadonlyArray<HandoverLine>,
  deks: ReadonlyMap<number, Uint8Array>,
): DispatchHandover | undefined => {
  const keys = lines.flatMap((l) => {
    const dek = deks.get(l.key_id)
    return dek === undefined ? [] : [{ keyId: l.key_id, purpose: l.purpose, dek, localEpoch: l.local_epoch }]
  })
  if (keys.length === 0) return undefined
  try {
    const sealed = sealHandover({
      recipientPublicKey: Buffer.from(session.public_key, "base64"),
      nodeSecret: state.config.nodeSecret,
      nodeId: state.config.nodeId,
      sessionId: session.session_id,
      keys,
    })
    return {
      sealed,
      keyIds: keys.map((k) => k.keyId),
      unregisteredKeyIds: lines.filter((l) => !l.registered && deks.has(l.key_id)).map((l) => l.key_id),
    }
  } catch {
    // An unusable session key: no hand-over; consensus opens a new session.
    return undefined
  }
}

const fromRecord = (
  rec: RecordedOutcome,
  replay: boolean,
  handover: DispatchHandover | undefined,
): DispatchOutcome =>
  rec.outcome === "rejected"
    ? {
        status: "rejected",
        index: rec.index,
        kind: rec.kind,
        keyIds: rec.key_ids,
        code: rec.code ?? "PreconditionFailed",
        reason: rec.reason ?? "",
        replay,
      }
    : {
        status: "applied",
        index: rec.index,
        kind: rec.kind,
        outcome: rec.outcome,
        keyIds: rec.key_ids,
        replay,
        handover,
        exhaustedKeyIds: rec.exhausted_key_ids ?? [],
      }

/** A recorded outcome; key material again only to the session the entry was applied in. */
const replay = (state: KeystoreState, input: DispatchInput) =>
  Effect.gen(function* () {
    const rec = yield* state.store.outcome(input.index)
    if (rec === undefined) {
      return yield* new OutcomeNotRetained({
        message: `index ${input.index} is at or below what this keystore applied, but no outcome is recorded for it (state restored from a later snapshot); recover with resync-sidecar`,
        index: input.index,
      })
    }
    let handover: DispatchHandover | undefined
    const session = yield* matchingSession(state, input.session)
    if (session !== undefined && rec.session_id === session.session_id && (rec.handover?.length ?? 0) > 0) {
      const deks = new Map<number, Uint8Array>()
      for (const line of rec.handover ?? []) {
        const key = state.sidecar.keys[String(line.key_id)]
        if (key === undefined || key.retired) continue
        deks.set(
          line.key_id,
          yield* unwrapWith(
            state.keks.current,
            line.key_id,
            line.purpose,
            Buffer.from(key.wrapped, "base64"),
          ),
        )
      }
      handover = seal(state, session, rec.handover ?? [], deks)
      for (const d of deks.values()) d.fill(0)
    }
    return fromRecord(rec, true, handover)
  })

/** The epoch this node uses for a DEK an entry creates (SPEC.md §4.3, §6). */
export const epochForCreatedDek = (p: {
  readonly index: number
  readonly keyId: number
  readonly batchEpoch: number | undefined
  readonly session: SessionRecord | undefined
}): { readonly epoch: number; readonly registered: boolean } => {
  const { session, batchEpoch } = p
  if (session === undefined) return { epoch: batchEpoch ?? 0, registered: batchEpoch !== undefined }
  // Appended after the session took its floors: the batch line is a committed
  // registration no earlier process of this node can have used.
  if (batchEpoch !== undefined && p.index > session.floors_as_of_index)
    return { epoch: batchEpoch, registered: true }
  // An older entry (replayed log, restored copy) or no line for this node: a
  // fresh epoch above anything registered, used only once its 0x03 commits.
  return { epoch: Math.max(batchEpoch ?? 0, session.floors[String(p.keyId)] ?? 0) + 1, registered: false }
}

const apply = (state: KeystoreState, input: DispatchInput): Effect.Effect<DispatchOutcome, ApplyError> =>
  Effect.gen(function* () {
    const { index, payload } = input
    const pending = yield* state.store.restorePending
    if (pending !== undefined) {
      // Rows of a snapshot with the old sidecar: nothing may apply on that mix.
      return yield* new SidecarBehindRaftLog({
        message: `a snapshot restore was interrupted before its sidecar commit; install the snapshot again or resync-sidecar`,
        applied: state.sidecar.raft_applied_index,
        prevEncryptionIndex: input.prevEncryptionIndex,
      })
    }
    const applied = yield* appliedIndex(state)
    // SPEC.md §4.4: a 0x03 is a replay up to last_registry_index, a 0x04/0x05 up to the
    // sidecar's raft_applied_index — a sidecar behind the registry (rolled back, then
    // resynced) must still apply the control entries it lacks.
    const done =
      payload.tag === 0x03 ? yield* state.store.lastRegistryIndex : state.sidecar.raft_applied_index
    if (index <= done) return yield* replay(state, input)
    if (input.prevEncryptionIndex > applied) {
      return yield* new SidecarBehindRaftLog({
        message: `entry ${index} follows encryption entry ${input.prevEncryptionIndex}, but this keystore has applied only up to ${applied}; recover with resync-sidecar`,
        applied,
        prevEncryptionIndex: input.prevEncryptionIndex,
      })
    }
    const row =
      payload.tag === 0x03
        ? yield* state.store.row(payload.registration.dek_id, nodeId16Of(payload.registration.full_node_id))
        : undefined
    const plan = planEntry({
      index,
      payload,
      sidecar: state.sidecar,
      row,
      selfFullNodeId: state.config.fullNodeId,
      now: new Date().toISOString(),
    })
    const session = yield* matchingSession(state, input.session)
    const base = { index, kind: plan.kind, key_ids: [...plan.keyIds] }

    switch (plan._tag) {
      case "Rejected": {
        const rec: RecordedOutcome = { ...base, outcome: "rejected", code: plan.code, reason: plan.reason }
        if (payload.tag === 0x03) {
          yield* state.store.write({ lastRegistryIndex: index, outcome: rec })
        } else {
          yield* state.store.write({ outcome: rec })
          yield* persistSidecar(state, { ...state.sidecar, raft_applied_index: index })
        }
        return fromRecord(rec, false, undefined)
      }
      case "Registration": {
        const rec: RecordedOutcome = { ...base, outcome: plan.outcome }
        yield* state.store.write({
          putRows: plan.put === undefined ? [] : [plan.put],
          lastRegistryIndex: index,
          outcome: rec,
        })
        return fromRecord(rec, false, undefined)
      }
      case "Control": {
        // Node-local checks first; none of them changes the verdict.
        const deks = new Map<number, Uint8Array>()
        return yield* applyControl(state, input, plan, session, base, deks).pipe(
          // Plaintext DEKs never outlive the apply, whatever happened.
          Effect.ensuring(
            Effect.sync(() => {
              for (const d of deks.values()) d.fill(0)
            }),
          ),
        )
      }
    }
  })

const applyControl = (
  state: KeystoreState,
  input: DispatchInput,
  plan: Extract<Plan, { _tag: "Control" }>,
  session: SessionRecord | undefined,
  base: { index: number; kind: EncryptionEventKind; key_ids: Array<number> },
  deks: Map<number, Uint8Array>,
): Effect.Effect<DispatchOutcome, ApplyError> =>
  Effect.gen(function* () {
    const { index } = input
    for (const c of plan.created)
      deks.set(c.keyId, yield* unwrapWith(state.keks.current, c.keyId, c.purpose, c.wrapped))
    let nextKek: KekProvider | undefined
    if (plan.rewrap !== undefined) nextKek = yield* verifyRewrap(state, plan.rewrap)

    let sidecar: Sidecar = plan.sidecar
    const lines: Array<HandoverLine> = []
    const exhausted: Array<number> = []
    for (const c of plan.created) {
      const { epoch, registered } = epochForCreatedDek({
        index,
        keyId: c.keyId,
        batchEpoch: c.batchEpoch,
        session,
      })
      if (epoch > MAX_EPOCH) {
        exhausted.push(c.keyId)
        continue
      }
      const key = sidecar.keys[String(c.keyId)]!
      sidecar = {
        ...sidecar,
        keys: { ...sidecar.keys, [String(c.keyId)]: { ...key, local_epoch: epoch } },
      }
      lines.push({ key_id: c.keyId, purpose: c.purpose, local_epoch: epoch, registered })
    }
    const rec: RecordedOutcome = {
      ...base,
      outcome: "applied",
      ...(session === undefined ? {} : { session_id: session.session_id, handover: lines }),
      ...(exhausted.length > 0 ? { exhausted_key_ids: exhausted } : {}),
    }
    // Re-applying an entry the registry already passed (a rolled-back sidecar being
    // resynced) keeps the rows later registrations wrote: neither dropped nor replaced.
    const later = new Set<string>()
    for (const dek of plan.dropDeks)
      for (const r of yield* state.store.rowsOf(dek))
        if (r.row.raft_index > index) later.add(`${dek}|${r.nodeId16}`)
    for (const r of plan.putRows) {
      const existing = yield* state.store.row(r.dekId, r.nodeId16)
      if (existing !== undefined && existing.raft_index > index) later.add(`${r.dekId}|${r.nodeId16}`)
    }
    yield* state.store.write(
      later.size === 0
        ? { dropDeks: plan.dropDeks, putRows: plan.putRows, outcome: rec }
        : { putRows: plan.putRows.filter((r) => !later.has(`${r.dekId}|${r.nodeId16}`)), outcome: rec },
    )
    yield* persistSidecar(state, sidecar)
    if (nextKek !== undefined) state.keks.current = nextKek
    for (const id of plan.keyIds) state.generatedKeyIds.delete(id)
    const handover = session === undefined ? undefined : seal(state, session, lines, deks)
    return fromRecord(rec, false, handover)
  })

/**
 * rewrap-deks (SPEC.md §4.4): the next KEK must be this keystore's
 * EKV_KEK_NEXT_FILE (or already current after a restart), and every new wrap
 * must open under it to the same DEK the current wrap holds.
 */
const verifyRewrap = (
  state: KeystoreState,
  rewrap: {
    readonly nextKekId: string
    readonly wraps: ReadonlyArray<{ key_id: number; wrapped: Uint8Array }>
  },
): Effect.Effect<KekProvider, KekNextMissing | KekMismatch> =>
  Effect.gen(function* () {
    const { current, next } = state.keks
    const target =
      next?.kekId === rewrap.nextKekId ? next : current?.kekId === rewrap.nextKekId ? current : undefined
    if (target === undefined) {
      return yield* new KekNextMissing({
        message:
          next === undefined
            ? `rewrap-deks to KEK ${rewrap.nextKekId}, but no EKV_KEK_NEXT_FILE is loaded`
            : `rewrap-deks to KEK ${rewrap.nextKekId}, but EKV_KEK_NEXT_FILE holds KEK ${next.kekId}`,
      })
    }
    for (const w of rewrap.wraps) {
      const key = state.sidecar.keys[String(w.key_id)]!
      const fresh = yield* unwrapWith(target, w.key_id, key.purpose, w.wrapped)
      const old = yield* unwrapWith(current, w.key_id, key.purpose, Buffer.from(key.wrapped, "base64"))
      const same = Buffer.from(fresh).equals(Buffer.from(old))
      fresh.fill(0)
      old.fill(0)
      if (!same) {
        return yield* new KekMismatch({
          message: `rewrap-deks: the new wrap of DEK ${w.key_id} holds different key bytes`,
          keyId: w.key_id,
        })
      }
    }
    return target
  })

/**
 * Serializes dispatches: one at a time, in arrival order; a duplicate of an
 * index already queued or in progress joins it and gets the same result.
 * Applying is uninterruptible so a cancelled request never strands waiters.
 */
export const makeApplier = (state: KeystoreState): Applier => {
  const inFlight = new Map<number, Deferred.Deferred<DispatchOutcome, ApplyError>>()
  return {
    dispatch: (input) =>
      Effect.suspend(() => {
        const pending = inFlight.get(input.index)
        if (pending !== undefined) return Deferred.await(pending)
        const d = Deferred.makeUnsafe<DispatchOutcome, ApplyError>()
        inFlight.set(input.index, d)
        // Index order: the previous encryption entry, if still queued or in
        // progress, goes first (whatever its result), so a reordered arrival
        // is not mistaken for a keystore behind the log.
        const before = inFlight.get(input.prevEncryptionIndex)
        const waitBefore = before === undefined ? Effect.void : Effect.ignore(Deferred.await(before))
        return waitBefore.pipe(
          Effect.andThen(state.lock.withPermit(apply(state, input))),
          Effect.exit,
          Effect.flatMap((exit) =>
            Effect.sync(() => {
              inFlight.delete(input.index)
              Deferred.doneUnsafe(d, exit)
            }).pipe(Effect.andThen(exit)),
          ),
          Effect.uninterruptible,
        )
      }),
  }
}
