import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { openRegistryStore } from "../../src/registryStore.ts"
import type { WriterRow } from "../../src/writerRegistry.ts"

const row = (epoch: number, index: number): WriterRow => ({
  full_node_id: 18446744073709551615n,
  first_seen_local_epoch: 1,
  last_seen_local_epoch: epoch,
  last_session_id: index % 2 === 0 ? undefined : "a".repeat(32),
  raft_index: index,
})

const run = <A, E>(e: Effect.Effect<A, E, import("effect").Scope.Scope>) =>
  Effect.runPromise(Effect.scoped(e))

describe("registry store (LevelDB)", () => {
  it("writes rows, index and outcome in one batch; reads them back after reopen", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ekv-reg-"))
    await run(
      Effect.gen(function* () {
        const s = yield* openRegistryStore(dir)
        yield* s.write({
          putRows: [
            { dekId: 1, nodeId16: 5, row: row(3, 4) },
            { dekId: 12, nodeId16: 5, row: row(4, 5) },
            { dekId: 1, nodeId16: 65535, row: row(6, 4) },
          ],
          lastRegistryIndex: 4,
          outcome: { index: 4, kind: "registration", outcome: "inserted", key_ids: [1] },
        })
      }),
    )
    await run(
      Effect.gen(function* () {
        const s = yield* openRegistryStore(dir)
        expect(yield* s.lastRegistryIndex).toBe(4)
        expect(yield* s.row(1, 5)).toEqual(row(3, 4))
        expect(yield* s.row(12, 5)).toEqual(row(4, 5))
        expect(yield* s.row(2, 5)).toBeUndefined()
        // dek 1's slice does not include dek 12's rows.
        expect((yield* s.rowsOf(1)).map((e) => e.nodeId16).sort()).toEqual([5, 65535])
        expect((yield* s.allRows).length).toBe(3)
        expect(yield* s.outcome(4)).toEqual({
          index: 4,
          kind: "registration",
          outcome: "inserted",
          key_ids: [1],
        })
        expect(yield* s.outcome(5)).toBeUndefined()
        yield* s.write({ dropDeks: [1], putRows: [{ dekId: 1, nodeId16: 9, row: row(1, 6) }] })
        expect((yield* s.rowsOf(1)).map((e) => e.nodeId16)).toEqual([9])
        expect(yield* s.row(12, 5)).toEqual(row(4, 5))
        yield* s.replaceAll([{ dekId: 7, nodeId16: 1, row: row(2, 2) }], 30)
        expect((yield* s.allRows).map((e) => e.dekId)).toEqual([7])
        // Phase 1 leaves a marker; phase 2 sets the index and clears it.
        expect(yield* s.restorePending).toBe(30)
        expect(yield* s.lastRegistryIndex).toBe(4)
        yield* s.finishRestore
        expect(yield* s.restorePending).toBeUndefined()
        expect(yield* s.lastRegistryIndex).toBe(30)
        expect(yield* s.outcome(4)).toBeUndefined()
      }),
    )
  })

  it("a second open of the same directory is DataDirLocked", async () => {
    const dir = mkdtempSync(join(tmpdir(), "ekv-reg-"))
    await run(
      Effect.gen(function* () {
        yield* openRegistryStore(dir)
        const exit = yield* Effect.exit(Effect.scoped(openRegistryStore(dir)))
        expect(Exit.isFailure(exit)).toBe(true)
        if (Exit.isFailure(exit)) {
          const f = exit.cause.reasons.find((r) => r._tag === "Fail")
          expect(f?._tag === "Fail" && f.error._tag).toBe("DataDirLocked")
        }
      }),
    )
    // Released with the scope.
    await run(openRegistryStore(dir))
  })
})
