#!/usr/bin/env node
// `ekv`: the operator's command line over NATS (`npm run ekv -- <command>`,
// or `node services/admin/src/cli/main.ts <command>`). Tables by default,
// `--json` for the raw reply. Exit status: 0 ok, 1 the request failed (the
// error's code, message and details are printed), 2 usage, 3 no connection.
import { readFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Nats, type NatsConnectError, natsLayer, request } from "@ekv/bus"
import {
  ApiError,
  clusterApi,
  type EncryptionOpName,
  type EncryptionStatus,
  encryptionApi,
  kvApi,
  nodeApi,
  parsePrefix,
  type RequestError,
} from "@ekv/wire"
import { Cause, Effect, Exit, Result } from "effect"
import { type HistoryEvent, readEvents, selectEvents } from "../encryption/eventHistory.ts"
import { type Action, type BatchOp, parseCommand, USAGE, UsageError, type ValueSource } from "./args.ts"
import { resolveConnection } from "./connection.ts"
import {
  renderBootstrap,
  renderCapability,
  renderClusterStatus,
  renderEncryptionStatus,
  renderError,
  renderGet,
  renderHealth,
  renderHistory,
  renderRewrite,
  renderScan,
  renderSidecarState,
  renderSnapshots,
} from "./render.ts"

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..")

const readText = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw new UsageError(`${path}: ${e instanceof Error ? e.message : e}`)
  }
}

const valueBytes = (v: ValueSource): Uint8Array => {
  switch (v.kind) {
    case "text":
      return new TextEncoder().encode(v.text)
    case "base64": {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v.base64) || v.base64.length % 4 !== 0)
        throw new UsageError("value is not standard base64")
      return new Uint8Array(Buffer.from(v.base64, "base64"))
    }
    case "file":
      try {
        return new Uint8Array(readFileSync(v.path))
      } catch (e) {
        throw new UsageError(`${v.path}: ${e instanceof Error ? e.message : e}`)
      }
  }
}

const batchOps = (ops: ReadonlyArray<BatchOp>) =>
  ops.map((o) => (o.op === "put" ? { op: "put" as const, key: o.key, value: valueBytes(o.value) } : o))

/** The parts of a wire Endpoint the CLI uses, with its types erased. */
interface AnyEndpoint {
  readonly request: unknown
  readonly reply: unknown
  readonly encodeReply: (value: never) => Uint8Array
}

/** A planned request: where to send it, and how to show its reply. */
interface Call {
  readonly subject: string
  readonly endpoint: AnyEndpoint
  readonly body: unknown
  readonly human: (reply: never) => string
  readonly progress?: string
  /** Print "still waiting" lines while the reply is outstanding (long fan-outs, resync). */
  readonly tick?: boolean
}

type EncryptionKey = keyof typeof encryptionApi
const encryptionKey: Record<EncryptionOpName, EncryptionKey> = {
  status: "status",
  capability: "capability",
  "sidecar-state": "sidecarState",
  bootstrap: "bootstrap",
  "register-writer": "registerWriter",
  "rotate-dek": "rotateDek",
  "rewrap-deks": "rewrapDeks",
  "retire-dek": "retireDek",
  "enable-storage-envelope": "enableStorageEnvelope",
  "enable-raft-envelope": "enableRaftEnvelope",
  "resync-sidecar": "resyncSidecar",
  rewrite: "rewrite",
}

type EncryptionAction = Extract<Action, { kind: "encryption" }>

