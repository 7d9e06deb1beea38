/* crypto.c - SHA-256, HMAC-SHA256, AES-256-GCM/CBC, base64 and hex through OpenSSL 3 (see
 * crypto.h). The only code of our own checks what OpenSSL's lenient base64 and hex decoders
 * would let through (alphabet, padding, canonical trailing bits) and feeds size_t lengths to
 * int-length calls in pieces. */
#include "crypto.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "strutil.h"

/* Bytes per call to an OpenSSL function taking an int length. */
#define PIECE (1u << 30)
/* Characters per EVP_DecodeBlock / bytes per EVP_EncodeBlock call (multiples of 4 and 3). */
#define B64_DEC_PIECE 4096
#define B64_ENC_PIECE 3072
#define HEX_PIECE 1024

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
  ERR_clear_error();
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* An OpenSSL call failed: "<what> failed: <OpenSSL's reason>". */
static int ossl_fail(char *err, size_t errlen, const char *what) {
  unsigned long e = ERR_get_error();
  const char *reason = e ? ERR_reason_error_string(e) : NULL;
  return fail(err, errlen, "%s failed: %s", what, reason ? reason : "unknown OpenSSL error");
}

static int check_len(const char *what, size_t got, size_t want, char *err, size_t errlen) {
  if (got == want) return 0;
  return fail(err, errlen, "%s must be %zu bytes, got %zu", what, want, got);
}

int crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN], char *err,
                  size_t errlen) {
  unsigned int n = 0;
  if (!EVP_Digest(len ? data : "", len, out, &n, EVP_sha256(), NULL) || n != CRYPTO_SHA256_LEN)
    return ossl_fail(err, errlen, "sha256");
  return 0;
}

int crypto_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                       unsigned char out[CRYPTO_SHA256_LEN], char *err, size_t errlen) {
  size_t n = 0;
  /* A non-NULL pointer even for an empty key or message: OpenSSL treats a NULL key as "none". */
  if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, keylen ? key : "", keylen,
                 msglen ? msg : (const void *)"", msglen, out, CRYPTO_SHA256_LEN, &n) ||
      n != CRYPTO_SHA256_LEN)
    return ossl_fail(err, errlen, "hmac_sha256");
  return 0;
}

/* EVP_CipherUpdate over in[0..n) in int-sized pieces; out NULL: n bytes of AAD. */
static int cipher_update(EVP_CIPHER_CTX *c, unsigned char *out, size_t *written, const void *in,
                         size_t n) {
  const unsigned char *p = in;
  size_t total = 0;
  while (n > 0) {
    int step = (int)(n > PIECE ? PIECE : n), outl = 0;
    if (!EVP_CipherUpdate(c, out ? out + total : NULL, &outl, p, step)) return -1;
    total += (size_t)outl;
    p += step;
    n -= (size_t)step;
  }
  if (written) *written = total;
  return 0;
}

/* Writes ptlen bytes of ciphertext and the tag; -1 on an OpenSSL failure (err set). */
static int gcm_encrypt(EVP_CIPHER_CTX *c, const void *key, const void *iv, const void *aad,
                       size_t aadlen, const void *pt, size_t ptlen, unsigned char *ct,
                       unsigned char *tag, char *err, size_t errlen) {
  unsigned char fin[CRYPTO_AES_BLOCK_LEN];
  size_t n = 0;
  int finl = 0;
  if (!EVP_CipherInit_ex2(c, EVP_aes_256_gcm(), key, iv, 1, NULL) ||
      cipher_update(c, NULL, NULL, aad, aadlen) != 0 || cipher_update(c, ct, &n, pt, ptlen) != 0 ||
      !EVP_CipherFinal_ex(c, fin, &finl) || finl != 0 || n != ptlen ||
      !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, CRYPTO_GCM_TAG_LEN, tag))
    return ossl_fail(err, errlen, "aes_256_gcm_encrypt");
  return 0;
}

