// Shared by the storage tests: a fresh node layout in a temp dir (removed after
// each test), a put entry, and an applier over opened storage.
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { encodeEntry, Tag } from "@ekv/wire"
import { afterEach } from "vitest"
import { Applier } from "../../../src/fsm/applier.ts"
import { keystoreUnavailableDispatcher } from "../../../src/fsm/encryptionDispatcher.ts"
import { noFaults } from "../../../src/fsm/halt.ts"
import { cleartextSealer } from "../../../src/fsm/valueSealer.ts"
import type { openStorage } from "../../../src/node/storage.ts"
import type { Entry } from "../../../src/raft/mod.ts"

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true })
})

/** A node's directories (consensus/raft, consensus/state, its snapshots) under a new temp dir. */
export const layout = async (prefix = "ekv-storage-") => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix))
  dirs.push(dir)
  const stateDir = path.join(dir, "consensus", "state")
  return {
    nodeId: "n1",
    peers: ["n1", "n2", "n3"],
    raftDir: path.join(dir, "consensus", "raft"),
    stateDir,
    snapshotDir: path.join(stateDir, "snapshots"),
  }
}

/** A term-1 put of `key` (value: the key's bytes) at `index`. */
export const put = (index: number, key: string): Entry => ({
  index,
  term: 1,
  type: "Normal",
  data: encodeEntry({ tag: Tag.KvOp, op: { op: "put", key, value: new TextEncoder().encode(key) } }),
})

/** A plaintext applier over opened storage (no keystore). */
export const applierOf = (s: Awaited<ReturnType<typeof openStorage>>) =>
  new Applier(s.sm, { sealer: cleartextSealer, dispatcher: keystoreUnavailableDispatcher, faults: noFaults })
