// Post-run checks of a nemesis run, on the stopped system's files (after every
// node applied the same index):
//
// - the state machines are identical: per node, the newest version of every
//   key (index, tombstone or the opened value) at the same applied index;
// - every stored envelope opens: each storage envelope (state DB and
//   snapshots, AAD = its exact storage key) and raft envelope (Raft log) of
//   every node, under the DEKs of that node's sidecar unwrapped with KEK a or b;
// - no (key_id, nonce) pair with two different envelopes across all nodes;
// - writer-registry rows and the replicated sidecar fields identical on all keystores.

import { readFile } from "node:fs/promises"
import { join } from "node:path"
import { unwrapDek } from "@ekv/crypto"
import { Result } from "effect"
import { openRaft } from "../../../libs/crypto/src/envelope.ts"
import { openStorageValue } from "../../../libs/crypto/src/storageValue.ts"
import { storageKeyOf } from "../../../services/consensus/src/fsm/valueSealer.ts"
import {
  checkNonceReuse,
  collectEnvelopes,
  describeReuse,
  listFiles,
  raftLogEntries,
  readSidecarFile,
  registryRows,
  replicatedSidecar,
  type StoredVersion,
  snapshotVersions,
  stateAppliedIndex,
  stateVersions,
} from "../audit.ts"
import type { EkvSystem } from "../system.ts"

export interface NodeState {
  readonly node: string
  readonly applied: number
  /** key → newest version: `<index>:<value base64>` or `<index>:tombstone`. */
  readonly latest: Map<string, string>
}

export interface AuditResult {
  readonly failures: string[]
  /** Damage found on nodes whose files the nemesis corrupted and that started anyway. */
  readonly tolerated: string[]
  readonly states: NodeState[]
  readonly envelopes: number
  readonly opened: number
}

type Keyring = (id: number) => Uint8Array | undefined

const keyringOf = async (sys: EkvSystem, node: string): Promise<{ ring: Keyring; problems: string[] }> => {
  const problems: string[] = []
  const deks = new Map<number, Uint8Array>()
  const side = await readSidecarFile(sys.sidecarPath(node))
  const keks = await Promise.all(["a", "b"].map((l) => readFile(sys.kekFile(l)).catch(() => undefined)))
  for (const [id, k] of Object.entries(side?.keys ?? {})) {
    let dek: Uint8Array | undefined
    for (const kek of keks) {
      if (kek === undefined) continue
      const r = unwrapDek({
        kek,
        wrapped: Buffer.from(k.wrapped, "base64"),
        purpose: k.purpose,
        keyId: Number(id),
      })
      if (Result.isSuccess(r)) {
        dek = r.success
        break
      }
    }
    if (dek === undefined) problems.push(`${node}: DEK ${id} of its sidecar unwraps with neither KEK`)
    else deks.set(Number(id), dek)
  }
  return { ring: (id) => deks.get(id), problems }
}

const latestOf = (versions: readonly StoredVersion[]): Map<string, StoredVersion> => {
  const m = new Map<string, StoredVersion>()
  for (const v of versions) {
    const prev = m.get(v.key)
    if (prev === undefined || v.index > prev.index) m.set(v.key, v)
  }
  return m
}

