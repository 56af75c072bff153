import { chmodSync, chownSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { inspect } from "node:util"
import { kekId } from "@ekv/crypto"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { loadKek, localKekProvider } from "../../src/kekProvider.ts"

const kek = new Uint8Array(32).fill(1)
const kek2 = new Uint8Array(32).fill(2)

const dir = () => mkdtempSync(join(tmpdir(), "ekv-kek-"))
const kekFile = (bytes: Uint8Array, mode = 0o600) => {
  const p = join(dir(), "kek")
  writeFileSync(p, bytes, { mode })
  chmodSync(p, mode)
  return p
}
const failureTag = async (e: Effect.Effect<unknown, { _tag: string }>) => {
  const exit = await Effect.runPromiseExit(e)
  if (Exit.isSuccess(exit)) return "success"
  const f = exit.cause.reasons.find((r) => r._tag === "Fail")
  return f?._tag === "Fail" ? (f.error as { _tag: string })._tag : "defect"
}

describe("local KEK provider", () => {
  it("wraps and unwraps with purpose and key id bound", async () => {
    const p = localKekProvider(kek)
    const dek = new Uint8Array(32).fill(9)
    const wrapped = await Effect.runPromise(p.wrap({ dek, purpose: "storage", keyId: 7 }))
    expect(wrapped.length).toBe(61)
    expect(await Effect.runPromise(p.unwrap({ wrapped, purpose: "storage", keyId: 7 }))).toEqual(dek)
    expect(await failureTag(p.unwrap({ wrapped, purpose: "raft", keyId: 7 }))).toBe("UnwrapFailure")
    expect(await failureTag(p.unwrap({ wrapped, purpose: "storage", keyId: 8 }))).toBe("UnwrapFailure")
    expect(await failureTag(localKekProvider(kek2).unwrap({ wrapped, purpose: "storage", keyId: 7 }))).toBe(
      "UnwrapFailure",
    )
  })

  it("exposes only the kek id, never the bytes", () => {
    const p = localKekProvider(kek)
    expect(p.kekId).toBe(kekId(kek))
    const hex = Buffer.from(kek).toString("hex")
    const b64 = Buffer.from(kek).toString("base64")
    for (const s of [JSON.stringify(p), inspect(p, { showHidden: true, depth: 5 })]) {
      expect(s).not.toContain(hex)
      expect(s).not.toContain(b64)
    }
  })
})

describe("loadKek", () => {
  it("reads a 0600 32-byte file", async () => {
    const r = await Effect.runPromise(loadKek({ EKV_KEK_FILE: kekFile(kek) }, true))
    expect(r.current?.kekId).toBe(kekId(kek))
    expect(r.next).toBeUndefined()
  })

  it("refuses a file of another size", async () => {
    expect(await failureTag(loadKek({ EKV_KEK_FILE: kekFile(new Uint8Array(31)) }, true))).toBe("KekInvalid")
    expect(await failureTag(loadKek({ EKV_KEK_FILE: kekFile(new Uint8Array(33)) }, true))).toBe("KekInvalid")
    expect(await failureTag(loadKek({ EKV_KEK_FILE: kekFile(new Uint8Array(0)) }, true))).toBe("KekInvalid")
  })

  it("refuses any group/other mode bit", async () => {
    for (const mode of [0o640, 0o604, 0o620, 0o602, 0o601, 0o610, 0o644]) {
      expect(await failureTag(loadKek({ EKV_KEK_FILE: kekFile(kek, mode) }, true))).toBe("KekFileInsecure")
    }
    expect(await failureTag(loadKek({ EKV_KEK_FILE: kekFile(kek, 0o400) }, true))).toBe("success")
  })

  it.skipIf(process.getuid?.() !== 0)("refuses a file owned by another user", async () => {
    const p = kekFile(kek)
    chownSync(p, 4242, 4242)
    expect(await failureTag(loadKek({ EKV_KEK_FILE: p }, true))).toBe("KekFileInsecure")
  })

  it("refuses a missing file", async () => {
    expect(await failureTag(loadKek({ EKV_KEK_FILE: join(dir(), "absent") }, true))).toBe("KekInvalid")
  })

  it("reads EKV_KEK_BASE64 and deletes it from the environment", async () => {
    const env: Record<string, string | undefined> = { EKV_KEK_BASE64: Buffer.from(kek).toString("base64") }
    const r = await Effect.runPromise(loadKek(env, true))
    expect(r.current?.kekId).toBe(kekId(kek))
    expect("EKV_KEK_BASE64" in env).toBe(false)
  })

  it("deletes EKV_KEK_BASE64 even when refusing", async () => {
    const env: Record<string, string | undefined> = {
      EKV_KEK_BASE64: Buffer.from(kek).toString("base64"),
      EKV_KEK_FILE: kekFile(kek),
    }
    expect(await failureTag(loadKek(env, true))).toBe("KekSourcesConflict")
    expect("EKV_KEK_BASE64" in env).toBe(false)
  })

  it("refuses base64 of another length or alphabet", async () => {
    expect(await failureTag(loadKek({ EKV_KEK_BASE64: Buffer.alloc(16).toString("base64") }, true))).toBe(
      "KekInvalid",
    )
    expect(await failureTag(loadKek({ EKV_KEK_BASE64: "not base64!!" }, true))).toBe("KekInvalid")
  })

  it("KekRequired only when encryption is enabled", async () => {
    expect(await failureTag(loadKek({}, true))).toBe("KekRequired")
    const r = await Effect.runPromise(loadKek({}, false))
    expect(r.current).toBeUndefined()
  })

  it("loads EKV_KEK_NEXT_FILE with the same checks", async () => {
    const r = await Effect.runPromise(
      loadKek({ EKV_KEK_FILE: kekFile(kek), EKV_KEK_NEXT_FILE: kekFile(kek2) }, true),
    )
    expect(r.next?.kekId).toBe(kekId(kek2))
    expect(
      await failureTag(
        loadKek({ EKV_KEK_FILE: kekFile(kek), EKV_KEK_NEXT_FILE: kekFile(kek2, 0o644) }, true),
      ),
    ).toBe("KekFileInsecure")
    expect(
      await failureTag(
        loadKek({ EKV_KEK_FILE: kekFile(kek), EKV_KEK_NEXT_FILE: kekFile(new Uint8Array(16)) }, true),
      ),
    ).toBe("KekInvalid")
  })
})
