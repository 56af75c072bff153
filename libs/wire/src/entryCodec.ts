// Binary codec of the state-machine entry payloads (SPEC.md §2.1). Byte 0 is
// the tag; the body is compact and canonical (one encoding per payload, so
// encode(decode(b)) = b for every accepted b):
//
//   varint   unsigned LEB128, at most 5 bytes (< 2^32), no overlong forms
//   str      varint length ‖ UTF-8 bytes          bytes  varint length ‖ bytes
//   u16/u32/u64  big-endian                       hexN   N/2 raw bytes of a lowercase hex id
//
//   0x00 kv op        op
//   0x01 kv batch     varint n (1..1000) ‖ n × op
//        op = 0x00 ‖ key str ‖ value bytes   (put)   |   0x01 ‖ key str   (delete)
//   0x02 cluster meta cluster_id hex32
//   0x03 registration dek_id u32 ‖ full_node_id u64 ‖ local_epoch u16 ‖ 0x00 | 0x01 ‖ session_id hex32
//   0x04 bootstrap    storage dek ‖ raft dek ‖ writers
//        dek = key_id u32 ‖ wrapped (61 bytes)      writers = varint n ‖ n × (full_node_id u64 ‖ local_epoch u16)
//   0x05 control      sub-kind u8 ‖ body
//        0x00 rotate-dek  purpose u8 (0x00 storage, 0x01 raft) ‖ dek ‖ writers
//        0x01 rewrap-deks next_kek_id hex16 ‖ varint n ‖ n × dek
//        0x02 retire-dek  key_id u32
//        0x03 enable-storage-envelope, 0x04 enable-raft-envelope: empty
//   0x06 raft envelope  the envelope bytes (CONTRACT.md §7), at least 34
//
// Decoding is on the apply hot path: KV payloads are checked by hand against
// the same limits as their schemas; the rare control payloads (0x02–0x05) are
// additionally checked with prebuilt `Schema.is` guards.
import { Data, Result, Schema } from "effect"
import { RejectionCode } from "./codes.ts"
import {
  type BatchWriter,
  BootstrapPayload,
  ClusterMetaPayload,
  type Control,
  ControlPayload,
  type EntryPayload,
  type KvOp,
  MIN_ENVELOPE_BYTES,
  type NewDek,
  RegistrationPayload,
  Tag,
} from "./entryPayload.ts"
import type { KeyId } from "./ids.ts"
import { MAX_BATCH_OPS, MAX_BATCH_VALUE_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, utf8Length } from "./kv.ts"
import { utf8Bytes } from "./utf8.ts"

/** The first byte is not a known tag (SPEC.md §2.2 `UnknownEntryTag`). */
export class UnknownEntryTag extends Data.TaggedError("UnknownEntryTag")<{
  readonly tag: number
  readonly message: string
}> {
  get code(): typeof RejectionCode.UnknownEntryTag {
    return RejectionCode.UnknownEntryTag
  }
}

/** The body does not decode or fails its schema (SPEC.md §2.2 `MalformedEntry`). */
export class MalformedEntry extends Data.TaggedError("MalformedEntry")<{
  readonly tag: number | undefined
  readonly message: string
}> {
  get code(): typeof RejectionCode.MalformedEntry {
    return RejectionCode.MalformedEntry
  }
}

export type EntryDecodeError = UnknownEntryTag | MalformedEntry

/** `encodeEntry` was handed a payload that fails its schema (a bug in the caller). */
export class InvalidEntryPayload extends Data.TaggedError("InvalidEntryPayload")<{
  readonly message: string
}> {}

export const WRAPPED_DEK_BYTES = 61
const OP_PUT = 0x00
const OP_DELETE = 0x01
const BANG = 0x21 // "!"

const ControlKindByte = {
  "rotate-dek": 0x00,
  "rewrap-deks": 0x01,
  "retire-dek": 0x02,
  "enable-storage-envelope": 0x03,
  "enable-raft-envelope": 0x04,
} as const satisfies Record<Control["kind"], number>

const PurposeByte = { storage: 0x00, raft: 0x01 } as const

const isRegistration = Schema.is(RegistrationPayload)
const isBootstrap = Schema.is(BootstrapPayload)
const isControl = Schema.is(ControlPayload)
const isClusterMeta = Schema.is(ClusterMetaPayload)

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

// ---------------------------------------------------------------- decoding

