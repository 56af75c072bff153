// Compact binary encoding of every Raft core Message (transport between
// consensus processes). Decoding validates everything and never throws: a
// garbled or truncated frame is dropped by the transport (and counted).
//
//   frame   = version u8 (1) ‖ count varint ‖ count × (length varint ‖ message)
//   message = type u8 ‖ from str ‖ to str ‖ term varint ‖ body (per type)
//   varint  = unsigned LEB128 of a safe integer (≤ 2^53 − 1), at most 8 bytes, no overlong form
//   str     = varint length ‖ UTF-8          bytes = varint length ‖ raw
//   entry   = index varint ‖ term varint ‖ type u8 (0 Normal, 1 Empty, 2 ConfChange) ‖ data bytes

import { utf8Bytes } from "@ekv/wire"
import type { ConfState, Entry, EntryType, Message, MessageType } from "../raft/mod.ts"

const VERSION = 1
const MAX_ID_BYTES = 256

const TYPE_CODES: Readonly<Record<MessageType, number>> = {
  PreVote: 1,
  Vote: 2,
  PreVoteResp: 3,
  VoteResp: 4,
  App: 5,
  AppResp: 6,
  Heartbeat: 7,
  HeartbeatResp: 8,
  Snap: 9,
  TimeoutNow: 10,
  ReadIndex: 11,
  ReadIndexResp: 12,
}
const TYPES_BY_CODE = new Map<number, MessageType>(
  Object.entries(TYPE_CODES).map(([t, c]) => [c, t as MessageType]),
)
const ENTRY_TYPES: readonly EntryType[] = ["Normal", "Empty", "ConfChange"]

const utf8Decoder = new TextDecoder("utf-8", { fatal: true })

export type DecodeResult<A> =
  | { readonly ok: true; readonly value: A }
  | { readonly ok: false; readonly reason: string }

// ---------------------------------------------------------------- writing

class Writer {
  private buf: Uint8Array
  private pos = 0
  /** `size`: the expected length, so a message full of entries is not regrown step by step. */
  constructor(size = 256) {
    this.buf = new Uint8Array(size)
  }
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.pos + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.buf.subarray(0, this.pos))
    this.buf = next
  }
  u8(v: number): void {
    this.ensure(1)
    this.buf[this.pos++] = v
  }
  varint(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`varint out of range: ${n}`)
    this.ensure(8)
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80
      n = Math.floor(n / 0x80)
    }
    this.buf[this.pos++] = n
  }
  bytes(b: Uint8Array): void {
    this.varint(b.length)
    this.ensure(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
  }
  str(s: string): void {
    this.bytes(utf8Bytes(s))
  }
  bool(b: boolean): void {
    this.u8(b ? 1 : 0)
  }
  optStr(s: string | null): void {
    if (s === null) this.u8(0)
    else {
      this.u8(1)
      this.str(s)
    }
  }
  strList(l: readonly string[]): void {
    this.varint(l.length)
    for (const s of l) this.str(s)
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.pos)
  }
}

const writeEntry = (w: Writer, e: Entry): void => {
  w.varint(e.index)
  w.varint(e.term)
  w.u8(ENTRY_TYPES.indexOf(e.type))
  w.bytes(e.data)
}

const writeConf = (w: Writer, c: ConfState): void => {
  w.strList(c.voters)
  w.strList(c.learners)
}

const writeMessage = (w: Writer, m: Message): void => {
  w.u8(TYPE_CODES[m.type])
  w.str(m.from)
  w.str(m.to)
  w.varint(m.term)
  switch (m.type) {
    case "PreVote":
    case "Vote":
      w.varint(m.lastIndex)
      w.varint(m.lastTerm)
      w.bool(m.force)
      return
    case "PreVoteResp":
    case "VoteResp":
      w.bool(m.reject)
      return
    case "App":
      w.varint(m.prevIndex)
      w.varint(m.prevTerm)
      w.varint(m.commit)
      w.varint(m.entries.length)
      for (const e of m.entries) writeEntry(w, e)
      return
    case "AppResp":
      w.varint(m.index)
      w.bool(m.reject)
      w.varint(m.hintIndex)
      w.varint(m.hintTerm)
      return
    case "Heartbeat":
      w.varint(m.commit)
      w.optStr(m.ctx)
      return
    case "HeartbeatResp":
      w.optStr(m.ctx)
      return
    case "Snap":
      w.varint(m.snapshot.meta.index)
      w.varint(m.snapshot.meta.term)
      writeConf(w, m.snapshot.meta.confState)
      w.bytes(m.snapshot.data)
      return
    case "TimeoutNow":
      return
    case "ReadIndex":
      w.str(m.ctx)
      return
    case "ReadIndexResp":
      w.str(m.ctx)
      w.varint(m.index)
      return
  }
}

