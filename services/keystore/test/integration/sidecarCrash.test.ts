// SPEC.md §4.2 crash order: a process killed after any step of the durable
// write leaves keys.json as the complete old or the complete new state, never
// torn or missing, and the next write succeeds over the leftovers.
import { spawnSync } from "node:child_process"
import { mkdtempSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { emptySidecar, readSidecar, type Sidecar, WriteStep, writeSidecar } from "../../src/sidecarFile.ts"

const child = fileURLToPath(new URL("./fixtures/sidecarCrashChild.ts", import.meta.url))
const wrapped = Buffer.alloc(61, 7).toString("base64")

const oldState: Sidecar = {
  ...emptySidecar,
  raft_applied_index: 5,
  active: { storage: 11, raft: 12 },
  keys: {
    "11": {
      purpose: "storage",
      wrapped,
      created: "2026-01-01T00:00:00.000Z",
      local_epoch: 1,
      retired: false,
    },
    "12": { purpose: "raft", wrapped, created: "2026-01-01T00:00:00.000Z", local_epoch: 1, retired: false },
  },
}
// Large enough that "write-half" leaves a visibly torn tmp file.
const newKeys: Record<string, Sidecar["keys"][string]> = { ...oldState.keys }
for (let i = 100; i < 400; i++) {
  newKeys[String(i)] = {
    purpose: "storage",
    wrapped,
    created: "2026-01-02T00:00:00.000Z",
    local_epoch: 3,
    retired: false,
  }
}
const newState: Sidecar = { ...oldState, raft_applied_index: 9, storage_envelope_active: true, keys: newKeys }

const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromise(e)

const steps = Object.values(WriteStep)
const afterRename = new Set<string>([WriteStep.rename, WriteStep.fsyncDir])

describe("sidecar durable write under crashes", () => {
  for (const mode of ["exit", "kill"] as const) {
    for (const withOld of [true, false]) {
      for (const step of steps) {
        it(`${mode} after ${step} (${withOld ? "over an old file" : "first write"})`, async () => {
          const dir = mkdtempSync(join(tmpdir(), "ekv-sidecar-crash-"))
          const path = join(dir, "keys.json")
          if (withOld) await run(writeSidecar(path, oldState))
          const r = spawnSync(process.execPath, [child, path, JSON.stringify(newState)], {
            env: { ...process.env, EKV_TEST_CRASH_AT: step, EKV_TEST_CRASH_MODE: mode },
            encoding: "utf8",
          })
          if (mode === "kill") expect(r.signal).toBe("SIGKILL")
          else expect(r.status).toBe(77)
          const after = await run(readSidecar(path))
          if (afterRename.has(step)) {
            expect(after).toEqual(newState)
          } else {
            expect(after).toEqual(withOld ? oldState : undefined)
          }
          // A later write goes through whatever the crash left behind.
          const next = { ...newState, raft_applied_index: 10 }
          await run(writeSidecar(path, next))
          expect(await run(readSidecar(path))).toEqual(next)
          expect(statSync(path).mode & 0o777).toBe(0o600)
        })
      }
    }
  }

  it("a child that is not crashed completes the write", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ekv-sidecar-crash-"))
    const path = join(dir, "keys.json")
    await run(writeSidecar(path, oldState))
    const r = spawnSync(process.execPath, [child, path, JSON.stringify(newState)], {
      env: { ...process.env, EKV_TEST_CRASH_AT: "" },
      encoding: "utf8",
    })
    expect(r.status, r.stderr).toBe(0)
    expect(await run(readSidecar(path))).toEqual(newState)
  })
})