int crypto_aes_256_gcm_encrypt(const void *key, size_t keylen, const void *iv, size_t ivlen,
                               const void *aad, size_t aadlen, const void *pt, size_t ptlen,
                               unsigned char *ct, unsigned char tag[CRYPTO_GCM_TAG_LEN], char *err,
                               size_t errlen) {
  if (check_len("key", keylen, CRYPTO_AES256_KEY_LEN, err, errlen) != 0 ||
      check_len("iv", ivlen, CRYPTO_GCM_IV_LEN, err, errlen) != 0)
    return -1;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (!c) return ossl_fail(err, errlen, "EVP_CIPHER_CTX_new");
  int r = gcm_encrypt(c, key, iv, aad, aadlen, pt, ptlen, ct, tag, err, errlen);
  EVP_CIPHER_CTX_free(c);
  if (r != 0) {
    if (ptlen) OPENSSL_cleanse(ct, ptlen);
    OPENSSL_cleanse(tag, CRYPTO_GCM_TAG_LEN);
  }
  return r;
}

/* 0, -1 (OpenSSL failure, err set) or -2 (the tag does not match). */
static int gcm_decrypt(EVP_CIPHER_CTX *c, const void *key, const void *iv, const void *aad,
                       size_t aadlen, const void *ct, size_t ctlen, const void *tag,
                       unsigned char *pt, char *err, size_t errlen) {
  unsigned char t[CRYPTO_GCM_TAG_LEN], fin[CRYPTO_AES_BLOCK_LEN];
  size_t n = 0;
  int finl = 0;
  memcpy(t, tag, sizeof t);
  if (!EVP_CipherInit_ex2(c, EVP_aes_256_gcm(), key, iv, 0, NULL) ||
      !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, CRYPTO_GCM_TAG_LEN, t) ||
      cipher_update(c, NULL, NULL, aad, aadlen) != 0 || cipher_update(c, pt, &n, ct, ctlen) != 0 ||
      n != ctlen)
    return ossl_fail(err, errlen, "aes_256_gcm_decrypt");
  if (EVP_CipherFinal_ex(c, fin, &finl) <= 0 || finl != 0) return -2;
  return 0;
}

int crypto_aes_256_gcm_decrypt(const void *key, size_t keylen, const void *iv, size_t ivlen,
                               const void *aad, size_t aadlen, const void *ct, size_t ctlen,
                               const void *tag, size_t taglen, unsigned char *pt, char *err,
                               size_t errlen) {
  if (check_len("key", keylen, CRYPTO_AES256_KEY_LEN, err, errlen) != 0 ||
      check_len("iv", ivlen, CRYPTO_GCM_IV_LEN, err, errlen) != 0 ||
      check_len("tag", taglen, CRYPTO_GCM_TAG_LEN, err, errlen) != 0)
    return -1;
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (!c) return ossl_fail(err, errlen, "EVP_CIPHER_CTX_new");
  int r = gcm_decrypt(c, key, iv, aad, aadlen, ct, ctlen, tag, pt, err, errlen);
  EVP_CIPHER_CTX_free(c);
  if (r == 0) return 0;
  if (ctlen) OPENSSL_cleanse(pt, ctlen);
  if (r == -2) return fail(err, errlen, "authentication failed");
  return -1;
}

/* 0, -1 (OpenSSL failure, err set) or -2 (bad padding). */
static int cbc_decrypt(EVP_CIPHER_CTX *c, const void *key, const void *iv, const void *ct,
                       size_t ctlen, unsigned char *pt, size_t *ptlen, char *err, size_t errlen) {
  unsigned char fin[CRYPTO_AES_BLOCK_LEN];
  size_t n = 0;
  int finl = 0;
  if (!EVP_CipherInit_ex2(c, EVP_aes_256_cbc(), key, iv, 0, NULL) ||
      !EVP_CIPHER_CTX_set_padding(c, 1) || cipher_update(c, pt, &n, ct, ctlen) != 0)
    return ossl_fail(err, errlen, "aes_256_cbc_decrypt");
  int ok = EVP_CipherFinal_ex(c, fin, &finl) > 0 && finl >= 0 && n + (size_t)finl <= ctlen;
  if (ok) memcpy(pt + n, fin, (size_t)finl);
  OPENSSL_cleanse(fin, sizeof fin);
  if (!ok) return -2;
  *ptlen = n + (size_t)finl;
  return 0;
}

