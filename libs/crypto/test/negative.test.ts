import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import {
  IntegrityError,
  openRaft,
  openStorage,
  Truncated,
  UnsupportedVersion,
  unwrapDek,
} from "../src/mod.ts"
import { hex, loadVectors } from "./vectors.ts"

const file = loadVectors("negative.json")
const classes = { IntegrityError, Truncated, UnsupportedVersion } as const

describe("negative.json (CONTRACT §7)", () => {
  it("has vectors", () => {
    expect(file.vectors.length).toBeGreaterThan(0)
  })

  for (const v of file.vectors) {
    it(`${v.name}: ${v.expected_error} (${v.reason})`, () => {
      const expected = classes[v.expected_error as keyof typeof classes]
      expect(expected).toBeDefined()
      let r: Result.Result<unknown, { _tag: string }>
      if (v.kind === "envelope") {
        const envelope = hex(v.envelope_hex)
        expect(envelope.length).toBe(v.envelope_len)
        // the DEK given, whatever key id the header names (see vectors/README.md)
        const dek = hex(v.dek_hex)
        r =
          v.open_as === "storage"
            ? openStorage(envelope, () => dek, hex(v.location_hex))
            : v.open_as === "raft"
              ? openRaft(envelope, () => dek)
              : Result.fail({ _tag: `unknown open_as ${v.open_as}` })
      } else if (v.kind === "dek_wrap") {
        const wrapped = hex(v.wrapped_hex)
        expect(wrapped.length).toBe(v.wrapped_len)
        r = unwrapDek({ kek: hex(v.kek_hex), wrapped, purpose: v.purpose, keyId: v.key_id })
      } else {
        r = Result.fail({ _tag: `unknown kind ${v.kind}` })
      }
      expect(Result.isFailure(r)).toBe(true)
      if (Result.isSuccess(r)) return
      expect(r.failure._tag).toBe(v.expected_error)
      expect(r.failure).toBeInstanceOf(expected)
      expect(r.failure).toBeInstanceOf(Error)
      expect(r.failure).not.toHaveProperty("plaintext")
      expect(r).not.toHaveProperty("success")
    })
  }
})
