// One nemesis run: a three-node system on a three-server NATS cluster, the
// storage envelope enabled, the workload running while a seeded schedule of
// faults acts; then heal, wait, and check:
//
// 1. the history (plus a final linearizable read of every key) is
//    linearizable — which also proves no acknowledged write was lost;
// 2. no node is left halted (a node whose files the nemesis corrupted may be,
//    with CorruptLog, or with CorruptState when its state DB was damaged —
//    docs/operations.md: it is wiped and rejoins before the checks go on);
// 3. every node applied the same index; then, with everything stopped, the
//    at-rest checks of checks.ts (identical state machines, envelopes open,
//    no nonce reuse, identical registry rows and sidecars).
//
// A failing run prints its seed and saves the history (JSON, replayable with
// loadHistory + checkHistory) and a report next to it; the system's directory
// (data, logs) is kept.
import { mkdir, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { firstMutator, halts } from "../lifecycle.ts"
import {
  type CheckResult,
  checkHistory,
  HistoryRecorder,
  renderResult,
  saveHistory,
  seededRandom,
} from "../linearizability/mod.ts"
import { type EkvSystem, sleep } from "../system.ts"
import { auditStoppedSystem } from "./checks.ts"
import {
  ACTIONS,
  type CorruptionOutcome,
  currentLeader,
  type FaultName,
  healAll,
  type NemesisContext,
  note,
} from "./faults.ts"
import { startNemesisSystem } from "./system.ts"
import { keySpace, runOp, Workload } from "./workload.ts"

/** The node a line of `halts()` is about ("n2 (health): halted at 7: CorruptLog" → "n2"). */
const haltedNode = (h: string): string => h.split(" ")[0] as string

/** How long a halt may last after healing before the wait gives up on it (transient halts resume). */
const HALT_GRACE_MS = 15_000

/**
 * Waits for a ready cluster, but returns early once a halt that `excused` does
 * not cover has lasted HALT_GRACE_MS: a node-local halt does not heal by
 * waiting, and the caller reports it (from `halts`) at once instead of the run
 * hitting its time limit. Throws when neither happens within `timeoutMs`.
 */
const readyUnlessHalted = async (
  sys: EkvSystem,
  timeoutMs: number,
  excused: (h: string) => boolean,
): Promise<void> => {
  const deadline = performance.now() + timeoutMs
  const since = new Map<string, number>()
  for (;;) {
    const left = deadline - performance.now()
    try {
      await sys.waitForReady(Math.max(1_000, Math.min(5_000, left)))
      return
    } catch (e) {
      if (performance.now() >= deadline) throw e
    }
    const now = performance.now()
    const seen = (await halts(sys)).filter((h) => !excused(h))
    for (const h of [...since.keys()]) if (!seen.includes(h)) since.delete(h)
    for (const h of seen) if (!since.has(h)) since.set(h, now)
    if ([...since.values()].some((t) => now - t >= HALT_GRACE_MS)) return
  }
}

export interface NemesisOptions {
  readonly seed: number
  /** How long faults act (the workload runs from before the first to after the last). */
  readonly durationMs: number
  readonly faults: readonly FaultName[]
  readonly clients?: number
  readonly groups?: number
  /** Quiet time after each healed fault (ms range). */
  readonly quietMs?: readonly [number, number]
  /** Where failing histories and reports go (default `$EKV_NEMESIS_OUT`, else `<tmp>/ekv-nemesis-runs`). */
  readonly outDir?: string
  /** Keep the system directory even when the run passes. */
  readonly keep?: boolean
  /** How wiped nodes (corrupt, member) rejoin (default "snapshot"; see NemesisContext.rejoin). */
  readonly rejoin?: "snapshot" | "replay"
  /** Budget of the linearizability search (default: the fault time, 30 s to 10 min). */
  readonly checkTimeoutMs?: number
}

export interface NemesisReport {
  readonly seed: number
  readonly faults: readonly FaultName[]
  readonly durationMs: number
  readonly elapsedMs: number
  readonly ops: { ok: number; fail: number; info: number }
  readonly verdict: CheckResult["verdict"] | "not checked"
  readonly failures: string[]
  /** Observations that are not failures (mutation outcomes, corruption reactions). */
  readonly timeline: string[]
  readonly mutations: string[]
  readonly corruptions: CorruptionOutcome[]
  readonly findings: string[]
  readonly baseDir: string
  readonly historyFile?: string
  readonly reportFile?: string
  readonly checkSummary?: string
  readonly opened: number
  readonly envelopes: number
}

export const renderReport = (r: NemesisReport): string =>
  [
    `nemesis seed=${r.seed} faults=${r.faults.join(",")} duration=${r.durationMs}ms elapsed=${Math.round(r.elapsedMs / 1000)}s`,
    `ops: ok ${r.ops.ok}, fail ${r.ops.fail}, info ${r.ops.info}; linearizability: ${r.verdict}; envelopes opened ${r.opened} (of ${r.envelopes} collected + raft)`,
    `result: ${r.failures.length === 0 ? "PASS" : `FAIL (${r.failures.length})`}`,
    ...r.failures.map((f) => `  FAIL: ${f}`),
    ...r.findings.map((f) => `  finding: ${f}`),
    ...r.corruptions.map(
      (c) =>
        `  corruption ${c.node} ${c.file} (${c.damage}): ${c.reaction}${c.acceptable ? "" : " [NOT ACCEPTABLE]"}`,
    ),
    ...r.mutations.map((m) => `  mutation: ${m}`),
    "timeline:",
    ...r.timeline.map((t) => `  ${t}`),
    ...(r.historyFile === undefined ? [] : [`history: ${r.historyFile}`]),
    ...(r.reportFile === undefined ? [] : [`report: ${r.reportFile}`]),
    `system dir: ${r.baseDir}`,
  ].join("\n")

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e))

