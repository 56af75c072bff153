// CONTRACT.md §1's order of checks for the encryption mutators, over every
// combination of faults: the first failing check in the order answers, and
// nothing is proposed unless every check passes. The bus and the consensus
// nodes are in-memory fakes here.
import { describe, expect, it } from "@effect/vitest"
import { fullNodeId } from "@ekv/crypto"
import { ApiError, type CapabilityReport, type ClusterStatus, nodeId16 } from "@ekv/wire"
import { Effect, Layer } from "effect"
import type { AdminConfig } from "../../src/config.ts"
import { ConsensusNodes } from "../../src/consensusNodes.ts"
import { EncryptionBus, type EncryptionBusShape } from "../../src/encryption/encryptionBus.ts"
import * as Flow from "../../src/encryption/encryptionFlows.ts"
import type { LeaderState } from "../../src/encryption/encryptionState.ts"
import { EventIndex } from "../../src/encryption/eventIndex.ts"
import { makePendingCandidates, PendingCandidates } from "../../src/encryption/pendingCandidates.ts"

const NODES = ["n1", "n2", "n3"]
const config: AdminConfig = {
  prefix: "ekv",
  peers: [],
  metricsPort: undefined,
  statusTimeoutMs: 100,
  mutateTimeoutMs: 100,
  snapshotTimeoutMs: 100,
  discoveryWaitMs: 10,
  electionTimeoutMs: 100,
  resyncTimeoutMs: 100,
}

interface Faults {
  leaderAnswer: "ok" | "disabled" | "silent"
  applierNotReady: boolean
  notBootstrapped: boolean
  memberDown: boolean
}

const report = (node: string, capable = true): CapabilityReport => ({
  node: node as CapabilityReport["node"],
  encryption_capable: capable,
  build_sha: "t",
  sidecar_present: true,
  full_node_id: capable ? fullNodeId(node) : 0n,
  local_epoch: 2,
  kek_id: capable ? "aaaaaaaaaaaaaaaa" : null,
  next_kek_id: "bbbbbbbbbbbbbbbb",
})

const leaderState = (f: Faults): LeaderState => ({
  cluster_id: "",
  leader: "n1" as LeaderState["leader"],
  term: 1,
  applied_index: 10,
  commit_index: 10,
  leader_capable: !f.applierNotReady && f.leaderAnswer === "ok",
  storage_envelope_active: false,
  active: f.notBootstrapped ? { storage: 0, raft: 0 } : { storage: 11, raft: 12 },
  raft_envelope_cutover_index: 0,
  last_encryption_index: 0,
  last_control_index: 0,
  keys: f.notBootstrapped
    ? []
    : [
        { key_id: 11, purpose: "storage", created: "2026-01-01T00:00:00.000Z", retired: false },
        { key_id: 12, purpose: "raft", created: "2026-01-01T00:00:00.000Z", retired: false },
      ],
  registry: f.notBootstrapped
    ? []
    : [11, 12].flatMap((dek) =>
        NODES.map((n) => ({
          dek_id: dek as never,
          node_id16: nodeId16(fullNodeId(n)),
          full_node_id: fullNodeId(n),
          first_seen_local_epoch: 5,
          last_seen_local_epoch: 5,
          raft_index: 4,
        })),
      ),
  members: NODES.map((n) => ({ node: n as never, role: "voter" as const, full_node_id: fullNodeId(n) })),
})

const unavailable = () =>
  new ApiError.Unavailable({ message: "no responders", details: { reason: "NoResponders" } })

const run = <A>(f: Faults, op: Effect.Effect<A, ApiError.ApiError, Flow.Services>) => {
  const proposals: Uint8Array[] = []
  const status: ClusterStatus = {
    cluster_id: "",
    leader: "n1" as ClusterStatus["leader"],
    term: 1,
    commit_index: 10 as never,
    members: NODES.map((n) => ({
      node: n as never,
      role: "voter" as const,
      applied_index: 10 as never,
      reachable: true,
    })),
  }
  const bus: EncryptionBusShape = {
    state: () => Effect.succeed(leaderState(f)),
    propose: (_leader, entry) =>
      Effect.sync(() => {
        proposals.push(entry)
        return {
          index: 11,
          kind: "registration" as const,
          status: "applied" as const,
          outcome: "advanced" as const,
          key_ids: [],
        }
      }),
    generateDek: (_l, purposes) =>
      Effect.succeed({
        deks: purposes.map((purpose, i) => ({ purpose, key_id: 50 + i, wrapped: new Uint8Array(61) })),
      }),
    rewrapWraps: () => Effect.fail(unavailable()),
    sidecarState: () => Effect.fail(unavailable()),
    nodeStatus: () => Effect.fail(unavailable()),
    rewrite: () => Effect.succeed({ started: true }),
    capability: (node) => {
      if (node === "n1") {
        if (f.leaderAnswer === "silent") return Effect.fail(unavailable())
        return Effect.succeed(report(node, f.leaderAnswer === "ok"))
      }
      if (node === "n3" && f.memberDown) return Effect.fail(unavailable())
      return Effect.succeed(report(node))
    },
    resync: () => Effect.fail(unavailable()),
  }
  const layer = Layer.mergeAll(
    Layer.succeed(EncryptionBus, bus),
    Layer.succeed(ConsensusNodes, {
      status: Effect.succeed(status),
      leader: Effect.succeed({ leader: "n1", status }),
      call: () => Effect.fail(unavailable()) as never,
      forgetLeader: Effect.void,
    }),
    Layer.succeed(PendingCandidates, makePendingCandidates()),
    Layer.succeed(EventIndex, { firstApplied: () => Effect.succeed(undefined) }),
  )
  return op.pipe(
    Effect.result,
    Effect.provide(layer),
    Effect.map((r) => ({ r, proposals })),
  )
}

