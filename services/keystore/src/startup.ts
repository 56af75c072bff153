// Opening a keystore and the startup guards it decides alone (SPEC.md §7):
// KekRequired, KekSourcesConflict, SidecarPresentWithoutFlag, KekMismatch,
// UnsupportedFilesystem, CorruptSidecar, DataDirLocked. Each is a typed
// error; main.ts turns it into one log line and a non-zero exit.
import { randomBytes } from "node:crypto"
import { closeSync, fsyncSync, linkSync, openSync, rmSync, writeSync } from "node:fs"
import { dirname, join } from "node:path"
import { fullNodeId } from "@ekv/crypto"
import { Context, Effect, Layer, type Scope } from "effect"
import { type Applier, makeApplier, unwrapWith } from "./applier.ts"
import { KekInvalid, KekMismatch, SidecarPresentWithoutFlag, type StartupError } from "./errors.ts"
import { errorText, type KekProvider, type LoadedKeks, loadKek, readKekFile } from "./kekProvider.ts"
import { type KeystoreState, makeKeystoreState } from "./keystoreState.ts"
import { openRegistryStore } from "./registryStore.ts"
import {
  emptySidecar,
  ensureDirectory,
  fsyncDirectory,
  probeDirectory,
  readSidecar,
  type Sidecar,
  type WriteOptions,
} from "./sidecarFile.ts"

export interface KeystoreOptions {
  readonly nodeId: string
  readonly sidecarPath: string
  readonly encryptionEnabled: boolean
  readonly keks: LoadedKeks
  readonly nodeSecret: Uint8Array
  readonly sidecarWrite?: WriteOptions
}

export interface Keystore {
  readonly state: KeystoreState
  readonly applier: Applier
  readonly encryptionEnabled: boolean
  /** The directory passed the durability probe (always true once open). */
  readonly probePassed: boolean
}

/**
 * Which KEK opens every unretired DEK of the sidecar: the current one, else
 * the next one (a restart after a rewrap, SPEC.md §7), else KekMismatch.
 */
export const verifyKeks = (sidecar: Sidecar, keks: LoadedKeks): Effect.Effect<LoadedKeks, KekMismatch> =>
  Effect.gen(function* () {
    const unretired = Object.entries(sidecar.keys).filter(([, k]) => !k.retired)
    if (unretired.length === 0) return keks
    const opensAll = (kek: KekProvider | undefined) =>
      Effect.forEach(unretired, ([id, k]) =>
        unwrapWith(kek, Number(id), k.purpose, Buffer.from(k.wrapped, "base64")).pipe(
          Effect.tap((dek) => Effect.sync(() => dek.fill(0))),
        ),
      ).pipe(
        Effect.as(true),
        Effect.catch(() => Effect.succeed(false)),
      )
    if (yield* opensAll(keks.current)) return keks
    if (keks.next !== undefined && (yield* opensAll(keks.next)))
      return { current: keks.next, next: keks.next }
    return yield* new KekMismatch({
      message: `neither EKV_KEK_FILE/EKV_KEK_BASE64 (${keks.current?.kekId ?? "none"}) nor EKV_KEK_NEXT_FILE (${keks.next?.kekId ?? "none"}) unwraps the sidecar's DEKs`,
    })
  })

export const openKeystore = (opts: KeystoreOptions): Effect.Effect<Keystore, StartupError, Scope.Scope> =>
  Effect.gen(function* () {
    const dir = dirname(opts.sidecarPath)
    yield* ensureDirectory(dir)
    // The lock first: nothing below may touch a directory another keystore owns.
    const store = yield* openRegistryStore(dir)
    yield* probeDirectory(dir)
    const onDisk = yield* readSidecar(opts.sidecarPath)
    // A sidecar that holds no DEK carries no encryption to downgrade from
    // (a rejected control entry on a never-enabled node writes one).
    if (onDisk !== undefined && !opts.encryptionEnabled && Object.keys(onDisk.keys).length > 0) {
      return yield* new SidecarPresentWithoutFlag({
        message: `${opts.sidecarPath} exists but EKV_ENCRYPTION_ENABLED is off; refusing a silent downgrade`,
        path: opts.sidecarPath,
      })
    }
    const sidecar = onDisk ?? emptySidecar
    const keks = yield* verifyKeks(sidecar, opts.keks)
    const state = makeKeystoreState({
      config: {
        nodeId: opts.nodeId,
        fullNodeId: fullNodeId(opts.nodeId),
        nodeSecret: opts.nodeSecret,
        sidecarPath: opts.sidecarPath,
        ...(opts.sidecarWrite === undefined ? {} : { sidecarWrite: opts.sidecarWrite }),
      },
      store,
      sidecar,
      sidecarPresent: onDisk !== undefined,
      keks,
    })
    return {
      state,
      applier: makeApplier(state),
      encryptionEnabled: opts.encryptionEnabled,
      probePassed: true,
    }
  })

