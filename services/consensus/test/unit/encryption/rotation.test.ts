// The leader's automatic rotation decision (SPEC §4.3, §5): a purpose rotates
// once any member's registered epoch for its active DEK passes 0xFF00.
import { describe, expect, it } from "vitest"
import { type EncState, emptyEncState } from "../../../src/encryption/encryptionState.ts"
import { EPOCH_ROTATE_ABOVE, rotationsDue } from "../../../src/encryption/rotation.ts"

const st: EncState = {
  ...emptyEncState,
  storageEnvelopeActive: true,
  active: { storage: 11, raft: 22 },
  keys: {
    "5": { purpose: "storage", retired: false },
    "11": { purpose: "storage", retired: false },
    "22": { purpose: "raft", retired: false },
  },
}
const row = (dek_id: number, last_seen_local_epoch: number) => ({ dek_id, last_seen_local_epoch })

describe("rotationsDue", () => {
  it("nothing before bootstrap, whatever the rows say", () => {
    expect(rotationsDue(emptyEncState, [row(11, 0xffff)], new Set())).toEqual([])
  })

  it("nothing at or below 0xFF00", () => {
    expect(rotationsDue(st, [row(11, EPOCH_ROTATE_ABOVE), row(22, 3)], new Set())).toEqual([])
  })

  it("the purpose of the active DEK whose epoch passed 0xFF00, for any member", () => {
    expect(rotationsDue(st, [row(11, 2), row(11, EPOCH_ROTATE_ABOVE + 1), row(22, 1)], new Set())).toEqual([
      "storage",
    ])
    expect(rotationsDue(st, [row(22, 0xffff)], new Set())).toEqual(["raft"])
    expect(rotationsDue(st, [row(11, 0xff01), row(22, 0xff02)], new Set())).toEqual(["storage", "raft"])
  })

  it("an old (non-active) DEK past 0xFF00 does not rotate anything", () => {
    expect(rotationsDue(st, [row(5, 0xfffe)], new Set())).toEqual([])
  })

  it("once per active key id: a rotation already proposed for it is not proposed again", () => {
    expect(rotationsDue(st, [row(11, 0xff01)], new Set([11]))).toEqual([])
    // After the rotation applied, the new active key starts low: nothing due.
    const rotated = { ...st, active: { ...st.active, storage: 33 } }
    expect(rotationsDue(rotated, [row(11, 0xff01), row(33, 0)], new Set([11]))).toEqual([])
  })
})
