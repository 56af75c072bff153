// SPEC.md §4.4 crash order with a real process death: a keystore killed
// after the registry batch and at any step of the sidecar write, then the FSM
// re-dispatching the same entry, ends with registry and sidecar complete and
// consistent — the bootstrap's rows are not lost.
import { spawnSync } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { readSidecar, WriteStep } from "../../src/sidecarFile.ts"
import { bootstrap, dispatch, N2, N3, openAt, registration, run, SELF, tempDir } from "../unit/harness.ts"

const child = fileURLToPath(new URL("./fixtures/applierCrashChild.ts", import.meta.url))
const writers = [
  { full_node_id: SELF, local_epoch: 2 },
  { full_node_id: N2, local_epoch: 0 },
  { full_node_id: N3, local_epoch: 1 },
]

describe("applier killed between the registry write and the sidecar commit", () => {
  for (const step of Object.values(WriteStep)) {
    it(`SIGKILL after ${step}, then the same entry again`, async () => {
      const dir = tempDir()
      const r = spawnSync(process.execPath, [child, dir], {
        env: { ...process.env, EKV_TEST_CRASH_AT: step },
        encoding: "utf8",
      })
      expect(r.signal, r.stderr).toBe("SIGKILL")
      const committed = step === WriteStep.rename || step === WriteStep.fsyncDir

      const o = await openAt(dir)
      try {
        const before = await run(readSidecar(join(dir, "keystore", "keys.json")))
        expect(before?.raft_applied_index).toBe(committed ? 4 : undefined)
        const out = await dispatch(o, 4, 0, bootstrap(101, 102, writers))
        expect(out).toMatchObject({ status: "applied", kind: "bootstrap", replay: committed })
        const sc = (await run(readSidecar(join(dir, "keystore", "keys.json"))))!
        expect(sc.raft_applied_index).toBe(4)
        expect(sc.active).toEqual({ storage: 101, raft: 102 })
        expect(Object.keys(sc.keys).sort()).toEqual(["101", "102"])
        for (const d of [101, 102]) {
          const rows = await run(o.ks.state.store.rowsOf(d))
          expect(
            rows.map((e) => [e.row.full_node_id, e.row.last_seen_local_epoch, e.row.raft_index]).sort(),
          ).toEqual(writers.map((w) => [w.full_node_id, w.local_epoch, 4]).sort())
        }
        expect(await dispatch(o, 5, 4, registration(101, N3, 2))).toMatchObject({ outcome: "advanced" })
      } finally {
        await o.close()
      }
    })
  }
})
