import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"

/** A fresh temporary directory per test; removed by the returned cleanup. */
export const makeTempDir = async (): Promise<{
  readonly dir: string
  readonly cleanup: () => Promise<void>
}> => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "ekv-state-"))
  return { dir, cleanup: () => fs.rm(dir, { recursive: true, force: true }) }
}
