// Helpers shared by the consensus process tests: concurrent writers that
// record only acknowledged writes, and full reads of a node's state.
import type { ProcessCluster } from "../../../../test/src/processCluster.ts"

export interface Acked {
  readonly key: string
  readonly value: string
  readonly index: number
}

export interface WriterRun {
  readonly acked: Acked[]
  readonly failed: number
  stop(): Promise<void>
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** `clients` writers, each putting fresh keys `<prefix>-<client>-<seq>` until stopped. */
export const startWriters = (c: ProcessCluster, clients: number, prefix: string): WriterRun => {
  const acked: Acked[] = []
  let failed = 0
  let stopped = false
  const loops = Array.from({ length: clients }, async (_, w) => {
    let seq = 0
    while (!stopped) {
      const key = `${prefix}-${w}-${seq}`
      const value = `v${seq}`
      seq++
      try {
        const r = await c.kv.put(key, value, 4_000)
        if (r.ok) acked.push({ key, value, index: r.value.index })
        else {
          failed++
          await sleep(20)
        }
      } catch {
        failed++
        await sleep(20)
      }
    }
  })
  return {
    acked,
    get failed() {
      return failed
    },
    async stop() {
      stopped = true
      await Promise.all(loops)
    },
  }
}

/** Every key/value under `prefix` on `node` (serializable, paged). */
export const readAllOn = async (
  c: ProcessCluster,
  node: string,
  prefix: string,
): Promise<Map<string, string>> => {
  const out = new Map<string, string>()
  let after: string | undefined
  for (;;) {
    const r = await c.kv.scanOn(
      node,
      { prefix, limit: 1000, ...(after === undefined ? {} : { after }) },
      15_000,
    )
    if (!r.ok) throw new Error(`scan on ${node}: ${r.error.code}: ${r.error.message}`)
    for (const it of r.value.items) out.set(it.key, Buffer.from(it.value, "base64").toString("utf8"))
    if (!r.value.more || r.value.items.length === 0) return out
    after = r.value.items.at(-1)!.key
  }
}

/** Every key/value under `prefix` through the cluster (linearizable scans). */
export const readAllLinearizable = async (
  c: ProcessCluster,
  prefix: string,
): Promise<Map<string, string>> => {
  const out = new Map<string, string>()
  let after: string | undefined
  for (;;) {
    const r = await c.kv.scan({ prefix, limit: 1000, ...(after === undefined ? {} : { after }) }, 15_000)
    if (!r.ok) throw new Error(`linearizable scan: ${r.error.code}: ${r.error.message}`)
    for (const it of r.value.items) out.set(it.key, Buffer.from(it.value, "base64").toString("utf8"))
    if (!r.value.more || r.value.items.length === 0) return out
    after = r.value.items.at(-1)!.key
  }
}

export const missingFrom = (acked: readonly Acked[], state: ReadonlyMap<string, string>): Acked[] =>
  acked.filter((a) => state.get(a.key) !== a.value)

export const maxIndex = (acked: readonly Acked[]): number => acked.reduce((m, a) => Math.max(m, a.index), 0)

export { sleep }
