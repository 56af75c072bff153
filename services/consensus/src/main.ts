// The consensus process of one node: `node services/consensus/src/main.ts`
// (configuration: CONTRACT §6 environment or equal --flags, see config.ts).
//
// Start-up order: configuration → this node's databases (DataDirLocked /
// CorruptLog refuse the start with one line and a non-zero exit) → NATS →
// Raft driver → the state-DB scrubber → KV, cluster and health endpoints →
// metrics. SIGTERM/SIGINT
// shut everything down in reverse order (endpoints, driver, NATS, LevelDBs).
import * as path from "node:path"
import { Nats, natsLayer } from "@ekv/bus"
import { aeadBackend, snappyBackend } from "@ekv/crypto"
import { serveMetrics } from "@ekv/metrics"
import { clusterEventMsgId, subjects } from "@ekv/wire"
import { connect } from "@nats-io/transport-node"
import { Effect, Exit, Fiber, Layer } from "effect"
import { serveCluster } from "./clusterEndpoints.ts"
import { ConfigError, type ConsensusConfig, loadConfig } from "./config.ts"
import { serveEncryption } from "./encryption/adminEndpoints.ts"
import { startRotationWatch } from "./encryption/rotation.ts"
import { EncryptionRuntime, knownMembers, type RefusedStart } from "./encryption/runtime.ts"
import { makeClusterEvents } from "./events.ts"
import { Applier } from "./fsm/applier.ts"
import { testFaultInjector } from "./fsm/halt.ts"
import { envelopeSealer } from "./fsm/valueSealer.ts"
import { serveHealth, serveMemberHealth } from "./health.ts"
import { serveKv } from "./kv/kvEndpoints.ts"
import { makeLog } from "./log.ts"
import { makeConsensusMetrics } from "./metrics.ts"
import { RaftNode } from "./node/raftNode.ts"
import { type OpenedStorage, openStorage, probeClusterOverNats, RefuseStart } from "./node/storage.ts"
import { describeProblems, type LevelDbProblem } from "./raftLog/levelDbFiles.ts"
import { StateScrubber } from "./stateMachine/scrubber.ts"

/** TEST ONLY: while this file exists under the data dir and holds N, apply halts at the first entry ≥ N. */
export const FAULT_FILE = "test-fault-halt-at-index"

const refuse = async (cfg: ConsensusConfig | undefined, code: string, message: string): Promise<never> => {
  process.stderr.write(`ekv consensus refusing to start: ${code}: ${message}\n`)
  if (cfg !== undefined) {
    // Best effort: tell the events stream (SPEC §7), without waiting long for the bus.
    try {
      const nc = await connect({
        servers: [...cfg.nats.servers],
        timeout: 2_000,
        ...(cfg.nats.user === undefined ? {} : { user: cfg.nats.user, pass: cfg.nats.pass }),
      })
      const s = subjects(cfg.prefix)
      const { jetstream } = await import("@nats-io/jetstream")
      const body = JSON.stringify({
        cluster_id: "",
        node: cfg.nodeId,
        kind: "refused-start",
        code,
        reason: message,
        at: new Date().toISOString(),
      })
      await jetstream(nc)
        .publish(s.events.cluster(cfg.nodeId), body, {
          msgID: clusterEventMsgId("", cfg.nodeId, "refused-start", Date.now()),
          timeout: 2_000,
        })
        .catch(() => undefined)
      await nc.close()
    } catch {
      // the bus is not reachable: the log line is the report
    }
  }
  process.exit(1)
}

