import type { ClusterStatus, KvScanReply } from "@ekv/wire"
import { ApiError } from "@ekv/wire"
import { describe, expect, it } from "vitest"
import { DEFAULT_TIMEOUT_MS, parseBatchOp, parseCommand, UsageError } from "../../src/cli/args.ts"
import { parseCredsFile, resolveConnection } from "../../src/cli/connection.ts"
import { displayValue, renderClusterStatus, renderError, renderScan, table } from "../../src/cli/render.ts"

describe("ekv argument parsing", () => {
  it("parses kv commands", () => {
    expect(parseCommand(["kv", "put", "k", "hello"]).action).toEqual({
      kind: "kv-put",
      key: "k",
      value: { kind: "text", text: "hello" },
    })
    expect(parseCommand(["kv", "put", "--base64", "k", "aGk="]).action).toEqual({
      kind: "kv-put",
      key: "k",
      value: { kind: "base64", base64: "aGk=" },
    })
    expect(parseCommand(["kv", "put", "k", "--value-file", "/tmp/v"]).action).toEqual({
      kind: "kv-put",
      key: "k",
      value: { kind: "file", path: "/tmp/v" },
    })
    expect(parseCommand(["kv", "get", "k", "--serializable"]).action).toEqual({
      kind: "kv-get",
      key: "k",
      consistency: "serializable",
    })
    expect(parseCommand(["kv", "scan", "--prefix", "a/", "--limit=5", "--after", "a/1"]).action).toEqual({
      kind: "kv-scan",
      prefix: "a/",
      after: "a/1",
      limit: 5,
      consistency: undefined,
    })
    expect(parseCommand(["kv", "batch", "put:a=1", "delete:b", "put:c==x"]).action).toEqual({
      kind: "kv-batch",
      ops: [
        { op: "put", key: "a", value: { kind: "text", text: "1" } },
        { op: "delete", key: "b" },
        { op: "put", key: "c", value: { kind: "text", text: "=x" } },
      ],
    })
    expect(parseCommand(["kv", "batch", "--file", "-"]).action).toEqual({ kind: "kv-batch-file", path: "-" })
    // A value that looks like an option, after `--`.
    expect(parseCommand(["kv", "put", "--", "k", "--json"]).action).toMatchObject({
      value: { text: "--json" },
    })
  })

  it("parses cluster and node commands", () => {
    expect(parseCommand(["cluster", "status"]).action).toEqual({
      kind: "cluster",
      op: "status",
      node: undefined,
    })
    expect(parseCommand(["cluster", "transfer-leader", "n2"]).action).toEqual({
      kind: "cluster",
      op: "transfer-leader",
      node: "n2",
    })
    expect(parseCommand(["cluster", "snapshot"]).action).toEqual({
      kind: "cluster",
      op: "snapshot",
      node: undefined,
    })
    expect(parseCommand(["cluster", "snapshot", "n3"]).action).toMatchObject({ node: "n3" })
    expect(parseCommand(["node", "health", "n1"]).action).toEqual({ kind: "node-health", node: "n1" })
    expect(parseCommand([]).action).toEqual({ kind: "help" })
    expect(parseCommand(["cluster", "status", "--help"]).action).toEqual({ kind: "help" })
  })

  it("parses global options anywhere", () => {
    const c = parseCommand([
      "--json",
      "cluster",
      "status",
      "--servers",
      "nats://a:1, nats://b:2",
      "--user",
      "u",
      "--password=p",
    ])
    expect(c.global).toEqual({
      json: true,
      servers: ["nats://a:1", "nats://b:2"],
      user: "u",
      password: "p",
      credsFile: undefined,
      subjectPrefix: undefined,
      timeoutMs: DEFAULT_TIMEOUT_MS,
    })
    expect(
      parseCommand(["cluster", "status", "--timeout", "500", "--creds-file", "x.json"]).global,
    ).toMatchObject({
      timeoutMs: 500,
      credsFile: "x.json",
    })
  })

  it("rejects bad usage with a message", () => {
    const bad: ReadonlyArray<[ReadonlyArray<string>, RegExp]> = [
      [["kv", "put", "k"], /missing argument/],
      [["kv", "get", "k", "extra"], /unexpected argument/],
      [["kv", "frob"], /unknown command kv frob/],
      [["cluster", "promote"], /missing argument/],
      [["cluster", "promote", "N1"], /invalid node id/],
      [["cluster", "status", "--limit", "3"], /does not apply/],
      [["cluster", "explode"], /unknown command cluster explode/],
      [["kv", "scan", "--limit", "0"], /--limit must be/],
      [["--timeout"], /needs a value/],
      [["--bogus", "cluster", "status"], /unknown option --bogus/],
      [["kv", "batch"], /no ops/],
      [["kv", "batch", "frob:a"], /expected put/],
      [["kv", "put", "k", "v", "--base64", "--value-file", "f"], /exclude/],
      [["db", "drop"], /unknown command db/],
    ]
    for (const [argv, message] of bad) expect(() => parseCommand(argv), argv.join(" ")).toThrow(message)
    expect(() => parseBatchOp("put:=v", false)).toThrow(UsageError)
  })
})

