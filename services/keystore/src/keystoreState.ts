// The live state one keystore process holds: the last durable sidecar, its
// KEKs, the registry handle and the lock that serializes everything that
// changes them (apply, session open, restore). Applier, sessions and the
// encryption-state views all work through it.
import { Effect, Semaphore } from "effect"
import type { SidecarWriteFailed } from "./errors.ts"
import type { KekProvider } from "./kekProvider.ts"
import type { RegistryStore } from "./registryStore.ts"
import { type Sidecar, type WriteOptions, writeSidecar } from "./sidecarFile.ts"

export interface KeystoreConfig {
  readonly nodeId: string
  readonly fullNodeId: bigint
  /** EKV_NODE_SECRET_FILE: 32 bytes shared with this node's consensus only (SPEC.md §4.3). */
  readonly nodeSecret: Uint8Array
  readonly sidecarPath: string
  /** Test hook: runs after each step of every sidecar write. */
  readonly sidecarWrite?: WriteOptions
}

export interface Keks {
  current: KekProvider | undefined
  next: KekProvider | undefined
}

export interface KeystoreState {
  readonly config: KeystoreConfig
  readonly store: RegistryStore
  /** The sidecar as last durably written (or read at startup). */
  sidecar: Sidecar
  /** Whether keys.json exists on disk. */
  sidecarPresent: boolean
  readonly keks: Keks
  /** One mutation at a time, in arrival order. */
  readonly lock: Semaphore.Semaphore
  /** Key ids handed out by generate-dek that no entry has applied yet. */
  readonly generatedKeyIds: Set<number>
}

export const makeKeystoreState = (p: {
  readonly config: KeystoreConfig
  readonly store: RegistryStore
  readonly sidecar: Sidecar
  readonly sidecarPresent: boolean
  readonly keks: Keks
}): KeystoreState => ({
  config: p.config,
  store: p.store,
  sidecar: p.sidecar,
  sidecarPresent: p.sidecarPresent,
  keks: { current: p.keks.current, next: p.keks.next },
  lock: Semaphore.makeUnsafe(1),
  generatedKeyIds: new Set(),
})

/** Writes `next` crash-durably, then makes it the state's sidecar (never before). */
export const persistSidecar = (
  state: KeystoreState,
  next: Sidecar,
): Effect.Effect<void, SidecarWriteFailed> =>
  writeSidecar(state.config.sidecarPath, next, state.config.sidecarWrite).pipe(
    Effect.tap(() =>
      Effect.sync(() => {
        state.sidecar = next
        state.sidecarPresent = true
      }),
    ),
  )

/** The highest encryption index this keystore reflects (0x03 in LevelDB, 0x04/0x05 in the sidecar). */
export const appliedIndex = (state: KeystoreState) =>
  state.store.lastRegistryIndex.pipe(Effect.map((r) => Math.max(r, state.sidecar.raft_applied_index)))
