import { fullNodeId } from "@ekv/crypto"
import type { BootstrapReply, CapabilityReply, EncryptionStatus } from "@ekv/wire"
import { describe, expect, it } from "vitest"
import { parseCommand, UsageError } from "../../src/cli/args.ts"
import {
  renderBootstrap,
  renderCapability,
  renderEncryptionStatus,
  renderHistory,
  renderRewrite,
} from "../../src/cli/render.ts"

const action = (...argv: string[]) => parseCommand(argv).action

describe("ekv encryption argument parsing", () => {
  it("parses each command into its request body", () => {
    expect(action("encryption", "status")).toEqual({ kind: "encryption", op: "status", body: {} })
    expect(action("encryption", "capability")).toEqual({ kind: "encryption", op: "capability", body: {} })
    expect(action("encryption", "capability", "n2")).toEqual({
      kind: "encryption",
      op: "capability",
      body: { node: "n2" },
    })
    expect(action("encryption", "bootstrap")).toEqual({
      kind: "encryption",
      op: "bootstrap",
      body: { discover: true },
      bodyFile: undefined,
    })
    expect(action("encryption", "bootstrap", "--file", "w.json")).toMatchObject({ bodyFile: "w.json" })
    expect(action("encryption", "register-writer", "11", "12345", "3", "--session", "ab".repeat(16))).toEqual(
      {
        kind: "encryption",
        op: "register-writer",
        body: { dek_id: 11, full_node_id: "12345", local_epoch: 3, session_id: "ab".repeat(16) },
      },
    )
    expect(action("encryption", "rotate-dek", "raft")).toEqual({
      kind: "encryption",
      op: "rotate-dek",
      body: { purpose: "raft" },
    })
    expect(action("encryption", "retire-dek", "7")).toEqual({
      kind: "encryption",
      op: "retire-dek",
      body: { key_id: 7 },
    })
    expect(action("encryption", "rewrite", "--rate", "2.5", "--follow")).toEqual({
      kind: "encryption",
      op: "rewrite",
      body: { rate_mib_s: 2.5 },
      follow: true,
    })
    expect(action("encryption", "resync-sidecar", "n3")).toEqual({
      kind: "encryption",
      op: "resync-sidecar",
      body: { node: "n3" },
    })
    for (const op of ["rewrap-deks", "enable-storage-envelope", "enable-raft-envelope", "sidecar-state"])
      expect(action("encryption", op)).toEqual({ kind: "encryption", op, body: {} })
  })

  it("parses history filters", () => {
    expect(action("encryption", "history")).toEqual({
      kind: "encryption-history",
      node: undefined,
      sinceIndex: undefined,
      limit: undefined,
    })
    expect(
      action("encryption", "history", "--node", "n2", "--since-index", "0", "--limit", "5", "--json"),
    ).toEqual({
      kind: "encryption-history",
      node: "n2",
      sinceIndex: 0,
      limit: 5,
    })
  })

  it("refuses bad usage", () => {
    for (const argv of [
      ["encryption"],
      ["encryption", "nope"],
      ["encryption", "rotate-dek"],
      ["encryption", "rotate-dek", "both"],
      ["encryption", "retire-dek", "x"],
      ["encryption", "resync-sidecar"],
      ["encryption", "resync-sidecar", "N1"],
      ["encryption", "status", "--node", "n1"],
      ["encryption", "history", "--limit", "0"],
      ["encryption", "register-writer", "1", "2"],
      ["encryption", "bootstrap", "--follow"],
    ])
      expect(() => parseCommand(argv), argv.join(" ")).toThrow(UsageError)
  })
})

describe("ekv encryption rendering", () => {
  it("renders status as tables", () => {
    const s: EncryptionStatus = {
      phase: "storage-envelope",
      active: { storage: 11, raft: 12 },
      keys: [
        { key_id: 10 as never, purpose: "storage", created: "2026-01-01T00:00:00.000Z", retired: true },
        { key_id: 11 as never, purpose: "storage", created: "2026-01-02T00:00:00.000Z", retired: false },
      ],
      nodes: [
        {
          node: "n1" as never,
          role: "voter",
          sidecar_raft_applied_index: 5 as never,
          local_epochs: { "11": 3 },
          versions_by_key_id: { "11": 7 },
          cleartext_versions: 2,
          log_entries_by_key_id: {},
          rewrite: { done: false, progress: 0.5 },
          halted: { index: 9 as never, reason: "KekMismatch" },
        },
      ],
      registry: [
        {
          dek_id: 11 as never,
          node_id16: 1,
          full_node_id: 65537n,
          first_seen_local_epoch: 1,
          last_seen_local_epoch: 3,
        },
      ],
    }
    const text = renderEncryptionStatus(s)
    expect(text).toMatch(/^phase {3}storage-envelope/)
    expect(text).toMatch(/10\s+storage\s+\S+\s+retired/)
    expect(text).toMatch(/11\s+storage\s+\S+\s+active/)
    expect(text).toMatch(/n1\s+voter\s+5\s+11:3\s+11:7\s+2\s+-\s+50%\s+at 9: KekMismatch/)
    expect(text).toMatch(/11\s+1\s+65537\s+1\s+3/)
  })

  it("renders a node's rewrite as never started, done, running or stopped with its cause", () => {
    expect(renderRewrite(undefined)).toBe("-")
    expect(renderRewrite({ done: true, progress: 1 })).toBe("done")
    expect(renderRewrite({ done: false, progress: 0.25 })).toBe("25%")
    expect(renderRewrite({ done: false, progress: 0.5, error: "this node halted at 9 (KekMismatch)" })).toBe(
      "stopped at 50%: this node halted at 9 (KekMismatch)",
    )
  })

  it("renders capability for one node and for the fan-out", () => {
    const one: CapabilityReply = {
      node: "n1" as never,
      encryption_capable: true,
      build_sha: "x",
      sidecar_present: true,
      full_node_id: fullNodeId("n1"),
      local_epoch: 4,
      kek_id: "aaaaaaaaaaaaaaaa",
      next_kek_id: null,
    }
    expect(renderCapability(one)).toMatch(/n1\s+-\s+yes\s+\d+\s+4\s+aaaaaaaaaaaaaaaa\s+-\s+sidecar/)
    const all: CapabilityReply = {
      members: [{ node: "n2" as never, role: "learner", error: { code: "Unavailable", message: "timeout" } }],
    }
    expect(renderCapability(all)).toMatch(/n2\s+learner\s+no\s+-\s+-\s+-\s+-\s+Unavailable: timeout/)
  })

  it("renders bootstrap writers and history", () => {
    const b: BootstrapReply = {
      index: 7 as never,
      storage_key_id: 1 as never,
      raft_key_id: 2 as never,
      writers: [{ node: "n1" as never, full_node_id: 5n, node_id16: 5, local_epoch: 0 }],
    }
    expect(renderBootstrap(b)).toMatch(/index 7: storage DEK 1, raft DEK 2[\s\S]*n1\s+5\s+5\s+0/)
    expect(renderHistory([])).toBe("(no events)")
    expect(
      renderHistory([
        {
          stream: "cluster",
          seq: 1,
          event: {
            cluster_id: "",
            node: "n1" as never,
            kind: "leader",
            term: 4,
            at: "2026-01-01T00:00:00.000Z",
          },
        },
      ]),
    ).toMatch(/leader\s+n1\s+term 4\s+-/)
  })
})
