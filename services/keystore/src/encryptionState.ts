// Views and bulk operations over the replicated encryption state:
// - export / restore for snapshots (SPEC.md §4.6),
// - DEK generation for the leader (SPEC.md §5 bootstrap / rotate-dek),
// - the capability report (SPEC.md §4.5) and the sidecar-state report.
import { drawKeyId, generateDek } from "@ekv/crypto"
import type { EncryptionStateExport } from "@ekv/wire/keystore-protocol"
import { Effect } from "effect"
import { unwrapWith } from "./applier.ts"
import { CorruptSidecar, KekMismatch, type RegistryFailed, type SidecarWriteFailed } from "./errors.ts"
import type { KekProvider } from "./kekProvider.ts"
import { appliedIndex, type KeystoreState, persistSidecar } from "./keystoreState.ts"
import type { RegistryEntry } from "./registryStore.ts"
import { SIDECAR_VERSION, type Sidecar, type SidecarKey, sidecarInvariantViolation } from "./sidecarFile.ts"
import { nodeId16Of } from "./writerRegistry.ts"

const exportOf = (
  sidecar: Sidecar,
  lastRegistryIndex: number,
  rows: ReadonlyArray<RegistryEntry>,
): EncryptionStateExport => {
  const unretired = new Set(
    Object.entries(sidecar.keys)
      .filter(([, k]) => !k.retired)
      .map(([id]) => Number(id)),
  )
  return {
    raft_applied_index: sidecar.raft_applied_index,
    last_registry_index: lastRegistryIndex,
    storage_envelope_active: sidecar.storage_envelope_active,
    raft_envelope_cutover_index: sidecar.raft_envelope_cutover_index,
    active: { storage: sidecar.active.storage, raft: sidecar.active.raft },
    keys: Object.entries(sidecar.keys)
      .map(([id, k]) => ({
        key_id: Number(id),
        purpose: k.purpose,
        wrapped: k.wrapped,
        created: k.created,
        retired: k.retired,
      }))
      .sort((a, b) => a.key_id - b.key_id),
    // Rows of DEKs the sidecar does not hold (an interrupted attempt) are not state.
    writers: rows
      .filter((e) => unretired.has(e.dekId))
      .map((e) => ({
        dek_id: e.dekId,
        node_id16: e.nodeId16,
        full_node_id: e.row.full_node_id.toString(),
        first_seen_local_epoch: e.row.first_seen_local_epoch,
        last_seen_local_epoch: e.row.last_seen_local_epoch,
        last_session_id: e.row.last_session_id ?? null,
        raft_index: e.row.raft_index,
      })),
  }
}

/** The state as of the last applied encryption entry; taken under the apply lock. */
export const exportState = (state: KeystoreState): Effect.Effect<EncryptionStateExport, RegistryFailed> =>
  state.lock.withPermit(
    Effect.gen(function* () {
      const rows = yield* state.store.allRows
      const last = yield* state.store.lastRegistryIndex
      return exportOf(state.sidecar, last, rows)
    }),
  )

/**
 * Installs a snapshot's encryption state, crash-durably, before any later
 * entry applies: every wrapped DEK must open under this keystore's KEK (or
 * its next KEK, after a rewrap in the snapshot), then registry rows (one sync
 * batch), then the sidecar as the commit point. Local epochs never go down:
 * each DEK keeps max(this node's local epoch, its registry row); the next
 * session raises it above the leader's floors (SPEC.md §6).
 */
