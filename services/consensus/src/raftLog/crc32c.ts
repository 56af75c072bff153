// CRC32C (Castagnoli, reflected polynomial 0x82f63b78), the checksum of
// LevelDB's table blocks and log records, and LevelDB's masking of stored CRCs
// (a CRC of data that itself holds CRCs would otherwise be weak).
// Table-driven, eight bytes per step ("slicing by 8").

const POLY = 0x82f63b78
const MASK_DELTA = 0xa282ead8

const TABLE = (() => {
  const t = new Uint32Array(8 * 256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1
    t[i] = c >>> 0
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 8; s++) {
      const prev = t[(s - 1) * 256 + i]!
      t[s * 256 + i] = (prev >>> 8) ^ t[prev & 0xff]!
    }
  }
  return t
})()

/** CRC32C of `bytes`, extending `crc` (the CRC of the bytes before them; 0 to start). */
export const crc32c = (bytes: Uint8Array, crc = 0): number => {
  const t = TABLE
  let c = ~crc
  let i = 0
  const n = bytes.length
  for (; n - i >= 8; i += 8) {
    const a = c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))
    c =
      t[7 * 256 + (a & 0xff)]! ^
      t[6 * 256 + ((a >>> 8) & 0xff)]! ^
      t[5 * 256 + ((a >>> 16) & 0xff)]! ^
      t[4 * 256 + (a >>> 24)]! ^
      t[3 * 256 + bytes[i + 4]!]! ^
      t[2 * 256 + bytes[i + 5]!]! ^
      t[256 + bytes[i + 6]!]! ^
      t[bytes[i + 7]!]!
  }
  for (; i < n; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8)
  return ~c >>> 0
}

/** LevelDB's `crc32c::Mask`: rotate right by 15 and add a constant. */
export const maskCrc = (crc: number): number => ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0

export const unmaskCrc = (masked: number): number => {
  const rot = (masked - MASK_DELTA) >>> 0
  return ((rot >>> 17) | (rot << 15)) >>> 0
}
