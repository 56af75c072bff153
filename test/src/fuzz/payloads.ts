// Fuzz payloads: valid requests, near-valid ones (a valid request with one
// thing wrong, each labelled with what is wrong) and garbage bytes. Every
// near-valid payload is something CONTRACT.md §1–§4 says must be refused
// with a typed error (InvalidArgument, or LocalEpochOutOfRange for an epoch
// above 0xFFFF) — never a crash, a timeout or an untyped reply.
import fc from "fast-check"
import {
  type Endpoint,
  type Field,
  type FieldSpec,
  type ObjectSpec,
  validObject,
  validRequest,
} from "./endpoints.ts"

export const PayloadKind = { valid: "valid", nearValid: "near-valid", garbage: "garbage" } as const
export type PayloadKind = (typeof PayloadKind)[keyof typeof PayloadKind]

/** What is wrong with a near-valid or garbage payload. */
export const Mutation = {
  wrongType: "wrong-type",
  outOfRange: "out-of-range",
  extraField: "extra-field",
  missingField: "missing-field",
  hugeString: "huge-string",
  deepNesting: "deep-nesting",
  invalidBase64: "invalid-base64",
  invalidUtf8: "invalid-utf8",
  notAnObject: "not-an-object",
  emptyBody: "empty-body",
  truncatedJson: "truncated-json",
  binaryGarbage: "binary-garbage",
  randomJson: "random-json",
  /** One element of an array field (batch op, bootstrap writer) is wrong. */
  nested: "nested",
} as const
export type Mutation = (typeof Mutation)[keyof typeof Mutation]

export interface Payload {
  readonly endpoint: string
  readonly subject: string
  readonly kind: PayloadKind
  readonly mutation?: Mutation
  /** Human-readable summary of the mutation (field and value kind). */
  readonly note?: string
  readonly body: Uint8Array
}

const enc = new TextEncoder()
const json = (v: unknown): Uint8Array => enc.encode(JSON.stringify(v))

/** Just over the 3 MiB request limit of CONTRACT.md §1, under the bus's 4 MiB max_payload. */
export const HUGE_BYTES = 3 * 1024 * 1024 + 1024

// Values of every JSON type, to put where another type belongs.
const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 10 }),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
)

const typeOf = (v: unknown): string => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v)

/** The JSON type a spec's valid values have. */
const specType = (spec: FieldSpec): string =>
  spec.t === "int" || spec.t === "number"
    ? "number"
    : spec.t === "true"
      ? "boolean"
      : spec.t === "array"
        ? "array"
        : "string"

/** Values of the right type that the contract refuses for `spec` (none for a free string). */
const outOfRange = (spec: FieldSpec): ReadonlyArray<unknown> => {
  switch (spec.t) {
    case "key":
      return ["", "!reserved", "k".repeat(4097), "\ud800", "é".repeat(2049)]
    case "keyBound":
      return ["k".repeat(4097), "\udfff"]
    case "base64":
      return [Buffer.alloc(spec.maxBytes + 1).toString("base64")]
    case "int":
      return [spec.min - 1, spec.max + 1, 1.5, -1e308, 2 ** 64, -0.5]
    case "number":
      return [spec.min - 1, 0, -1, spec.max * 2, 1e308]
    case "enum":
      return ["", `${spec.values[0] ?? "x"}x`, (spec.values[0] ?? "x").toUpperCase()]
    case "nodeId":
      return ["", "N1", "n1.x", "*", ">", "a".repeat(65), "n 1"]
    case "decimalU64":
      return ["", "-1", "18446744073709551616", "0x10", "1e3", " 1"]
    case "hex32":
      return ["", "A".repeat(32), "0".repeat(31), "0".repeat(33), "g".repeat(32)]
    case "true":
      return [false]
    case "array":
      return [[]]
  }
}

const fieldsOf = (o: Record<string, unknown>, shape: ObjectSpec): Field[] =>
  shape.filter((f) => Object.hasOwn(o, f.name))