const encryptionCall = (action: EncryptionAction, prefix: string): Call => {
  const key = encryptionKey[action.op]
  const endpoint = encryptionApi[key]
  let text: string
  if (action.bodyFile !== undefined) {
    const t = action.bodyFile === "-" ? readFileSync(0, "utf8") : readText(action.bodyFile)
    if (t === undefined) throw new UsageError(`${action.bodyFile}: no such file`)
    text = t
  } else text = JSON.stringify(action.body)
  const decoded: Result.Result<unknown, RequestError> = (
    endpoint.decodeRequest as (b: Uint8Array) => Result.Result<unknown, RequestError>
  )(new TextEncoder().encode(text))
  if (Result.isFailure(decoded)) throw new UsageError(`encryption ${action.op}: ${decoded.failure.message}`)
  const base = { subject: `${prefix}.admin.encryption.${action.op}`, endpoint, body: decoded.success }
  const index = (what: string) => (r: { index: number }) => `ok  ${what}  index ${r.index}`
  switch (action.op) {
    case "status":
      return { ...base, human: renderEncryptionStatus as (r: never) => string }
    case "capability":
      return {
        ...base,
        human: renderCapability as (r: never) => string,
        ...(action.body.node === undefined ? { progress: "polling every member's keystore..." } : {}),
      }
    case "sidecar-state":
      return { ...base, human: renderSidecarState as (r: never) => string }
    case "bootstrap":
      return {
        ...base,
        human: renderBootstrap as (r: never) => string,
        progress: "polling members, generating DEKs on the leader, proposing the bootstrap...",
        tick: true,
      }
    case "register-writer":
      return {
        ...base,
        human: (r: { index: number; outcome: string }) => `ok  ${r.outcome}  index ${r.index}`,
      }
    case "rotate-dek":
      return {
        ...base,
        human: (r: { index: number; key_id: number }) =>
          `ok  new ${String(action.body.purpose)} DEK ${r.key_id}  index ${r.index}`,
        progress: "polling members, generating the DEK, proposing the rotation...",
        tick: true,
      }
    case "rewrap-deks":
      return {
        ...base,
        human: (r: { index: number; key_ids: ReadonlyArray<number> }) =>
          `ok  rewrapped DEKs ${r.key_ids.join(", ")} under the next KEK  index ${r.index}`,
        progress: "polling members for their next KEK, rewrapping on the leader...",
        tick: true,
      }
    case "retire-dek":
      return {
        ...base,
        human: index(`retired DEK ${String(action.body.key_id)}`),
        progress: "checking every node's references to the key...",
      }
    case "enable-storage-envelope":
      return {
        ...base,
        human: (r: { index: number; bootstrapped: boolean }) =>
          `ok  storage envelope active${r.bootstrapped ? " (bootstrapped first)" : ""}  index ${r.index}`,
        progress: "polling members, enabling the storage envelope...",
        tick: true,
      }
    case "enable-raft-envelope":
      return {
        ...base,
        human: (r: { index: number; cutover_index: number }) =>
          `ok  raft envelope active from cutover index ${r.cutover_index}`,
        progress: "polling members, enabling the raft envelope (the cutover waits for in-flight writes)...",
        tick: true,
      }
    case "rewrite":
      return {
        ...base,
        human: (r: { started: ReadonlyArray<string> }) =>
          r.started.length === 0 ? "no node started a rewrite" : `rewrite started on ${r.started.join(", ")}`,
        progress: "asking every member to re-seal its stored versions...",
      }
    case "resync-sidecar":
      return {
        ...base,
        human: (r: { node: string; mode: string; raft_applied_index: number }) =>
          `ok  ${r.node} resynced (${r.mode}); sidecar at index ${r.raft_applied_index}`,
        progress: `resyncing ${String(action.body.node)}'s sidecar from the leader...`,
        tick: true,
      }
  }
}

