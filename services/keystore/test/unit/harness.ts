// Test harness: a real keystore (LevelDB + keys.json) in a temp dir, reopened
// from disk to simulate restarts. No mocks of storage.
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fullNodeId, generateHandoverKeyPair, openHandover, wrapDek } from "@ekv/crypto"
import type { EncryptionPayload } from "@ekv/wire"
import { Effect, Exit, Result, Scope } from "effect"
import type { DispatchInput, DispatchOutcome } from "../../src/applier.ts"
import { localKekProvider } from "../../src/kekProvider.ts"
import type { WriteOptions } from "../../src/sidecarFile.ts"
import { type Keystore, openKeystore } from "../../src/startup.ts"

export const KEK = new Uint8Array(32).fill(0x11)
export const KEK2 = new Uint8Array(32).fill(0x22)
export const SECRET = new Uint8Array(32).fill(0x33)
export const NODE = "n1"
export const SELF = fullNodeId(NODE)
export const N2 = fullNodeId("n2")
export const N3 = fullNodeId("n3")

export const tempDir = () => mkdtempSync(join(tmpdir(), "ekv-keystore-"))

export interface Opened {
  readonly ks: Keystore
  readonly close: () => Promise<void>
}

export const openAt = async (
  dir: string,
  o: { kek?: Uint8Array | null; next?: Uint8Array; enabled?: boolean; sidecarWrite?: WriteOptions } = {},
): Promise<Opened> => {
  const scope = Scope.makeUnsafe()
  const kek = o.kek === undefined ? KEK : o.kek
  const exit = await Effect.runPromiseExit(
    Scope.provide(scope)(
      openKeystore({
        nodeId: NODE,
        sidecarPath: join(dir, "keystore", "keys.json"),
        encryptionEnabled: o.enabled ?? true,
        keks: {
          current: kek === null ? undefined : localKekProvider(kek),
          next: o.next === undefined ? undefined : localKekProvider(o.next),
        },
        nodeSecret: SECRET,
        ...(o.sidecarWrite === undefined ? {} : { sidecarWrite: o.sidecarWrite }),
      }),
    ),
  )
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    const f = exit.cause.reasons.find((r) => r._tag === "Fail")
    throw f?._tag === "Fail" ? f.error : new Error("open died")
  }
  return { ks: exit.value, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

export const run = <A, E>(e: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(e)

/** The typed failure of an Effect, or undefined on success. */
export const failure = async <A, E>(e: Effect.Effect<A, E>): Promise<E | undefined> => {
  const exit = await Effect.runPromiseExit(e)
  if (Exit.isSuccess(exit)) return undefined
  const f = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (f?._tag === "Fail") return f.error
  throw new Error(`defect: ${String(exit.cause)}`)
}

export const dek = (fill: number) => new Uint8Array(32).fill(fill)
export const wrap = (kek: Uint8Array, d: Uint8Array, purpose: "storage" | "raft", keyId: number) =>
  wrapDek({ kek, dek: d, purpose, keyId })

export const bootstrap = (
  storageId: number,
  raftId: number,
  writers: Array<{ full_node_id: bigint; local_epoch: number }>,
  kek = KEK,
): EncryptionPayload =>
  ({
    tag: 0x04,
    bootstrap: {
      storage: { key_id: storageId, wrapped: wrap(kek, dek(storageId & 0xff), "storage", storageId) },
      raft: { key_id: raftId, wrapped: wrap(kek, dek(raftId & 0xff), "raft", raftId) },
      writers,
    },
  }) as unknown as EncryptionPayload

export const registration = (
  dekId: number,
  full: bigint,
  epoch: number,
  session?: string,
): EncryptionPayload =>
  ({
    tag: 0x03,
    registration: {
      dek_id: dekId,
      full_node_id: full,
      local_epoch: epoch,
      ...(session ? { session_id: session } : {}),
    },
  }) as unknown as EncryptionPayload

export const control = (c: Record<string, unknown>): EncryptionPayload =>
  ({ tag: 0x05, control: c }) as unknown as EncryptionPayload

export const rotate = (
  purpose: "storage" | "raft",
  keyId: number,
  writers: Array<{ full_node_id: bigint; local_epoch: number }>,
  kek = KEK,
) =>
  control({
    kind: "rotate-dek",
    purpose,
    dek: { key_id: keyId, wrapped: wrap(kek, dek(keyId & 0xff), purpose, keyId) },
    writers,
  })

export const dispatch = (
  o: Opened,
  index: number,
  prev: number,
  payload: EncryptionPayload,
  session?: { sessionId: string; publicKey: Uint8Array },
): Promise<DispatchOutcome> =>
  run(o.ks.applier.dispatch({ index, prevEncryptionIndex: prev, payload, session } satisfies DispatchInput))

export const newSession = (id: string) => {
  const kp = generateHandoverKeyPair()
  return {
    sessionId: id,
    publicKey: kp.publicKey,
    open: (sealed: Uint8Array) => {
      const r = openHandover({
        privateKey: kp.privateKey,
        nodeSecret: SECRET,
        nodeId: NODE,
        sessionId: id,
        sealed,
      })
      if (Result.isFailure(r)) throw new Error(r.failure.message)
      return r.success
    },
  }
}
