// The stored verdict of a rejected entry (SPEC §2.2): code and reason, so the
// proposer can be answered and status can report it.
//
//   u8 code length ‖ code (ASCII) ‖ reason (UTF-8, rest of the value)
import { CorruptRecord, InvalidArgument } from "./errors.ts"

export interface Rejection {
  readonly code: string
  readonly reason: string
}

const CODE = /^[A-Za-z0-9_]{1,255}$/
const utf8 = new TextEncoder()
const utf8Decoder = new TextDecoder("utf-8", { fatal: true })

export const encodeRejection = (r: Rejection): Uint8Array => {
  if (!CODE.test(r.code)) throw new InvalidArgument({ message: `rejection code must match ${CODE}` })
  const reason = utf8.encode(r.reason)
  const out = new Uint8Array(1 + r.code.length + reason.length)
  out[0] = r.code.length
  out.set(utf8.encode(r.code), 1)
  out.set(reason, 1 + r.code.length)
  return out
}

export const decodeRejection = (bytes: Uint8Array): Rejection => {
  const n = bytes[0]
  if (n === undefined || n === 0 || bytes.length < 1 + n) {
    throw new CorruptRecord({ message: "rejection record truncated" })
  }
  try {
    const code = utf8Decoder.decode(bytes.subarray(1, 1 + n))
    if (!CODE.test(code)) throw new Error("bad code")
    return { code, reason: utf8Decoder.decode(bytes.subarray(1 + n)) }
  } catch {
    throw new CorruptRecord({ message: "rejection record is malformed" })
  }
}
