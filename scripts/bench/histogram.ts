// A log-linear latency histogram in whole microseconds, HDR style: exact below
// 2048 µs, then 1024 sub-buckets per power of two (under 0.1% error), so
// worker processes can send theirs to the coordinator and it can merge them.

const SUB_BITS = 10
const SUB = 1 << SUB_BITS // 1024
const EXACT = 2 * SUB // values below this have their own bucket

const bitLength = (v: number): number => 32 - Math.clz32(v)

/** The bucket of a latency in µs (values above 2^31 µs are clamped). */
export const bucketOf = (micros: number): number => {
  const v = Math.min(Math.max(0, Math.round(micros)), 0x7fffffff)
  if (v < EXACT) return v
  const shift = bitLength(v) - (SUB_BITS + 1)
  return (shift + 1) * SUB + ((v >>> shift) - SUB)
}

/** The middle of a bucket's range, in µs. */
export const bucketValue = (bucket: number): number => {
  if (bucket < EXACT) return bucket
  const shift = Math.floor(bucket / SUB) - 1
  const low = ((bucket % SUB) + SUB) * 2 ** shift
  return low + (2 ** shift - 1) / 2
}

/** Sparse counts: [bucket, count] pairs in ascending bucket order. */
export type HistogramData = ReadonlyArray<readonly [number, number]>

export class Histogram {
  private readonly counts = new Map<number, number>()
  total = 0
  max = 0

  record(micros: number): void {
    const b = bucketOf(micros)
    this.counts.set(b, (this.counts.get(b) ?? 0) + 1)
    this.total++
    if (micros > this.max) this.max = micros
  }

  merge(data: HistogramData, max: number): void {
    for (const [b, n] of data) {
      this.counts.set(b, (this.counts.get(b) ?? 0) + n)
      this.total += n
    }
    if (max > this.max) this.max = max
  }

  data(): HistogramData {
    return [...this.counts.entries()].sort((a, b) => a[0] - b[0])
  }

  /** The latency (µs) at quantile q in [0, 1]; NaN when empty. */
  quantile(q: number): number {
    if (this.total === 0) return Number.NaN
    const rank = Math.max(1, Math.ceil(q * this.total))
    let seen = 0
    for (const [b, n] of this.data()) {
      seen += n
      if (seen >= rank) return Math.min(bucketValue(b), this.max)
    }
    return this.max
  }
}