const describeError = (e: ApiError.ApiError): string =>
  e._tag === "FailedPrecondition" ? `FailedPrecondition:${String(e.details?.reason)}` : e._tag

const combos = (): Faults[] => {
  const out: Faults[] = []
  for (const leaderAnswer of ["ok", "disabled", "silent"] as const)
    for (const applierNotReady of [false, true])
      for (const notBootstrapped of [false, true])
        for (const memberDown of [false, true])
          out.push({ leaderAnswer, applierNotReady, notBootstrapped, memberDown })
  return out
}

/** The first failing check, in CONTRACT.md §1 order, for a 0x05 mutator that needs DEKs. */
const expectedForControl = (f: Faults): string | undefined => {
  if (f.leaderAnswer === "silent") return "FailedPrecondition:KekNotConfigured"
  if (f.leaderAnswer === "disabled") return "FailedPrecondition:EncryptionDisabled"
  if (f.applierNotReady) return "FailedPrecondition:ApplierNotReady"
  if (f.notBootstrapped) return "FailedPrecondition:NotBootstrapped"
  if (f.memberDown) return "CapabilityCheckFailed"
  return undefined
}

describe("order of checks", () => {
  it.effect("rotate-dek: gate, then NotBootstrapped, then the member poll", () =>
    Effect.gen(function* () {
      for (const f of combos()) {
        const { r, proposals } = yield* run(f, Flow.rotateDek("storage", config))
        const want = expectedForControl(f)
        const got = r._tag === "Failure" ? describeError(r.failure) : undefined
        expect(got, JSON.stringify(f)).toBe(want)
        expect(proposals.length, JSON.stringify(f)).toBe(want === undefined ? 1 : 0)
      }
    }),
  )

  it.effect("bootstrap: gate, then AlreadyBootstrapped, then the member poll", () =>
    Effect.gen(function* () {
      for (const f of combos()) {
        const { r, proposals } = yield* run(f, Flow.bootstrap({ discover: true }, config))
        const want =
          f.leaderAnswer !== "ok" || f.applierNotReady
            ? expectedForControl(f)
            : !f.notBootstrapped
              ? "FailedPrecondition:AlreadyBootstrapped"
              : f.memberDown
                ? "CapabilityCheckFailed"
                : undefined
        const got = r._tag === "Failure" ? describeError(r.failure) : undefined
        expect(got, JSON.stringify(f)).toBe(want)
        expect(proposals.length, JSON.stringify(f)).toBe(want === undefined ? 1 : 0)
      }
    }),
  )

  it.effect("register-writer: NotFound, NotAMember, registry verdict, then the gate; no member poll", () =>
    Effect.gen(function* () {
      for (const f of combos()) {
        if (f.notBootstrapped) continue
        const cases: ReadonlyArray<
          readonly [string, Parameters<typeof Flow.registerWriter>[0], string | undefined]
        > = [
          [
            "unknown dek",
            { dek_id: 99 as never, full_node_id: fullNodeId("n9"), local_epoch: 1 },
            "NotFound",
          ],
          [
            "stranger",
            { dek_id: 11 as never, full_node_id: fullNodeId("n9"), local_epoch: 1 },
            "FailedPrecondition:NotAMember",
          ],
          [
            "rollback",
            { dek_id: 11 as never, full_node_id: fullNodeId("n2"), local_epoch: 1 },
            "LocalEpochRollback",
          ],
          ["advance", { dek_id: 11 as never, full_node_id: fullNodeId("n2"), local_epoch: 9 }, undefined],
        ]
        for (const [what, req, first] of cases) {
          const gate = f.leaderAnswer !== "ok" || f.applierNotReady ? expectedForControl(f) : undefined
          const want = first ?? gate
          const { r, proposals } = yield* run(f, Flow.registerWriter(req, config))
          const got = r._tag === "Failure" ? describeError(r.failure) : undefined
          expect(got, `${what} ${JSON.stringify(f)}`).toBe(want)
          expect(proposals.length).toBe(want === undefined ? 1 : 0)
        }
      }
    }),
  )

  it.effect("an unchanged registration proposes nothing and returns the row's index", () =>
    Effect.gen(function* () {
      const f: Faults = {
        leaderAnswer: "ok",
        applierNotReady: false,
        notBootstrapped: false,
        memberDown: true,
      }
      const { r, proposals } = yield* run(
        f,
        Flow.registerWriter({ dek_id: 11 as never, full_node_id: fullNodeId("n3"), local_epoch: 5 }, config),
      )
      expect(r).toMatchObject({ _tag: "Success", success: { index: 4, outcome: "unchanged" } })
      expect(proposals).toEqual([])
    }),
  )
})
