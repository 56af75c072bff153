// Nemesis actions. Each one injects a fault, holds it for a seeded time, and
// heals it (restarts what it killed, resumes what it paused, restores routes)
// before it returns; a schedule (schedule.ts) runs them one after another
// while the workload runs. Every step is written to the run's timeline.
//
//   kill       SIGKILL a consensus or keystore process, restart it
//   pause      SIGSTOP a consensus (the leader most of the time) past several election timeouts, SIGCONT
//   partition  cut one node's NATS server off from the others, restore its routes
//   keystore   a keystore SIGKILLed while it applies an encryption entry (rotate-dek), restarted
//   rotate     rotate-dek / the raft-envelope cutover while a follower's consensus is down or paused
//   transfer   leader transfer during load
//   member     remove a follower, wipe it, add it back as a learner, promote it
//   corrupt    stop a follower, flip bytes in / truncate its Raft log or state LevelDB files, start it:
//              it must refuse (or halt) rather than serve damaged data; then it is wiped and rejoins.
//              A state-DB table is checked after the start (the scrubber): halted CorruptState
import { open, readdir, stat, truncate } from "node:fs/promises"
import { join } from "node:path"
import type { Reply } from "../processCluster.ts"
import { type EkvSystem, sleep } from "../system.ts"
import type { NatsCluster } from "./natsCluster.ts"

export const FAULTS = [
  "kill",
  "pause",
  "partition",
  "keystore",
  "rotate",
  "transfer",
  "member",
  "corrupt",
] as const
export type FaultName = (typeof FAULTS)[number]

export const parseFaults = (s: string): FaultName[] => {
  const out: FaultName[] = []
  for (const f of s
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x.length > 0)) {
    if (!(FAULTS as readonly string[]).includes(f))
      throw new Error(`unknown fault ${f} (known: ${FAULTS.join(",")})`)
    out.push(f as FaultName)
  }
  return out
}

/** What a corruption did and how the node reacted. */
export interface CorruptionOutcome {
  readonly node: string
  /** Which database the damaged file belongs to. */
  readonly target: "raft" | "state"
  readonly file: string
  readonly damage: string
  /** refused (exit code + refusal code), halted (reason), or started (health ok). */
  readonly reaction: string
  readonly acceptable: boolean
}

export interface NemesisContext {
  readonly sys: EkvSystem
  readonly nats: NatsCluster
  readonly rng: () => number
  readonly t0: number
  readonly timeline: string[]
  /** Results of encryption mutations issued under faults. */
  readonly mutations: string[]
  readonly corruptions: CorruptionOutcome[]
  /** Problems seen while injecting or healing (a node that would not restart, ...). */
  readonly findings: string[]
  raftCutover: boolean
  /**
   * How a wiped node gets the state back: "snapshot" compacts the leader's log first (it rejoins
   * through InstallSnapshot); "replay" leaves the log (it replays from index 1).
   */
  readonly rejoin: "snapshot" | "replay"
  /** Processes whose next non-SIGKILL exit is expected (a refusal the nemesis provoked). */
  readonly expectedExits: Set<string>
  /** Processes that exited by themselves (not SIGKILLed by the nemesis), with their log tails. */
  readonly crashes: string[]
}

export const note = (ctx: NemesisContext, msg: string): void => {
  const line = `+${((performance.now() - ctx.t0) / 1000).toFixed(1)}s ${msg}`
  ctx.timeline.push(line)
  if (process.env.EKV_NEMESIS_VERBOSE !== undefined) console.log(`[nemesis] ${line}`)
}

const pick = <A>(rng: () => number, xs: readonly A[]): A => xs[Math.floor(rng() * xs.length)] as A
const between = (rng: () => number, lo: number, hi: number) => Math.round(lo + rng() * (hi - lo))

/** The current leader by cluster status (null when none answers). */
export const currentLeader = async (sys: EkvSystem): Promise<string | null> => {
  const s = await sys.status(3_000).catch(() => undefined)
  return s?.ok === true ? s.value.leader : null
}

const replyText = (r: Reply<unknown> | Error): string =>
  r instanceof Error
    ? `error: ${r.message}`
    : r.ok
      ? `ok ${JSON.stringify(r.value)}`
      : `${r.error.code}: ${r.error.message}`

