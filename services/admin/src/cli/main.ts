#!/usr/bin/env node
// `ekv`: the operator's command line over NATS (`npm run ekv -- <command>`,
// or `node services/admin/src/cli/main.ts <command>`). Tables by default,
// `--json` for the raw reply. Exit status: 0 ok, 1 the request failed (the
// error's code, message and details are printed), 2 usage, 3 no connection.
import { readFileSync } from "node:fs"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { type NatsConnectError, natsLayer, request } from "@ekv/bus"
import { type ApiError, clusterApi, kvApi, nodeApi, parsePrefix, type RequestError } from "@ekv/wire"
import { Cause, Effect, Exit, Result } from "effect"
import { type Action, type BatchOp, parseCommand, USAGE, UsageError, type ValueSource } from "./args.ts"
import { resolveConnection } from "./connection.ts"
import {
  renderClusterStatus,
  renderError,
  renderGet,
  renderHealth,
  renderScan,
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
}

const plan = (action: Exclude<Action, { kind: "help" }>, prefix: string): Call => {
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
      throw new UsageError(`unknown cluster command ${action.op}`)
    }
    case "node-health":
      return {
        subject: `${p}.node.${action.node}.health`,
        endpoint: nodeApi.health,
        body: {},
        human: renderHealth as (r: never) => string,
      }
  }
}

const jsonOf = (endpoint: AnyEndpoint, reply: unknown): string =>
  JSON.stringify(JSON.parse(new TextDecoder().decode(endpoint.encodeReply(reply as never))), null, 2)

type Outcome =
  | { readonly _tag: "Ok"; readonly text: string }
  | { readonly _tag: "Failed"; readonly error: ApiError.ApiError }
  | { readonly _tag: "NoConnection"; readonly error: NatsConnectError }

export const run = async (argv: ReadonlyArray<string>): Promise<number> => {
  let call: Call
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
    call = plan(cmd.action, prefix.success)
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`ekv: ${e.message}\n(ekv --help for usage)`)
      return 2
    }
    throw e
  }
  if (call.progress !== undefined && !json) console.error(call.progress)
  const program = request(
    call.subject,
    call.endpoint.request as never,
    call.endpoint.reply as never,
    call.body as never,
    { timeoutMs },
  ).pipe(
    Effect.map(
      (reply): Outcome => ({
        _tag: "Ok",
        text: json ? jsonOf(call.endpoint, reply) : call.human(reply as never),
      }),
    ),
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
