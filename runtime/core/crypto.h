/* crypto.h - hashes, MACs, AES and base64 through OpenSSL 3 (libcrypto); nothing hand-rolled.
 *
 * Every function that can fail returns 0, or -1 with a message in err (never printed; err may
 * be NULL when errlen is 0). On any failure the output buffer holds no partial result: a
 * decryption that fails (bad tag, bad padding) wipes what it had written. OpenSSL's error
 * queue is left empty, so a failure here never shows up in another library's later call.
 *
 * Buffers are the caller's; each function says how large its output must be. Lengths are
 * size_t: inputs longer than OpenSSL's int lengths are fed in pieces. */
#ifndef CHATGW_CRYPTO_H
#define CHATGW_CRYPTO_H

#include <stddef.h>

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_AES256_KEY_LEN 32
#define CRYPTO_GCM_IV_LEN 12
#define CRYPTO_GCM_TAG_LEN 16
#define CRYPTO_CBC_IV_LEN 16
#define CRYPTO_AES_BLOCK_LEN 16

/* out = SHA-256(data[0..len)). */
int crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN], char *err,
                  size_t errlen);

/* out = HMAC-SHA256 with key[0..keylen) (any length, empty too) over msg[0..msglen). */
int crypto_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen,
                       unsigned char out[CRYPTO_SHA256_LEN], char *err, size_t errlen);

/* AES-256-GCM with a 32-byte key and a 12-byte IV (never reuse an IV with the same key);
 * aad may be NULL when aadlen is 0. ct gets ptlen bytes, tag the 16-byte tag. -1 for a wrong
 * key or IV length ("key must be 32 bytes, got 5") or an OpenSSL failure. */
int crypto_aes_256_gcm_encrypt(const void *key, size_t keylen, const void *iv, size_t ivlen,
                               const void *aad, size_t aadlen, const void *pt, size_t ptlen,
                               unsigned char *ct, unsigned char tag[CRYPTO_GCM_TAG_LEN], char *err,
                               size_t errlen);

/* Verifies tag (exactly 16 bytes, else -1 "tag must be 16 bytes, got N") over aad and ct and
 * decrypts ct into pt (ctlen bytes). -1 "authentication failed" when the tag does not match
 * (wrong key, IV, AAD, ciphertext or tag), and then pt is zeroed. */
int crypto_aes_256_gcm_decrypt(const void *key, size_t keylen, const void *iv, size_t ivlen,
                               const void *aad, size_t aadlen, const void *ct, size_t ctlen,
                               const void *tag, size_t taglen, unsigned char *pt, char *err,
                               size_t errlen);

/* AES-256-CBC decryption (32-byte key, 16-byte IV) with PKCS#7 unpadding: pt needs ctlen bytes,
 * *ptlen gets the unpadded length. -1 "ciphertext length N is not a positive multiple of 16" or
 * "bad padding" (then pt is zeroed). CBC is not authenticated: check a MAC or signature over
 * the ciphertext first where the protocol has one. */
int crypto_aes_256_cbc_decrypt(const void *key, size_t keylen, const void *iv, size_t ivlen,
                               const void *ct, size_t ctlen, unsigned char *pt, size_t *ptlen,
                               char *err, size_t errlen);

/* Base64 (RFC 4648 section 4, with '=' padding) and base64url (section 5, '-' and '_', no
 * padding). Encoding cannot fail: out needs crypto_base64_encode_size(n) bytes (4 * ceil(n/3)
 * characters and a NUL, for both alphabets); returns the length written, without the NUL. */
size_t crypto_base64_encode_size(size_t n);
size_t crypto_base64_encode(const void *in, size_t n, char *out);
size_t crypto_base64url_encode(const void *in, size_t n, char *out);

/* Strict decoding: out needs crypto_base64_decode_size(n) bytes (3 * ceil(n/4)), *outlen gets
 * the decoded length. Standard base64 must be padded to a multiple of 4 characters; base64url
 * is accepted with or without its padding (but partial padding, "Zg=", is rejected). Both
 * reject characters outside their alphabet (whitespace and line breaks too), '=' anywhere but
 * at the end, and non-canonical encodings whose unused trailing bits are not zero ("Zh==").
 * Errors: "invalid base64", "invalid base64url". The empty string decodes to nothing. */
size_t crypto_base64_decode_size(size_t n);
int crypto_base64_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, char *err,
                         size_t errlen);
int crypto_base64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, char *err,
                            size_t errlen);

/* Lowercase hex of in[0..n) into out (2n + 1 bytes, NUL-terminated); returns 2n. */
size_t crypto_hex_encode(const void *in, size_t n, char *out);
/* Hex digits (either case, an even number of them) into out (n / 2 bytes). -1 "invalid hex". */
int crypto_hex_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, char *err,
                      size_t errlen);

/* n bytes from OpenSSL's CSPRNG (RAND_bytes). -1 if it cannot give them (out is zeroed). */
int crypto_random_bytes(void *out, size_t n, char *err, size_t errlen);

/* 1 if given[0..glen) equals expected[0..elen), else 0. The time taken depends only on elen,
 * never on the contents or on where they differ (str_ct_equal): pass the secret or the value
 * computed locally (a MAC) as expected. */
int crypto_ct_equal(const void *given, size_t glen, const void *expected, size_t elen);

#endif