const plan = (action: Exclude<Action, { kind: "help" | "encryption-history" }>, prefix: string): Call => {
  const p = prefix
  switch (action.kind) {
    case "kv-put":
      return {
        subject: `${p}.kv.put`,
        endpoint: kvApi.put,
        body: { key: action.key, value: valueBytes(action.value) },
        human: (r: { index: number }) => `ok  index ${r.index}`,
      }
    case "kv-get":
      return {
        subject: `${p}.kv.get`,
        endpoint: kvApi.get,
        body: {
          key: action.key,
          ...(action.consistency === undefined ? {} : { consistency: action.consistency }),
        },
        human: (r: Parameters<typeof renderGet>[1]) => renderGet(action.key, r),
      }
    case "kv-delete":
      return {
        subject: `${p}.kv.delete`,
        endpoint: kvApi.delete,
        body: { key: action.key },
        human: (r: { index: number; deleted: boolean }) =>
          `${r.deleted ? "deleted" : "not found (nothing deleted)"}  index ${r.index}`,
      }
    case "kv-scan":
      return {
        subject: `${p}.kv.scan`,
        endpoint: kvApi.scan,
        body: {
          ...(action.prefix === undefined ? {} : { prefix: action.prefix }),
          ...(action.after === undefined ? {} : { after: action.after }),
          ...(action.limit === undefined ? {} : { limit: action.limit }),
          ...(action.consistency === undefined ? {} : { consistency: action.consistency }),
        },
        human: renderScan as (r: never) => string,
      }
    case "kv-batch":
      return {
        subject: `${p}.kv.batch`,
        endpoint: kvApi.batch,
        body: { ops: batchOps(action.ops) },
        human: (r: { index: number }) => `ok  ${action.ops.length} ops  index ${r.index}`,
      }
    case "kv-batch-file": {
      const text = action.path === "-" ? readFileSync(0, "utf8") : readText(action.path)
      if (text === undefined) throw new UsageError(`${action.path}: no such file`)
      const decoded: Result.Result<unknown, RequestError> = kvApi.batch.decodeRequest(
        new TextEncoder().encode(text),
      )
      if (Result.isFailure(decoded)) throw new UsageError(`${action.path}: ${decoded.failure.message}`)
      const body = decoded.success as { ops: ReadonlyArray<unknown> }
      return {
        subject: `${p}.kv.batch`,
        endpoint: kvApi.batch,
        body,
        human: (r: { index: number }) => `ok  ${body.ops.length} ops  index ${r.index}`,
      }
    }
    case "cluster": {
      const subject = `${p}.admin.cluster.${action.op}`
      const node = action.node === undefined ? {} : { node: action.node }
      switch (action.op) {
        case "status":
          return {
            subject,
            endpoint: clusterApi.status,
            body: {},
            human: renderClusterStatus as (r: never) => string,
          }
        case "add-learner":
        case "promote":
        case "remove": {
          const ep = {
            "add-learner": clusterApi.addLearner,
            promote: clusterApi.promote,
            remove: clusterApi.remove,
          }
          return {
            subject,
            endpoint: ep[action.op],
            body: node,
            human: (r: { index: number }) => `ok  ${action.op} ${action.node}  index ${r.index}`,
          }
        }
        case "transfer-leader":
          return {
            subject,
            endpoint: clusterApi.transferLeader,
            body: node,
            human: (r: { leader: string }) => `ok  leader is now ${r.leader}`,
          }
        case "snapshot":
          return {
            subject,
            endpoint: clusterApi.snapshot,
            body: node,
            human: renderSnapshots as (r: never) => string,
            progress:
              action.node === undefined
                ? "snapshotting every member (each compacts its log)..."
                : `snapshotting ${action.node}...`,
          }
      }
      throw new UsageError(`unknown cluster command ${(action as { op: string }).op}`)
    }
    case "node-health":
      return {
        subject: `${p}.node.${action.node}.health`,
        endpoint: nodeApi.health,
        body: {},
        human: renderHealth as (r: never) => string,
      }
    case "encryption":
      return encryptionCall(action, p)
  }
}

/** Prints "... still waiting (Ns)" to stderr every 2 s until stopped. */
const ticker = (label: string): (() => void) => {
  const start = Date.now()
  const t = setInterval(
    () => console.error(`... ${label}: still waiting (${Math.round((Date.now() - start) / 1000)}s)`),
    2_000,
  )
  return () => clearInterval(t)
}

const rewriteProgress = (
  s: EncryptionStatus,
): { readonly line: string; readonly done: boolean; readonly stopped: ReadonlyArray<string> } => ({
  line: `rewrite: ${s.nodes.map((n) => `${n.node} ${renderRewrite(n.rewrite)}`).join("  ")}`,
  done: s.nodes.every((n) => n.rewrite === undefined || n.rewrite.done),
  stopped: s.nodes.flatMap((n) => (n.rewrite?.error === undefined ? [] : [`${n.node}: ${n.rewrite.error}`])),
})

/** After `rewrite --follow`: poll status every 2 s and print each node's progress until all are done. */
const followRewrite = (prefix: string, timeoutMs: number) =>
  Effect.gen(function* () {
    for (;;) {
      yield* Effect.sleep("2 seconds")
      const s = yield* request(
        `${prefix}.admin.encryption.status`,
        encryptionApi.status.request,
        encryptionApi.status.reply,
        {},
        { timeoutMs },
      )
      const p = rewriteProgress(s)
      console.error(p.line)
      if (p.stopped.length > 0)
        return yield* Effect.fail(
          new ApiError.Unavailable({
            message: `the rewrite stopped on ${p.stopped.join("; ")}; run it again once the cause is fixed`,
            details: { reason: "RewriteStopped" },
          }),
        )
      if (p.done) return
    }
  })

const historyJson = (events: ReadonlyArray<HistoryEvent>): string =>
  JSON.stringify({ events: events.map((e) => ({ stream: e.stream, seq: e.seq, ...e.event })) }, null, 2)

