// KEK custody (SPEC.md §4.1). A provider wraps and unwraps DEKs with the
// purpose and key id bound in the AAD (CONTRACT.md §7); the local provider
// holds the 32 KEK bytes in a closure, and a KMS or PKCS#11 provider
// implements the same interface (its calls are Effects so they may be remote).
// The KEK is never logged, never sent, never exported.
import { closeSync, fstatSync, openSync, readSync } from "node:fs"
import { kekId as computeKekId, type Purpose, unwrapDek, wrapDek } from "@ekv/crypto"
import { Effect, Result } from "effect"
import { KekFileInsecure, KekInvalid, KekRequired, KekSourcesConflict } from "./errors.ts"

export const KEK_LENGTH = 32

/** A failed unwrap: wrong KEK, wrong purpose/key id, altered or malformed bytes. */
export interface UnwrapFailure {
  readonly _tag: "UnwrapFailure"
  readonly message: string
}

export interface KekProvider {
  /** Hex of the first 8 bytes of HMAC-SHA256(KEK, "ekv/kek-id") (CONTRACT.md §3). */
  readonly kekId: string
  readonly wrap: (p: {
    readonly dek: Uint8Array
    readonly purpose: Purpose
    readonly keyId: number
  }) => Effect.Effect<Uint8Array>
  readonly unwrap: (p: {
    readonly wrapped: Uint8Array
    readonly purpose: Purpose
    readonly keyId: number
  }) => Effect.Effect<Uint8Array, UnwrapFailure>
}

/** A provider over raw KEK bytes held in this process. */
export const localKekProvider = (kekBytes: Uint8Array): KekProvider => {
  if (kekBytes.length !== KEK_LENGTH) throw new Error(`a KEK is ${KEK_LENGTH} bytes, got ${kekBytes.length}`)
  // A private copy: the caller's buffer can be wiped without affecting us.
  const kek = Uint8Array.from(kekBytes)
  const id = computeKekId(kek)
  const provider: KekProvider = {
    kekId: id,
    wrap: ({ dek, purpose, keyId }) => Effect.sync(() => wrapDek({ kek, dek, purpose, keyId })),
    unwrap: ({ wrapped, purpose, keyId }) =>
      Effect.suspend(() => {
        const r = unwrapDek({ kek, wrapped, purpose, keyId })
        return Result.isSuccess(r)
          ? Effect.succeed(r.success)
          : Effect.fail<UnwrapFailure>({ _tag: "UnwrapFailure", message: r.failure.message })
      }),
  }
  // Keep the key bytes out of any accidental log or JSON dump of the provider.
  Object.defineProperty(provider, "toJSON", { value: () => ({ kekId: id }), enumerable: false })
  Object.defineProperty(provider, Symbol.for("nodejs.util.inspect.custom"), {
    value: () => `KekProvider(${id})`,
    enumerable: false,
  })
  return provider
}

export interface LoadedKeks {
  /** Undefined when no KEK source is configured (allowed only with encryption disabled). */
  readonly current: KekProvider | undefined
  readonly next: KekProvider | undefined
}

/**
 * Reads a KEK file: exactly 32 bytes, no group/other permission bit, owned by
 * this process's user. The checks run on the opened descriptor so the file
 * checked is the file read.
 */
