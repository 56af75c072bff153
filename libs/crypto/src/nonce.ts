// Deterministic AES-GCM nonces (CONTRACT §7):
//   node_id16 (BE u16) ‖ local_epoch (BE u16) ‖ write_count (BE u64).
// Each field is range-checked and never wrapped or truncated: a wrapped field
// would reuse a (DEK, nonce) pair (SPEC principle 2).
import { Result } from "effect"
import { NONCE_LENGTH } from "./argument.ts"
import { CryptoArgumentError, LocalEpochOutOfRange, NonceExhausted } from "./errors.ts"

export const MAX_LOCAL_EPOCH = 0xffff
export const MAX_WRITE_COUNT = 0xffff_ffff_ffff_ffffn

const requireNodeId16 = (nodeId16: number): void => {
  if (!Number.isInteger(nodeId16) || nodeId16 < 0 || nodeId16 > 0xffff) {
    throw new CryptoArgumentError({ message: `node_id16 must be an integer in 0..0xffff, got ${nodeId16}` })
  }
}

const requireLocalEpoch = (localEpoch: number): void => {
  if (!Number.isInteger(localEpoch) || localEpoch < 0 || localEpoch > MAX_LOCAL_EPOCH) {
    throw new LocalEpochOutOfRange({
      message: `local_epoch must be an integer in 0..0xffff, got ${localEpoch}`,
      localEpoch,
    })
  }
}

/**
 * The 12-byte nonce for one write. Throws `LocalEpochOutOfRange` for an epoch
 * outside 0..0xFFFF, `NonceExhausted` for a write_count past 2^64−1, and
 * `CryptoArgumentError` for a node_id16 outside 0..0xFFFF or a negative count.
 */
export const makeNonce = (nodeId16: number, localEpoch: number, writeCount: bigint): Uint8Array => {
  requireNodeId16(nodeId16)
  requireLocalEpoch(localEpoch)
  if (typeof writeCount !== "bigint" || writeCount < 0n) {
    throw new CryptoArgumentError({
      message: `write_count must be a non-negative bigint, got ${String(writeCount)}`,
    })
  }
  if (writeCount > MAX_WRITE_COUNT) {
    throw new NonceExhausted({ message: `write_count ${writeCount} is past 2^64-1`, nodeId16, localEpoch })
  }
  // Shifts, not a DataView: viewing a small fresh array's buffer moves it off
  // V8's heap, which cost more than the rest of a nonce (docs/performance.md).
  const nonce = new Uint8Array(NONCE_LENGTH)
  nonce[0] = nodeId16 >>> 8
  nonce[1] = nodeId16 & 0xff
  nonce[2] = localEpoch >>> 8
  nonce[3] = localEpoch & 0xff
  const hi = Number(writeCount >> 32n)
  const lo = Number(writeCount & 0xffff_ffffn)
  nonce[4] = hi >>> 24
  nonce[5] = (hi >>> 16) & 0xff
  nonce[6] = (hi >>> 8) & 0xff
  nonce[7] = hi & 0xff
  nonce[8] = lo >>> 24
  nonce[9] = (lo >>> 16) & 0xff
  nonce[10] = (lo >>> 8) & 0xff
  nonce[11] = lo & 0xff
  return nonce
}

/** Splits a nonce into its three fields (audits, metrics). */
export const nonceFields = (
  nonce: Uint8Array,
): { readonly nodeId16: number; readonly localEpoch: number; readonly writeCount: bigint } => {
  if (nonce.length !== NONCE_LENGTH) {
    throw new CryptoArgumentError({ message: `a nonce is ${NONCE_LENGTH} bytes, got ${nonce.length}` })
  }
  const view = new DataView(nonce.buffer, nonce.byteOffset, nonce.byteLength)
  return {
    nodeId16: view.getUint16(0, false),
    localEpoch: view.getUint16(2, false),
    writeCount: view.getBigUint64(4, false),
  }
}

/** The nonce source of one process for one (DEK, local_epoch). */
export interface NonceSequence {
  readonly nodeId16: number
  readonly localEpoch: number
  /** The write_count the next call to `next` will use (= nonces handed out so far, from `start`). */
  readonly writeCount: bigint
  /** The next nonce; throws `NonceExhausted` once write_count 2^64−1 has been used. */
  next(): Uint8Array
  /** Like `next`, with exhaustion as a value. */
  tryNext(): Result.Result<Uint8Array, NonceExhausted>
}

/**
 * write_count starts at 0 for each (DEK, epoch) a process obtains and never
 * resets within it (SPEC §2.4): a new epoch needs a new counter, never a reset
 * of this one. `start` exists only so tests can reach the 2^64−1 edge.
 */
export class WriteCounter implements NonceSequence {
  readonly nodeId16: number
  readonly localEpoch: number
  // Invariant: #next ≤ 2^64; #next = 2^64 means every count has been used.
  #next: bigint

  constructor(p: { readonly nodeId16: number; readonly localEpoch: number; readonly start?: bigint }) {
    requireNodeId16(p.nodeId16)
    requireLocalEpoch(p.localEpoch)
    const start = p.start ?? 0n
    if (typeof start !== "bigint" || start < 0n) {
      throw new CryptoArgumentError({ message: `start must be a non-negative bigint, got ${String(start)}` })
    }
    this.nodeId16 = p.nodeId16
    this.localEpoch = p.localEpoch
    if (start > MAX_WRITE_COUNT + 1n) {
      throw new CryptoArgumentError({ message: `start must be at most 2^64, got ${start}` })
    }
    this.#next = start
  }

  get writeCount(): bigint {
    return this.#next
  }

  tryNext(): Result.Result<Uint8Array, NonceExhausted> {
    if (this.#next > MAX_WRITE_COUNT) {
      return Result.fail(
        new NonceExhausted({
          message: `write_count for node_id16 ${this.nodeId16} epoch ${this.localEpoch} is exhausted`,
          nodeId16: this.nodeId16,
          localEpoch: this.localEpoch,
        }),
      )
    }
    const nonce = makeNonce(this.nodeId16, this.localEpoch, this.#next)
    this.#next += 1n
    return Result.succeed(nonce)
  }

  next(): Uint8Array {
    const r = this.tryNext()
    if (Result.isFailure(r)) throw r.failure
    return r.success
  }
}

export const makeNonceSequence = (p: {
  readonly nodeId16: number
  readonly localEpoch: number
  readonly start?: bigint
}): NonceSequence => new WriteCounter(p)