export const restoreState = (
  state: KeystoreState,
  snap: EncryptionStateExport,
): Effect.Effect<void, CorruptSidecar | KekMismatch | RegistryFailed | SidecarWriteFailed> =>
  state.lock.withPermit(
    Effect.gen(function* () {
      const self = state.config.fullNodeId
      const keys: Record<string, SidecarKey> = {}
      for (const k of snap.keys) {
        const ownRow = snap.writers.find((w) => w.dek_id === k.key_id && BigInt(w.full_node_id) === self)
        const local = state.sidecar.keys[String(k.key_id)]?.local_epoch ?? 0
        keys[String(k.key_id)] = {
          purpose: k.purpose,
          wrapped: k.wrapped,
          created: k.created,
          local_epoch: Math.max(local, ownRow?.last_seen_local_epoch ?? 0),
          retired: k.retired,
        }
      }
      const next: Sidecar = {
        version: SIDECAR_VERSION,
        raft_applied_index: snap.raft_applied_index,
        storage_envelope_active: snap.storage_envelope_active,
        raft_envelope_cutover_index: snap.raft_envelope_cutover_index,
        active: { storage: snap.active.storage, raft: snap.active.raft },
        keys,
      }
      const violation = sidecarInvariantViolation(next)
      if (violation !== undefined) {
        return yield* new CorruptSidecar({
          message: `restored encryption state is invalid: ${violation}`,
          path: "restore",
        })
      }
      const kek = yield* pickKek(next, state.keks.current, state.keks.next)
      yield* state.store.replaceAll(
        snap.writers.map((w) => ({
          dekId: w.dek_id,
          nodeId16: w.node_id16,
          row: {
            full_node_id: BigInt(w.full_node_id),
            first_seen_local_epoch: w.first_seen_local_epoch,
            last_seen_local_epoch: w.last_seen_local_epoch,
            last_session_id: w.last_session_id ?? undefined,
            raft_index: w.raft_index,
          },
        })),
        snap.last_registry_index,
      )
      yield* persistSidecar(state, next)
      yield* state.store.finishRestore
      state.keks.current = kek
    }),
  )

const pickKek = (
  sidecar: Sidecar,
  current: KekProvider | undefined,
  next: KekProvider | undefined,
): Effect.Effect<KekProvider | undefined, KekMismatch> => {
  const unretired = Object.entries(sidecar.keys).filter(([, k]) => !k.retired)
  const opensAll = (kek: KekProvider | undefined) =>
    Effect.forEach(unretired, ([id, k]) =>
      unwrapWith(kek, Number(id), k.purpose, Buffer.from(k.wrapped, "base64")).pipe(
        Effect.tap((d) => Effect.sync(() => d.fill(0))),
      ),
    )
  if (unretired.length === 0) return Effect.succeed(current)
  return opensAll(current).pipe(
    Effect.as(current),
    Effect.catch((e) => (next === undefined ? Effect.fail(e) : opensAll(next).pipe(Effect.as(next)))),
  )
}

export interface GeneratedDek {
  readonly purpose: "storage" | "raft"
  readonly keyId: number
  /** Only the KEK-wrapped form ever leaves the keystore. */
  readonly wrapped: Uint8Array
}

/**
 * New DEKs for the leader's bootstrap or rotation proposal: CSPRNG bytes, a
 * key id never in the sidecar (retired included) nor handed out before,
 * wrapped under the current KEK; the plaintext is wiped.
 */
export const generateDeks = (
  state: KeystoreState,
  purposes: ReadonlyArray<"storage" | "raft">,
): Effect.Effect<ReadonlyArray<GeneratedDek>, KekMismatch> =>
  state.lock.withPermit(
    Effect.gen(function* () {
      const kek = state.keks.current
      if (kek === undefined)
        return yield* new KekMismatch({ message: "no KEK is loaded; cannot generate DEKs" })
      const used = new Set<number>([...Object.keys(state.sidecar.keys).map(Number), ...state.generatedKeyIds])
      const out: Array<GeneratedDek> = []
      for (const purpose of purposes) {
        const keyId = drawKeyId(used)
        used.add(keyId)
        const dek = generateDek()
        const wrapped = yield* kek.wrap({ dek, purpose, keyId })
        dek.fill(0)
        state.generatedKeyIds.add(keyId)
        out.push({ purpose, keyId, wrapped })
      }
      return out
    }),
  )

