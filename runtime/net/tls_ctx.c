/* tls_ctx.c - a listener's certificate (see tls.h): loading the files into an SSL_CTX with the
 * server's protocol settings, reloading, what /health shows. */
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "tls_internal.h"

void tls__reason(char *out, size_t len, const char *fallback) {
  unsigned long e = ERR_peek_error(); /* the first: the cause, not its wrappers */
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  snprintf(out, len, "%s", r ? r : fallback);
  ERR_clear_error();
}

/* ALPN: http/1.1 when the client offers it; otherwise no ALPN at all (an h2-only client is not
 * refused here: it goes on without ALPN and may give up itself). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  (void)ssl;
  (void)arg;
  for (unsigned i = 0; i < inlen;) {
    unsigned n = in[i];
    if (i + 1 + n > inlen) break;
    if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = (unsigned char)n;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

static double asn1_time_s(const ASN1_TIME *t) {
  struct tm tm;
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return (double)timegm(&tm);
}

/* A file that cannot even be opened: say so with errno, as other config paths do. */
static int readable(const char *what, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s %s: cannot open: %s", what, path, strerror(errno));
    return 0;
  }
  fclose(f);
  return 1;
}

/* A new SSL_CTX from the files, or NULL with err. Fills the certificate fields of info. */
static SSL_CTX *build(const char *cert, const char *key, tls_ctx_t *info, char *err,
                      size_t errlen) {
  char why[256];
  ERR_clear_error();
  if (!readable("certificate", cert, err, errlen) || !readable("key", key, err, errlen))
    return NULL;
  SSL_CTX *c = SSL_CTX_new(TLS_server_method());
  if (!c) {
    tls__reason(why, sizeof why, "out of memory");
    snprintf(err, errlen, "cannot create a TLS context: %s", why);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                             SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS); /* idle connections keep no record buffers */
  SSL_CTX_set_session_id_context(c, (const unsigned char *)"chatgw", 6);
  SSL_CTX_set_alpn_select_cb(c, alpn_select, NULL);
  if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
    tls__reason(why, sizeof why, "not a PEM certificate");
    snprintf(err, errlen, "certificate %s: %s", cert, why);
    SSL_CTX_free(c);
    return NULL;
  }
  if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
    tls__reason(why, sizeof why, "not a PEM private key");
    if (strstr(why, "mismatch")) /* "key values mismatch": a key, but not this cert's */
      snprintf(err, errlen, "key %s does not match certificate %s", key, cert);
    else
      snprintf(err, errlen, "key %s: %s", key, why);
    SSL_CTX_free(c);
    return NULL;
  }
  if (SSL_CTX_check_private_key(c) != 1) {
    tls__reason(why, sizeof why, "does not match");
    snprintf(err, errlen, "key %s does not match certificate %s: %s", key, cert, why);
    SSL_CTX_free(c);
    return NULL;
  }
  X509 *x = SSL_CTX_get0_certificate(c);
  info->subject[0] = info->issuer[0] = info->serial[0] = 0;
  if (x) {
    X509_NAME_oneline(X509_get_subject_name(x), info->subject, sizeof info->subject);
    X509_NAME_oneline(X509_get_issuer_name(x), info->issuer, sizeof info->issuer);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (hex) snprintf(info->serial, sizeof info->serial, "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    info->not_before = asn1_time_s(X509_get0_notBefore(x));
    info->not_after = asn1_time_s(X509_get0_notAfter(x));
  }
  ERR_clear_error();
  return c;
}

static void log_loaded(const tls_ctx_t *t, const char *msg) {
  char na[32];
  time_t s = (time_t)t->not_after;
  struct tm tm;
  gmtime_r(&s, &tm);
  strftime(na, sizeof na, "%Y-%m-%dT%H:%M:%SZ", &tm);
  log_field_t f[] = {{"listener", t->name, 0},
                     {"cert", t->cert, 0},
                     {"subject", t->subject, 0},
                     {"serial", t->serial, 0},
                     {"not_after", na, 0}};
  log_write(LOG_INFO, msg, f, 5);
  if (t->not_after > 0 && t->not_after < clock_wall_s())
    log_write(LOG_WARN, "tls: the certificate has expired", f, 5);
}

tls_ctx_t *tls_ctx_new(const char *name, const char *cert, const char *key, char *err,
                       size_t errlen) {
  tls_ctx_t *t = calloc(1, sizeof *t);
  if (!t || !(t->name = strdup(name)) || !(t->cert = strdup(cert)) || !(t->key = strdup(key))) {
    snprintf(err, errlen, "out of memory");
    tls_ctx_free(t);
    return NULL;
  }
  t->ctx = build(cert, key, t, err, errlen);
  if (!t->ctx) {
    tls_ctx_free(t);
    return NULL;
  }
  t->loads = 1;
  t->loaded_at = clock_wall_s();
  log_loaded(t, "tls: certificate loaded");
  return t;
}

int tls_ctx_reload(tls_ctx_t *t, char *err, size_t errlen) {
  tls_ctx_t fresh = {0};
  SSL_CTX *c = build(t->cert, t->key, &fresh, err, errlen);
  if (!c) {
    t->failures++;
    snprintf(t->last_error, sizeof t->last_error, "%s", err);
    t->last_error_at = clock_wall_s();
    log_field_t f[] = {{"listener", t->name, 0}, {"error", err, 0}};
    log_write(LOG_ERROR, "tls: reload failed, keeping the running certificate", f, 2);
    return -1;
  }
  SSL_CTX_free(t->ctx); /* sessions still open hold their own reference */
  t->ctx = c;
  memcpy(t->subject, fresh.subject, sizeof t->subject);
  memcpy(t->issuer, fresh.issuer, sizeof t->issuer);
  memcpy(t->serial, fresh.serial, sizeof t->serial);
  t->not_before = fresh.not_before;
  t->not_after = fresh.not_after;
  t->loaded_at = clock_wall_s();
  t->last_error[0] = 0;
  t->loads++;
  log_loaded(t, "tls: certificate reloaded");
  return 0;
}

void tls_ctx_info(const tls_ctx_t *t, tls_info_t *o) {
  memset(o, 0, sizeof *o);
  o->cert = t->cert;
  o->key = t->key;
  memcpy(o->subject, t->subject, sizeof o->subject);
  memcpy(o->issuer, t->issuer, sizeof o->issuer);
  memcpy(o->serial, t->serial, sizeof o->serial);
  o->not_before = t->not_before;
  o->not_after = t->not_after;
  o->loaded_at = t->loaded_at;
  o->last_error = t->last_error;
  o->last_error_at = t->last_error_at;
  o->loads = t->loads;
  o->failures = t->failures;
}

void tls_ctx_free(tls_ctx_t *t) {
  if (!t) return;
  SSL_CTX_free(t->ctx);
  free(t->name);
  free(t->cert);
  free(t->key);
  free(t);
}
