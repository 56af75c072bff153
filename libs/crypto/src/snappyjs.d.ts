// snappyjs 0.7.0 ships no types; only the two functions ekv uses.
declare module "snappyjs" {
  export function compress(uncompressed: Uint8Array): Uint8Array
  export function uncompress(compressed: Uint8Array, maxLength?: number): Uint8Array
}
