// The leader's own raft envelopes, remembered from seal to apply (SPEC §2.5).
// A leader seals each user entry as it proposes it and opens it again when it
// applies it. Opening bytes it sealed itself, under the same key, can only
// give back the plaintext it sealed, so it keeps that plaintext until the
// entry applies and skips the second AES-GCM operation (a sixth of the
// leader's CPU per put in the raft-envelope phase, docs/performance.md).
// An envelope is taken from here only when every byte equals what was sealed
// and the node still holds the very key array that sealed it; anything else
// (another leader's entry at that index, a key dropped since) opens as before.

interface Sealed {
  readonly envelope: Uint8Array
  readonly plaintext: Uint8Array
  readonly dek: Uint8Array
}

/** Bytes 14..18 of an envelope: the low 32 bits of its nonce's write_count (header 6 ‖ nonce 12). */
const WRITE_COUNT_LOW_AT = 14

const countOf = (envelope: Uint8Array): number | undefined =>
  envelope.length < WRITE_COUNT_LOW_AT + 4
    ? undefined
    : ((envelope[WRITE_COUNT_LOW_AT]! << 24) |
        (envelope[WRITE_COUNT_LOW_AT + 1]! << 16) |
        (envelope[WRITE_COUNT_LOW_AT + 2]! << 8) |
        envelope[WRITE_COUNT_LOW_AT + 3]!) >>>
      0

// The entry a leader applies is usually the very array it appended (its log
// keeps it in memory): the same bytes without reading them. A copy (read back
// from disk, another leader's entry) is compared byte for byte.
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length &&
  ((a.buffer === b.buffer && a.byteOffset === b.byteOffset) ||
    Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length)))

export class OwnSeals {
  readonly #byCount = new Map<number, Sealed>()
  readonly #capacity: number

  /** `capacity`: entries kept at most; the oldest go first (proposals that never applied). */
  constructor(capacity = 8_192) {
    this.#capacity = capacity
  }

  get size(): number {
    return this.#byCount.size
  }

  /** Records an envelope this node just sealed under `dek`, and the plaintext inside. */
  remember(envelope: Uint8Array, plaintext: Uint8Array, dek: Uint8Array): void {
    const n = countOf(envelope)
    if (n === undefined) return
    this.#byCount.delete(n)
    this.#byCount.set(n, { envelope, plaintext, dek })
    if (this.#byCount.size > this.#capacity) {
      const oldest = this.#byCount.keys().next().value
      if (oldest !== undefined) this.#byCount.delete(oldest)
    }
  }

  /**
   * The plaintext of `envelope` if this node sealed exactly these bytes under
   * `dek` (the key it holds now for the envelope's key id), forgetting it;
   * otherwise undefined, and the caller opens the envelope.
   */
  take(envelope: Uint8Array, dek: Uint8Array | undefined): Uint8Array | undefined {
    // A follower never sealed anything: nothing to look up.
    if (this.#byCount.size === 0 || dek === undefined) return undefined
    const n = countOf(envelope)
    if (n === undefined) return undefined
    const s = this.#byCount.get(n)
    if (s === undefined || s.dek !== dek || !sameBytes(s.envelope, envelope)) return undefined
    this.#byCount.delete(n)
    return s.plaintext
  }
}
