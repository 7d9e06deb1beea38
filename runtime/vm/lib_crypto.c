/* lib_crypto.c - chatgw.crypto: hashes, MACs, AES, base64, hex and random bytes (core/crypto.h,
 * all of it OpenSSL 3).
 *
 * Strings in and out are raw bytes (Lua strings may hold any byte). Misuse raises an error
 * naming the function: an argument of the wrong type, a key or IV of the wrong length, a bad
 * format or count ("chatgw.crypto.aes_256_gcm_encrypt: key must be 32 bytes, got 5"). A failure
 * that depends on the data (a tag that does not match, bad padding, a ciphertext length that
 * is not a multiple of the block, a GCM tag that is not 16 bytes, bad base64 or hex) returns
 * nil, "crypto: <why>", so a handler can answer bad input without a pcall.
 *
 *   sha256(data [, "raw"|"hex"])            -> 32 raw bytes (default) or 64 lowercase hex
 *   hmac_sha256(key, msg [, "raw"|"hex"])   -> the same
 *   aes_256_gcm_encrypt(key, iv, plaintext [, aad])       -> ciphertext, tag (16 bytes)
 *   aes_256_gcm_decrypt(key, iv, ciphertext, tag [, aad]) -> plaintext | nil, err
 *   aes_256_cbc_decrypt(key, iv, ciphertext)              -> plaintext | nil, err (PKCS#7)
 *   base64_encode(data), base64url_encode(data)           -> text (base64url unpadded)
 *   base64_decode(text), base64url_decode(text)           -> bytes | nil, err
 *   random_bytes(n)                                       -> n bytes, n in 1..65536
 *   constant_time_eq(a, b)                                -> boolean (time depends on #b only)
 *   hex(data)                                             -> lowercase hex
 *   unhex(text)                                           -> bytes | nil, err
 */
#include <lauxlib.h>
#include <math.h>
#include <string.h>

#include "crypto.h"
#include "lib.h"

#define RANDOM_MAX 65536

/* Argument idx as a string (not a number: strings only), or NULL for none/nil when optional. */
static const char *arg_str(lua_State *L, int idx, const char *fn, const char *what, size_t *len,
                           int optional) {
  *len = 0;
  if (optional && lua_isnoneornil(L, idx)) return NULL;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: %s must be a string, got %s", fn, what, luaL_typename(L, idx));
  return lua_tolstring(L, idx, len);
}

static void arg_len(lua_State *L, const char *fn, const char *what, size_t got, size_t want) {
  if (got != want) luaL_error(L, "%s: %s must be %d bytes, got %d", fn, what, (int)want, (int)got);
}

/* 1 for "hex", 0 for "raw" or none. */
static int arg_format(lua_State *L, int idx, const char *fn) {
  if (lua_isnoneornil(L, idx)) return 0;
  const char *f = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
  if (f && strcmp(f, "hex") == 0) return 1;
  if (f && strcmp(f, "raw") == 0) return 0;
  if (f) return luaL_error(L, "%s: format must be \"raw\" or \"hex\", got \"%s\"", fn, f);
  return luaL_error(L, "%s: format must be \"raw\" or \"hex\", got %s", fn, luaL_typename(L, idx));
}

/* Scratch memory owned by the GC (never leaked when a push raises). */
static void *scratch(lua_State *L, size_t n) {
  return lua_newuserdata(L, n ? n : 1);
}

/* A failure of the data, or of OpenSSL itself (out of memory): nil, "crypto: <why>". */
static int push_fail(lua_State *L, const char *why) {
  lua_pushnil(L);
  lua_pushfstring(L, "crypto: %s", why);
  return 2;
}

/* A digest as raw bytes or lowercase hex. */
static void push_digest(lua_State *L, const unsigned char *d, size_t n, int hex) {
  if (!hex) {
    lua_pushlstring(L, (const char *)d, n);
    return;
  }
  char h[2 * CRYPTO_SHA256_LEN + 1];
  lua_pushlstring(L, h, crypto_hex_encode(d, n, h));
}

static int l_sha256(lua_State *L) {
  const char *fn = "chatgw.crypto.sha256";
  size_t n;
  const char *s = arg_str(L, 1, fn, "data", &n, 0);
  int hex = arg_format(L, 2, fn);
  unsigned char d[CRYPTO_SHA256_LEN];
  char err[256];
  if (crypto_sha256(s, n, d, err, sizeof err) != 0) return push_fail(L, err);
  push_digest(L, d, sizeof d, hex);
  return 1;
}