describe("connection resolution", () => {
  const creds = JSON.stringify({ servers: ["nats://127.0.0.1:4333"], user: "operator", pass: "pw" })
  const global = parseCommand(["cluster", "status"]).global

  it("defaults to data/operator.json when nothing names a user", () => {
    const r = resolveConnection(global, {
      env: {},
      readFile: (p) => (p === "/repo/data/operator.json" ? creds : undefined),
      defaultCredsFiles: ["/cwd/data/operator.json", "/repo/data/operator.json"],
    })
    expect(r.options).toMatchObject({ servers: ["nats://127.0.0.1:4333"], user: "operator", pass: "pw" })
    expect(r.source).toBe("/repo/data/operator.json")
  })

  it("prefers flags, then the environment's user over the default file", () => {
    const r = resolveConnection(parseCommand(["cluster", "status", "--servers", "nats://x:1"]).global, {
      env: { NATS_USER: "admin", NATS_PASSWORD: "apw", NATS_URL: "nats://y:2" },
      readFile: () => creds,
      defaultCredsFiles: ["/d"],
    })
    expect(r.options).toMatchObject({ servers: ["nats://x:1"], user: "admin", pass: "apw" })
  })

  it("validates a credentials file", () => {
    expect(() => parseCredsFile("f", "{")).toThrow(/not JSON/)
    expect(() => parseCredsFile("f", '{"servers":"x","user":"u","pass":"p"}')).toThrow(/expected/)
    expect(() =>
      resolveConnection(parseCommand(["cluster", "status", "--creds-file", "/nope"]).global, {
        env: {},
        readFile: () => undefined,
        defaultCredsFiles: [],
      }),
    ).toThrow(/no such file/)
  })
})

describe("rendering", () => {
  it("aligns tables without trailing spaces", () => {
    expect(
      table(
        ["A", "LONGER"],
        [
          ["xyz", "1"],
          ["b", ""],
        ],
      ),
    ).toBe("A    LONGER\nxyz  1\nb")
  })

  it("shows values as text or base64", () => {
    expect(displayValue(new TextEncoder().encode("héllo"))).toBe("héllo")
    expect(displayValue(new Uint8Array([0xff, 0x00]))).toBe("base64:/wA=")
    expect(displayValue(new Uint8Array([0x61, 0x0a]))).toBe("base64:YQo=")
  })

  it("renders cluster status", () => {
    const s = {
      cluster_id: "0123456789abcdef0123456789abcdef",
      leader: "n1",
      term: 3,
      commit_index: 42,
      members: [
        { node: "n1", role: "voter", applied_index: 42, match_index: 42, reachable: true },
        {
          node: "n2",
          role: "learner",
          applied_index: 40,
          reachable: false,
          halted: { index: 41, reason: "CorruptLog" },
        },
      ],
    } as unknown as ClusterStatus
    expect(renderClusterStatus(s)).toBe(
      [
        "cluster  0123456789abcdef0123456789abcdef",
        "leader   n1",
        "term     3",
        "commit   42",
        "",
        "NODE  ROLE     APPLIED  MATCH  REACHABLE  HALTED",
        "n1 *  voter    42       42     yes",
        "n2    learner  40       -      no         halted at 41: CorruptLog",
      ].join("\n"),
    )
  })

  it("renders a scan page and says how to continue", () => {
    const r = {
      items: [
        { key: "a", value: new TextEncoder().encode("1"), version: 5 },
        { key: "b", value: new TextEncoder().encode("2"), version: 6 },
      ],
      more: true,
    } as unknown as KvScanReply
    expect(renderScan(r)).toBe(
      'KEY  VERSION  VALUE\na    5        1\nb    6        2\n(more: continue with --after "b")',
    )
  })

  it("renders errors with code, message and details", () => {
    const e = new ApiError.NotFound({ message: "node n9 is not a member", details: { node: "n9" } })
    expect(renderError(e)).toBe('error: NotFound: node n9 is not a member\ndetails: {"node":"n9"}')
  })
})
