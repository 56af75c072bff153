// The process cluster of one test file: started before its tests (with a
// leader), stopped after them. Kept apart from processCluster.ts, which
// scripts import outside vitest.
import { afterAll, beforeAll } from "vitest"
import { type ProcessCluster, type ProcessClusterOptions, startProcessCluster } from "./processCluster.ts"

/** Starts the cluster in `beforeAll` and hands it to `use` (the file's `c`); stops it in `afterAll`. */
export const useProcessCluster = (
  options: ProcessClusterOptions,
  use: (c: ProcessCluster) => void,
  timeoutMs?: number,
): void => {
  let started: ProcessCluster | undefined
  beforeAll(async () => {
    started = await startProcessCluster(options)
    use(started)
    await started.waitForLeader()
  }, timeoutMs)
  afterAll(async () => {
    await started?.stopAll()
  })
}