int crypto_aes_256_cbc_decrypt(const void *key, size_t keylen, const void *iv, size_t ivlen,
                               const void *ct, size_t ctlen, unsigned char *pt, size_t *ptlen,
                               char *err, size_t errlen) {
  if (check_len("key", keylen, CRYPTO_AES256_KEY_LEN, err, errlen) != 0 ||
      check_len("iv", ivlen, CRYPTO_CBC_IV_LEN, err, errlen) != 0)
    return -1;
  if (ctlen == 0 || ctlen % CRYPTO_AES_BLOCK_LEN != 0)
    return fail(err, errlen, "ciphertext length %zu is not a positive multiple of %d", ctlen,
                CRYPTO_AES_BLOCK_LEN);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (!c) return ossl_fail(err, errlen, "EVP_CIPHER_CTX_new");
  int r = cbc_decrypt(c, key, iv, ct, ctlen, pt, ptlen, err, errlen);
  EVP_CIPHER_CTX_free(c);
  if (r == 0) return 0;
  OPENSSL_cleanse(pt, ctlen);
  if (r == -2) return fail(err, errlen, "bad padding");
  return -1;
}

/* ---- base64 ---- */

size_t crypto_base64_encode_size(size_t n) {
  return (n / 3 + (n % 3 != 0)) * 4 + 1;
}

size_t crypto_base64_encode(const void *in, size_t n, char *out) {
  const unsigned char *p = in;
  size_t w = 0;
  out[0] = 0;
  while (n > 0) { /* each call NUL-terminates; the next one writes over the NUL */
    size_t step = n > B64_ENC_PIECE ? B64_ENC_PIECE : n;
    w += (size_t)EVP_EncodeBlock((unsigned char *)out + w, p, (int)step);
    p += step;
    n -= step;
  }
  return w;
}

size_t crypto_base64url_encode(const void *in, size_t n, char *out) {
  size_t w = crypto_base64_encode(in, n, out);
  for (size_t i = 0; i < w; i++) {
    if (out[i] == '+')
      out[i] = '-';
    else if (out[i] == '/')
      out[i] = '_';
  }
  while (w > 0 && out[w - 1] == '=')
    out[--w] = 0;
  return w;
}

size_t crypto_base64_decode_size(size_t n) {
  return (n / 4 + (n % 4 != 0)) * 3;
}

static int b64_char(unsigned char ch, int url) {
  if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) return 1;
  return url ? ch == '-' || ch == '_' : ch == '+' || ch == '/';
}

/* in[0..n) in the standard alphabet (EVP_DecodeBlock knows no other). */
static void b64_std(unsigned char *dst, const char *in, size_t n, int url) {
  for (size_t i = 0; i < n; i++) {
    char ch = in[i];
    dst[i] = (unsigned char)(url && ch == '-' ? '+' : url && ch == '_' ? '/' : ch);
  }
}

