// Node-local apply faults (SPEC §2.2): the node stops at entry i without
// marking it applied, reports `halted {index, reason}`, steps down and does
// not campaign, keeps storing log entries, and resumes from i by itself when
// the cause was transient.
import { readFileSync } from "node:fs"
import type { HaltCode } from "@ekv/wire"

export interface HaltInfo {
  readonly index: number
  readonly reason: HaltCode
  readonly message: string
  /** Retried with backoff (keystore back, fault cleared). */
  readonly transient: boolean
}

/** Retry delay after `attempt` failed tries: 200 ms doubling to 5 s. */
export const haltRetryDelayMs = (attempt: number): number => Math.min(5_000, 200 * 2 ** Math.min(attempt, 5))

export interface FaultInjector {
  /** A fault at `index`, if one is injected (checked once per apply batch). */
  readonly check: () => ((index: number) => HaltInfo | null) | null
  /** TEST ONLY: milliseconds each apply batch waits before its state write (a slow disk). */
  readonly writeDelayMs?: number
}

export const noFaults: FaultInjector = { check: () => null }

/**
 * TEST ONLY. A node halts (reason KeystoreUnavailable, transient) at the first
 * entry with index ≥ N when either
 *   - `faultFile` is given (EKV_TEST_FAULT_FILE=1 at start), the file exists
 *     and holds N (delete it to "fix" the cause: the node resumes by itself on
 *     its next retry), or
 *   - EKV_TEST_FAULT_HALT_AT_INDEX=N was set at start (lasts for the process).
 * With `writeDelayMs` (EKV_TEST_FAULT_APPLY_WRITE_DELAY_MS) every apply batch
 * waits that long before it writes the state database. With none of these,
 * an apply batch costs nothing here: the file is only read when asked for.
 */
export const testFaultInjector = (
  faultFile: string | undefined,
  envIndex: number | undefined,
  writeDelayMs = 0,
): FaultInjector => ({
  writeDelayMs,
  check: () => {
    let at = envIndex
    if (faultFile !== undefined) {
      try {
        const n = Number(readFileSync(faultFile, "utf8").trim())
        if (Number.isSafeInteger(n) && n > 0) at = at === undefined ? n : Math.min(at, n)
      } catch {
        // no fault file: nothing injected
      }
    }
    if (at === undefined) return null
    const from = at
    return (index) =>
      index >= from
        ? {
            index,
            reason: "KeystoreUnavailable",
            message: `test fault injected at index ≥ ${from}`,
            transient: true,
          }
        : null
  },
})