export interface CapabilityInput {
  readonly node: string
  readonly buildSha: string
  readonly encryptionEnabled: boolean
  /** The sidecar directory passed the durability probe. */
  readonly probePassed: boolean
  readonly applierReady: boolean
}

/** CapabilityReport of CONTRACT.md §3, encoded (full_node_id as a decimal string). */
export interface CapabilityFields {
  readonly node: string
  readonly encryption_capable: boolean
  readonly build_sha: string
  readonly sidecar_present: boolean
  readonly full_node_id: string
  readonly local_epoch: number
  readonly kek_id: string | null
  readonly next_kek_id: string | null
}

/**
 * SPEC.md §4.5: capable only with the flag on, a KEK loaded and verified
 * against the sidecar (startup refuses otherwise, so loaded = verified), the
 * probe passed and the applier ready.
 */
export const capabilityReport = (state: KeystoreState, input: CapabilityInput): CapabilityFields => {
  const { current, next } = state.keks
  const capable = input.encryptionEnabled && current !== undefined && input.probePassed && input.applierReady
  const storage = state.sidecar.active.storage
  return {
    node: input.node,
    encryption_capable: capable,
    build_sha: input.buildSha,
    sidecar_present: state.sidecarPresent,
    full_node_id: capable ? state.config.fullNodeId.toString() : "0",
    local_epoch: capable && storage !== 0 ? (state.sidecar.keys[String(storage)]?.local_epoch ?? 0) : 0,
    kek_id: current?.kekId ?? null,
    // After a rewrap the next KEK is the current one: nothing further to rotate to.
    next_kek_id: next !== undefined && next.kekId !== current?.kekId ? next.kekId : null,
  }
}

/** SidecarStateReport of CONTRACT.md §3, encoded. */
export interface SidecarStateFields {
  readonly wrapped_deks_by_id: Record<string, string>
  readonly active_storage_id: number
  readonly active_raft_id: number
  readonly storage_envelope_active: boolean
  readonly raft_envelope_cutover_index: number
  readonly latest_applied_index: number
  readonly writer_registry_for_caller: Record<string, number>
}

export const sidecarState = (
  state: KeystoreState,
  callerFullNodeId: bigint | undefined,
): Effect.Effect<SidecarStateFields, RegistryFailed> =>
  Effect.gen(function* () {
    const s = state.sidecar
    const wrapped: Record<string, string> = {}
    for (const [id, k] of Object.entries(s.keys)) if (!k.retired) wrapped[id] = k.wrapped
    const forCaller: Record<string, number> = {}
    if (callerFullNodeId !== undefined) {
      for (const e of yield* state.store.allRows) {
        if (e.row.full_node_id === callerFullNodeId && wrapped[String(e.dekId)] !== undefined) {
          forCaller[String(e.dekId)] = e.row.last_seen_local_epoch
        }
      }
    }
    return {
      wrapped_deks_by_id: wrapped,
      active_storage_id: s.active.storage,
      active_raft_id: s.active.raft,
      storage_envelope_active: s.storage_envelope_active,
      raft_envelope_cutover_index: s.raft_envelope_cutover_index,
      latest_applied_index: yield* appliedIndex(state),
      writer_registry_for_caller: forCaller,
    }
  })

/**
 * Active DEKs whose sidecar epoch is below this node's own registry row: the
 * SPEC.md §7 LocalEpochRollback condition, reported for consensus to refuse on.
 */
export const epochsBelowRegistry = (state: KeystoreState): Effect.Effect<Array<number>, RegistryFailed> =>
  Effect.gen(function* () {
    const out: Array<number> = []
    const s = state.sidecar
    for (const id of new Set([s.active.storage, s.active.raft])) {
      if (id === 0) continue
      const row = yield* state.store.row(id, nodeId16Of(state.config.fullNodeId))
      const local = s.keys[String(id)]?.local_epoch ?? 0
      if (
        row !== undefined &&
        row.full_node_id === state.config.fullNodeId &&
        local < row.last_seen_local_epoch
      ) {
        out.push(id)
      }
    }
    return out
  })