/* The strict decoder under both alphabets (see crypto.h). 0 or -1. */
static int b64_decode(const char *in, size_t n, int url, unsigned char *out, size_t *outlen) {
  size_t pads = 0;
  while (pads < n && pads < 3 && in[n - 1 - pads] == '=')
    pads++;
  size_t m = n - pads; /* characters of data */
  if (pads > 2 || m % 4 == 1) return -1;
  if ((!url || pads > 0) && n % 4 != 0) return -1;
  for (size_t i = 0; i < m; i++)
    if (!b64_char((unsigned char)in[i], url)) return -1;

  unsigned char buf[B64_DEC_PIECE];
  size_t full = m - m % 4, w = 0;
  for (size_t i = 0; i < full;) { /* whole groups of 4 */
    size_t step = full - i > sizeof buf ? sizeof buf : full - i;
    b64_std(buf, in + i, step, url);
    if (EVP_DecodeBlock(out + w, buf, (int)step) != (int)(step / 4 * 3)) return -1;
    w += step / 4 * 3;
    i += step;
  }
  size_t rem = m % 4; /* 2 or 3 characters left: 1 or 2 bytes */
  if (rem) {
    /* EVP_DecodeBlock decodes '=' as zero bits and counts the pad bytes: take rem - 1 bytes. */
    unsigned char last[4] = {'=', '=', '=', '='}, dec[3], again[5];
    b64_std(last, in + full, rem, url);
    if (EVP_DecodeBlock(dec, last, 4) != 3) return -1;
    /* Canonical: encoding the bytes again gives the same group (the unused bits were zero). */
    EVP_EncodeBlock(again, dec, (int)(rem - 1));
    if (memcmp(again, last, 4) != 0) return -1;
    memcpy(out + w, dec, rem - 1);
    w += rem - 1;
  }
  *outlen = w;
  return 0;
}

int crypto_base64_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, char *err,
                         size_t errlen) {
  if (b64_decode(in, n, 0, out, outlen) != 0) return fail(err, errlen, "invalid base64");
  return 0;
}

int crypto_base64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, char *err,
                            size_t errlen) {
  if (b64_decode(in, n, 1, out, outlen) != 0) return fail(err, errlen, "invalid base64url");
  return 0;
}

/* ---- hex ---- */

size_t crypto_hex_encode(const void *in, size_t n, char *out) {
  const unsigned char *p = in;
  size_t w = 0;
  out[0] = 0;
  while (n > 0) { /* OpenSSL writes uppercase: lowered below */
    size_t step = n > HEX_PIECE ? HEX_PIECE : n, len = 0;
    OPENSSL_buf2hexstr_ex(out + w, 2 * step + 1, &len, p, step, '\0');
    w += 2 * step;
    p += step;
    n -= step;
  }
  for (size_t i = 0; i < w; i++)
    if (out[i] >= 'A' && out[i] <= 'F') out[i] = (char)(out[i] - 'A' + 'a');
  return w;
}

int crypto_hex_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, char *err,
                      size_t errlen) {
  if (n % 2 != 0) return fail(err, errlen, "invalid hex");
  char buf[2 * HEX_PIECE + 1]; /* OpenSSL reads a NUL-terminated string */
  size_t w = 0;
  for (size_t i = 0; i < n;) {
    size_t step = n - i > 2 * HEX_PIECE ? 2 * HEX_PIECE : n - i, len = 0;
    memcpy(buf, in + i, step);
    buf[step] = 0;
    /* An embedded NUL ends OpenSSL's string early: the length tells. */
    if (!OPENSSL_hexstr2buf_ex(out + w, step / 2, &len, buf, '\0') || len != step / 2)
      return fail(err, errlen, "invalid hex");
    w += len;
    i += step;
  }
  *outlen = w;
  return 0;
}

/* ---- random, compare ---- */

int crypto_random_bytes(void *out, size_t n, char *err, size_t errlen) {
  unsigned char *p = out;
  for (size_t done = 0; done < n;) {
    int step = (int)(n - done > PIECE ? PIECE : n - done);
    if (RAND_bytes(p + done, step) != 1) {
      OPENSSL_cleanse(out, n);
      return ossl_fail(err, errlen, "RAND_bytes");
    }
    done += (size_t)step;
  }
  return 0;
}

int crypto_ct_equal(const void *given, size_t glen, const void *expected, size_t elen) {
  return str_ct_equal(given, glen, expected, elen);
}
