// `npm run bench:aead [-- --results FILE]`: what encryption costs a put, in
// CPU, and what that leaves of the raft-envelope phase's throughput.
//
// In a 3-node cluster with both envelopes on, every put costs six AES-256-GCM
// operations: the leader seals the raft envelope (it keeps the plaintext, so
// it never opens its own), each follower opens it, and each of the three nodes
// seals the value in its own storage envelope (its own nonces, SPEC §6). The
// storage phase costs the three storage seals. This script times those
// operations in a hot loop through libs/crypto (its native backend when built,
// else node:crypto; and, for comparison, Node's cipher API bare), then, given a bench JSON with the three ekv phases, sets
// the server CPU per put of each phase beside that floor:
//   ceiling = plaintext µs/put ÷ (plaintext µs/put + the six operations)
// is the raft ÷ plaintext puts/s a CPU-bound run could reach if encryption
// cost nothing beyond the hot-loop figure. In a server the same calls run with
// cold caches and add garbage (the phases' own CPU deltas, printed too, show
// how much more they cost there); a run that is not CPU-bound (low
// concurrency, where latency decides) can come out above it.
// A script that prints numbers, not a test (docs/performance.md).
import { createCipheriv, createDecipheriv, createSecretKey, randomBytes } from "node:crypto"
import { readFileSync } from "node:fs"
import { parseArgs } from "node:util"
import { aeadBackend, makeNonce, openRaft, sealRaft, sealStorageValue, snappyBackend } from "@ekv/crypto"
import type { BenchResults } from "./report.ts"

const { values: args } = parseArgs({
  options: {
    results: { type: "string" },
    "value-size": { type: "string", default: "256,4096" },
    help: { type: "boolean", short: "h" },
    "no-setup": { type: "boolean" },
  },
})
if (args.help === true) {
  console.log(`usage: npm run bench:aead -- [--value-size 256,4096] [--results bench-results/<file>.json] [--no-setup]
  times AES-256-GCM seal and open as ekv does them (hot loop, µs per operation),
  and with --results sets a bench run's ekv phases beside that cost`)
  process.exit(0)
}

const ROUNDS = 7
const OPS_PER_ROUND = 20_000

/** µs per call of `op`, the median of ROUNDS timed rounds after one warm-up round. */
const timeOf = (op: (i: number) => unknown): number => {
  const rounds: number[] = []
  for (let r = 0; r <= ROUNDS; r++) {
    const start = process.hrtime.bigint()
    for (let i = 0; i < OPS_PER_ROUND; i++) op(i)
    const us = Number(process.hrtime.bigint() - start) / 1e3 / OPS_PER_ROUND
    if (r > 0) rounds.push(us)
  }
  rounds.sort((a, b) => a - b)
  return rounds[Math.floor(rounds.length / 2)]!
}

interface Costs {
  readonly valueSize: number
  readonly storageSeal: number
  readonly raftSeal: number
  readonly raftOpen: number
  readonly nodeSeal: number
  readonly nodeOpen: number
}

const costsAt = (valueSize: number): Costs => {
  const dek = new Uint8Array(randomBytes(32))
  const key = createSecretKey(dek)
  const value = new Uint8Array(randomBytes(valueSize))
  // A KV entry as the leader seals it: tag, op, key, value (~ 40 bytes of framing).
  const payload = new Uint8Array(randomBytes(valueSize + 40))
  const location = new Uint8Array(randomBytes(40))
  const nonces = Array.from({ length: 1024 }, (_, i) => makeNonce(1, 1, BigInt(i)))
  const envelopes = nonces.map((nonce) => sealRaft({ dek, keyId: 1, nonce, plaintext: payload }))
  const aad = new Uint8Array(randomBytes(40))
  const sealed = (() => {
    const c = createCipheriv("aes-256-gcm", key, nonces[0]!, { authTagLength: 16 })
    c.setAAD(aad)
    const body = c.update(value)
    c.final()
    return { body, tag: c.getAuthTag() }
  })()
  return {
    valueSize,
    // as the applier seals a value: Snappy is tried first (it gives up on random bytes)
    storageSeal: timeOf((i) =>
      sealStorageValue({ dek, keyId: 1, nonce: nonces[i & 1023]!, location, value, headroom: 1 }),
    ),
    raftSeal: timeOf((i) =>
      sealRaft({ dek, keyId: 1, nonce: nonces[i & 1023]!, plaintext: payload, headroom: 1 }),
    ),
    raftOpen: timeOf((i) => openRaft(envelopes[i & 1023]!, () => dek)),
    nodeSeal: timeOf((i) => {
      const c = createCipheriv("aes-256-gcm", key, nonces[i & 1023]!, { authTagLength: 16 })
      c.setAAD(aad)
      c.update(value)
      c.final()
      return c.getAuthTag()
    }),
    nodeOpen: timeOf(() => {
      const d = createDecipheriv("aes-256-gcm", key, nonces[0]!, { authTagLength: 16 })
      d.setAAD(aad)
      d.setAuthTag(sealed.tag)
      d.update(sealed.body)
      return d.final()
    }),
  }
}

