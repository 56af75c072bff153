import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import {
  emptySidecar,
  probeDirectory,
  readSidecar,
  renderSidecar,
  type Sidecar,
  writeSidecar,
} from "../../src/sidecarFile.ts"

const wrapped = Buffer.alloc(61, 3).toString("base64")
const state: Sidecar = {
  ...emptySidecar,
  raft_applied_index: 7,
  storage_envelope_active: true,
  active: { storage: 5, raft: 6 },
  keys: {
    "5": { purpose: "storage", wrapped, created: "2026-01-01T00:00:00.000Z", local_epoch: 2, retired: false },
    "6": { purpose: "raft", wrapped, created: "2026-01-01T00:00:00.000Z", local_epoch: 2, retired: false },
    "4": {
      purpose: "storage",
      wrapped: "",
      created: "2025-01-01T00:00:00.000Z",
      local_epoch: 9,
      retired: true,
    },
  },
}
const tmp = () => mkdtempSync(join(tmpdir(), "ekv-sidecar-"))
const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)
const failure = async <A, E>(e: Effect.Effect<A, E>): Promise<E | undefined> => {
  const exit = await Effect.runPromiseExit(e)
  if (Exit.isSuccess(exit)) return undefined
  const f = exit.cause.reasons.find((r) => r._tag === "Fail")
  return f?._tag === "Fail" ? (f.error as E) : undefined
}

describe("sidecar keys.json", () => {
  it("round-trips, mode 0600, SPEC §4.2 field order", async () => {
    const path = join(tmp(), "keys.json")
    await run(writeSidecar(path, state))
    expect(await run(readSidecar(path))).toEqual(state)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    const text = readFileSync(path, "utf8")
    expect(Object.keys(JSON.parse(text))).toEqual([
      "version",
      "raft_applied_index",
      "storage_envelope_active",
      "raft_envelope_cutover_index",
      "active",
      "keys",
    ])
    expect(text).toBe(renderSidecar(state))
  })

  it("missing file reads as undefined", async () => {
    expect(await run(readSidecar(join(tmp(), "keys.json")))).toBeUndefined()
  })

  const corrupt: Array<[string, string]> = [
    ["not json", "{"],
    ["unknown version", JSON.stringify({ ...state, version: 2 })],
    ["missing field", JSON.stringify({ ...state, active: undefined })],
    ["unknown field", JSON.stringify({ ...state, extra: 1 })],
    [
      "epoch out of range",
      JSON.stringify({ ...state, keys: { "5": { ...state.keys["5"], local_epoch: 65536 } } }),
    ],
    [
      "bad key id",
      JSON.stringify({ ...state, active: { storage: 0, raft: 0 }, keys: { x: state.keys["5"] } }),
    ],
    [
      "key id zero",
      JSON.stringify({ ...state, active: { storage: 0, raft: 0 }, keys: { "0": state.keys["5"] } }),
    ],
    [
      "short wrap",
      JSON.stringify({ ...state, keys: { ...state.keys, "5": { ...state.keys["5"], wrapped: "AAAA" } } }),
    ],
    [
      "retired with bytes",
      JSON.stringify({ ...state, keys: { ...state.keys, "4": { ...state.keys["4"], wrapped } } }),
    ],
    ["active missing", JSON.stringify({ ...state, active: { storage: 99, raft: 6 } })],
    ["active wrong purpose", JSON.stringify({ ...state, active: { storage: 6, raft: 6 } })],
    ["active retired", JSON.stringify({ ...state, active: { storage: 4, raft: 6 } })],
    [
      "bad created",
      JSON.stringify({
        ...state,
        keys: { ...state.keys, "5": { ...state.keys["5"], created: "yesterday" } },
      }),
    ],
    ["array", "[]"],
  ]
  for (const [name, text] of corrupt) {
    it(`corrupt: ${name} → CorruptSidecar`, async () => {
      const path = join(tmp(), "keys.json")
      writeFileSync(path, text)
      const e = await failure(readSidecar(path))
      expect(e?._tag).toBe("CorruptSidecar")
    })
  }

  it("ignores a leftover keys.json.tmp", async () => {
    const path = join(tmp(), "keys.json")
    await run(writeSidecar(path, state))
    writeFileSync(`${path}.tmp`, "{ torn")
    expect(await run(readSidecar(path))).toEqual(state)
  })

  it("a failing step is a typed error naming it, and the old file stays", async () => {
    const d = tmp()
    const path = join(d, "keys.json")
    expect((await failure(writeSidecar(join(d, "absent", "keys.json"), state)))?.step).toBe("open-tmp")
    await run(writeSidecar(path, state))
    // A non-empty directory squatting on keys.json.tmp's target name makes rename fail.
    const squat = join(d, "squat")
    mkdirSync(join(squat, "x"), { recursive: true })
    const e = await failure(writeSidecar(squat, state))
    expect(e?._tag).toBe("SidecarWriteFailed")
    expect(e?.step).toBe("rename")
    expect(await run(readSidecar(path))).toEqual(state)
  })

  it("refuses to write a state the reader would call corrupt", async () => {
    const path = join(tmp(), "keys.json")
    const e = await failure(writeSidecar(path, { ...state, active: { storage: 99, raft: 6 } }))
    expect(e?.step).toBe("validate")
    expect(await run(readSidecar(path))).toBeUndefined()
  })

  it("the durability probe passes on a real directory and fails where it cannot write", async () => {
    await run(probeDirectory(tmp()))
    const e = await failure(probeDirectory("/proc/self"))
    expect(e?._tag).toBe("UnsupportedFilesystem")
    const e2 = await failure(probeDirectory(join(tmp(), "absent")))
    expect(e2?._tag).toBe("UnsupportedFilesystem")
  })
})