export const runNemesis = async (o: NemesisOptions): Promise<NemesisReport> => {
  const t0 = performance.now()
  const rng = seededRandom(o.seed)
  const { sys, nats } = await startNemesisSystem({
    name: `nemesis-${o.seed}`,
    ...(o.keep === true ? { keep: true } : {}),
  })
  const ctx: NemesisContext = {
    sys,
    nats,
    rng,
    t0,
    timeline: [],
    mutations: [],
    corruptions: [],
    findings: [],
    raftCutover: false,
    rejoin: o.rejoin ?? "snapshot",
    expectedExits: new Set(),
    crashes: [],
  }
  const failures: string[] = []
  const rec = new HistoryRecorder()
  let workload: Workload | undefined
  let verdict: NemesisReport["verdict"] = "not checked"
  let checkSummary: string | undefined
  let opened = 0
  let envelopes = 0
  try {
    await sys.waitForReady()
    const enable = await firstMutator(sys, "enable-storage-envelope")
    if (!enable.ok) throw new Error(`enable-storage-envelope: ${enable.error.code}: ${enable.error.message}`)
    note(ctx, `storage envelope enabled at ${(enable.value as { index: number }).index}`)

    workload = await Workload.start(sys, rec, {
      clients: o.clients ?? 4,
      groups: o.groups ?? 8,
      rng: seededRandom(Math.floor(rng() * 2 ** 32)),
    })
    await sleep(1_500)
    const [qLo, qHi] = o.quietMs ?? [1_000, 3_000]
    const until = performance.now() + o.durationMs
    // Every fault of the mix once, in a seeded order, then seeded picks until the time is up.
    const order = [...o.faults].sort(() => rng() - 0.5)
    let i = 0
    while (performance.now() < until && o.faults.length > 0) {
      const fault =
        i < order.length
          ? (order[i] as FaultName)
          : (o.faults[Math.floor(rng() * o.faults.length)] as FaultName)
      i++
      note(ctx, `== ${fault}`)
      try {
        await ACTIONS[fault](ctx)
      } catch (e) {
        ctx.findings.push(`${fault} threw: ${errText(e)}`)
        note(ctx, `${fault} threw: ${errText(e)}`)
      }
      await healAll(ctx)
      await sleep(qLo + rng() * (qHi - qLo))
    }

    // Halts: a corrupted node halted for that damage (CorruptLog; CorruptState when its state DB
    // was the target) is wiped and rejoins, as docs/operations.md says; any other halt is a failure.
    const haltedForDamage = (h: string) =>
      ctx.corruptions.some(
        (c) =>
          c.node === haltedNode(h) &&
          (/: CorruptLog$/.test(h) || (c.target === "state" && /: CorruptState$/.test(h))),
      )

    // Heal, let the cluster settle, and stop the load.
    await healAll(ctx)
    note(ctx, "healed; waiting for a ready cluster")
    await readyUnlessHalted(sys, 120_000, haltedForDamage).catch((e: unknown) =>
      failures.push(`not ready after healing: ${errText(e)}`),
    )
    await sleep(2_000)
    await workload.stop()
    workload = undefined
    note(ctx, "workload stopped")

    for (const h of await halts(sys)) {
      const node = haltedNode(h)
      if (haltedForDamage(h)) {
        note(ctx, `${h} (corrupted earlier): wiped, rejoins`)
        await sys.killNode(node)
        await sys.wipeNode(node)
        await healAll(ctx)
      } else failures.push(`halted after healing: ${h}`)
    }
    await readyUnlessHalted(sys, 120_000, () => false).catch((e: unknown) =>
      failures.push(`not ready: ${errText(e)}`),
    )

    // A final linearizable read of every key (retried on errors: each try is its own op).
    const nc = await sys.operatorConnection()
    try {
      for (const key of keySpace(o.groups ?? 8)) {
        let done = false
        for (let t = 0; t < 10 && !done; t++) {
          done = (await runOp(nc, rec, "final", { f: "get", key }, 10_000)) === "ok"
          if (!done) await sleep(500)
        }
        if (!done) failures.push(`final read of ${key} failed 10 times`)
      }
    } finally {
      await nc.close().catch(() => undefined)
    }

    // Everyone at the same applied index, then stop and audit the files.
    const leader = await currentLeader(sys)
    const st = await sys.status(5_000)
    const commit = st.ok ? st.value.commit_index : 0
    note(ctx, `leader ${leader}, commit ${commit}`)
    // A halted node (a failure already) does not catch up: the others are still compared.
    const halted = await halts(sys)
    const live = sys.nodes.filter((n) => !halted.some((h) => haltedNode(h) === n))
    await sys
      .waitForApplied(commit, live, 90_000)
      .catch((e: unknown) => failures.push(`replicas did not catch up: ${errText(e)}`))
    for (const h of halted) failures.push(`halted at the end: ${h}`)
    // A node whose consensus is down at the end (it crashed: a failure already) is not audited:
    // opening its damaged LevelDB files can abort this process (LevelDB assertions).
    const up = sys.nodes.filter((n) => sys.isRunning(`consensus-${n}`))
    for (const n of sys.nodes)
      if (!up.includes(n)) failures.push(`consensus-${n} not running at the end; its files were not audited`)
    await sys.kill("admin")
    for (const n of sys.nodes) await sys.kill(`consensus-${n}`)
    for (const n of sys.nodes) await sys.kill(`keystore-${n}`)
    // Nodes that started on corrupted files (LevelDB did not notice) are audited too; damage
    // found in their copies is reported as a finding (it fails to open: never served as data).
    const kept = new Set(ctx.corruptions.filter((c) => c.reaction.startsWith("started")).map((c) => c.node))
    const audit = await auditStoppedSystem(sys, up, kept)
    failures.push(...audit.failures)
    for (const t of audit.tolerated)
      ctx.findings.push(`undetected corruption (fails to open, not served as data): ${t}`)
    opened = audit.opened
    envelopes = audit.envelopes

    const r = checkHistory(rec.history(), {
      timeoutMs: o.checkTimeoutMs ?? Math.max(30_000, Math.min(o.durationMs, 600_000)),
    })
    verdict = r.verdict
    checkSummary = renderResult(r)
    if (r.verdict === "illegal") failures.push(`history not linearizable:\n${checkSummary}`)
    if (r.verdict === "unknown")
      ctx.findings.push(`linearizability search budget exhausted (verdict unknown)`)
    for (const c of ctx.crashes) failures.push(`process crash: ${c}`)
    for (const c of ctx.corruptions)
      if (!c.acceptable) failures.push(`corruption of ${c.node} (${c.damage}) not detected: ${c.reaction}`)
  } catch (e) {
    failures.push(`run aborted: ${errText(e)}`)
  } finally {
    if (workload !== undefined) await workload.stop().catch(() => undefined)
  }

  let report: NemesisReport = {
    seed: o.seed,
    faults: o.faults,
    durationMs: o.durationMs,
    elapsedMs: performance.now() - t0,
    ops: countOps(rec),
    verdict,
    failures,
    timeline: ctx.timeline,
    mutations: ctx.mutations,
    corruptions: ctx.corruptions,
    findings: ctx.findings,
    baseDir: sys.baseDir,
    opened,
    envelopes,
    ...(checkSummary === undefined ? {} : { checkSummary }),
  }
  if (failures.length > 0) {
    sys.markFailed()
    const dir = o.outDir ?? process.env.EKV_NEMESIS_OUT ?? join(tmpdir(), "ekv-nemesis-runs")
    await mkdir(dir, { recursive: true })
    const stamp = new Date().toISOString().replace(/[:.]/g, "-")
    const historyFile = join(dir, `nemesis-${o.seed}-${stamp}.history.json`)
    const reportFile = join(dir, `nemesis-${o.seed}-${stamp}.report.txt`)
    await saveHistory(historyFile, rec.history())
    report = { ...report, historyFile, reportFile }
    await writeFile(
      reportFile,
      `${renderReport(report)}\n\n${checkSummary ?? ""}\n\n${await sys.failureReport(3_000)}\n`,
    )
  }
  await sys.stopAll()
  return report
}

const countOps = (rec: HistoryRecorder) => {
  const c = { ok: 0, fail: 0, info: 0 }
  for (const e of rec.history().events) if (e.type !== "invoke") c[e.type]++
  return c
}