static int l_hmac_sha256(lua_State *L) {
  const char *fn = "chatgw.crypto.hmac_sha256";
  size_t kl, ml;
  const char *key = arg_str(L, 1, fn, "key", &kl, 0);
  const char *msg = arg_str(L, 2, fn, "msg", &ml, 0);
  int hex = arg_format(L, 3, fn);
  unsigned char d[CRYPTO_SHA256_LEN];
  char err[256];
  if (crypto_hmac_sha256(key, kl, msg, ml, d, err, sizeof err) != 0) return push_fail(L, err);
  push_digest(L, d, sizeof d, hex);
  return 1;
}

static int l_gcm_encrypt(lua_State *L) {
  const char *fn = "chatgw.crypto.aes_256_gcm_encrypt";
  size_t kl, il, pl, al;
  const char *key = arg_str(L, 1, fn, "key", &kl, 0);
  const char *iv = arg_str(L, 2, fn, "iv", &il, 0);
  const char *pt = arg_str(L, 3, fn, "plaintext", &pl, 0);
  const char *aad = arg_str(L, 4, fn, "aad", &al, 1);
  arg_len(L, fn, "key", kl, CRYPTO_AES256_KEY_LEN);
  arg_len(L, fn, "iv", il, CRYPTO_GCM_IV_LEN);
  unsigned char *ct = scratch(L, pl), tag[CRYPTO_GCM_TAG_LEN];
  char err[256];
  if (crypto_aes_256_gcm_encrypt(key, kl, iv, il, aad, al, pt, pl, ct, tag, err, sizeof err) != 0)
    return push_fail(L, err);
  lua_pushlstring(L, (const char *)ct, pl);
  lua_pushlstring(L, (const char *)tag, sizeof tag);
  return 2;
}

static int l_gcm_decrypt(lua_State *L) {
  const char *fn = "chatgw.crypto.aes_256_gcm_decrypt";
  size_t kl, il, cl, tl, al;
  const char *key = arg_str(L, 1, fn, "key", &kl, 0);
  const char *iv = arg_str(L, 2, fn, "iv", &il, 0);
  const char *ct = arg_str(L, 3, fn, "ciphertext", &cl, 0);
  const char *tag = arg_str(L, 4, fn, "tag", &tl, 0);
  const char *aad = arg_str(L, 5, fn, "aad", &al, 1);
  arg_len(L, fn, "key", kl, CRYPTO_AES256_KEY_LEN);
  arg_len(L, fn, "iv", il, CRYPTO_GCM_IV_LEN);
  /* A tag of another length is data (a truncated message), not misuse: the C side says so. */
  unsigned char *pt = scratch(L, cl);
  char err[256];
  if (crypto_aes_256_gcm_decrypt(key, kl, iv, il, aad, al, ct, cl, tag, tl, pt, err, sizeof err) !=
      0)
    return push_fail(L, err);
  lua_pushlstring(L, (const char *)pt, cl);
  return 1;
}

static int l_cbc_decrypt(lua_State *L) {
  const char *fn = "chatgw.crypto.aes_256_cbc_decrypt";
  size_t kl, il, cl;
  const char *key = arg_str(L, 1, fn, "key", &kl, 0);
  const char *iv = arg_str(L, 2, fn, "iv", &il, 0);
  const char *ct = arg_str(L, 3, fn, "ciphertext", &cl, 0);
  arg_len(L, fn, "key", kl, CRYPTO_AES256_KEY_LEN);
  arg_len(L, fn, "iv", il, CRYPTO_CBC_IV_LEN);
  unsigned char *pt = scratch(L, cl);
  size_t n = 0;
  char err[256];
  if (crypto_aes_256_cbc_decrypt(key, kl, iv, il, ct, cl, pt, &n, err, sizeof err) != 0)
    return push_fail(L, err);
  lua_pushlstring(L, (const char *)pt, n);
  return 1;
}

static int b64_encode(lua_State *L, const char *fn, int url) {
  size_t n;
  const char *s = arg_str(L, 1, fn, "data", &n, 0);
  char *out = scratch(L, crypto_base64_encode_size(n));
  size_t w = url ? crypto_base64url_encode(s, n, out) : crypto_base64_encode(s, n, out);
  lua_pushlstring(L, out, w);
  return 1;
}