/** Starts a process, noting (not throwing) a failure to become ready. */
const startNoted = async (ctx: NemesisContext, proc: string): Promise<boolean> => {
  if (ctx.sys.isRunning(proc)) return true
  // The nemesis stops processes only with SIGKILL: any other exit is a crash (or a refusal it provoked).
  const log = await ctx.sys.readLog(proc)
  const exits = [...log.matchAll(/##### (\S+) \S+ exited code=(\S+) signal=(\S+)/g)]
  const last = exits[exits.length - 1]
  if (last !== undefined && last[3] !== "SIGKILL" && !ctx.expectedExits.delete(proc)) {
    const at = log.lastIndexOf(last[0])
    const msg = `${proc} exited by itself at ${last[1]} (code ${last[2]}, signal ${last[3]}); log before: ${log.slice(Math.max(0, at - 2_500), at).replace(/\n/g, " | ")}`
    ctx.crashes.push(msg)
    note(ctx, `${proc} exited by itself (code ${last[2]}, signal ${last[3]})`)
  }
  try {
    await ctx.sys.start(proc, { timeoutMs: 60_000 })
    note(ctx, `started ${proc}`)
    return true
  } catch (e) {
    const msg = `${proc} did not restart: ${(e instanceof Error ? e.message : String(e)).slice(0, 600)}`
    ctx.findings.push(msg)
    note(ctx, msg)
    return false
  }
}

/** Restarts every stopped process of the members (keystore before consensus) and heals every partition. */
/** Before a node is wiped: with rejoin "snapshot", the leader snapshots and compacts its log. */
const beforeWipe = async (ctx: NemesisContext): Promise<void> => {
  if (ctx.rejoin !== "snapshot") return
  const leader = await currentLeader(ctx.sys)
  if (leader === null) return
  const r = await ctx.sys
    .cluster("snapshot", { node: leader }, 60_000)
    .catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))))
  note(ctx, `snapshot on ${leader} before the wipe: ${replyText(r)}`)
}

export const healAll = async (ctx: NemesisContext): Promise<void> => {
  if (ctx.nats.isolated().length > 0) {
    note(ctx, `heal partitions ${ctx.nats.isolated().join(",")}`)
    await ctx.nats.healAll()
  }
  for (const n of ctx.sys.nodes) {
    await startNoted(ctx, `keystore-${n}`)
    await startNoted(ctx, `consensus-${n}`)
  }
  if (!ctx.sys.isRunning("admin")) await startNoted(ctx, "admin")
  await repairMembership(ctx)
}

type Action = (ctx: NemesisContext) => Promise<void>

const kill: Action = async (ctx) => {
  const node = pick(ctx.rng, ctx.sys.nodes)
  const proc = `${ctx.rng() < 0.65 ? "consensus" : "keystore"}-${node}`
  note(ctx, `SIGKILL ${proc}`)
  await ctx.sys.kill(proc)
  await sleep(between(ctx.rng, 1_000, 4_000))
  await startNoted(ctx, proc)
}

const pause: Action = async (ctx) => {
  const leader = await currentLeader(ctx.sys)
  const node = leader !== null && ctx.rng() < 0.7 ? leader : pick(ctx.rng, ctx.sys.nodes)
  const proc = `${ctx.rng() < 0.8 ? "consensus" : "keystore"}-${node}`
  const ms = between(ctx.rng, 1_500, 5_000)
  note(ctx, `SIGSTOP ${proc} for ${ms} ms${node === leader ? " (leader)" : ""}`)
  ctx.sys.pause(proc)
  await sleep(ms)
  ctx.sys.resume(proc)
  note(ctx, `SIGCONT ${proc}`)
}

const partition: Action = async (ctx) => {
  const leader = await currentLeader(ctx.sys)
  const node = leader !== null && ctx.rng() < 0.5 ? leader : pick(ctx.rng, ctx.sys.nodes)
  const ms = between(ctx.rng, 3_000, 8_000)
  note(ctx, `partition: isolate ${node}${node === leader ? " (leader)" : ""} for ${ms} ms`)
  await ctx.nats.isolate(node)
  await sleep(ms)
  await ctx.nats.heal(node)
  note(ctx, `partition: healed ${node}`)
}