/** Internal signal: the bytes are malformed (caught at the top of decodeEntry). */
class Bad {
  readonly reason: string
  constructor(reason: string) {
    this.reason = reason
  }
}

class Reader {
  readonly bytes: Uint8Array
  readonly copy: boolean
  #view: DataView | undefined
  pos: number
  constructor(bytes: Uint8Array, pos: number, copy: boolean) {
    this.bytes = bytes
    this.copy = copy
    this.pos = pos
  }
  // Made on first use: a KV entry never needs one, and a DataView over a
  // small array moves it off V8's heap.
  get view(): DataView {
    this.#view ??= new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength)
    return this.#view
  }
  remaining(): number {
    return this.bytes.length - this.pos
  }
  need(n: number, what: string): void {
    if (this.bytes.length - this.pos < n) throw new Bad(`truncated ${what}`)
  }
  u8(what: string): number {
    this.need(1, what)
    return this.bytes[this.pos++] as number
  }
  u16(what: string): number {
    this.need(2, what)
    const v = this.view.getUint16(this.pos)
    this.pos += 2
    return v
  }
  u32(what: string): number {
    this.need(4, what)
    const v = this.view.getUint32(this.pos)
    this.pos += 4
    return v
  }
  u64(what: string): bigint {
    this.need(8, what)
    const v = this.view.getBigUint64(this.pos)
    this.pos += 8
    return v
  }
  varint(what: string): number {
    let result = 0
    for (let i = 0; i < 5; i++) {
      const b = this.u8(what)
      result += (b & 0x7f) * 2 ** (7 * i)
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) throw new Bad(`overlong varint in ${what}`)
        if (result > 0xffffffff) throw new Bad(`varint out of range in ${what}`)
        return result
      }
    }
    throw new Bad(`varint too long in ${what}`)
  }
  raw(n: number, what: string): Uint8Array {
    this.need(n, what)
    // A copy unless the caller says the payload dies with the buffer it was read from.
    const out = this.copy
      ? this.bytes.slice(this.pos, this.pos + n)
      : this.bytes.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }
  hex(nBytes: number, what: string): string {
    this.need(nBytes, what)
    let s = ""
    for (let i = 0; i < nBytes; i++) s += HEX[this.bytes[this.pos + i] as number]
    this.pos += nBytes
    return s
  }
  key(): string {
    const n = this.varint("key length")
    if (n === 0) throw new Bad("empty key")
    if (n > MAX_KEY_BYTES) throw new Bad(`key of ${n} bytes exceeds ${MAX_KEY_BYTES}`)
    this.need(n, "key")
    if (this.bytes[this.pos] === BANG) throw new Bad("key starts with '!' (reserved)")
    let s: string
    try {
      s = utf8Decoder.decode(this.bytes.subarray(this.pos, this.pos + n))
    } catch {
      throw new Bad("key is not valid UTF-8")
    }
    this.pos += n
    return s
  }
  kvOp(): KvOp {
    const op = this.u8("op")
    if (op === OP_PUT) {
      const key = this.key()
      const n = this.varint("value length")
      if (n > MAX_VALUE_BYTES) throw new Bad(`value of ${n} bytes exceeds ${MAX_VALUE_BYTES}`)
      return { op: "put", key, value: this.raw(n, "value") }
    }
    if (op === OP_DELETE) return { op: "delete", key: this.key() }
    throw new Bad(`unknown kv op 0x${op.toString(16)}`)
  }
  newDek(what: string): NewDek {
    const key_id = this.u32(`${what} key id`) as KeyId
    return { key_id, wrapped: this.raw(WRAPPED_DEK_BYTES, `${what} wrapped DEK`) }
  }
  writers(): BatchWriter[] {
    const n = this.varint("writer count")
    // Each writer is 10 bytes; refuse a count the bytes cannot hold before allocating.
    if (n * 10 > this.remaining()) throw new Bad("truncated writers")
    const out: BatchWriter[] = new Array(n)
    for (let i = 0; i < n; i++)
      out[i] = { full_node_id: this.u64("full_node_id"), local_epoch: this.u16("local_epoch") }
    return out
  }
  control(): Control {
    const kind = this.u8("control sub-kind")
    switch (kind) {
      case ControlKindByte["rotate-dek"]: {
        const p = this.u8("purpose")
        if (p !== PurposeByte.storage && p !== PurposeByte.raft)
          throw new Bad(`unknown purpose 0x${p.toString(16)}`)
        const dek = this.newDek("rotated")
        return {
          kind: "rotate-dek",
          purpose: p === PurposeByte.storage ? "storage" : "raft",
          dek,
          writers: this.writers(),
        }
      }
      case ControlKindByte["rewrap-deks"]: {
        const next_kek_id = this.hex(8, "next_kek_id")
        const n = this.varint("wrap count")
        if (n * (4 + WRAPPED_DEK_BYTES) > this.remaining()) throw new Bad("truncated wraps")
        const wraps: NewDek[] = new Array(n)
        for (let i = 0; i < n; i++) wraps[i] = this.newDek("rewrapped")
        return { kind: "rewrap-deks", next_kek_id, wraps }
      }
      case ControlKindByte["retire-dek"]:
        return { kind: "retire-dek", key_id: this.u32("key id") as KeyId }
      case ControlKindByte["enable-storage-envelope"]:
        return { kind: "enable-storage-envelope" }
      case ControlKindByte["enable-raft-envelope"]:
        return { kind: "enable-raft-envelope" }
      default:
        throw new Bad(`unknown control sub-kind 0x${kind.toString(16)}`)
    }
  }
}

