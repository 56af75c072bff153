// Long nemesis runs (docs/reliability.md):
//
//   node scripts/nemesis.ts --seed 7 --duration 60s --faults kill,pause,partition,keystore,rotate,corrupt
//
// Options: --seed N (default: random, printed), --duration 60s|5m|90000 (ms),
// --faults a,b,... (default: all: kill,pause,partition,keystore,rotate,transfer,member,corrupt),
// --clients N (4), --groups N (8 groups of 3 keys), --runs N (seeds S, S+1, ...),
// --out DIR (failing histories and reports; default $EKV_NEMESIS_OUT or <tmp>/ekv-nemesis-runs), --keep,
// --rejoin snapshot|replay (how a wiped node rejoins; default snapshot).
// `--replay FILE` checks a saved history again; `--help` prints the options.
// Exit code 1 when any run fails; each failing run prints its seed and the saved history.
import { checkHistory, loadHistory, renderResult } from "../test/src/linearizability/mod.ts"
import { FAULTS, parseFaults, renderReport, runNemesis } from "../test/src/nemesis/mod.ts"

const USAGE = `usage: node scripts/nemesis.ts [options]
  --seed N              first seed (default: random, printed)
  --duration D          fault time: 60s, 5m, 1h or milliseconds (default 60s)
  --faults a,b,...      of ${FAULTS.join(",")} (default: all)
  --clients N           workload clients (default 4)
  --groups N            key groups of 3 keys (default 8)
  --runs N              runs with seeds N, N+1, ... (default 1)
  --out DIR             where failing histories and reports go
                        (default $EKV_NEMESIS_OUT or <tmp>/ekv-nemesis-runs)
  --keep                keep the system directory of a passing run
  --rejoin snapshot|replay
                        how a wiped node rejoins (default snapshot)
  --replay FILE         check a saved history again (no system is started)
  --help, -h            this text
See docs/reliability.md.`

const args = process.argv.slice(2)
if (args.includes("--help") || args.includes("-h")) {
  console.log(USAGE)
  process.exit(0)
}
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`)
  return i < 0 ? undefined : args[i + 1]
}
const duration = (s: string): number => {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s.trim())
  if (m === null) throw new Error(`bad duration ${s}`)
  const n = Number(m[1])
  return Math.round(n * ({ ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] ?? "ms"] ?? 1))
}

// --replay FILE: check a saved history again (no system is started).
const replay = opt("replay")
if (replay !== undefined) {
  const r = checkHistory(await loadHistory(replay), { timeoutMs: 120_000 })
  console.log(renderResult(r))
  process.exit(r.verdict === "illegal" ? 1 : 0)
}

const seed0 = Number(opt("seed") ?? Math.floor(Math.random() * 2 ** 31))
const runs = Number(opt("runs") ?? 1)
const faults = parseFaults(opt("faults") ?? FAULTS.join(","))
const durationMs = duration(opt("duration") ?? "60s")
let failed = 0
for (let k = 0; k < runs; k++) {
  const seed = seed0 + k
  console.log(`nemesis: seed ${seed}, duration ${durationMs} ms, faults ${faults.join(",")}`)
  const r = await runNemesis({
    seed,
    durationMs,
    faults,
    clients: Number(opt("clients") ?? 4),
    groups: Number(opt("groups") ?? 8),
    ...(opt("out") === undefined ? {} : { outDir: opt("out") as string }),
    keep: args.includes("--keep"),
    rejoin: opt("rejoin") === "replay" ? "replay" : "snapshot",
  })
  console.log(renderReport(r))
  if (r.failures.length > 0) {
    failed++
    console.log(
      `nemesis: FAILED seed ${seed}; history ${r.historyFile}; replay: check it with loadHistory + checkHistory`,
    )
  }
}
console.log(`nemesis: ${runs - failed}/${runs} runs passed`)
process.exit(failed > 0 ? 1 : 0)