/** One message, without the frame. */
export const encodeMessage = (m: Message): Uint8Array => {
  let size = 256
  if ("entries" in m) for (const e of m.entries) size += e.data.length + 24
  const w = new Writer(size)
  writeMessage(w, m)
  return w.done()
}

/** A frame of messages (all for one destination, sent as one NATS message). */
export const encodeFrame = (msgs: readonly Message[]): Uint8Array => encodeFrameOf(msgs.map(encodeMessage))

/** A frame of already encoded messages. */
export const encodeFrameOf = (bodies: readonly Uint8Array[]): Uint8Array => {
  let size = 16
  for (const b of bodies) size += b.length + 8
  const w = new Writer(size)
  w.u8(VERSION)
  w.varint(bodies.length)
  for (const b of bodies) w.bytes(b)
  return w.done()
}

// ---------------------------------------------------------------- reading

class Bad {
  readonly reason: string
  constructor(reason: string) {
    this.reason = reason
  }
}

class Reader {
  private readonly b: Uint8Array
  pos = 0
  constructor(b: Uint8Array) {
    this.b = b
  }
  get remaining(): number {
    return this.b.length - this.pos
  }
  u8(what: string): number {
    const v = this.b[this.pos]
    if (v === undefined) throw new Bad(`truncated ${what}`)
    this.pos++
    return v
  }
  varint(what: string): number {
    let n = 0
    let mul = 1
    for (let i = 0; i < 8; i++) {
      const byte = this.u8(what)
      n += (byte & 0x7f) * mul
      if ((byte & 0x80) === 0) {
        if (i > 0 && byte === 0) throw new Bad(`overlong ${what}`)
        if (!Number.isSafeInteger(n)) throw new Bad(`${what} out of range`)
        return n
      }
      mul *= 0x80
    }
    throw new Bad(`${what} too long`)
  }
  /** `n` bytes: a copy (what outlives the frame), or a view for what is parsed and dropped at once. */
  raw(n: number, what: string, copy = true): Uint8Array {
    if (this.remaining < n) throw new Bad(`truncated ${what}`)
    const out = copy ? this.b.slice(this.pos, this.pos + n) : this.b.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }
  bytes(what: string, copy = true): Uint8Array {
    return this.raw(this.varint(`${what} length`), what, copy)
  }
  str(what: string, max = Number.POSITIVE_INFINITY): string {
    const len = this.varint(`${what} length`)
    if (len > max) throw new Bad(`${what} too long`)
    try {
      return utf8Decoder.decode(this.raw(len, what))
    } catch (e) {
      if (e instanceof Bad) throw e
      throw new Bad(`${what} is not UTF-8`)
    }
  }
  id(what: string): string {
    const s = this.str(what, MAX_ID_BYTES)
    if (s.length === 0) throw new Bad(`empty ${what}`)
    return s
  }
  bool(what: string): boolean {
    const v = this.u8(what)
    if (v > 1) throw new Bad(`${what} is not a boolean`)
    return v === 1
  }
  optStr(what: string): string | null {
    return this.bool(`${what} presence`) ? this.str(what) : null
  }
  idList(what: string): string[] {
    const n = this.varint(`${what} count`)
    if (n > this.remaining) throw new Bad(`truncated ${what}`)
    const out: string[] = []
    for (let i = 0; i < n; i++) out.push(this.id(what))
    return out
  }
  end(what: string): void {
    if (this.remaining !== 0) throw new Bad(`${this.remaining} trailing bytes after ${what}`)
  }
}

