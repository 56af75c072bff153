// Crash safety with a real process kill (SIGKILL) of a writer: a batch is all
// or nothing with its applied index, and an interrupted snapshot install is
// detected on reopen instead of serving half a state.
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { IncompleteInstall } from "../../../src/stateMachine/errors.ts"
import { MvccStore } from "../../../src/stateMachine/mvccStore.ts"
import { EncryptionState, encodeStoredValue } from "../../../src/stateMachine/valueHeader.ts"
import { makeTempDir } from "./tempDir.ts"

const child = fileURLToPath(new URL("./crashChild.ts", import.meta.url))

let tmp: { dir: string; cleanup: () => Promise<void> }
beforeEach(async () => {
  tmp = await makeTempDir()
})
afterEach(async () => {
  await tmp.cleanup()
})

/** Starts the child, waits for "ready", lets it run `ms`, then SIGKILLs it. Resolves with its stdout. */
const runAndKill = (args: string[], ms: number): Promise<string> =>
  new Promise((resolve, reject) => {
    const p: ChildProcess = spawn(process.execPath, [child, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    let timer: NodeJS.Timeout | undefined
    p.stdout?.on("data", (d: Buffer) => {
      out += d.toString()
      if (timer === undefined && out.includes("ready")) timer = setTimeout(() => p.kill("SIGKILL"), ms)
    })
    p.stderr?.on("data", (d: Buffer) => {
      err += d.toString()
    })
    p.on("error", reject)
    p.on("exit", (code, signal) => {
      if (timer !== undefined) clearTimeout(timer)
      if (signal === "SIGKILL" || code === 0) resolve(out)
      else reject(new Error(`child exited ${code}: ${err}`))
    })
  })

describe("crash safety (SIGKILL)", () => {
  it("a killed writer leaves whole batches: every effect ≤ applied index, none above", async () => {
    const location = path.join(tmp.dir, "db")
    let lastApplied = 0
    for (const ms of [30, 120, 60]) {
      await runAndKill(["apply", location], ms)
      const store = await MvccStore.open(location)
      try {
        const applied = store.appliedIndex()
        expect(applied).toBeGreaterThan(lastApplied)
        expect(applied % 20).toBe(0) // batches of 20 entries: never a part of one
        lastApplied = applied
        for (let k = 0; k < 10; k++) {
          const r = await store.get(`k${k}`)
          expect(r.found && r.version).toBe(applied)
        }
        let maxIndex = 0
        for await (const v of store.iterateVersions()) maxIndex = Math.max(maxIndex, v.index)
        expect(maxIndex).toBe(applied)
      } finally {
        await store.close()
      }
    }
  })

  it("a killed install is either not started, complete, or reported as IncompleteInstall on reopen", async () => {
    // A source with enough records that the install takes a while.
    const source = await MvccStore.open(path.join(tmp.dir, "source"))
    const b = source.batch()
    const value = encodeStoredValue(EncryptionState.StorageEnvelope, new Uint8Array(300).fill(3))
    for (let i = 1; i <= 30_000; i++) {
      b.put(`key-${i}`, i, value)
      b.setApplied(i)
    }
    await b.commit()
    const snap = await source.exportSnapshot(path.join(tmp.dir, "snapshots"))
    await source.close()

    const outcomes = new Set<string>()
    for (const ms of [0, 20, 60, 120, 250, 5000]) {
      const location = path.join(tmp.dir, `target-${ms}`)
      const t = await MvccStore.open(location)
      const tb = t.batch()
      tb.put("old", 1, value)
      tb.setApplied(7)
      await tb.commit({ sync: true })
      await t.close()

      const out = await runAndKill(["install", location, snap.path], ms)
      let store: MvccStore
      try {
        store = await MvccStore.open(location)
      } catch (e) {
        expect(e).toBeInstanceOf(IncompleteInstall)
        expect(out).not.toContain("installed")
        outcomes.add("incomplete")
        // The driver's recovery: open guarded, install again.
        const guarded = await MvccStore.open(location, { allowIncompleteInstall: true })
        await guarded.installSnapshot(snap.path)
        expect(guarded.appliedIndex()).toBe(30_000)
        await guarded.close()
        continue
      }
      try {
        if (store.appliedIndex() === 7) {
          outcomes.add("not-started")
          expect((await store.get("old")).found).toBe(true)
        } else {
          outcomes.add("complete")
          expect(store.appliedIndex()).toBe(30_000)
          expect((await store.get("old")).found).toBe(false)
          let n = 0
          for await (const _ of store.iterateVersions()) n++
          expect(n).toBe(30_000)
        }
      } finally {
        await store.close()
      }
    }
    // The long delay always lets the install finish.
    expect(outcomes.has("complete")).toBe(true)
  })
})