const HEX: ReadonlyArray<string> = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

const decodeBody = (r: Reader, tag: Tag): EntryPayload => {
  switch (tag) {
    case Tag.KvOp:
      return { tag, op: r.kvOp() }
    case Tag.KvBatch: {
      const n = r.varint("op count")
      if (n === 0) throw new Bad("empty batch")
      if (n > MAX_BATCH_OPS) throw new Bad(`batch of ${n} ops exceeds ${MAX_BATCH_OPS}`)
      // Each op is at least 3 bytes (op, key length, one key byte).
      if (n * 3 > r.remaining()) throw new Bad("truncated batch")
      const ops: KvOp[] = new Array(n)
      let total = 0
      for (let i = 0; i < n; i++) {
        const op = r.kvOp()
        if (op.op === "put") {
          total += op.value.length
          if (total > MAX_BATCH_VALUE_BYTES)
            throw new Bad(`batch values exceed ${MAX_BATCH_VALUE_BYTES} bytes`)
        }
        ops[i] = op
      }
      return { tag, ops }
    }
    case Tag.ClusterMeta:
      return { tag, cluster_id: r.hex(16, "cluster_id") }
    case Tag.Registration: {
      const dek_id = r.u32("dek_id") as KeyId
      const full_node_id = r.u64("full_node_id")
      const local_epoch = r.u16("local_epoch")
      const has = r.u8("session flag")
      if (has === 0) return { tag, registration: { dek_id, full_node_id, local_epoch } }
      if (has !== 1) throw new Bad(`session flag 0x${has.toString(16)}`)
      return { tag, registration: { dek_id, full_node_id, local_epoch, session_id: r.hex(16, "session_id") } }
    }
    case Tag.Bootstrap: {
      const storage = r.newDek("storage")
      const raft = r.newDek("raft")
      return { tag, bootstrap: { storage, raft, writers: r.writers() } }
    }
    case Tag.Control:
      return { tag, control: r.control() }
    case Tag.RaftEnvelope: {
      const n = r.remaining()
      if (n < MIN_ENVELOPE_BYTES) throw new Bad(`raft envelope of ${n} bytes is below ${MIN_ENVELOPE_BYTES}`)
      return { tag, envelope: r.raw(n, "envelope") }
    }
  }
}

// The schema guard of each control-plane tag (KV tags are fully checked by the reader).
const guardOf = (p: EntryPayload): boolean => {
  switch (p.tag) {
    case Tag.ClusterMeta:
      return isClusterMeta(p)
    case Tag.Registration:
      return isRegistration(p)
    case Tag.Bootstrap:
      return isBootstrap(p)
    case Tag.Control:
      return isControl(p)
    default:
      return true
  }
}

const isTag = (b: number): b is Tag => b <= Tag.RaftEnvelope

/**
 * The payload in `bytes`, or the deterministic rejection (SPEC.md §2.2) every
 * replica records for it. Never throws. Byte fields of the result are copies.
 */
/**
 * Decodes an entry payload. Byte fields (values, envelopes, wrapped DEKs) are
 * copies unless `options.copy` is false: then they are views into `bytes`,
 * for a caller that is done with them before `bytes` changes or goes (apply).
 */