const mutation = (ctx: NemesisContext, op: string, body: unknown): Promise<Reply<unknown> | Error> =>
  ctx.sys.encryption(op, body, 30_000).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))))

const keystoreCrash: Action = async (ctx) => {
  const leader = await currentLeader(ctx.sys)
  const followers = ctx.sys.nodes.filter((n) => n !== leader)
  // Mostly a follower's keystore: slowed down, it is still applying the rotation when the leader
  // answers, so the kill lands inside that apply (checked with the node's applied index).
  const onFollower = followers.length > 0 && ctx.rng() < 0.7
  const node = onFollower ? pick(ctx.rng, followers) : pick(ctx.rng, ctx.sys.nodes)
  const proc = `keystore-${node}`
  const purpose = ctx.rng() < 0.5 ? "storage" : "raft"
  const unthrottle = ctx.sys.throttle(proc, 50, 100)
  note(ctx, `keystore crash: rotate-dek ${purpose} with ${proc} throttled`)
  const p = mutation(ctx, "rotate-dek", { purpose })
  let r: Reply<unknown> | Error
  if (onFollower) {
    r = await p
    const h = await ctx.sys.health(node, 1_000).catch(() => undefined)
    unthrottle()
    await ctx.sys.kill(proc)
    const idx = !(r instanceof Error) && r.ok ? (r.value as { index: number }).index : undefined
    const applied = h?.ok === true ? h.value.applied_index : undefined
    note(
      ctx,
      `keystore crash: SIGKILL ${proc} after the leader applied ${idx ?? "?"} (${node} applied ${applied ?? "?"}${idx !== undefined && applied !== undefined && applied < idx ? ": during its apply" : ""})`,
    )
  } else {
    await sleep(between(ctx.rng, 100, 1_500))
    unthrottle()
    await ctx.sys.kill(proc)
    note(ctx, `keystore crash: SIGKILL ${proc}`)
    r = await p
  }
  await sleep(between(ctx.rng, 1_000, 3_000))
  await startNoted(ctx, proc)
  ctx.mutations.push(`rotate-dek ${purpose} (keystore ${node} killed): ${replyText(r)}`)
  note(ctx, `keystore crash: rotate-dek -> ${replyText(r)}`)
}

const rotate: Action = async (ctx) => {
  const leader = await currentLeader(ctx.sys)
  const followers = ctx.sys.nodes.filter((n) => n !== leader)
  const victim = pick(ctx.rng, followers.length > 0 ? followers : ctx.sys.nodes)
  const proc = `consensus-${victim}`
  const killIt = ctx.rng() < 0.5
  if (killIt) await ctx.sys.kill(proc)
  else ctx.sys.pause(proc)
  note(ctx, `rotate: ${killIt ? "SIGKILL" : "SIGSTOP"} ${proc}`)
  const [op, body] = !ctx.raftCutover
    ? ["enable-raft-envelope", {}]
    : ["rotate-dek", { purpose: ctx.rng() < 0.5 ? "storage" : "raft" }]
  const p = mutation(ctx, op, body)
  await sleep(between(ctx.rng, 500, 3_000))
  if (killIt) await startNoted(ctx, proc)
  else ctx.sys.resume(proc)
  const r = await p
  if (op === "enable-raft-envelope" && !(r instanceof Error) && r.ok) ctx.raftCutover = true
  ctx.mutations.push(
    `${op} ${JSON.stringify(body)} (${proc} ${killIt ? "killed" : "paused"}): ${replyText(r)}`,
  )
  note(ctx, `rotate: ${op} -> ${replyText(r)}`)
}

const transfer: Action = async (ctx) => {
  const leader = await currentLeader(ctx.sys)
  const to = pick(
    ctx.rng,
    ctx.sys.nodes.filter((n) => n !== leader),
  )
  const r = await ctx.sys
    .cluster("transfer-leader", { node: to }, 20_000)
    .catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))))
  note(ctx, `transfer-leader ${leader} -> ${to}: ${replyText(r)}`)
}

/** Retries a cluster request on errors (Unavailable while a change commits, a learner still catching up). */
const clusterRetry = async (
  ctx: NemesisContext,
  op: string,
  body: unknown,
  timeoutMs = 45_000,
): Promise<Reply<unknown> | Error> => {
  const t0 = Date.now()
  for (;;) {
    const r = await ctx.sys
      .cluster(op, body, 20_000)
      .catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))))
    if ((!(r instanceof Error) && r.ok) || Date.now() - t0 > timeoutMs) return r
    await sleep(1_000)
  }
}

