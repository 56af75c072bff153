/*
 * Raw Snappy compression for ekv's storage envelope (CONTRACT §7, flag bit 0),
 * byte for byte the compressor of libs/crypto/src/snappy.ts: Snappy's
 * reference compressFragment in the variant snappyjs implements (the probe
 * step grows by one every 32 misses), 64 KiB fragments, and the same early
 * give-up once the output cannot come in under a limit. Every stored value is
 * offered to it and most values of a benchmark (random bytes) do not
 * compress, so its cost is the scan: ~1.5 us for 256 B in JS, a fraction of
 * that here. libs/crypto/src/snappy.ts loads it only after a self-test that it
 * gives the JS compressor's bytes, and keeps the JS one otherwise (missing,
 * unloadable, wrong, or EKV_NATIVE_SNAPPY=0). Built by scripts/setup.sh.
 * Decompression stays in JS (it runs once per read of a compressed value).
 *
 * JS API:
 *   compress(input, out, limit) -> the encoded length written at out[0..],
 *     or -1 when the encoding is bound to exceed `limit` bytes, in which case
 *     every byte it wrote is zero again (out holds plaintext).
 *   input and out are Uint8Arrays that do not overlap; out.length must be at
 *   least 32 + n + floor(n / 6) for n = input.length (Snappy's bound); limit
 *   is an integer (Infinity for none). A bad argument throws; every write
 *   is bounds-checked against out.length as well, so no input can write past
 *   it.
 */
#include <node_api.h>
#include <stdint.h>
#include <string.h>

#define FRAGMENT_SIZE ((int64_t)1 << 16)
#define MAX_HASH_TABLE_BITS 14
/* The match scan stops this many bytes before a fragment's end; the rest is a literal. */
#define INPUT_MARGIN 15
#define ABANDONED ((int64_t)-1)
#define OVERFLOW ((int64_t)-2)
/* Any limit at or above this is no limit (inputs are under 2^32 bytes). */
#define NO_LIMIT ((int64_t)1 << 40)

typedef struct {
  uint8_t *out;
  int64_t out_len;
} Out;

static inline uint32_t load32(const uint8_t *a, int64_t i) {
  return (uint32_t)a[i] | ((uint32_t)a[i + 1] << 8) | ((uint32_t)a[i + 2] << 16) | ((uint32_t)a[i + 3] << 24);
}

static inline uint32_t hash(uint32_t key, int shift) { return (uint32_t)(key * 0x1e35a7bdu) >> shift; }

/* floor(a / b) for b > 0, as Math.floor does it, also for a negative a. */
static inline int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

static inline int64_t literal_tag_length(int64_t length) { return length <= 60 ? 1 : length < 256 ? 2 : 3; }

/* Any element encodes at most 64 input bytes per 3 output bytes. */
static inline int64_t min_encoded_length(int64_t remaining) { return (3 * remaining + 63) / 64; }

static int64_t emit_literal(const uint8_t *input, int64_t from, int64_t length, Out *o, int64_t op) {
  if (op + 3 + length > o->out_len) return OVERFLOW;
  int64_t n = length - 1;
  if (length <= 60) {
    o->out[op++] = (uint8_t)(n << 2);
  } else if (length < 256) {
    o->out[op++] = 60 << 2;
    o->out[op++] = (uint8_t)n;
  } else {
    o->out[op++] = 61 << 2;
    o->out[op++] = (uint8_t)(n & 0xff);
    o->out[op++] = (uint8_t)(n >> 8);
  }
  memcpy(o->out + op, input + from, (size_t)length);
  return op + length;
}

/* One copy element of 4..64 bytes: the 2-byte form when it fits (length < 12, offset < 2048). */
static int64_t emit_copy_up_to_64(Out *o, int64_t op, int64_t offset, int64_t length) {
  if (op + 3 > o->out_len) return OVERFLOW;
  if (length < 12 && offset < 2048) {
    o->out[op] = (uint8_t)(1 | ((length - 4) << 2) | ((offset >> 8) << 5));
    o->out[op + 1] = (uint8_t)(offset & 0xff);
    return op + 2;
  }
  o->out[op] = (uint8_t)(2 | ((length - 1) << 2));
  o->out[op + 1] = (uint8_t)(offset & 0xff);
  o->out[op + 2] = (uint8_t)(offset >> 8);
  return op + 3;
}

/* Pieces of 64, and 60 before a last piece that would otherwise be under 4 bytes. */
static int64_t emit_copy(Out *o, int64_t op, int64_t offset, int64_t length) {
  int64_t rest = length;
  while (rest >= 68) {
    op = emit_copy_up_to_64(o, op, offset, 64);
    if (op < 0) return op;
    rest -= 64;
  }
  if (rest > 64) {
    op = emit_copy_up_to_64(o, op, offset, 60);
    if (op < 0) return op;
    rest -= 60;
  }
  return emit_copy_up_to_64(o, op, offset, rest);
}

/* The input position from which the pending literal plus the least the rest can cost passes `limit`. */
static inline int64_t scan_give_up_position(int64_t op, int64_t next_emit, int64_t input_end, int64_t limit) {
  return floor_div(64 * (limit - op + next_emit - 1) - 3 * input_end, 61) + 1;
}