static int b64_decode(lua_State *L, const char *fn, int url) {
  size_t n;
  const char *s = arg_str(L, 1, fn, "text", &n, 0);
  unsigned char *out = scratch(L, crypto_base64_decode_size(n));
  size_t w = 0;
  char err[256];
  int r = url ? crypto_base64url_decode(s, n, out, &w, err, sizeof err)
              : crypto_base64_decode(s, n, out, &w, err, sizeof err);
  if (r != 0) return push_fail(L, err);
  lua_pushlstring(L, (const char *)out, w);
  return 1;
}

static int l_base64_encode(lua_State *L) {
  return b64_encode(L, "chatgw.crypto.base64_encode", 0);
}

static int l_base64url_encode(lua_State *L) {
  return b64_encode(L, "chatgw.crypto.base64url_encode", 1);
}

static int l_base64_decode(lua_State *L) {
  return b64_decode(L, "chatgw.crypto.base64_decode", 0);
}

static int l_base64url_decode(lua_State *L) {
  return b64_decode(L, "chatgw.crypto.base64url_decode", 1);
}

static int l_random_bytes(lua_State *L) {
  const char *fn = "chatgw.crypto.random_bytes";
  double d = lua_type(L, 1) == LUA_TNUMBER ? lua_tonumber(L, 1) : NAN;
  if (!(d >= 1 && d <= RANDOM_MAX) || d != floor(d)) {
    if (lua_type(L, 1) == LUA_TNUMBER)
      return luaL_error(L, "%s: n must be an integer in 1..%d, got %s", fn, RANDOM_MAX,
                        lua_tostring(L, 1));
    return luaL_error(L, "%s: n must be an integer in 1..%d, got %s", fn, RANDOM_MAX,
                      luaL_typename(L, 1));
  }
  size_t n = (size_t)d;
  unsigned char *out = scratch(L, n);
  char err[256];
  if (crypto_random_bytes(out, n, err, sizeof err) != 0) return push_fail(L, err);
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

static int l_constant_time_eq(lua_State *L) {
  const char *fn = "chatgw.crypto.constant_time_eq";
  size_t al, bl;
  const char *a = arg_str(L, 1, fn, "a", &al, 0);
  const char *b = arg_str(L, 2, fn, "b", &bl, 0);
  lua_pushboolean(L, crypto_ct_equal(a, al, b, bl));
  return 1;
}

static int l_hex(lua_State *L) {
  size_t n;
  const char *s = arg_str(L, 1, "chatgw.crypto.hex", "data", &n, 0);
  char *out = scratch(L, 2 * n + 1);
  lua_pushlstring(L, out, crypto_hex_encode(s, n, out));
  return 1;
}

static int l_unhex(lua_State *L) {
  size_t n;
  const char *s = arg_str(L, 1, "chatgw.crypto.unhex", "text", &n, 0);
  unsigned char *out = scratch(L, n / 2);
  size_t w = 0;
  char err[256];
  if (crypto_hex_decode(s, n, out, &w, err, sizeof err) != 0) return push_fail(L, err);
  lua_pushlstring(L, (const char *)out, w);
  return 1;
}

void lib_crypto_register(lua_State *L, int t) {
  static const luaL_Reg fns[] = {{"sha256", l_sha256},
                                 {"hmac_sha256", l_hmac_sha256},
                                 {"aes_256_gcm_encrypt", l_gcm_encrypt},
                                 {"aes_256_gcm_decrypt", l_gcm_decrypt},
                                 {"aes_256_cbc_decrypt", l_cbc_decrypt},
                                 {"base64_encode", l_base64_encode},
                                 {"base64_decode", l_base64_decode},
                                 {"base64url_encode", l_base64url_encode},
                                 {"base64url_decode", l_base64url_decode},
                                 {"random_bytes", l_random_bytes},
                                 {"constant_time_eq", l_constant_time_eq},
                                 {"hex", l_hex},
                                 {"unhex", l_unhex},
                                 {NULL, NULL}};
  if (t < 0 && t > LUA_REGISTRYINDEX) t = lua_gettop(L) + t + 1;
  lua_newtable(L);
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  lua_setfield(L, t, "crypto");
}
