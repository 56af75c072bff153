/*
 * AES-256-GCM for ekv through the OpenSSL that Node.js itself links and
 * exports (no other library): the same EVP calls node:crypto makes, minus its
 * per-call cost. node:crypto builds a cipher object, re-expands the key and
 * returns three Buffers on every call (~3-5 us for 256 B here); this keeps one
 * initialised EVP context per key and per direction, re-keyed only with the
 * nonce, and writes into the caller's arrays (~0.5 us). libs/crypto/src/
 * aesGcm.ts loads it only after a known-answer self-test against node:crypto,
 * and falls back to node:crypto when it is missing, fails to load or is
 * disabled (EKV_NATIVE_AEAD=0). Built by scripts/setup.sh (cc, Node's headers).
 *
 * JS API (every byte argument a Uint8Array; lengths checked, a bad argument
 * throws, it never crashes the process):
 *   createKey(key32)                               -> opaque key context
 *   seal(ctx, nonce12, aad, plaintext, out)        out = ciphertext || tag,
 *                                                  out.length == plaintext.length + 16
 *   open(ctx, nonce12, aad, ciphertext, tag16, out) -> true when the tag verifies;
 *                                                  out.length == ciphertext.length,
 *                                                  zeroed when it does not
 * Overlapping plaintext/out (or ciphertext/out) are copied first.
 * The contexts are freed (and their key schedules cleansed by OpenSSL) when
 * the JS value is collected.
 */
#include <node_api.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* EVP lengths are ints. */
#define MAX_LEN ((size_t)0x7fffff00)

typedef struct { EVP_CIPHER_CTX *enc, *dec; } Key;

static int bytes(napi_env env, napi_value v, uint8_t **p, size_t *n) {
  napi_typedarray_type t; napi_value ab; size_t off;
  if (napi_get_typedarray_info(env, v, &t, n, (void **)p, &ab, &off) != napi_ok || t != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "expected a Uint8Array");
    return 0;
  }
  return 1;
}

static void fin(napi_env env, void *data, void *hint) {
  Key *k = data;
  EVP_CIPHER_CTX_free(k->enc);
  EVP_CIPHER_CTX_free(k->dec);
  free(k);
}

static napi_value create_key(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1], out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint8_t *key; size_t n;
  if (argc < 1 || !bytes(env, argv[0], &key, &n)) return NULL;
  if (n != 32) { napi_throw_range_error(env, NULL, "key must be 32 bytes"); return NULL; }
  Key *k = calloc(1, sizeof *k);
  if (!k) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  k->enc = EVP_CIPHER_CTX_new(); k->dec = EVP_CIPHER_CTX_new();
  if (!k->enc || !k->dec || EVP_EncryptInit_ex(k->enc, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
      EVP_DecryptInit_ex(k->dec, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
    fin(env, k, NULL); napi_throw_error(env, NULL, "EVP init failed"); return NULL;
  }
  napi_create_external(env, k, fin, NULL, &out);
  return out;
}

/* seal(key, nonce, aad, plaintext, out): out = ciphertext ‖ tag, out.length === plaintext.length + 16 */
static napi_value seal(napi_env env, napi_callback_info info) {
  size_t argc = 5; napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  Key *k; uint8_t *nonce, *aad, *pt, *out; size_t nn, na, np, no;
  if (argc < 5 || napi_get_value_external(env, argv[0], (void **)&k) != napi_ok) { napi_throw_type_error(env, NULL, "bad key"); return NULL; }
  if (!bytes(env, argv[1], &nonce, &nn) || !bytes(env, argv[2], &aad, &na) || !bytes(env, argv[3], &pt, &np) || !bytes(env, argv[4], &out, &no)) return NULL;
  if (nn != 12 || np > MAX_LEN || na > MAX_LEN || no != np + 16) { napi_throw_range_error(env, NULL, "bad lengths"); return NULL; }
  uint8_t *tmp = NULL;
  if (np > 0 && pt != out && pt < out + no && out < pt + np) {
    tmp = malloc(np);
    if (!tmp) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
    memcpy(tmp, pt, np); pt = tmp;
  }
  int len = 0, fl = 0, ok =
    EVP_EncryptInit_ex(k->enc, NULL, NULL, NULL, nonce) == 1 &&
    (na == 0 || EVP_EncryptUpdate(k->enc, NULL, &len, aad, (int)na) == 1) &&
    EVP_EncryptUpdate(k->enc, out, &len, pt, (int)np) == 1 &&
    EVP_EncryptFinal_ex(k->enc, out + len, &fl) == 1 &&
    EVP_CIPHER_CTX_ctrl(k->enc, EVP_CTRL_GCM_GET_TAG, 16, out + np) == 1;
  if (tmp) { OPENSSL_cleanse(tmp, np); free(tmp); }
  if (!ok) { OPENSSL_cleanse(out, no); napi_throw_error(env, NULL, "seal failed"); }
  return NULL;
}

/* open(key, nonce, aad, ciphertext, tag, out): true when the tag verifies; out.length === ciphertext.length */
static napi_value open_(napi_env env, napi_callback_info info) {
  size_t argc = 6; napi_value argv[6], res;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  Key *k; uint8_t *nonce, *aad, *ct, *tag, *out; size_t nn, na, nc, nt, no;
  if (argc < 6 || napi_get_value_external(env, argv[0], (void **)&k) != napi_ok) { napi_throw_type_error(env, NULL, "bad key"); return NULL; }
  if (!bytes(env, argv[1], &nonce, &nn) || !bytes(env, argv[2], &aad, &na) || !bytes(env, argv[3], &ct, &nc) || !bytes(env, argv[4], &tag, &nt) || !bytes(env, argv[5], &out, &no)) return NULL;
  if (nn != 12 || nt != 16 || nc > MAX_LEN || na > MAX_LEN || no != nc) { napi_throw_range_error(env, NULL, "bad lengths"); return NULL; }
  uint8_t t[16]; memcpy(t, tag, 16);
  uint8_t *tmp = NULL;
  if (nc > 0 && ct != out && ct < out + no && out < ct + nc) {
    tmp = malloc(nc);
    if (!tmp) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
    memcpy(tmp, ct, nc); ct = tmp;
  }
  int len = 0, fl = 0, ok =
    EVP_DecryptInit_ex(k->dec, NULL, NULL, NULL, nonce) == 1 &&
    (na == 0 || EVP_DecryptUpdate(k->dec, NULL, &len, aad, (int)na) == 1) &&
    EVP_DecryptUpdate(k->dec, out, &len, ct, (int)nc) == 1 &&
    EVP_CIPHER_CTX_ctrl(k->dec, EVP_CTRL_GCM_SET_TAG, 16, t) == 1 &&
    EVP_DecryptFinal_ex(k->dec, out + len, &fl) == 1;
  if (tmp) free(tmp);
  if (!ok) OPENSSL_cleanse(out, no);
  napi_get_boolean(env, ok, &res);
  return res;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "createKey", NAPI_AUTO_LENGTH, create_key, NULL, &f); napi_set_named_property(env, exports, "createKey", f);
  napi_create_function(env, "seal", NAPI_AUTO_LENGTH, seal, NULL, &f); napi_set_named_property(env, exports, "seal", f);
  napi_create_function(env, "open", NAPI_AUTO_LENGTH, open_, NULL, &f); napi_set_named_property(env, exports, "open", f);
  return exports;
}