const run = async (): Promise<void> => {
  let cfg: ConsensusConfig
  try {
    cfg = loadConfig(process.env, process.argv.slice(2))
  } catch (e) {
    if (e instanceof ConfigError) return refuse(undefined, "InvalidConfig", e.message)
    throw e
  }
  const log = makeLog(cfg.nodeId)
  const t0 = performance.now()
  let storage: OpenedStorage
  try {
    storage = await openStorage({
      nodeId: cfg.nodeId,
      peers: cfg.peers,
      raftDir: cfg.raftDir,
      stateDir: cfg.stateDir,
      snapshotDir: cfg.snapshotDir,
      writeBufferBytes: cfg.writeBufferBytes,
      probeCluster: () =>
        probeClusterOverNats({ nats: cfg.nats, prefix: cfg.prefix, nodeId: cfg.nodeId, peers: cfg.peers }),
    })
  } catch (e) {
    if (e instanceof RefuseStart) return refuse(cfg, e.code, e.message)
    throw e
  }
  const loadMs = performance.now() - t0
  const ev = storage.rejoinEvidence
  if (ev !== null)
    log.warn(
      `data dir is empty but ${ev.peer} reports an existing cluster (cluster_id ${ev.clusterId || "-"}, commit ${ev.commitIndex}): rejoining from term ${ev.term} without voting until a leader has caught this node up, instead of bootstrapping`,
    )
  else if (storage.rejoining) log.warn("rejoining (no leader has caught this node up yet): not voting")
  const metrics = makeConsensusMetrics()
  // The runtime is built once the bus is up; the applier reaches it through these late-bound hooks.
  let rt: EncryptionRuntime | null = null
  const need = (): EncryptionRuntime => {
    if (rt === null) throw new Error("encryption runtime not started")
    return rt
  }
  const sealer = envelopeSealer({
    active: () => need().sealingKeys().active(),
    sealingKey: () => need().sealingKeys().sealingKey(),
    dek: (id) => need().sealingKeys().dek(id),
    sessionOpen: () => need().sealingKeys().sessionOpen(),
    changed: (ms) => need().sealingKeys().changed(ms),
    onSealed: (id) => need().sealingKeys().onSealed?.(id),
    onOpenFailure: (r) => need().sealingKeys().onOpenFailure?.(r),
  })
  const applier = new Applier(storage.sm, {
    sealer,
    dispatcher: { dispatch: (r) => need().dispatcher.dispatch(r) },
    raftOpener: { open: (env) => need().raftOpener().open(env) },
    beforeApply: () => need().beforeApply(),
    onEncryptionApplied: () => need().refreshMetrics(),
    faults: testFaultInjector(
      cfg.faultFileEnabled ? path.join(cfg.dataDir, "consensus", FAULT_FILE) : undefined,
      cfg.faultHaltAtIndex,
      cfg.faultApplyWriteDelayMs,
    ),
  })
  await applier.reload()
  // Damage in the state DB's tables halts the node for good (SPEC §2.2, docs/operations.md).
  const stateDb = path.join(cfg.stateDir, "db")
  const damageMessage = (problems: ReadonlyArray<LevelDbProblem>) =>
    `state database at ${stateDb}: ${describeProblems(problems)}; wipe this node's data dir and restart it to rejoin through a snapshot`
  let raftNode: RaftNode | null = null
  const scrubber = new StateScrubber({
    dir: stateDb,
    bytesPerSec: cfg.scrubBytesPerSec,
    metrics,
    log: log.child("scrubber"),
    onDamage: (problems) => void raftNode?.haltOnDamage("CorruptState", damageMessage(problems)),
  })

  const program = Effect.gen(function* () {
    const nc = yield* Nats
    const events = makeClusterEvents(nc, cfg.prefix, cfg.nodeId)
    // One line (written by refuse), and the event on the bus first (SPEC §7).
    const refuseStart = async (r: RefusedStart): Promise<never> => {
      events.publish(
        { kind: "refused-start", code: r.code as never, reason: r.message, msgKey: Date.now() },
        applier.clusterId,
      )
      await Promise.race([events.flush?.(), new Promise((res) => setTimeout(res, 5_000))])
      return refuse(undefined, r.code, r.message)
    }
    const runtime = new EncryptionRuntime({
      nodeId: cfg.nodeId,
      prefix: cfg.prefix,
      nc,
      applier,
      nodeSecretPath: cfg.nodeSecretPath,
      log: log.child("encryption"),
      metrics,
      refuseLate: (r) => void refuseStart(r),
    })
    rt = runtime
    if (cfg.rotateOnStartup) runtime.requestRotateOnStartup()
    const refused = yield* Effect.promise(() =>
      runtime.startupGuards(
        storage.persisted.entries.at(-1)?.index ?? storage.persisted.snapshotMeta.index,
        knownMembers(applier.membership, storage.persisted.entries, storage.persisted.applied),
      ),
    )
    if (refused !== null) return yield* Effect.promise(() => refuseStart(refused))
    const node = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const n = new RaftNode({
          nodeId: cfg.nodeId,
          prefix: cfg.prefix,
          electionTimeoutMs: cfg.electionTimeoutMs,
          snapshotEntries: cfg.snapshotEntries,
          snapshotDir: cfg.snapshotDir,
          incomingDir: path.join(cfg.stateDir, "incoming"),
          storage,
          applier,
          nc,
          metrics,
          events,
          log,
          snapshotAttachments: () => runtime.snapshotAttachments(),
          onSnapshotInstalled: () => runtime.onSnapshotInstalled(),
          verifyStateFiles: async () => {
            const problems = await scrubber.verifyNow()
            return problems.length === 0 ? null : damageMessage(problems)
          },
          onFatal: (e) => {
            process.stderr.write(`ekv consensus ${cfg.nodeId}: fatal: ${String(e)}\n`)
            process.exit(70)
          },
        })
        runtime.attach(n)
        n.start()
        raftNode = n
        return n
      }),
      (n) =>
        Effect.promise(() => {
          runtime.close()
          return n.close()
        }),
    )
    yield* Effect.acquireRelease(
      Effect.sync(() => scrubber.start()),
      () => Effect.promise(() => scrubber.close()),
    )
    yield* serveKv({
      node,
      nc,
      prefix: cfg.prefix,
      sealer,
      wrapPayload: (p) => runtime.wrapUserPayload(p),
    })
    yield* serveCluster(node, nc, cfg.prefix)
    yield* serveMemberHealth(node, nc, cfg.prefix)
    const handlers = yield* serveEncryption({ node, nc, prefix: cfg.prefix, rt: runtime, sealer })
    yield* serveHealth(node, nc, cfg.prefix, () => runtime.healthReady)
    runtime.startSession()
    startRotationWatch(runtime, node, handlers)
    if (cfg.metricsPort !== undefined) {
      const port = cfg.metricsPort
      yield* Effect.acquireRelease(
        Effect.promise(() => serveMetrics(metrics.registry, port)),
        (m) => Effect.promise(() => m.close()),
      )
    }
    log.info("consensus ready", {
      loadMs: Math.round(loadMs),
      loadedEntries: storage.loadedEntries,
      replayEntries: storage.replayEntries,
      applied: storage.persisted.applied,
      snapshotIndex: storage.persisted.snapshotMeta.index,
      bootstrapped: storage.bootstrapped,
      dataDir: cfg.dataDir,
      aead: aeadBackend.name,
      ...(aeadBackend.name === "openssl-native" ? {} : { aeadWhy: aeadBackend.why }),
      snappy: snappyBackend.name,
      ...(snappyBackend.name === "native" ? {} : { snappyWhy: snappyBackend.why }),
    })
    return yield* Effect.never
  })

  const layer = natsLayer(cfg.nats)
  const closeStores = async () => {
    await storage.sm.close().catch(() => {})
    await storage.log.close().catch(() => {})
  }
  const fiber = Effect.runFork(program.pipe(Effect.scoped, Effect.provide(Layer.fresh(layer))))
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    log.info("shutting down", { signal })
    void Effect.runPromise(Fiber.interrupt(fiber)).then(async () => {
      await closeStores()
      process.exit(0)
    })
  }
  process.on("SIGTERM", () => stop("SIGTERM"))
  process.on("SIGINT", () => stop("SIGINT"))
  const exit = await Effect.runPromise(Fiber.await(fiber))
  if (!stopping) {
    await closeStores()
    if (Exit.isFailure(exit)) {
      process.stderr.write(`ekv consensus ${cfg.nodeId}: stopped: ${String(exit.cause)}\n`)
      process.exit(1)
    }
  }
}

void run().catch((e: unknown) => {
  process.stderr.write(`ekv consensus: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`)
  process.exit(1)
})
