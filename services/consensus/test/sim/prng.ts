// A small seeded PRNG (mulberry32) so every run of a seed makes the same decisions.

export class Prng {
  private s: number

  constructor(seed: number) {
    this.s = seed >>> 0
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0
    let t = this.s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n)
  }

  chance(p: number): boolean {
    return this.next() < p
  }

  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error("pick from empty")
    return xs[this.int(xs.length)]!
  }

  /** An independent stream derived from this one. */
  fork(): Prng {
    return new Prng(Math.imul(this.int(0x7fffffff) ^ 0x9e3779b9, 0x85ebca6b))
  }
}
