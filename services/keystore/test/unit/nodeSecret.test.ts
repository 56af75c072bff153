import { readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { loadNodeSecret } from "../../src/startup.ts"
import { failure, run, tempDir } from "./harness.ts"

describe("node secret (SPEC §4.3)", () => {
  it("is created 0600 with 32 bytes when absent, then read back unchanged", async () => {
    const p = join(tempDir(), "node.secret")
    const a = await run(loadNodeSecret(p))
    expect(a.length).toBe(32)
    expect(statSync(p).mode & 0o777).toBe(0o600)
    expect(await run(loadNodeSecret(p))).toEqual(a)
    expect(new Uint8Array(readFileSync(p))).toEqual(a)
  })

  it("concurrent creators agree on one secret", async () => {
    const p = join(tempDir(), "node.secret")
    const all = await Effect.runPromise(
      Effect.all(
        Array.from({ length: 8 }, () => loadNodeSecret(p)),
        { concurrency: 8 },
      ),
    )
    for (const s of all) expect(s).toEqual(all[0])
  })

  it("refuses a secret readable by others or of the wrong size", async () => {
    const d = tempDir()
    const open = join(d, "open")
    writeFileSync(open, new Uint8Array(32), { mode: 0o644 })
    expect((await failure(loadNodeSecret(open)))?._tag).toBe("KekFileInsecure")
    const short = join(d, "short")
    writeFileSync(short, new Uint8Array(16), { mode: 0o600 })
    expect((await failure(loadNodeSecret(short)))?._tag).toBe("KekInvalid")
  })
})
