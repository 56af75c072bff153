// Long fuzz runs against every public subject (not a test; see
// test/integration/fuzz.test.ts for the gated 10k run).
//
//   node scripts/fuzz.ts --seed 7 --count 100000
//   node scripts/fuzz.ts --seed 7 --count 5000 --subjects 'ekv.kv.*,ekv.node.*.health'
//   node scripts/fuzz.ts --seed 7 --count 5000 --operator data/operator.json   # against `npm run up`
//
// Without --operator it starts its own system (NATS with the §9 permissions,
// three nodes, admin, encryption on) and stops it afterwards. Prints progress,
// the outcome counts and every finding; writes the full report as JSON to
// --out (default fuzz-report-<seed>.json). Exits 1 on any finding, on a
// rejected request that moved the commit index, or a process that died.
import { readFile, writeFile } from "node:fs/promises"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { renderFuzzReport, runFuzz } from "../test/src/fuzz/mod.ts"
import { type EkvSystem, startSystem } from "../test/src/system.ts"

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? dflt : (process.argv[i + 1] ?? dflt)
}
const seed = Number(arg("seed", String(Date.now() % 2 ** 31)))
const count = Number(arg("count", "10000"))
const nodes = arg("nodes", "n1,n2,n3").split(",")
const subjects = arg(
  "subjects",
  "ekv.kv.*,ekv.admin.cluster.*,ekv.admin.encryption.*,ekv.node.*.health,ekv.node.*.capability",
).split(",")
const operatorFile = arg("operator", "")
const out = arg("out", `fuzz-report-${seed}.json`)

let sys: EkvSystem | undefined
let nc: NatsConnection
if (operatorFile !== "") {
  const creds = JSON.parse(await readFile(operatorFile, "utf8")) as {
    servers: string[]
    user: string
    pass: string
  }
  nc = await connect({
    servers: creds.servers,
    user: creds.user,
    pass: creds.pass,
    inboxPrefix: `_INBOX.${creds.user}`,
  })
} else {
  sys = await startSystem({ name: "fuzz-script", nodes })
  await sys.waitForReady()
  nc = await sys.operatorConnection()
}
console.log(`fuzzing ${subjects.join(" ")} with seed ${seed}, ${count} payloads`)
let failed = false
try {
  const report = await runFuzz({
    nc,
    nodes,
    subjects,
    count,
    seed,
    onResult: (r) => {
      if ((r.i + 1) % 1000 === 0) console.log(`  ${r.i + 1}/${count}`)
    },
  })
  console.log(renderFuzzReport(report))
  await writeFile(out, JSON.stringify(report, null, 2))
  console.log(`report: ${out}`)
  failed = report.findings.length > 0 || report.rejectedCommitChanges.length > 0
  if (sys !== undefined) {
    const dead = ["admin", ...nodes.flatMap((n) => [`keystore-${n}`, `consensus-${n}`])].filter(
      (p) => !sys?.isRunning(p),
    )
    if (dead.length > 0) {
      console.log(`DIED: ${dead.join(", ")}`)
      failed = true
    }
  }
} finally {
  await nc.close()
  if (failed) sys?.markFailed()
  await sys?.stopAll()
}
process.exit(failed ? 1 : 0)