/** CPU the envelopes add to one put across a 3-node cluster, by phase (see the top of this file). */
const storagePhaseUs = (c: Costs): number => 3 * c.storageSeal
const raftPhaseUs = (c: Costs): number => c.raftSeal + 2 * c.raftOpen + 3 * c.storageSeal

const f1 = (n: number): string => n.toFixed(1)
const sizes = (args["value-size"] ?? "256,4096").split(",").map((s) => Number(s.trim()))
if (sizes.some((n) => !Number.isInteger(n) || n < 0)) {
  console.error("bench:aead: --value-size takes a list of byte counts")
  process.exit(2)
}

console.log(
  `AES-256-GCM on ${process.version}, hot loop, µs per operation (median of ${ROUNDS} rounds); ` +
    `libs/crypto through ${aeadBackend.name} (${aeadBackend.why}; EKV_NATIVE_AEAD=0 for node:crypto), ` +
    `storage seals compressed by the ${snappyBackend.name} Snappy (${snappyBackend.why}; EKV_NATIVE_SNAPPY=0 for JS)`,
)
console.log(
  "value  storage seal  raft seal  raft open  node seal  node open  storage phase/put  raft phase/put",
)
const costs = sizes.map(costsAt)
for (const c of costs) {
  console.log(
    [
      `${c.valueSize} B`.padEnd(6),
      f1(c.storageSeal).padStart(12),
      f1(c.raftSeal).padStart(10),
      f1(c.raftOpen).padStart(10),
      f1(c.nodeSeal).padStart(10),
      f1(c.nodeOpen).padStart(10),
      f1(storagePhaseUs(c)).padStart(18),
      f1(raftPhaseUs(c)).padStart(15),
    ].join(" "),
  )
}
console.log(
  "(node seal/open: Node's cipher API alone, createCipheriv + setAAD + update + final + getAuthTag; the rest is ekv's envelope on top)",
)

if (args.results !== undefined) {
  const results = JSON.parse(readFileSync(args.results, "utf8")) as BenchResults
  const runOf = (target: string, concurrency: number, valueSize: number) =>
    results.targets
      .find((t) => t.name === target)
      ?.runs.find((r) => r.op === "put" && r.concurrency === concurrency && r.valueSize === valueSize)
  console.log(`\n${args.results} (${results.machine.gitCommit.slice(0, 7)}): server CPU µs per put, 3 nodes`)
  console.log(
    "value  conc  plaintext  storage-plaintext  raft-storage  raft÷plaintext puts/s  ceiling if CPU-bound",
  )
  for (const c of costs) {
    const concurrencies = [
      ...new Set(
        results.targets.flatMap((t) =>
          t.runs.filter((r) => r.op === "put" && r.valueSize === c.valueSize).map((r) => r.concurrency),
        ),
      ),
    ].sort((a, b) => a - b)
    for (const n of concurrencies) {
      const plain = runOf("ekv-plaintext", n, c.valueSize)
      const storage = runOf("ekv-storage", n, c.valueSize)
      const raft = runOf("ekv-raft", n, c.valueSize)
      if (plain === undefined || raft === undefined) continue
      const p = plain.serverCpuUsPerOp
      console.log(
        [
          `${c.valueSize} B`.padEnd(6),
          String(n).padStart(4),
          f1(p).padStart(10),
          (storage === undefined ? "-" : f1(storage.serverCpuUsPerOp - p)).padStart(18),
          (storage === undefined ? "-" : f1(raft.serverCpuUsPerOp - storage.serverCpuUsPerOp)).padStart(13),
          (raft.opsPerSec / plain.opsPerSec).toFixed(2).padStart(22),
          (p / (p + raftPhaseUs(c))).toFixed(2).padStart(21),
        ].join(" "),
      )
    }
  }
  console.log(
    "(storage-plaintext: what three storage seals cost in the servers; raft-storage: a raft seal and two opens;\n" +
      " the hot-loop figures above for the same work are the least they can cost)",
  )
}