/** Every node of the system a voter again (after a membership change that did not finish). */
export const repairMembership = async (ctx: NemesisContext): Promise<void> => {
  const s = await ctx.sys.status(5_000).catch(() => undefined)
  if (s?.ok !== true) return
  for (const n of ctx.sys.nodes) {
    const m = s.value.members.find((x) => x.node === n)
    if (m?.role === "voter") continue
    if (m === undefined) {
      const r = await clusterRetry(ctx, "add-learner", { node: n })
      note(ctx, `repair: add-learner ${n}: ${replyText(r)}`)
      await ctx.sys.waitForHealthy(n, 60_000).catch(() => undefined)
    }
    const r = await clusterRetry(ctx, "promote", { node: n })
    note(ctx, `repair: promote ${n}: ${replyText(r)}`)
    if (r instanceof Error || !r.ok) ctx.findings.push(`membership repair: promote ${n}: ${replyText(r)}`)
  }
}

/** True when every node is a voter and reports health ok. */
const fullCluster = async (ctx: NemesisContext): Promise<boolean> => {
  const s = await ctx.sys.status(5_000).catch(() => undefined)
  if (s?.ok !== true) return false
  const voters = s.value.members.filter((m) => m.role === "voter").map((m) => m.node)
  return ctx.sys.nodes.every((n) => voters.includes(n))
}

const member: Action = async (ctx) => {
  if (!(await fullCluster(ctx))) {
    note(ctx, "member: cluster not at full membership; skipped")
    return
  }
  const leader = await currentLeader(ctx.sys)
  const node = pick(
    ctx.rng,
    ctx.sys.nodes.filter((n) => n !== leader),
  )
  const failed = (what: string, r: Reply<unknown> | Error): boolean => {
    note(ctx, `member: ${what}: ${replyText(r)}`)
    if (r instanceof Error || !r.ok) {
      ctx.findings.push(`membership change: ${what} failed: ${replyText(r)}`)
      return true
    }
    return false
  }
  if (failed(`remove ${node}`, await clusterRetry(ctx, "remove", { node }, 20_000))) return
  await ctx.sys.killNode(node)
  await beforeWipe(ctx)
  await ctx.sys.wipeNode(node)
  // The learner's keystore must answer capability before add-learner (the encryption gate).
  await startNoted(ctx, `keystore-${node}`)
  if (failed(`add-learner ${node}`, await clusterRetry(ctx, "add-learner", { node }))) return
  await startNoted(ctx, `consensus-${node}`)
  await ctx.sys.waitForHealthy(node, 60_000).catch((e: unknown) => {
    ctx.findings.push(`membership change: learner ${node} not healthy: ${String(e)}`)
  })
  failed(`promote ${node}`, await clusterRetry(ctx, "promote", { node }))
}

const levelFiles = async (dir: string): Promise<{ path: string; size: number }[]> => {
  const names = await readdir(dir).catch(() => [] as string[])
  const out: { path: string; size: number }[] = []
  for (const n of names) {
    if (!/\.(log|ldb)$/.test(n)) continue
    const s = await stat(join(dir, n)).catch(() => undefined)
    if (s !== undefined && s.size > 64) out.push({ path: join(dir, n), size: s.size })
  }
  return out
}

/** Flips `count` random bytes of `file` between 25% and 100% of its length (past LevelDB's headers). */
const flipBytes = async (rng: () => number, file: string, size: number, count: number): Promise<string> => {
  const fh = await open(file, "r+")
  const at: number[] = []
  try {
    for (let i = 0; i < count; i++) {
      const off = Math.floor(size * (0.25 + 0.75 * rng()))
      const b = Buffer.alloc(1)
      await fh.read(b, 0, 1, off)
      b[0] = (b[0] ?? 0) ^ (1 << Math.floor(rng() * 8))
      await fh.write(b, 0, 1, off)
      at.push(off)
    }
  } finally {
    await fh.close()
  }
  return `flipped a bit at ${at.sort((a, b) => a - b).join(",")}`
}

const REFUSAL = /refusing to start: (\w+)/