export const readKekFile = (
  path: string,
  variable: string,
): Effect.Effect<Uint8Array, KekFileInsecure | KekInvalid> =>
  Effect.suspend((): Effect.Effect<Uint8Array, KekFileInsecure | KekInvalid> => {
    let fd: number
    try {
      fd = openSync(path, "r")
    } catch (cause) {
      return Effect.fail(
        new KekInvalid({
          message: `${variable}: cannot open ${path}: ${errorText(cause)}`,
          source: variable,
        }),
      )
    }
    try {
      const st = fstatSync(fd)
      if (!st.isFile()) {
        return Effect.fail(
          new KekInvalid({ message: `${variable}: ${path} is not a regular file`, source: variable }),
        )
      }
      if ((st.mode & 0o077) !== 0) {
        return Effect.fail(
          new KekFileInsecure({
            message: `${variable}: ${path} has mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}; a KEK file must not be accessible by group or other (chmod 0600)`,
            path,
          }),
        )
      }
      const uid = process.getuid?.()
      if (uid !== undefined && st.uid !== uid) {
        return Effect.fail(
          new KekFileInsecure({
            message: `${variable}: ${path} is owned by uid ${st.uid}, not by this process's uid ${uid}`,
            path,
          }),
        )
      }
      if (st.size !== KEK_LENGTH) {
        return Effect.fail(
          new KekInvalid({
            message: `${variable}: ${path} holds ${st.size} bytes; a KEK file holds exactly ${KEK_LENGTH} raw bytes`,
            source: variable,
          }),
        )
      }
      // One byte more than needed detects a file that grew after fstat.
      const buf = new Uint8Array(KEK_LENGTH + 1)
      let n = 0
      for (;;) {
        const r = readSync(fd, buf, n, buf.length - n, null)
        if (r === 0) break
        n += r
        if (n === buf.length) break
      }
      if (n !== KEK_LENGTH) {
        buf.fill(0)
        return Effect.fail(
          new KekInvalid({
            message: `${variable}: ${path} changed size while being read; a KEK file holds exactly ${KEK_LENGTH} bytes`,
            source: variable,
          }),
        )
      }
      const kek = buf.slice(0, KEK_LENGTH)
      buf.fill(0)
      return Effect.succeed(kek)
    } catch (cause) {
      return Effect.fail(
        new KekInvalid({
          message: `${variable}: cannot read ${path}: ${errorText(cause)}`,
          source: variable,
        }),
      )
    } finally {
      closeSync(fd)
    }
  })

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/**
 * Loads the KEK sources of SPEC.md §4.1 from `env` (process.env in
 * production). EKV_KEK_BASE64 is deleted from `env` as soon as it is read,
 * whatever the outcome.
 */
export const loadKek = (
  env: Record<string, string | undefined>,
  encryptionEnabled: boolean,
): Effect.Effect<LoadedKeks, KekRequired | KekSourcesConflict | KekFileInsecure | KekInvalid> =>
  Effect.gen(function* () {
    const file = nonEmpty(env.EKV_KEK_FILE)
    const b64 = nonEmpty(env.EKV_KEK_BASE64)
    delete env.EKV_KEK_BASE64
    const nextFile = nonEmpty(env.EKV_KEK_NEXT_FILE)
    if (file !== undefined && b64 !== undefined) {
      return yield* new KekSourcesConflict({
        message: "EKV_KEK_FILE and EKV_KEK_BASE64 are both set; configure exactly one KEK source",
      })
    }
    let current: KekProvider | undefined
    if (file !== undefined) {
      const bytes = yield* readKekFile(file, "EKV_KEK_FILE")
      current = localKekProvider(bytes)
      bytes.fill(0)
    } else if (b64 !== undefined) {
      const bytes = decodeBase64Kek(b64)
      if (bytes === undefined) {
        return yield* new KekInvalid({
          message: `EKV_KEK_BASE64 must be standard base64 of exactly ${KEK_LENGTH} bytes`,
          source: "EKV_KEK_BASE64",
        })
      }
      current = localKekProvider(bytes)
      bytes.fill(0)
    }
    if (current === undefined && encryptionEnabled) {
      return yield* new KekRequired({
        message:
          "EKV_ENCRYPTION_ENABLED is set but no KEK source is configured (EKV_KEK_FILE or EKV_KEK_BASE64)",
      })
    }
    let next: KekProvider | undefined
    if (nextFile !== undefined) {
      const bytes = yield* readKekFile(nextFile, "EKV_KEK_NEXT_FILE")
      next = localKekProvider(bytes)
      bytes.fill(0)
    }
    return { current, next }
  })

const decodeBase64Kek = (s: string): Uint8Array | undefined => {
  const t = s.trim()
  if (!BASE64.test(t) || t.length % 4 !== 0) return undefined
  const buf = Buffer.from(t, "base64")
  if (buf.length !== KEK_LENGTH) {
    buf.fill(0)
    return undefined
  }
  const out = Uint8Array.from(buf)
  buf.fill(0)
  return out
}

const nonEmpty = (s: string | undefined): string | undefined => (s === undefined || s === "" ? undefined : s)

export const errorText = (cause: unknown): string =>
  cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.message) : String(cause)
