// Long runs of the Raft simulation (services/consensus/test/sim).
//   node scripts/sim.ts --seeds 100000 --start 0 [--nodes 3|5] [--steps N] [--wipes | --no-wipes]
//   node scripts/sim.ts --seed S --trace      (replay one seed, printing every decision)

import { optionsForSeed, runSeed, type SimOptions } from "../services/consensus/test/sim/cluster.ts"

const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : undefined
}
const num = (name: string): number | undefined => {
  const v = flag(name)
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} wants a non-negative integer, got ${v}`)
  return n
}

const over: { -readonly [K in keyof SimOptions]?: SimOptions[K] } = {}
const nodes = num("nodes")
if (nodes !== undefined) over.nodes = nodes
const steps = num("steps")
if (steps !== undefined) over.steps = steps
// Default: about 30% of seeds wipe nodes' data (test/sim/cluster.ts, "Wipes").
if (args.includes("--wipes")) over.wipes = true
if (args.includes("--no-wipes")) over.wipes = false
const trace = args.includes("--trace")
if (trace) over.trace = true

const single = num("seed")
if (single !== undefined) {
  const r = runSeed(optionsForSeed(single, over))
  if (r.ok) {
    for (const line of r.trace) console.log(line)
    console.log(`seed ${single}: ok`, r.stats)
  } else {
    for (const line of r.failure.trace) console.log(line)
    console.log(`\nFAILED ${r.failure.message}`)
    process.exitCode = 1
  }
} else {
  const count = num("seeds") ?? 1000
  const start = num("start") ?? 0
  const t0 = performance.now()
  let failures = 0
  let lastReport = t0
  const totals: Record<string, number> = {}
  for (let s = start; s < start + count; s++) {
    const r = runSeed(optionsForSeed(s, over))
    if (r.ok) for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v
    if (!r.ok) {
      failures++
      console.log(`FAILED ${r.failure.message.split("\n")[0]}`)
      console.log(
        `  replay: node scripts/sim.ts --seed ${s}${nodes !== undefined ? ` --nodes ${nodes}` : ""}${steps !== undefined ? ` --steps ${steps}` : ""}${over.wipes === undefined ? "" : over.wipes ? " --wipes" : " --no-wipes"} --trace`,
      )
      if (failures >= (num("max-failures") ?? 20)) break
    }
    const now = performance.now()
    if (now - lastReport > 10_000) {
      lastReport = now
      const done = s - start + 1
      console.log(`${done} seeds, ${failures} failed, ${((done / (now - t0)) * 60_000).toFixed(0)} seeds/min`)
    }
  }
  const secs = (performance.now() - t0) / 1000
  const avg = Object.entries(totals).map(([k, v]) => `${k}=${(v / count).toFixed(1)}`)
  console.log(`per seed on average: ${avg.join(" ")}`)
  console.log(
    `${count} seeds from ${start}: ${failures} failed in ${secs.toFixed(1)}s (${((count / secs) * 60).toFixed(0)} seeds/min)`,
  )
  if (failures > 0) process.exitCode = 1
}