const readEntry = (r: Reader): Entry => {
  const index = r.varint("entry index")
  const term = r.varint("entry term")
  const type = ENTRY_TYPES[r.u8("entry type")]
  if (type === undefined) throw new Bad("unknown entry type")
  const data = r.bytes("entry data")
  return { index, term, type, data }
}

const readMessage = (r: Reader): Message => {
  const type = TYPES_BY_CODE.get(r.u8("message type"))
  if (type === undefined) throw new Bad("unknown message type")
  const from = r.id("from")
  const to = r.id("to")
  const term = r.varint("term")
  const env = { from, to, term }
  switch (type) {
    case "PreVote":
    case "Vote":
      return {
        ...env,
        type,
        lastIndex: r.varint("lastIndex"),
        lastTerm: r.varint("lastTerm"),
        force: r.bool("force"),
      }
    case "PreVoteResp":
    case "VoteResp":
      return { ...env, type, reject: r.bool("reject") }
    case "App": {
      const prevIndex = r.varint("prevIndex")
      const prevTerm = r.varint("prevTerm")
      const commit = r.varint("commit")
      const n = r.varint("entry count")
      if (n > r.remaining) throw new Bad("truncated entries")
      const entries: Entry[] = []
      let lastTerm = prevTerm
      for (let i = 0; i < n; i++) {
        const e = readEntry(r)
        if (e.index !== prevIndex + 1 + i) throw new Bad("entries are not contiguous after prevIndex")
        if (e.term < lastTerm) throw new Bad("entry terms decrease")
        lastTerm = e.term
        entries.push(e)
      }
      return { ...env, type, prevIndex, prevTerm, commit, entries }
    }
    case "AppResp":
      return {
        ...env,
        type,
        index: r.varint("index"),
        reject: r.bool("reject"),
        hintIndex: r.varint("hintIndex"),
        hintTerm: r.varint("hintTerm"),
      }
    case "Heartbeat":
      return { ...env, type, commit: r.varint("commit"), ctx: r.optStr("ctx") }
    case "HeartbeatResp":
      return { ...env, type, ctx: r.optStr("ctx") }
    case "Snap": {
      const index = r.varint("snapshot index")
      const sterm = r.varint("snapshot term")
      const voters = r.idList("voters")
      const learners = r.idList("learners")
      const data = r.bytes("snapshot data")
      return {
        ...env,
        type,
        snapshot: { meta: { index, term: sterm, confState: { voters, learners } }, data },
      }
    }
    case "TimeoutNow":
      return { ...env, type }
    case "ReadIndex":
      return { ...env, type, ctx: r.str("ctx") }
    case "ReadIndexResp":
      return { ...env, type, ctx: r.str("ctx"), index: r.varint("index") }
  }
}

const attempt = <A>(f: () => A): DecodeResult<A> => {
  try {
    return { ok: true, value: f() }
  } catch (e) {
    if (e instanceof Bad) return { ok: false, reason: e.reason }
    return { ok: false, reason: `undecodable: ${e instanceof Error ? e.message : String(e)}` }
  }
}

export const decodeMessage = (bytes: Uint8Array): DecodeResult<Message> =>
  attempt(() => {
    const r = new Reader(bytes)
    const m = readMessage(r)
    r.end("message")
    return m
  })

export const decodeFrame = (bytes: Uint8Array): DecodeResult<Message[]> =>
  attempt(() => {
    const r = new Reader(bytes)
    const v = r.u8("version")
    if (v !== VERSION) throw new Bad(`unsupported frame version ${v}`)
    const n = r.varint("message count")
    if (n > r.remaining) throw new Bad("truncated frame")
    const out: Message[] = []
    for (let i = 0; i < n; i++) {
      // A view: the message is decoded here and only its entries' data (copied) outlive the frame.
      const body = r.bytes("message", false)
      const inner = new Reader(body)
      out.push(readMessage(inner))
      inner.end("message")
    }
    r.end("frame")
    return out
  })