static int64_t compress_fragment(const uint8_t *input, int64_t input_end, int64_t start, int64_t end, Out *o,
                                 int64_t op, int64_t limit, uint16_t *table, int shift) {
  int64_t next_emit = start;
  if (end - start >= INPUT_MARGIN) {
    const int64_t ip_limit = end - INPUT_MARGIN;
    int64_t ip = start + 1;
    uint32_t next_key = load32(input, ip);
    uint32_t next_hash = hash(next_key, shift);
    for (;;) {
      int64_t give_up = scan_give_up_position(op, next_emit, input_end, limit) - 1;
      int64_t stop = give_up < ip_limit ? give_up : ip_limit;
      int64_t skip = 32;
      int64_t next_ip = ip;
      int64_t candidate;
      uint32_t key;
      do {
        ip = next_ip;
        key = next_key;
        uint32_t h = next_hash;
        next_ip = ip + (skip >> 5);
        skip += 1;
        if (ip > stop) {
          if (ip > ip_limit) goto scanned;
          return ABANDONED;
        }
        if (next_ip <= ip_limit) {
          next_key = load32(input, next_ip);
          next_hash = hash(next_key, shift);
        }
        candidate = start + table[h];
        table[h] = (uint16_t)(ip - start);
      } while (key != load32(input, candidate));

      op = emit_literal(input, next_emit, ip - next_emit, o, op);
      if (op < 0) return op;

      do {
        int64_t base = ip;
        int64_t matched = 4;
        while (ip + matched < end && input[ip + matched] == input[candidate + matched]) matched++;
        ip += matched;
        op = emit_copy(o, op, base - candidate, matched);
        if (op < 0) return op;
        next_emit = ip;
        if (ip >= ip_limit) goto scanned;
        table[hash(load32(input, ip - 1), shift)] = (uint16_t)(ip - 1 - start);
        key = load32(input, ip);
        uint32_t h = hash(key, shift);
        candidate = start + table[h];
        table[h] = (uint16_t)(ip - start);
      } while (key == load32(input, candidate));

      ip += 1;
      next_key = load32(input, ip);
      next_hash = hash(next_key, shift);
    }
  }
scanned:
  if (next_emit < end) {
    int64_t length = end - next_emit;
    if (op + literal_tag_length(length) + length + min_encoded_length(input_end - end) > limit) return ABANDONED;
    op = emit_literal(input, next_emit, length, o, op);
  }
  return op;
}

/* Snappy's bound on the encoded length of `length` bytes. */
static inline int64_t max_compressed_length(int64_t length) { return 32 + length + length / 6; }

/*
 * The encoded length, or ABANDONED or OVERFLOW, in which case out[0, the
 * bound) is zero again: out was zero outside a call, and what was written may
 * be plaintext.
 */
static int64_t encode(const uint8_t *input, int64_t length, Out *o, int64_t limit) {
  uint16_t table[1 << MAX_HASH_TABLE_BITS];
  int64_t op = 0;
  for (uint64_t v = (uint64_t)length;; v >>= 7) {
    if (v < 0x80) {
      o->out[op++] = (uint8_t)v;
      break;
    }
    o->out[op++] = (uint8_t)((v & 0x7f) | 0x80);
  }
  for (int64_t start = 0; start < length && op >= 0; start += FRAGMENT_SIZE) {
    int64_t end = start + FRAGMENT_SIZE < length ? start + FRAGMENT_SIZE : length;
    int bits = 31 - __builtin_clz((unsigned)(end - start));
    if (bits > MAX_HASH_TABLE_BITS) bits = MAX_HASH_TABLE_BITS;
    memset(table, 0, sizeof(uint16_t) << bits);
    op = compress_fragment(input, length, start, end, o, op, limit, table, 32 - bits);
  }
  if (op >= 0 && op > limit) op = ABANDONED;
  if (op < 0) {
    int64_t bound = max_compressed_length(length);
    memset(o->out, 0, (size_t)(bound < o->out_len ? bound : o->out_len));
  }
  return op;
}

static int bytes(napi_env env, napi_value v, uint8_t **p, size_t *n) {
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &t, n, (void **)p, &ab, &off) != napi_ok || t != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "expected a Uint8Array");
    return 0;
  }
  return 1;
}

static napi_value compress(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  uint8_t *in, *out;
  size_t in_len, out_len;
  double limit;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3) {
    napi_throw_type_error(env, NULL, "compress(input, out, limit)");
    return NULL;
  }
  if (!bytes(env, argv[0], &in, &in_len) || !bytes(env, argv[1], &out, &out_len)) return NULL;
  int64_t lim;
  if (napi_get_value_double(env, argv[2], &limit) != napi_ok || limit != limit) {
    napi_throw_type_error(env, NULL, "limit must be an integer or Infinity");
    return NULL;
  }
  if (limit >= (double)NO_LIMIT) {
    lim = NO_LIMIT;
  } else if (limit <= -(double)NO_LIMIT) {
    lim = -NO_LIMIT;
  } else if ((double)(int64_t)limit != limit) {
    napi_throw_type_error(env, NULL, "limit must be an integer or Infinity");
    return NULL;
  } else {
    lim = (int64_t)limit;
  }
  if (in_len > 0xffffffffu) {
    napi_throw_range_error(env, NULL, "raw Snappy input must be under 4 GiB");
    return NULL;
  }
  if ((int64_t)out_len < max_compressed_length((int64_t)in_len)) {
    napi_throw_range_error(env, NULL, "output shorter than Snappy's bound for the input");
    return NULL;
  }
  if (in_len > 0 && out < in + in_len && in < out + out_len) {
    napi_throw_range_error(env, NULL, "input and output overlap");
    return NULL;
  }
  Out o = {out, (int64_t)out_len};
  int64_t n = encode(in, (int64_t)in_len, &o, lim);
  if (n == OVERFLOW) {
    napi_throw_range_error(env, NULL, "Snappy output overflowed its bound");
    return NULL;
  }
  napi_create_int64(env, n, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "compress", NAPI_AUTO_LENGTH, compress, NULL, &f);
  napi_set_named_property(env, exports, "compress", f);
  return exports;
}
