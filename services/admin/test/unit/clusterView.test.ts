import type { ClusterStatus } from "@ekv/wire"
import { describe, expect, it } from "vitest"
import { candidateNodes, chooseView, nodesFromServiceInfo } from "../../src/clusterView.ts"
import { adminConfigFromEnv, parsePeers } from "../../src/config.ts"

const status = (
  leader: string | null,
  term: number,
  commit = 10,
  members = ["n1", "n2", "n3"],
): ClusterStatus =>
  ({
    cluster_id: "",
    leader,
    term,
    commit_index: commit,
    members: members.map((node) => ({ node, role: "voter", applied_index: commit, reachable: true })),
  }) as unknown as ClusterStatus

describe("chooseView", () => {
  it("is Silent without answers", () => {
    expect(chooseView([])._tag).toBe("Silent")
  })

  it("takes the leader's own view when it answered", () => {
    const v = chooseView([
      { node: "n2", status: status("n1", 3, 9) },
      { node: "n1", status: status("n1", 3, 10) },
    ])
    expect(v).toEqual({ _tag: "Leader", leader: "n1", status: status("n1", 3, 10) })
  })

  it("trusts the highest term over a stale leader claim", () => {
    const v = chooseView([
      { node: "n1", status: status("n1", 3) },
      { node: "n2", status: status("n2", 4) },
    ])
    expect(v._tag === "Leader" && v.leader).toBe("n2")
  })

  it("names a leader that did not answer, without a status", () => {
    const v = chooseView([{ node: "n2", status: status("n4", 5) }])
    expect(v).toEqual({ _tag: "Leader", leader: "n4", status: undefined })
  })

  it("returns the freshest view when nobody leads", () => {
    const v = chooseView([
      { node: "n1", status: status(null, 3, 5) },
      { node: "n2", status: status(null, 4, 2) },
    ])
    expect(v).toEqual({ _tag: "NoLeader", status: status(null, 4, 2) })
  })
})

describe("candidates and discovery", () => {
  it("orders the last leader first, without duplicates", () => {
    expect(candidateNodes("n3", ["n1", "n3"], ["n2", "n1"])).toEqual(["n3", "n1", "n2"])
    expect(candidateNodes(undefined, [], [])).toEqual([])
  })

  it("reads node ids from $SRV.INFO replies of ekv-node", () => {
    const replies = [
      { name: "ekv-node", endpoints: [{ name: "health", subject: "ekv.node.n1.health" }] },
      { name: "ekv-node", endpoints: [{ name: "capability", subject: "ekv.node.n2.capability" }] },
      {
        name: "ekv-node",
        endpoints: [{ subject: "other.node.n9.health" }, { subject: "ekv.node.a.b.health" }],
      },
      "garbage",
      null,
      { endpoints: "no" },
    ]
    expect(nodesFromServiceInfo("ekv", replies)).toEqual(["n1", "n2"])
  })
})

describe("config", () => {
  it("parses EKV_PEERS and rejects bad ids", () => {
    expect(parsePeers(" n1, n2,,n1 ")).toEqual(["n1", "n2"])
    expect(parsePeers(undefined)).toEqual([])
    expect(() => parsePeers("n1,N2")).toThrow(/invalid node id/)
  })

  it("reads the environment with defaults", () => {
    const c = adminConfigFromEnv({ EKV_PEERS: "n1" })
    expect(c.prefix).toBe("ekv")
    expect(c.peers).toEqual(["n1"])
    expect(c.metricsPort).toBeUndefined()
    expect(() => adminConfigFromEnv({ EKV_PREFIX: "Bad" })).toThrow()
    expect(() => adminConfigFromEnv({ EKV_METRICS_PORT: "x" })).toThrow()
  })
})
