// Where the state machine keeps its files inside a node's data directory
// (CONTRACT §6: each service uses its own subdirectory).
import * as path from "node:path"

export interface StatePaths {
  /** The MVCC LevelDB. */
  readonly db: string
  /** State-machine snapshot files (they hold user keys in the clear: never under consensus/raft). */
  readonly snapshots: string
}

export const statePaths = (dataDir: string): StatePaths => {
  const state = path.join(dataDir, "consensus", "state")
  return { db: path.join(state, "db"), snapshots: path.join(state, "snapshots") }
}
