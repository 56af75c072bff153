import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { Entry, Message } from "../../../src/raft/mod.ts"
import {
  decodeFrame,
  decodeMessage,
  encodeFrame,
  encodeMessage,
} from "../../../src/transport/raftMessageCodec.ts"

const id = fc.stringMatching(/^[a-z0-9-]{1,12}$/)
const idx = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
const small = fc.integer({ min: 0, max: 1_000_000 })
const ctx = fc.string({ maxLength: 40 })
const bytes = fc.uint8Array({ maxLength: 64 })

const entries = (prevIndex: number) =>
  fc
    .array(
      fc.tuple(fc.constantFrom("Normal", "Empty", "ConfChange"), bytes, fc.integer({ min: 0, max: 3 })),
      {
        maxLength: 6,
      },
    )
    .map((xs): Entry[] => {
      let term = 1
      return xs.map(([type, data, bump], k) => {
        term += bump
        return { index: prevIndex + 1 + k, term, type: type as Entry["type"], data }
      })
    })

const env = fc.record({ from: id, to: id, term: idx })

const message: fc.Arbitrary<Message> = fc.oneof(
  fc
    .record({
      e: env,
      t: fc.constantFrom("PreVote", "Vote"),
      lastIndex: idx,
      lastTerm: idx,
      force: fc.boolean(),
    })
    .map(({ e, t, ...r }) => ({ ...e, type: t as "PreVote" | "Vote", ...r })),
  fc
    .record({ e: env, t: fc.constantFrom("PreVoteResp", "VoteResp"), reject: fc.boolean() })
    .map(({ e, t, reject }) => ({ ...e, type: t as "PreVoteResp" | "VoteResp", reject })),
  fc.record({ e: env, prevIndex: small, prevTerm: small, commit: idx }).chain((r) =>
    entries(r.prevIndex).map((es) => ({
      ...r.e,
      type: "App" as const,
      prevIndex: r.prevIndex,
      prevTerm: 0,
      commit: r.commit,
      entries: es,
    })),
  ),
  fc
    .record({ e: env, index: idx, reject: fc.boolean(), hintIndex: idx, hintTerm: idx })
    .map(({ e, ...r }) => ({ ...e, type: "AppResp" as const, ...r })),
  fc
    .record({ e: env, commit: idx, ctx: fc.option(ctx, { nil: null }) })
    .map(({ e, ...r }) => ({ ...e, type: "Heartbeat" as const, ...r })),
  fc
    .record({ e: env, ctx: fc.option(ctx, { nil: null }) })
    .map(({ e, ...r }) => ({ ...e, type: "HeartbeatResp" as const, ...r })),
  fc
    .record({
      e: env,
      index: idx,
      term: idx,
      voters: fc.array(id, { maxLength: 5 }),
      learners: fc.array(id, { maxLength: 3 }),
      data: bytes,
    })
    .map(({ e, index, term, voters, learners, data }) => ({
      ...e,
      type: "Snap" as const,
      snapshot: { meta: { index, term, confState: { voters, learners } }, data },
    })),
  env.map((e) => ({ ...e, type: "TimeoutNow" as const })),
  fc.record({ e: env, ctx }).map(({ e, ctx }) => ({ ...e, type: "ReadIndex" as const, ctx })),
  fc
    .record({ e: env, ctx, index: idx })
    .map(({ e, ...r }) => ({ ...e, type: "ReadIndexResp" as const, ...r })),
)

describe("raft message codec", () => {
  it("round-trips every message type", () => {
    fc.assert(
      fc.property(message, (m) => {
        const r = decodeMessage(encodeMessage(m))
        expect(r.ok).toBe(true)
        if (r.ok) expect(r.value).toEqual(m)
      }),
      { numRuns: 2000 },
    )
  })

  it("round-trips frames of several messages", () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 8 }), (ms) => {
        const r = decodeFrame(encodeFrame(ms))
        expect(r.ok).toBe(true)
        if (r.ok) expect(r.value).toEqual(ms)
      }),
    )
  })

  it("rejects every truncation and any trailing byte", () => {
    fc.assert(
      fc.property(message, fc.nat(), fc.integer({ min: 0, max: 255 }), (m, cut, extra) => {
        const b = encodeMessage(m)
        const at = cut % b.length
        expect(decodeMessage(b.subarray(0, at)).ok).toBe(false)
        const longer = new Uint8Array(b.length + 1)
        longer.set(b)
        longer[b.length] = extra
        expect(decodeMessage(longer).ok).toBe(false)
        const f = encodeFrame([m])
        expect(decodeFrame(f.subarray(0, cut % f.length)).ok).toBe(false)
        const fl = new Uint8Array(f.length + 1)
        fl.set(f)
        expect(decodeFrame(fl).ok).toBe(false)
      }),
      { numRuns: 1000 },
    )
  })

  it("never throws on garbage", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const r1 = decodeMessage(b)
        const r2 = decodeFrame(b)
        expect(typeof r1.ok).toBe("boolean")
        expect(typeof r2.ok).toBe("boolean")
      }),
      { numRuns: 5000 },
    )
  })

  it("rejects appends whose entries are not contiguous after prevIndex", () => {
    const m: Message = {
      type: "App",
      from: "n1",
      to: "n2",
      term: 3,
      prevIndex: 5,
      prevTerm: 2,
      commit: 5,
      entries: [{ index: 7, term: 3, type: "Normal", data: new Uint8Array([1]) }],
    }
    const r = decodeMessage(encodeMessage(m))
    expect(r.ok).toBe(false)
  })

  it("rejects overlong varints, bad booleans and unknown types", () => {
    const m: Message = { type: "VoteResp", from: "a", to: "b", term: 1, reject: true }
    const b = encodeMessage(m)
    const badBool = b.slice()
    badBool[badBool.length - 1] = 2
    expect(decodeMessage(badBool).ok).toBe(false)
    const badType = b.slice()
    badType[0] = 99
    expect(decodeMessage(badType).ok).toBe(false)
    // term 1 encoded overlong as 0x81 0x00
    const overlong = Uint8Array.from([...b.subarray(0, 5), 0x81, 0x00, ...b.subarray(6)])
    expect(decodeMessage(overlong).ok).toBe(false)
  })
})
