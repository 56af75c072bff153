// A naive in-memory model of the MVCC store: every version kept, reads by
// brute force. The LevelDB store must answer every read at or above its GC
// horizon exactly like this.
import { compareBytes } from "../../../src/stateMachine/versionKey.ts"

const utf8 = new TextEncoder()

export interface ModelVersion {
  readonly index: number
  /** Stored bytes (header ‖ payload); a tombstone is [0x01]. */
  readonly stored: Uint8Array
}

export interface ModelItem {
  readonly key: string
  readonly version: number
  readonly stored: Uint8Array
}

export class Model {
  readonly versions = new Map<string, ModelVersion[]>()
  readonly meta = new Map<string, Uint8Array>()
  readonly rejections = new Map<number, { code: string; reason: string }>()
  applied = 0

  write(key: string, index: number, stored: Uint8Array): void {
    const list = this.versions.get(key) ?? []
    const same = list.findIndex((v) => v.index === index)
    if (same >= 0) list[same] = { index, stored }
    else list.push({ index, stored })
    list.sort((a, b) => b.index - a.index)
    this.versions.set(key, list)
  }

  get(key: string, at: number = Number.MAX_SAFE_INTEGER): ModelItem | undefined {
    const v = (this.versions.get(key) ?? []).find((x) => x.index <= at)
    if (v === undefined || v.stored[0] === 0x01) return undefined
    return { key, version: v.index, stored: v.stored }
  }

  /** Every visible item in CONTRACT §2 order (filtering by prefix / after). */
  visible(opts: { prefix?: string; after?: string; at?: number }): ModelItem[] {
    const keys = [...this.versions.keys()]
      .filter((k) => opts.prefix === undefined || startsWith(utf8.encode(k), utf8.encode(opts.prefix)))
      .filter((k) => opts.after === undefined || compareBytes(utf8.encode(k), utf8.encode(opts.after)) > 0)
      .sort((a, b) => compareBytes(utf8.encode(a), utf8.encode(b)))
    const out: ModelItem[] = []
    for (const k of keys) {
      const item = this.get(k, opts.at)
      if (item !== undefined) out.push(item)
    }
    return out
  }

  /** The versions a complete GC pass at horizon h leaves (SPEC §2.4). */
  retainedAfterGc(h: number): Array<{ key: string; index: number }> {
    const out: Array<{ key: string; index: number }> = []
    for (const [key, list] of this.versions) {
      let newestSeen = false
      for (const v of list) {
        if (v.index > h) out.push({ key, index: v.index })
        else if (!newestSeen) {
          newestSeen = true
          if (v.stored[0] !== 0x01) out.push({ key, index: v.index })
        }
      }
    }
    return out
  }

  /** Drops what a complete GC pass at h deletes (keeps the model's version lists equal to the store's). */
  collect(h: number): void {
    const keep = new Set(this.retainedAfterGc(h).map((r) => `${r.key}\u0000${r.index}`))
    for (const [key, list] of this.versions) {
      const rest = list.filter((v) => keep.has(`${key}\u0000${v.index}`))
      if (rest.length === 0) this.versions.delete(key)
      else this.versions.set(key, rest)
    }
  }
}

const startsWith = (b: Uint8Array, p: Uint8Array): boolean => {
  if (b.length < p.length) return false
  for (let i = 0; i < p.length; i++) if (b[i] !== p[i]) return false
  return true
}