/** `encryption history`: the events stream, read with an ordered consumer (read-only). */
const historyProgram = (
  action: Extract<Action, { kind: "encryption-history" }>,
  prefix: string,
  asJson: boolean,
): Effect.Effect<string, ApiError.ApiError, Nats> =>
  Effect.flatMap(Effect.service(Nats), (nc) =>
    Effect.tryPromise({
      try: () =>
        readEvents(nc, prefix, (read, total) => {
          if (!asJson && total > 1000) console.error(`... read ${read} of ${total} events`)
        }),
      catch: (e) =>
        new ApiError.Unavailable({
          message: `cannot read the events stream: ${e instanceof Error ? e.message : String(e)}`,
        }),
    }).pipe(
      Effect.map((all) => {
        const events = selectEvents(all, {
          node: action.node,
          sinceIndex: action.sinceIndex,
          limit: action.limit,
        })
        return asJson ? historyJson(events) : renderHistory(events)
      }),
    ),
  )

const jsonOf = (endpoint: AnyEndpoint, reply: unknown): string =>
  JSON.stringify(JSON.parse(new TextDecoder().decode(endpoint.encodeReply(reply as never))), null, 2)

type Outcome =
  | { readonly _tag: "Ok"; readonly text: string }
  | { readonly _tag: "Failed"; readonly error: ApiError.ApiError }
  | { readonly _tag: "NoConnection"; readonly error: NatsConnectError }

export const run = async (argv: ReadonlyArray<string>): Promise<number> => {
  let call: Call | undefined
  let history: Extract<Action, { kind: "encryption-history" }> | undefined
  let follow = false
  let prefixValue = "ekv"
  let json: boolean
  let connection: ReturnType<typeof resolveConnection>
  let timeoutMs: number
  try {
    const cmd = parseCommand(argv)
    if (cmd.action.kind === "help") {
      console.log(USAGE)
      return 0
    }
    const prefix = parsePrefix(cmd.global.subjectPrefix ?? process.env.EKV_PREFIX)
    if (Result.isFailure(prefix)) throw new UsageError(prefix.failure.message)
    json = cmd.global.json
    timeoutMs = cmd.global.timeoutMs
    connection = resolveConnection(cmd.global, {
      env: process.env,
      readFile: readText,
      defaultCredsFiles: [...new Set([resolve("data/operator.json"), join(repoRoot, "data/operator.json")])],
    })
    prefixValue = prefix.success
    if (cmd.action.kind === "encryption-history") history = cmd.action
    else {
      call = plan(cmd.action, prefix.success)
      follow = cmd.action.kind === "encryption" && cmd.action.follow === true
    }
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`ekv: ${e.message}\n(ekv --help for usage)`)
      return 2
    }
    throw e
  }
  const prefix = prefixValue
  const asJson = json
  let stopTicker: (() => void) | undefined
  if (call !== undefined && call.progress !== undefined && !json) {
    console.error(call.progress)
    if (call.tick === true) stopTicker = ticker(call.subject.split(".").pop() ?? "request")
  }
  const one =
    call !== undefined
      ? ((c: Call) =>
          request(c.subject, c.endpoint.request as never, c.endpoint.reply as never, c.body as never, {
            timeoutMs,
          }).pipe(
            Effect.ensuring(Effect.sync(() => stopTicker?.())),
            Effect.tap(() => (follow && !asJson ? followRewrite(prefix, timeoutMs) : Effect.void)),
            Effect.map((reply) => (asJson ? jsonOf(c.endpoint, reply) : c.human(reply as never))),
          ))(call)
      : historyProgram(history as NonNullable<typeof history>, prefix, asJson)
  const program = one.pipe(
    Effect.map((text): Outcome => ({ _tag: "Ok", text })),
    Effect.catch((error: ApiError.ApiError) => Effect.succeed<Outcome>({ _tag: "Failed", error })),
    Effect.provide(natsLayer(connection.options)),
    Effect.catchTag("NatsConnectError", (error) => Effect.succeed<Outcome>({ _tag: "NoConnection", error })),
  )
  const exit = await Effect.runPromiseExit(program)
  if (Exit.isFailure(exit)) {
    console.error(`ekv: unexpected failure: ${Cause.pretty(exit.cause)}`)
    return 1
  }
  const outcome = exit.value
  switch (outcome._tag) {
    case "Ok":
      console.log(outcome.text)
      return 0
    case "Failed":
      if (json)
        console.log(
          JSON.stringify(
            {
              error: {
                code: outcome.error._tag,
                message: outcome.error.message,
                ...(outcome.error.details === undefined ? {} : { details: outcome.error.details }),
              },
            },
            null,
            2,
          ),
        )
      else console.error(renderError(outcome.error))
      return 1
    case "NoConnection":
      console.error(`ekv: ${outcome.error.message} (credentials: ${connection.source})`)
      return 3
  }
}

if (import.meta.main) process.exitCode = await run(process.argv.slice(2))
