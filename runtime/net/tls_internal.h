/* tls_internal.h - what tls_ctx.c (contexts) and tls_conn.c (sessions) share (tls__ prefix). */
#ifndef CHATGW_TLS_INTERNAL_H
#define CHATGW_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "tls.h"

struct tls_ctx {
  SSL_CTX *ctx; /* the current one: new sessions take a reference */
  char *name, *cert, *key;
  char subject[256], issuer[256], serial[80];
  double not_before, not_after, loaded_at;
  char last_error[512];
  double last_error_at;
  unsigned long loads, failures;
};

/* OpenSSL's reason for the first error on the thread's queue (or fallback), queue cleared. */
void tls__reason(char *out, size_t len, const char *fallback);

#endif