/** A near-valid payload for `e`: a valid body with exactly one defect. */
export const nearValidPayload = (e: Endpoint): fc.Arbitrary<Payload> => {
  const make = (mutation: Mutation, note: string, body: Uint8Array): Payload => ({
    endpoint: e.name,
    subject: e.subject,
    kind: PayloadKind.nearValid,
    mutation,
    note,
    body,
  })
  const shapes = e.shapes
  const base = fc.integer({ min: 0, max: shapes.length - 1 }).chain((i) => {
    const shape = shapes[i] as ObjectSpec
    return validObject(shape).map((o) => ({ o, shape }))
  })
  // A present field, or undefined for an empty shape.
  const withField = base.chain(({ o, shape }) => {
    const present = fieldsOf(o, shape)
    return present.length === 0
      ? fc.constant({ o, shape, field: undefined as Field | undefined })
      : fc.constantFrom(...present).map((field) => ({ o, shape, field: field as Field | undefined }))
  })

  const wrongType = withField.chain(({ o, field }) =>
    field === undefined
      ? fc.constant(make(Mutation.extraField, "field on an empty request", json({ ...o, x: 1 })))
      : anyJson
          .filter((v) => typeOf(v) !== specType(field.spec))
          .map((v) =>
            make(Mutation.wrongType, `${field.name}: ${typeOf(v)}`, json({ ...o, [field.name]: v })),
          ),
  )
  const range = withField.chain(({ o, field }) => {
    const bad = field === undefined ? [] : outOfRange(field.spec)
    return field === undefined || bad.length === 0
      ? fc.constant(make(Mutation.extraField, "extra field", json({ ...o, fuzz_extra: true })))
      : fc
          .constantFrom(...bad)
          .map((v) =>
            make(
              Mutation.outOfRange,
              `${field.name}: ${JSON.stringify(v).slice(0, 40)}`,
              json({ ...o, [field.name]: v }),
            ),
          )
  })
  const extra = fc
    .tuple(base, fc.constantFrom("fuzz", "Key", "key ", "__proto__", "constructor", "valu", "ops2"), anyJson)
    .filter(([{ o }, name]) => !Object.hasOwn(o, name))
    .map(([{ o }, name, v]) => {
      const body = `${JSON.stringify(o).slice(0, -1)}${Object.keys(o).length > 0 ? "," : ""}${JSON.stringify(name)}:${JSON.stringify(v)}}`
      return make(Mutation.extraField, `extra ${name}`, enc.encode(body))
    })
  const required = shapes.flatMap((shape) => shape.filter((f) => !f.optional).map((f) => ({ shape, f })))
  const missing =
    required.length === 0
      ? undefined
      : fc.constantFrom(...required).chain(({ shape, f }) =>
          validObject(shape).map((o) => {
            const { [f.name]: _, ...rest } = o
            return make(Mutation.missingField, `without ${f.name}`, json(rest))
          }),
        )
  const huge = withField.map(({ o, field }) => {
    const name = field?.name ?? "fuzz"
    return make(
      Mutation.hugeString,
      `${name}: ${HUGE_BYTES} bytes`,
      json({ ...o, [name]: "A".repeat(HUGE_BYTES) }),
    )
  })
  const deep = fc.tuple(withField, fc.integer({ min: 100, max: 20_000 })).map(([{ o, field }, depth]) => {
    const name = field?.name ?? "fuzz"
    const text = `${"[".repeat(depth)}1${"]".repeat(depth)}`
    const body = JSON.stringify({ ...o, [name]: 0 }).replace(
      `${JSON.stringify(name)}:0`,
      `${JSON.stringify(name)}:${text}`,
    )
    return make(Mutation.deepNesting, `${name}: depth ${depth}`, enc.encode(body))
  })
  const b64Fields = shapes.flatMap((shape) =>
    shape.filter((f) => f.spec.t === "base64").map((f) => ({ shape, f })),
  )
  const badB64 =
    b64Fields.length === 0
      ? undefined
      : fc
          .tuple(
            fc.constantFrom(...b64Fields),
            fc.constantFrom("@@@@", "abc", "a===", "YQ", "YQ=", "Y Q==", "-_8=", "😀"),
          )
          .chain(([{ shape, f }, bad]) =>
            validObject(shape).map((o) =>
              make(Mutation.invalidBase64, `${f.name}: ${bad}`, json({ ...o, [f.name]: bad })),
            ),
          )
  const stringFields = shapes.flatMap((shape) =>
    shape.filter((f) => specType(f.spec) === "string").map((f) => ({ shape, f })),
  )
  const badUtf8 =
    stringFields.length === 0
      ? undefined
      : fc
          .tuple(
            fc.constantFrom(...stringFields),
            fc.constantFrom(
              [0xff],
              [0xc0, 0xaf],
              [0xed, 0xa0, 0x80],
              [0xf8, 0x88, 0x80, 0x80, 0x80],
              [0xe2, 0x82],
            ),
          )
          .chain(([{ shape, f }, bytes]) =>
            validObject(shape).map((o) => {
              const marker = "\u0001FUZZ\u0001"
              const text = JSON.stringify({ ...o, [f.name]: marker })
              const [before, after] = text.split(JSON.stringify(marker)) as [string, string]
              const body = new Uint8Array([
                ...enc.encode(`${before}"a`),
                ...bytes,
                ...enc.encode(`b"${after}`),
              ])
              return make(
                Mutation.invalidUtf8,
                `${f.name}: bytes ${bytes.map((b) => b.toString(16)).join(" ")}`,
                body,
              )
            }),
          )
  const notObject = fc
    .constantFrom<unknown>(null, [], [{}], 0, "{}", true, -1)
    .map((v) => make(Mutation.notAnObject, JSON.stringify(v), json(v)))
  // One element of an array field (a batch op, a bootstrap writer) with one defect.
  const arrayFields = shapes.flatMap((shape) =>
    shape.flatMap((f) => (f.spec.t === "array" ? [{ shape, f, item: f.spec.item }] : [])),
  )
  const nested =
    arrayFields.length === 0
      ? undefined
      : fc.constantFrom(...arrayFields).chain(({ shape, f, item }) =>
          fc
            .tuple(
              validObject(shape),
              fc.constantFrom(...item).chain((itemShape) =>
                validObject(itemShape).chain((o) => {
                  const present = fieldsOf(o, itemShape)
                  const defects: Array<fc.Arbitrary<[string, Record<string, unknown>]>> = [
                    fc.constant<[string, Record<string, unknown>]>(["extra field", { ...o, fuzz: 1 }]),
                  ]
                  for (const g of present) {
                    const bad = outOfRange(g.spec)
                    if (bad.length > 0)
                      defects.push(
                        fc
                          .constantFrom(...bad)
                          .map((v): [string, Record<string, unknown>] => [
                            `${g.name}: ${JSON.stringify(v).slice(0, 40)}`,
                            { ...o, [g.name]: v },
                          ]),
                      )
                    defects.push(
                      anyJson
                        .filter((v) => typeOf(v) !== specType(g.spec))
                        .map((v): [string, Record<string, unknown>] => [
                          `${g.name}: ${typeOf(v)}`,
                          { ...o, [g.name]: v },
                        ]),
                    )
                    if (!g.optional) {
                      const { [g.name]: _, ...rest } = o
                      defects.push(
                        fc.constant<[string, Record<string, unknown>]>([`without ${g.name}`, rest]),
                      )
                    }
                  }
                  return fc.oneof(...defects)
                }),
              ),
              fc.nat(),
            )
            .map(([o, [what, bad], n]) => {
              const arr = Array.isArray(o[f.name]) ? [...(o[f.name] as unknown[])] : []
              arr.splice(n % (arr.length + 1), 0, bad)
              return make(Mutation.nested, `${f.name}[]: ${what}`, json({ ...o, [f.name]: arr }))
            }),
        )
  const weighted: Array<fc.WeightedArbitrary<Payload>> = [
    { arbitrary: wrongType, weight: 6 },
    { arbitrary: range, weight: 6 },
    { arbitrary: extra, weight: 4 },
    { arbitrary: huge, weight: 1 },
    { arbitrary: deep, weight: 1 },
    { arbitrary: notObject, weight: 2 },
  ]
  for (const [a, w] of [
    [missing, 4],
    [nested, 6],
    [badB64, 3],
    [badUtf8, 3],
  ] as const)
    if (a !== undefined) weighted.push({ arbitrary: a, weight: w })
  return fc.oneof(...weighted)
}