export const decodeEntry = (
  bytes: Uint8Array,
  options?: { readonly copy?: boolean },
): Result.Result<EntryPayload, EntryDecodeError> => {
  if (bytes.length === 0) return Result.fail(new MalformedEntry({ tag: undefined, message: "empty payload" }))
  const tag = bytes[0] as number
  if (!isTag(tag)) {
    return Result.fail(
      new UnknownEntryTag({ tag, message: `unknown entry tag 0x${tag.toString(16).padStart(2, "0")}` }),
    )
  }
  let payload: EntryPayload
  try {
    const r = new Reader(bytes, 1, options?.copy !== false)
    payload = decodeBody(r, tag)
    if (r.pos !== bytes.length) throw new Bad(`${bytes.length - r.pos} trailing bytes`)
  } catch (e) {
    if (e instanceof Bad) return Result.fail(new MalformedEntry({ tag, message: e.reason }))
    throw e
  }
  if (!guardOf(payload)) return Result.fail(new MalformedEntry({ tag, message: "payload fails its schema" }))
  return Result.succeed(payload)
}

// ---------------------------------------------------------------- encoding

class Writer {
  buf: Uint8Array
  #view: DataView | undefined
  pos = 0
  constructor(size: number) {
    this.buf = new Uint8Array(size)
  }
  // Made on first use (not by KV entries), as in Reader.
  get view(): DataView {
    this.#view ??= new DataView(this.buf.buffer)
    return this.#view
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n))
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
    this.#view = undefined
  }
  u8(v: number): void {
    this.ensure(1)
    this.buf[this.pos++] = v
  }
  u16(v: number): void {
    this.ensure(2)
    this.view.setUint16(this.pos, v)
    this.pos += 2
  }
  u32(v: number): void {
    this.ensure(4)
    this.view.setUint32(this.pos, v)
    this.pos += 4
  }
  u64(v: bigint): void {
    this.ensure(8)
    this.view.setBigUint64(this.pos, v)
    this.pos += 8
  }
  varint(v: number): void {
    this.ensure(5)
    let n = v
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80
      n = Math.floor(n / 128)
    }
    this.buf[this.pos++] = n
  }
  raw(b: Uint8Array): void {
    this.ensure(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
  }
  bytes(b: Uint8Array): void {
    this.varint(b.length)
    this.raw(b)
  }
  hex(s: string): void {
    this.ensure(s.length / 2)
    for (let i = 0; i < s.length; i += 2) this.buf[this.pos++] = Number.parseInt(s.slice(i, i + 2), 16)
  }
  kvOp(op: KvOp, key: Uint8Array = utf8Bytes(op.key)): void {
    this.u8(op.op === "put" ? OP_PUT : OP_DELETE)
    this.bytes(key)
    if (op.op === "put") this.bytes(op.value)
  }
  newDek(d: NewDek): void {
    this.u32(d.key_id)
    this.raw(d.wrapped)
  }
  writers(ws: ReadonlyArray<BatchWriter>): void {
    this.varint(ws.length)
    for (const w of ws) {
      this.u64(w.full_node_id)
      this.u16(w.local_epoch)
    }
  }
  done(): Uint8Array {
    return this.pos === this.buf.length ? this.buf : this.buf.slice(0, this.pos)
  }
}

const varintLength = (n: number): number =>
  n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x20_0000 ? 3 : n < 0x1000_0000 ? 4 : 5

const kvSize = (op: KvOp): number => 1 + 5 + op.key.length * 3 + (op.op === "put" ? 5 + op.value.length : 0)

/**
 * The bytes of `p`. The payload must satisfy `EntryPayload` (KV limits,
 * ranges): what `encodeEntry` accepts, `decodeEntry` returns unchanged.
 * Throws `InvalidEntryPayload` otherwise (a caller bug: requests are
 * validated before they become payloads).
 */