/**
 * The node secret (SPEC.md §4.3): read from EKV_NODE_SECRET_FILE, or created
 * (0600, 32 random bytes) when absent. Creation links a complete, fsync'd
 * temp file into place, so a consensus process creating it at the same time
 * can never read a partial secret, and neither overwrites the other's.
 */
export const loadNodeSecret = (path: string): Effect.Effect<Uint8Array, KekInvalid | StartupError> =>
  readKekFile(path, "EKV_NODE_SECRET_FILE").pipe(
    Effect.catchTag("KekInvalid", (e) =>
      Effect.gen(function* () {
        const created = yield* Effect.try({
          try: () => {
            const tmp = join(dirname(path), `.node.secret.${process.pid}.${randomBytes(4).toString("hex")}`)
            const fd = openSync(tmp, "wx", 0o600)
            try {
              writeSync(fd, randomBytes(32))
              fsyncSync(fd)
            } finally {
              closeSync(fd)
            }
            try {
              linkSync(tmp, path)
              return true
            } catch (cause) {
              if ((cause as NodeJS.ErrnoException).code === "EEXIST") return false
              throw cause
            } finally {
              rmSync(tmp, { force: true })
            }
          },
          catch: (cause) =>
            new KekInvalid({
              message: `EKV_NODE_SECRET_FILE: ${path}: ${e.message}; creating it failed: ${errorText(cause)}`,
              source: "EKV_NODE_SECRET_FILE",
            }),
        })
        if (created) {
          yield* Effect.promise(() => fsyncDirectory(dirname(path)).catch(() => undefined))
        }
        return yield* readKekFile(path, "EKV_NODE_SECRET_FILE")
      }),
    ),
  )

const truthy = (v: string | undefined): boolean => v !== undefined && /^(1|true|yes|on)$/i.test(v.trim())

export interface EnvConfig {
  readonly nodeId: string
  readonly dataDir: string
  readonly sidecarPath: string
  readonly nodeSecretPath: string
  readonly encryptionEnabled: boolean
}

/** CONTRACT.md §6 paths and flags of the keystore. */
export const envConfig = (env: Record<string, string | undefined>): EnvConfig | string => {
  const nodeId = env.EKV_NODE_ID
  if (nodeId === undefined || !/^[a-z0-9-]{1,64}$/.test(nodeId)) {
    return `EKV_NODE_ID must match [a-z0-9-]{1,64}, got ${JSON.stringify(nodeId)}`
  }
  const dataDir = env.EKV_DATA_DIR || join(".", "data", nodeId)
  return {
    nodeId,
    dataDir,
    sidecarPath: env.EKV_SIDECAR_PATH || join(dataDir, "keystore", "keys.json"),
    nodeSecretPath: env.EKV_NODE_SECRET_FILE || join(dataDir, "node.secret"),
    encryptionEnabled: truthy(env.EKV_ENCRYPTION_ENABLED),
  }
}

/** Everything the keystore reads from its environment, with the KEK guards. */
export const keystoreOptionsFromEnv = (
  cfg: EnvConfig,
  env: Record<string, string | undefined>,
): Effect.Effect<KeystoreOptions, StartupError> =>
  Effect.gen(function* () {
    const keks = yield* loadKek(env, cfg.encryptionEnabled)
    yield* ensureDirectory(dirname(cfg.nodeSecretPath))
    const nodeSecret = yield* loadNodeSecret(cfg.nodeSecretPath)
    return {
      nodeId: cfg.nodeId,
      sidecarPath: cfg.sidecarPath,
      encryptionEnabled: cfg.encryptionEnabled,
      keks,
      nodeSecret,
    }
  })

/** The open keystore as an Effect service (STYLE.md): built by `layer`, closed (lock released) with it. */
export class KeystoreService extends Context.Service<KeystoreService, Keystore>()("ekv/Keystore") {
  static readonly layer = (opts: KeystoreOptions): Layer.Layer<KeystoreService, StartupError> =>
    Layer.effect(KeystoreService, openKeystore(opts))
}