/** Runs every at-rest check on the stopped system; returns the failures. */
export const auditStoppedSystem = async (
  sys: EkvSystem,
  nodes: readonly string[],
  corrupted: ReadonlySet<string> = new Set(),
): Promise<AuditResult> => {
  const failures: string[] = []
  const tolerated: string[] = []
  const states: NodeState[] = []
  let opened = 0
  for (const node of nodes) {
    const { ring, problems } = await keyringOf(sys, node)
    failures.push(...problems)
    const openValue = (v: StoredVersion, where: string): string => {
      if (v.state === -1) return "tombstone"
      if (v.state === 0) return Buffer.from(v.payload).toString("base64")
      if (v.state !== 1) {
        failures.push(`${node} ${where} ${JSON.stringify(v.key)}@${v.index}: encryption_state ${v.state}`)
        return "?"
      }
      const r = openStorageValue(v.payload, ring, storageKeyOf(v.key, v.index))
      if (Result.isFailure(r)) {
        ;(corrupted.has(node) ? tolerated : failures).push(
          `${node} ${where} ${JSON.stringify(v.key)}@${v.index}: storage envelope does not open: ${r.failure._tag}: ${r.failure.message}`,
        )
        return "?"
      }
      opened++
      return Buffer.from(r.success).toString("base64")
    }
    const dbDir = join(sys.stateDir(node), "db")
    const versions = await stateVersions(dbDir).catch((e: unknown) => {
      failures.push(`${node}: state DB unreadable: ${String(e)}`)
      return [] as StoredVersion[]
    })
    const latest = new Map<string, string>()
    const newest = latestOf(versions)
    for (const v of versions) {
      const text = openValue(v, "state-db")
      if (newest.get(v.key) === v) latest.set(v.key, `${v.index}:${text}`)
    }
    for (const f of await listFiles(join(sys.stateDir(node), "snapshots")))
      for (const v of await snapshotVersions(f).catch(() => [] as StoredVersion[]))
        openValue(v, `snapshot ${f}`)
    for (const e of await raftLogEntries(sys.raftDir(node)).catch((err: unknown) => {
      failures.push(`${node}: Raft log unreadable: ${String(err)}`)
      return []
    })) {
      if (e.type !== 0 || e.data[0] !== 0x06) continue
      const r = openRaft(e.data.subarray(1), ring)
      if (Result.isFailure(r))
        (corrupted.has(node) ? tolerated : failures).push(
          `${node} raft-log #${e.index}: raft envelope does not open: ${r.failure._tag}`,
        )
      else opened++
    }
    states.push({ node, applied: await stateAppliedIndex(sys.stateDir(node)).catch(() => -1), latest })
  }

  // Replica identity at the same applied index.
  const [first, ...rest] = states
  if (first !== undefined)
    for (const s of rest) {
      if (s.applied !== first.applied) {
        failures.push(`applied index differs: ${first.node} ${first.applied}, ${s.node} ${s.applied}`)
        continue
      }
      const keys = new Set([...first.latest.keys(), ...s.latest.keys()])
      const diff: string[] = []
      for (const k of [...keys].filter((k) => !k.startsWith("!")).sort()) {
        const a = first.latest.get(k)
        const b = s.latest.get(k)
        if (a !== b)
          diff.push(`${JSON.stringify(k)}: ${first.node}=${a ?? "absent"} ${s.node}=${b ?? "absent"}`)
      }
      if (diff.length > 0)
        failures.push(
          `state machines differ at applied ${s.applied} (${first.node} vs ${s.node}): ${diff.slice(0, 10).join("; ")}${diff.length > 10 ? ` ... ${diff.length} keys` : ""}`,
        )
    }

  // Nonce uniqueness across all nodes.
  const dirs = nodes.map((n) => ({ node: n, stateDir: sys.stateDir(n), raftDir: sys.raftDir(n) }))
  const col = await collectEnvelopes(dirs).catch((e: unknown) => {
    failures.push(`envelope collection failed: ${String(e)}`)
    return undefined
  })
  if (col !== undefined) {
    for (const m of col.malformed.slice(0, 10)) failures.push(`malformed envelope: ${m}`)
    // A bit flipped in a corrupted node's copy of an envelope is "the same nonce, other bytes" too.
    const all = checkNonceReuse(col.envelopes)
    const damage = all.filter((x) => x.first.node === x.second.node && corrupted.has(x.first.node))
    const reuse = all.filter((x) => !damage.includes(x))
    if (reuse.length > 0) failures.push(`(key_id, nonce) reused:\n${describeReuse(reuse)}`)
    if (damage.length > 0) tolerated.push(`damaged copies on a corrupted node:\n${describeReuse(damage)}`)
  }

  // Registry rows and sidecars.
  const rows = await Promise.all(nodes.map((n) => registryRows(sys.keystoreDir(n)).catch(() => [])))
  for (let i = 1; i < nodes.length; i++)
    if (JSON.stringify(rows[i]) !== JSON.stringify(rows[0]))
      failures.push(
        `registry rows differ: ${nodes[0]} ${JSON.stringify(rows[0])} vs ${nodes[i]} ${JSON.stringify(rows[i])}`,
      )
  const sides = await Promise.all(nodes.map((n) => readSidecarFile(sys.sidecarPath(n))))
  const rep = sides.map((s) => (s === undefined ? "missing" : JSON.stringify(replicatedSidecar(s))))
  for (let i = 1; i < nodes.length; i++)
    if (rep[i] !== rep[0]) failures.push(`sidecars differ: ${nodes[0]} ${rep[0]} vs ${nodes[i]} ${rep[i]}`)

  return { failures, tolerated, states, envelopes: col?.envelopes.length ?? 0, opened }
}
