// Bytes ⇄ typed messages for every JSON subject, following the order of checks
// of CONTRACT.md §1: size → JSON → schema (InvalidArgument) → local_epoch
// range (LocalEpochOutOfRange) → ids inside one request (InvalidArgument).
// Decoders are built once per schema and reject unknown fields.
import { Result, Schema, SchemaIssue } from "effect"
import {
  type ApiError,
  ErrorBody,
  fromBody,
  Internal,
  InvalidArgument,
  LocalEpochOutOfRange,
} from "./apiError.ts"
import { MAX_LOCAL_EPOCH, nodeId16 } from "./ids.ts"
import { utf8Bytes } from "./utf8.ts"

/** CONTRACT.md §1: a request body over 3 MiB is InvalidArgument. */
export const MAX_REQUEST_BYTES = 3 * 1024 * 1024

export type RequestError = InvalidArgument | LocalEpochOutOfRange

/** A schema usable on the JSON wire: no services needed to decode or encode. */
export type WireSchema = Schema.ConstraintCodec<unknown, unknown, never, never>

export interface DecodeOptions<A> {
  /** Runs after the schema and epoch checks (e.g. `checkWriterIds`). */
  readonly check?: (value: A) => Result.Result<void, InvalidArgument>
  /**
   * A hand-written decoder of the common valid shapes (`kvFastCodec.ts`): its
   * value is used as is; `undefined` sends the body through the schema. It must
   * accept nothing the schema (with `check`) rejects.
   */
  readonly fast?: (json: unknown) => A | undefined
}

export interface EndpointOptions<Req, Rep> extends DecodeOptions<Req> {
  /** Encodes the common reply shapes exactly as the schema would; `undefined` falls back to it. */
  readonly fastReply?: (value: Rep) => string | undefined
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false })
const parseOptions = { onExcessProperty: "error" } as const
const formatIssue = SchemaIssue.makeFormatterStandardSchemaV1()
const ok: Result.Result<void, never> = Result.succeed(undefined)

type IssueLine = { readonly path: string; readonly message: string }

