import { describe, expect, it } from "vitest"
import { ConfigError, loadConfig } from "../../../src/config.ts"

describe("consensus config", () => {
  it("applies CONTRACT §6 defaults", () => {
    const c = loadConfig({ EKV_NODE_ID: "n1", EKV_PEERS: "n1,n2,n3" })
    expect(c.prefix).toBe("ekv")
    expect(c.peers).toEqual(["n1", "n2", "n3"])
    expect(c.snapshotEntries).toBe(10_000)
    expect(c.electionTimeoutMs).toBe(1000)
    expect(c.metricsPort).toBeUndefined()
    expect(c.nats.servers).toEqual(["nats://127.0.0.1:4222"])
    expect(c.dataDir.endsWith("/data/n1")).toBe(true)
    expect(c.raftDir).toBe(`${c.dataDir}/consensus/raft`)
    expect(c.snapshotDir.startsWith(`${c.dataDir}/consensus/state/`)).toBe(true)
    expect(c.writeBufferBytes).toBe(32 << 20)
    expect(c.faultFileEnabled).toBe(false)
    expect(loadConfig({ EKV_NODE_ID: "n1", EKV_TEST_FAULT_FILE: "1" }).faultFileEnabled).toBe(true)
    expect(loadConfig({ EKV_NODE_ID: "n1", EKV_LEVELDB_WRITE_BUFFER_MB: "4" }).writeBufferBytes).toBe(4 << 20)
    expect(loadConfig({ EKV_NODE_ID: "n1" }, ["--leveldb-write-buffer-mb=8"]).writeBufferBytes).toBe(8 << 20)
  })

  it("takes equal --flags over the environment", () => {
    const c = loadConfig({ EKV_NODE_ID: "n1", EKV_SNAPSHOT_ENTRIES: "5" }, [
      "--node-id",
      "n2",
      "--ekv-snapshot-entries=200",
      "--nats-url",
      "nats://a:1,nats://b:2",
      "--prefix=t1",
    ])
    expect(c.nodeId).toBe("n2")
    expect(c.snapshotEntries).toBe(200)
    expect(c.nats.servers).toEqual(["nats://a:1", "nats://b:2"])
    expect(c.prefix).toBe("t1")
  })

  it.each([
    [{}, [], "EKV_NODE_ID is required"],
    [{ EKV_NODE_ID: "N1" }, [], "EKV_NODE_ID"],
    [{ EKV_NODE_ID: "n1", EKV_PREFIX: "Bad" }, [], "EKV_PREFIX"],
    [{ EKV_NODE_ID: "n1", EKV_PEERS: "n1,n1" }, [], "twice"],
    [{ EKV_NODE_ID: "n1", EKV_SNAPSHOT_ENTRIES: "0" }, [], "EKV_SNAPSHOT_ENTRIES"],
    [{ EKV_NODE_ID: "n1", EKV_ELECTION_TIMEOUT_MS: "abc" }, [], "EKV_ELECTION_TIMEOUT_MS"],
    [{ EKV_NODE_ID: "n1", EKV_METRICS_PORT: "70000" }, [], "EKV_METRICS_PORT"],
    [{ EKV_NODE_ID: "n1", EKV_LEVELDB_WRITE_BUFFER_MB: "0" }, [], "EKV_LEVELDB_WRITE_BUFFER_MB"],
    [{ EKV_NODE_ID: "n1", EKV_LEVELDB_WRITE_BUFFER_MB: "2048" }, [], "EKV_LEVELDB_WRITE_BUFFER_MB"],
    [{ EKV_NODE_ID: "n1", EKV_LEVELDB_WRITE_BUFFER_MB: "1.5" }, [], "EKV_LEVELDB_WRITE_BUFFER_MB"],
    [{ EKV_NODE_ID: "n1" }, ["--bogus", "1"], "unknown flag"],
    [{ EKV_NODE_ID: "n1" }, ["--node-id"], "needs a value"],
  ] as const)("refuses %j %j with one line", (env, argv, text) => {
    let err: unknown
    try {
      loadConfig(env, argv)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toContain(text)
    expect((err as Error).message).not.toContain("\n")
  })
})
