import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { type EncryptionPayload, type EntryPayload, encodeEntry } from "@ekv/wire"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { exportState } from "../../src/encryptionState.ts"
import { type LogEntry, ResyncFailed, resync } from "../../src/resync.ts"
import {
  bootstrap,
  control,
  dispatch,
  failure,
  N2,
  N3,
  type Opened,
  openAt,
  registration,
  rotate,
  run,
  SELF,
  tempDir,
} from "./harness.ts"

const log: Array<{ index: number; prev: number; payload: EncryptionPayload }> = [
  {
    index: 2,
    prev: 0,
    payload: bootstrap(41, 42, [
      { full_node_id: SELF, local_epoch: 0 },
      { full_node_id: N2, local_epoch: 0 },
    ]),
  },
  { index: 3, prev: 2, payload: registration(41, N3, 0) },
  { index: 5, prev: 3, payload: control({ kind: "enable-storage-envelope" }) },
  { index: 8, prev: 5, payload: rotate("storage", 43, [{ full_node_id: SELF, local_epoch: 0 }]) },
  { index: 9, prev: 8, payload: registration(43, N2, 1) },
]

const leader = async (): Promise<Opened> => {
  const o = await openAt(tempDir())
  for (const e of log) await dispatch(o, e.index, e.prev, e.payload)
  return o
}

const sourceOf = (l: Opened, compactedBelow = 0) => ({
  entriesAfter: (after: number) =>
    Effect.succeed(
      after < compactedBelow
        ? ("compacted" as const)
        : log
            .filter((e) => e.index > after)
            .map(
              (e): LogEntry => ({
                index: e.index,
                prevEncryptionIndex: e.prev,
                entry: encodeEntry(e.payload as unknown as EntryPayload),
              }),
            ),
    ),
  fullState: exportState(l.ks.state).pipe(Effect.mapError((e) => new ResyncFailed({ message: e.message }))),
})

// `created` is node-local (each keystore stamps its own apply time).
const replicated = async (o: Opened) => {
  const s = await run(exportState(o.ks.state))
  return { ...s, keys: s.keys.map(({ created: _, ...k }) => k) }
}

describe("resync-sidecar (SPEC §5)", () => {
  it("log-replay: a keystore behind applies the missing entries and matches the leader", async () => {
    const l = await leader()
    const b = await openAt(tempDir())
    for (const e of log.slice(0, 2)) await dispatch(b, e.index, e.prev, e.payload)
    const r = await run(resync(b.ks, sourceOf(l)))
    expect(r).toEqual({ mode: "log-replay", raftAppliedIndex: 8 })
    expect(await replicated(b)).toEqual(await replicated(l))
    await b.close()
    await l.close()
  })

  it("log-replay from a sidecar rolled back behind the registry: the control entries apply, later rows stay", async () => {
    const l = await leader()
    const dir = tempDir()
    const sidecar = join(dir, "keystore", "keys.json")
    let b = await openAt(dir)
    for (const e of log.slice(0, 3)) await dispatch(b, e.index, e.prev, e.payload)
    const old = readFileSync(sidecar)
    for (const e of log.slice(3)) await dispatch(b, e.index, e.prev, e.payload)
    await b.close()
    // The registry reflects index 9; the sidecar goes back to index 5 (before the rotation at 8).
    writeFileSync(sidecar, old, { mode: 0o600 })
    b = await openAt(dir)
    const r = await run(resync(b.ks, sourceOf(l)))
    expect(r).toEqual({ mode: "log-replay", raftAppliedIndex: 8 })
    expect(await replicated(b)).toEqual(await replicated(l))
    await b.close()
    await l.close()
  })

  it("full-state when the leader compacted past what this keystore has", async () => {
    const l = await leader()
    const b = await openAt(tempDir())
    const r = await run(resync(b.ks, sourceOf(l, 6)))
    expect(r.mode).toBe("full-state")
    expect(await run(exportState(b.ks.state))).toEqual(await run(exportState(l.ks.state)))
    await b.close()
    await l.close()
  })

  it("a source failure is a typed error and changes nothing", async () => {
    const b = await openAt(tempDir())
    const e = await failure(
      resync(b.ks, {
        entriesAfter: () => Effect.fail(new ResyncFailed({ message: "leader unreachable" })),
        fullState: Effect.fail(new ResyncFailed({ message: "leader unreachable" })),
      }),
    )
    expect(e?._tag).toBe("ResyncFailed")
    expect(b.ks.state.sidecarPresent).toBe(false)
    await b.close()
  })
})