const corrupt: Action = async (ctx) => {
  // Corrupting (and then wiping) a voter is only safe while the other two form a quorum.
  if (!(await fullCluster(ctx))) {
    note(ctx, "corrupt: cluster not at full membership; skipped")
    return
  }
  const leader = await currentLeader(ctx.sys)
  const node = pick(
    ctx.rng,
    ctx.sys.nodes.filter((n) => n !== leader),
  )
  await ctx.sys.killNode(node)
  const which = ctx.rng() < 0.7 ? "raft" : "state"
  const dir = which === "raft" ? ctx.sys.raftDir(node) : join(ctx.sys.stateDir(node), "db")
  const files = await levelFiles(dir)
  if (files.length === 0) {
    note(ctx, `corrupt: ${node} has no LevelDB files under ${dir}; skipped`)
    await healAll(ctx)
    return
  }
  const f = pick(ctx.rng, files)
  const damage =
    ctx.rng() < 0.7
      ? await flipBytes(ctx.rng, f.path, f.size, between(ctx.rng, 1, 8))
      : await truncate(f.path, Math.floor(f.size * (0.3 + 0.6 * ctx.rng()))).then(() => "truncated")
  note(ctx, `corrupt: ${node} ${which} ${f.path}: ${damage}`)
  await startNoted(ctx, `keystore-${node}`)
  const proc = `consensus-${node}`
  let reaction = ""
  let acceptable = false
  try {
    await ctx.sys.start(proc, { timeoutMs: 30_000 })
  } catch {
    // refused (exited) or not ready: read the log below
  }
  if (!ctx.sys.isRunning(proc)) {
    const tail = (await ctx.sys.readLog(proc)).slice(-4_000)
    const code = REFUSAL.exec(tail)?.[1] ?? "unknown"
    reaction = `refused: ${code}`
    ctx.expectedExits.add(proc)
    acceptable = code === "CorruptLog"
    if (!acceptable) reaction += ` (log: ${tail.split("\n").slice(-6).join(" | ").slice(0, 600)})`
  } else {
    // It started: within a few seconds it must halt (CorruptLog) or prove healthy.
    let seen = await ctx.sys
      .until(
        `${node} halted or healthy`,
        async () => {
          const h = await ctx.sys.health(node, 1_000)
          if (!h.ok) return undefined
          if (h.value.halted !== undefined)
            return `halted: ${h.value.halted.reason} at ${h.value.halted.index}`
          return h.value.consensus === "ok" ? "started: health ok" : undefined
        },
        20_000,
      )
      .catch((e: unknown) => `no verdict: ${String(e)}`)
    // The state DB's tables are checked in the background once it runs (the scrubber; a pass
    // over these small stores takes a few seconds): damage in one halts it with CorruptState.
    if (seen.startsWith("started") && which === "state" && f.path.endsWith(".ldb"))
      seen = await ctx.sys
        .until(
          `${node} halted by the scrubber`,
          async () => {
            const h = await ctx.sys.health(node, 1_000)
            return h.ok && h.value.halted !== undefined
              ? `halted: ${h.value.halted.reason} at ${h.value.halted.index}`
              : undefined
          },
          20_000,
        )
        .catch(() => `${seen} (no halt within 20 s)`)
    reaction = seen
    acceptable =
      seen.startsWith("halted: CorruptLog") ||
      (which === "state" && seen.startsWith("halted: CorruptState")) ||
      seen.startsWith("started")
  }
  ctx.corruptions.push({ node, target: which, file: f.path, damage, reaction, acceptable })
  note(ctx, `corrupt: ${node} reaction: ${reaction}`)
  if (reaction.startsWith("started")) {
    // LevelDB may have dropped the damaged records (or the damage hit nothing read yet);
    // the node stays, and the end-of-run checks compare its state with the others'.
    return
  }
  await ctx.sys.killNode(node)
  await beforeWipe(ctx)
  await ctx.sys.wipeNode(node)
  note(ctx, `corrupt: wiped ${node}; it rejoins`)
  await startNoted(ctx, `keystore-${node}`)
  await startNoted(ctx, proc)
}

export const ACTIONS: Record<FaultName, Action> = {
  kill,
  pause,
  partition,
  keystore: keystoreCrash,
  rotate,
  transfer,
  member,
  corrupt,
}