const renderPath = (path: ReadonlyArray<PropertyKey>): string => {
  let out = ""
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`
    else out += out === "" ? String(seg) : `.${String(seg)}`
  }
  return out === "" ? "(body)" : out
}

const invalid = (issues: ReadonlyArray<IssueLine>): InvalidArgument =>
  new InvalidArgument({
    message: `invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`,
    details: { issues },
  })

const invalidFromSchema = (error: Schema.SchemaError): InvalidArgument =>
  invalid(
    formatIssue(error.issue).issues.map((i) => ({
      path: renderPath((i.path ?? []).map((p) => (typeof p === "object" ? p.key : p))),
      message: i.message,
    })),
  )

// Where a local_epoch may sit in any message of CONTRACT.md §3–§4: fields
// named `local_epoch` / `*_local_epoch`, and the values of these records.
const EPOCH_FIELD = /(^|_)local_epoch$/
const EPOCH_RECORDS = new Set(["local_epochs", "writer_registry_for_caller"])

const isOverEpoch = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v > MAX_LOCAL_EPOCH

/**
 * A copy of `json` with every local_epoch above 0xFFFF replaced by 0, and the
 * paths replaced. Decoding the copy tells whether the request is otherwise
 * well-formed.
 */
const MAX_EPOCH_SEARCH_DEPTH = 16

const clampEpochs = (
  json: unknown,
  path: string,
  found: string[],
  epochRecord: boolean,
  depth = 0,
): unknown => {
  // No request shape nests this deep: a deeper body is left as is (and fails its
  // schema as InvalidArgument) instead of recursing until the stack overflows.
  if (depth > MAX_EPOCH_SEARCH_DEPTH) return json
  if (Array.isArray(json)) return json.map((v, i) => clampEpochs(v, `${path}[${i}]`, found, false, depth + 1))
  if (json === null || typeof json !== "object") return json
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(json)) {
    const p = path === "" ? k : `${path}.${k}`
    if ((epochRecord || EPOCH_FIELD.test(k)) && isOverEpoch(v)) {
      found.push(p)
      out[k] = 0
    } else out[k] = clampEpochs(v, p, found, EPOCH_RECORDS.has(k), depth + 1)
  }
  return out
}

const parseJson = (bytes: Uint8Array): Result.Result<unknown, InvalidArgument> => {
  if (bytes.length > MAX_REQUEST_BYTES) {
    return Result.fail(
      new InvalidArgument({
        message: `request body of ${bytes.length} bytes exceeds ${MAX_REQUEST_BYTES} bytes`,
        details: { size: bytes.length, limit: MAX_REQUEST_BYTES },
      }),
    )
  }
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return Result.fail(new InvalidArgument({ message: "request body is not valid UTF-8" }))
  }
  // An empty body stands for `{}` (a bare `nats req <subject> ""`).
  if (text.trim() === "") return Result.succeed({})
  try {
    return Result.succeed(JSON.parse(text))
  } catch (e) {
    return Result.fail(
      new InvalidArgument({
        message: `request body is not valid JSON: ${e instanceof Error ? e.message : e}`,
      }),
    )
  }
}

/** Decodes an already-parsed JSON value (same checks as `decodeRequest`, minus size and JSON). */
export const decodeRequestValue = <S extends WireSchema>(schema: S, options?: DecodeOptions<S["Type"]>) => {
  const decode = Schema.decodeUnknownResult(schema, parseOptions)
  const check = options?.check
  const fast = options?.fast
  return (json: unknown): Result.Result<S["Type"], RequestError> => {
    if (fast !== undefined) {
      const value = fast(json)
      if (value !== undefined) return Result.succeed(value)
    }
    // Every message of the contract is a JSON object; a Struct whose fields
    // are all optional would otherwise accept an array or a string.
    if (typeof json !== "object" || json === null || Array.isArray(json)) {
      return Result.fail(invalid([{ path: "(body)", message: "Expected a JSON object" }]))
    }
    const r = decode(json)
    if (Result.isFailure(r)) {
      const found: string[] = []
      const clamped = clampEpochs(json, "", found, false)
      if (found.length > 0 && Result.isSuccess(decode(clamped))) {
        return Result.fail(
          new LocalEpochOutOfRange({
            message: `local_epoch above ${MAX_LOCAL_EPOCH} at ${found.join(", ")}`,
            details: { paths: found, max: MAX_LOCAL_EPOCH },
          }),
        )
      }
      return Result.fail(invalidFromSchema(r.failure))
    }
    if (check !== undefined) {
      const c = check(r.success)
      if (Result.isFailure(c)) return Result.fail(c.failure)
    }
    return Result.succeed(r.success)
  }
}

/**
 * `decodeRequest(schema)(bytes)`: the request (or reply, or event) body as
 * `schema`'s type, or the error reply to send. Build once, call per message.
 */
export const decodeRequest = <S extends WireSchema>(schema: S, options?: DecodeOptions<S["Type"]>) => {
  const fromValue = decodeRequestValue(schema, options)
  return (bytes: Uint8Array): Result.Result<S["Type"], RequestError> => {
    const json = parseJson(bytes)
    return Result.isFailure(json) ? Result.fail(json.failure) : fromValue(json.success)
  }
}

/**
 * `encodeJson(schema)(value)`: the UTF-8 JSON body of `value`. A value that
 * does not satisfy `schema` is a bug and throws (the service adapter turns it
 * into `Internal`).
 */
export const encodeJson = <S extends WireSchema>(
  schema: S,
  fast?: (value: S["Type"]) => string | undefined,
) => {
  const encode = Schema.encodeSync(schema, parseOptions)
  return (value: S["Type"]): Uint8Array => utf8Bytes(fast?.(value) ?? JSON.stringify(encode(value)))
}

const decodeErrorBodyBytes = decodeRequest(ErrorBody)

/** The ApiError carried by an error reply's body; an unreadable body is `Internal`. */
export const decodeErrorReply = (bytes: Uint8Array): ApiError => {
  const r = decodeErrorBodyBytes(bytes)
  return Result.isSuccess(r)
    ? fromBody(r.success)
    : new Internal({ message: `unreadable error reply: ${r.failure.message}` })
}

export const encodeErrorReply: (body: ErrorBody) => Uint8Array = encodeJson(ErrorBody)

/**
 * Ids inside one writer batch (CONTRACT.md §1, SPEC.md §5): every
 * full_node_id non-zero and distinct, and no two sharing a node_id16 (its
 * low 16 bits).
 */
export const checkWriterIds = (
  writers: ReadonlyArray<{ readonly full_node_id: bigint }>,
  path = "writers",
): Result.Result<void, InvalidArgument> => {
  const issues: IssueLine[] = []
  const byFull = new Map<bigint, number>()
  const by16 = new Map<number, number>()
  writers.forEach((w, i) => {
    const at = `${path}[${i}].full_node_id`
    if (w.full_node_id === 0n) {
      issues.push({ path: at, message: "full_node_id must not be 0" })
      return
    }
    const dup = byFull.get(w.full_node_id)
    if (dup !== undefined) {
      issues.push({ path: at, message: `duplicate full_node_id (same as ${path}[${dup}])` })
      return
    }
    byFull.set(w.full_node_id, i)
    const id16 = nodeId16(w.full_node_id)
    const clash = by16.get(id16)
    if (clash !== undefined) {
      issues.push({ path: at, message: `node_id16 ${id16} clashes with ${path}[${clash}]` })
      return
    }
    by16.set(id16, i)
  })
  return issues.length === 0 ? ok : Result.fail(invalid(issues))
}

/** A single full_node_id must not be 0 (register-writer). */
export const checkFullNodeId = (
  fullNodeId: bigint,
  path = "full_node_id",
): Result.Result<void, InvalidArgument> =>
  fullNodeId === 0n ? Result.fail(invalid([{ path, message: "full_node_id must not be 0" }])) : ok

/** The request and reply codecs of one subject, built once. */
export interface Endpoint<Req extends WireSchema, Rep extends WireSchema> {
  readonly request: Req
  readonly reply: Rep
  readonly decodeRequest: (bytes: Uint8Array) => Result.Result<Req["Type"], RequestError>
  readonly encodeRequest: (value: Req["Type"]) => Uint8Array
  readonly decodeReply: (bytes: Uint8Array) => Result.Result<Rep["Type"], RequestError>
  readonly encodeReply: (value: Rep["Type"]) => Uint8Array
}

export const makeEndpoint = <Req extends WireSchema, Rep extends WireSchema>(
  request: Req,
  reply: Rep,
  options?: EndpointOptions<Req["Type"], Rep["Type"]>,
): Endpoint<Req, Rep> => ({
  request,
  reply,
  decodeRequest: decodeRequest(request, options),
  encodeRequest: encodeJson(request),
  decodeReply: decodeRequest(reply),
  encodeReply: encodeJson(reply, options?.fastReply),
})
