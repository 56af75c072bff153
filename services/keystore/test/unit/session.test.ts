// Sessions before bootstrap (SPEC.md §4.3): nothing is handed out, so nothing
// is written — keys.json appears only with the first DEK.
import { existsSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { openSession } from "../../src/session.ts"
import { bootstrap, dispatch, newSession, openAt, run, tempDir } from "./harness.ts"

describe("session", () => {
  it("before bootstrap hands over nothing and writes no sidecar; after it, persists the new epochs", async () => {
    const dir = tempDir()
    const o = await openAt(dir)
    const path = join(dir, "keystore", "keys.json")
    const s = newSession("b".repeat(32))
    const open = () =>
      run(
        openSession(o.ks.state, {
          sessionId: s.sessionId,
          publicKey: s.publicKey,
          floors: {},
          floorsAsOfIndex: 0,
        }),
      )
    expect((await open()).keyIds).toEqual([])
    expect(existsSync(path)).toBe(false)
    expect(o.ks.state.sidecarPresent).toBe(false)

    await dispatch(o, 1, 0, bootstrap(7, 8, []))
    expect((await open()).keyIds).toEqual([7, 8])
    expect(o.ks.state.sidecar.keys["7"]?.local_epoch).toBe(1)
    await o.close()
  })
})
