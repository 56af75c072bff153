// Loading N keys fast: `ekv.kv.batch` requests of up to 1000 puts each
// (CONTRACT §2: 1..1000 ops, values ≤ 2 MiB per request), a few in flight,
// from this process over the operator connection. Values are random
// (incompressible) and distinct per key. A failed batch is retried (its puts
// are idempotent); one that fails every time, or the time limit, ends the load
// early and says so.
import { randomBytes } from "node:crypto"
import { Histogram } from "../histogram.ts"
import { sleep } from "../targets/target.ts"
import type { ScaleCluster } from "./cluster.ts"

export interface LoadOptions {
  readonly keys: number
  readonly valueSize: number
  readonly batchSize: number
  readonly concurrency: number
  readonly timeLimitMs: number
  readonly keyPrefix: string
  /** Called about every `progressMs` with the keys loaded so far. */
  readonly onProgress: (loaded: number, elapsedMs: number) => void
  readonly progressMs: number
}

export interface LoadResult {
  readonly requested: number
  readonly loaded: number
  readonly batches: number
  readonly seconds: number
  readonly keysPerSec: number
  readonly mibPerSec: number
  /** Batch request latency, ms. */
  readonly batchP50: number
  readonly batchP99: number
  readonly batchMax: number
  readonly retries: number
  readonly errors: ReadonlyArray<string>
  /** Why the load ended before `requested` keys, if it did. */
  readonly stoppedEarly: string | null
}

const BATCH_TIMEOUT_MS = 60_000
const ATTEMPTS = 4

export const keyName = (prefix: string, i: number): string => `${prefix}.${String(i).padStart(9, "0")}`

const batchBody = (prefix: string, from: number, to: number, valueSize: number): string => {
  const values = randomBytes((to - from) * valueSize)
  const ops: string[] = []
  for (let i = from; i < to; i++) {
    const off = (i - from) * valueSize
    const v = values.subarray(off, off + valueSize).toString("base64")
    ops.push(`{"op":"put","key":"${keyName(prefix, i)}","value":"${v}"}`)
  }
  return `{"ops":[${ops.join(",")}]}`
}

export const loadKeys = async (cluster: ScaleCluster, o: LoadOptions): Promise<LoadResult> => {
  const h = new Histogram()
  const errors: string[] = []
  let retries = 0
  let next = 0
  let loaded = 0
  let batches = 0
  let stoppedEarly: string | null = null
  const t0 = performance.now()
  const progress = setInterval(() => o.onProgress(loaded, performance.now() - t0), o.progressMs)
  const worker = async (): Promise<void> => {
    while (stoppedEarly === null && next < o.keys) {
      if (performance.now() - t0 > o.timeLimitMs) {
        stoppedEarly ??= `time limit of ${o.timeLimitMs / 1000}s reached`
        return
      }
      const from = next
      const to = Math.min(o.keys, from + o.batchSize)
      next = to
      const body = batchBody(o.keyPrefix, from, to, o.valueSize)
      for (let attempt = 1; ; attempt++) {
        const begin = performance.now()
        try {
          await cluster.request("kv.batch", body, BATCH_TIMEOUT_MS)
          h.record((performance.now() - begin) * 1000)
          loaded += to - from
          batches++
          break
        } catch (e) {
          const m = `${new Date().toISOString()} batch ${from}..${to} attempt ${attempt} after ${Math.round(performance.now() - begin)} ms: ${e instanceof Error ? e.message : String(e)}`
          if (errors.length < 20) errors.push(m)
          console.log(`scale: load: ${m}`)
          if (attempt >= ATTEMPTS) {
            stoppedEarly ??= `batch ${from}..${to} failed ${ATTEMPTS} times: ${m}`
            return
          }
          retries++
          await sleep(1000 * attempt)
        }
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker))
  } finally {
    clearInterval(progress)
  }
  const seconds = (performance.now() - t0) / 1000
  return {
    requested: o.keys,
    loaded,
    batches,
    seconds,
    keysPerSec: loaded / seconds,
    mibPerSec: (loaded * o.valueSize) / 2 ** 20 / seconds,
    batchP50: h.quantile(0.5) / 1000,
    batchP99: h.quantile(0.99) / 1000,
    batchMax: h.max / 1000,
    retries,
    errors,
    stoppedEarly,
  }
}