export const encodeEntry = (p: EntryPayload): Uint8Array => {
  const problem = encodeCheck(p)
  if (problem !== undefined)
    throw new InvalidEntryPayload({ message: `cannot encode entry 0x0${p.tag}: ${problem}` })
  switch (p.tag) {
    case Tag.KvOp: {
      // Sized exactly, so the buffer is the entry (no trimming copy).
      const key = utf8Bytes(p.op.key)
      const size =
        2 +
        varintLength(key.length) +
        key.length +
        (p.op.op === "put" ? varintLength(p.op.value.length) + p.op.value.length : 0)
      const w = new Writer(size)
      w.u8(p.tag)
      w.kvOp(p.op, key)
      return w.done()
    }
    case Tag.KvBatch: {
      let size = 6
      for (const op of p.ops) size += kvSize(op)
      const w = new Writer(size)
      w.u8(p.tag)
      w.varint(p.ops.length)
      for (const op of p.ops) w.kvOp(op)
      return w.done()
    }
    case Tag.ClusterMeta: {
      const w = new Writer(17)
      w.u8(p.tag)
      w.hex(p.cluster_id)
      return w.done()
    }
    case Tag.Registration: {
      const g = p.registration
      const w = new Writer(32)
      w.u8(p.tag)
      w.u32(g.dek_id)
      w.u64(g.full_node_id)
      w.u16(g.local_epoch)
      if (g.session_id === undefined) w.u8(0)
      else {
        w.u8(1)
        w.hex(g.session_id)
      }
      return w.done()
    }
    case Tag.Bootstrap: {
      const b = p.bootstrap
      const w = new Writer(1 + 2 * (4 + WRAPPED_DEK_BYTES) + 5 + 10 * b.writers.length)
      w.u8(p.tag)
      w.newDek(b.storage)
      w.newDek(b.raft)
      w.writers(b.writers)
      return w.done()
    }
    case Tag.Control: {
      const c = p.control
      const w = new Writer(64)
      w.u8(p.tag)
      w.u8(ControlKindByte[c.kind])
      switch (c.kind) {
        case "rotate-dek":
          w.u8(PurposeByte[c.purpose])
          w.newDek(c.dek)
          w.writers(c.writers)
          break
        case "rewrap-deks":
          w.hex(c.next_kek_id)
          w.varint(c.wraps.length)
          for (const d of c.wraps) w.newDek(d)
          break
        case "retire-dek":
          w.u32(c.key_id)
          break
        case "enable-storage-envelope":
        case "enable-raft-envelope":
          break
      }
      return w.done()
    }
    case Tag.RaftEnvelope: {
      const w = new Writer(1 + p.envelope.length)
      w.u8(p.tag)
      w.raw(p.envelope)
      return w.done()
    }
  }
}

/** Bytes before the envelope in a 0x06 payload: the tag. */
export const RAFT_ENVELOPE_ENTRY_HEADROOM = 1

/**
 * The 0x06 payload of an envelope sealed in place after
 * RAFT_ENVELOPE_ENTRY_HEADROOM free bytes (the same bytes `encodeEntry`
 * gives, without copying the envelope): writes the tag and returns `bytes`.
 */
export const raftEnvelopeEntryInPlace = (bytes: Uint8Array): Uint8Array => {
  const n = bytes.length - RAFT_ENVELOPE_ENTRY_HEADROOM
  if (n < MIN_ENVELOPE_BYTES)
    throw new InvalidEntryPayload({ message: `cannot encode entry 0x06: envelope of ${n} bytes` })
  bytes[0] = Tag.RaftEnvelope
  return bytes
}

const encodeCheck = (p: EntryPayload): string | undefined => {
  switch (p.tag) {
    case Tag.KvOp:
      return kvOpProblem(p.op)
    case Tag.KvBatch: {
      if (p.ops.length === 0 || p.ops.length > MAX_BATCH_OPS) return `batch of ${p.ops.length} ops`
      let total = 0
      for (const op of p.ops) {
        const e = kvOpProblem(op)
        if (e !== undefined) return e
        if (op.op === "put") total += op.value.length
      }
      return total > MAX_BATCH_VALUE_BYTES ? `batch values total ${total} bytes` : undefined
    }
    case Tag.RaftEnvelope:
      return p.envelope.length < MIN_ENVELOPE_BYTES ? `envelope of ${p.envelope.length} bytes` : undefined
    default:
      return guardOf(p) ? undefined : "payload fails its schema"
  }
}

const kvOpProblem = (op: KvOp): string | undefined => {
  if (op.key.length === 0) return "empty key"
  if (op.key.charCodeAt(0) === BANG) return "key starts with '!'"
  if (!op.key.isWellFormed()) return "key is not well-formed Unicode"
  if (op.key.length * 3 > MAX_KEY_BYTES && utf8Length(op.key) > MAX_KEY_BYTES) return "key too long"
  if (op.op === "put" && op.value.length > MAX_VALUE_BYTES) return "value too large"
  return undefined
}