/** Bytes that are not a request at all. */
export const garbagePayload = (e: Endpoint): fc.Arbitrary<Payload> => {
  const make = (mutation: Mutation, note: string, body: Uint8Array): Payload => ({
    endpoint: e.name,
    subject: e.subject,
    kind: PayloadKind.garbage,
    mutation,
    note,
    body,
  })
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(make(Mutation.emptyBody, "0 bytes", new Uint8Array(0))) },
    {
      weight: 3,
      arbitrary: fc
        .uint8Array({ minLength: 1, maxLength: 256 })
        .map((b) => make(Mutation.binaryGarbage, `${b.length} random bytes`, b)),
    },
    {
      weight: 2,
      arbitrary: fc.tuple(validRequest(e), fc.nat()).map(([o, n]) => {
        const text = JSON.stringify(o)
        const cut = text.length <= 1 ? 0 : 1 + (n % (text.length - 1))
        return make(Mutation.truncatedJson, `cut at ${cut}`, enc.encode(text.slice(0, cut)))
      }),
    },
    {
      weight: 2,
      arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => make(Mutation.randomJson, typeOf(v), json(v))),
    },
  )
}

export const validPayload = (e: Endpoint): fc.Arbitrary<Payload> =>
  validRequest(e).map((o) => ({
    endpoint: e.name,
    subject: e.subject,
    kind: PayloadKind.valid,
    body: json(o),
  }))

export interface PayloadMix {
  readonly valid: number
  readonly nearValid: number
  readonly garbage: number
}

/** Payloads for any of `endpoints` (valid ones only where allowed). */
export const payloadArbitrary = (
  endpoints: ReadonlyArray<Endpoint>,
  mix: PayloadMix = { valid: 2, nearValid: 6, garbage: 2 },
): fc.Arbitrary<Payload> =>
  fc.constantFrom(...endpoints).chain((e) => {
    const options: Array<fc.WeightedArbitrary<Payload>> = [
      { arbitrary: nearValidPayload(e), weight: mix.nearValid },
      { arbitrary: garbagePayload(e), weight: mix.garbage },
    ]
    if (e.validAllowed && mix.valid > 0) options.push({ arbitrary: validPayload(e), weight: mix.valid })
    return fc.oneof(...options)
  })

/**
 * `count` payloads, reproducible from `seed`, generated lazily in chunks (a
 * few are MiB-sized).
 */
export function* samplePayloads(
  arb: fc.Arbitrary<Payload>,
  count: number,
  seed: number,
  chunk = 250,
): Generator<Payload> {
  for (let done = 0, round = 0; done < count; round++) {
    const n = Math.min(chunk, count - done)
    for (const p of fc.sample(arb, { numRuns: n, seed: (seed + round * 7919) | 0 })) yield p
    done += n
  }
}
