/* tls_conn.c - one TLS server session over two memory BIOs (see tls.h): the read BIO gets the
 * socket's ciphertext, the write BIO collects what must go back; the caller moves the bytes. */
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls_internal.h"

struct tls_conn {
  SSL *ssl;
  BIO *rbio, *wbio; /* owned by ssl */
  int established, failed;
  char error[128];
};

tls_conn_t *tls_conn_new(tls_ctx_t *t) {
  tls_conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->ssl = SSL_new(t->ctx); /* takes a reference on the current SSL_CTX */
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (!c->ssl || !c->rbio || !c->wbio) {
    if (c->ssl) SSL_free(c->ssl);
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    free(c);
    ERR_clear_error();
    return NULL;
  }
  /* An empty read BIO means "retry later", not end of file. */
  BIO_set_mem_eof_return(c->rbio, -1);
  BIO_set_mem_eof_return(c->wbio, -1);
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_accept_state(c->ssl);
  return c;
}

void tls_conn_free(tls_conn_t *c) {
  if (!c) return;
  SSL_free(c->ssl); /* frees both BIOs, drops the SSL_CTX reference */
  free(c);
}

static int fail(tls_conn_t *c, const char *fallback) {
  if (!c->failed) tls__reason(c->error, sizeof c->error, fallback);
  ERR_clear_error();
  c->failed = 1;
  return TLS_FAIL;
}

int tls_conn_feed(tls_conn_t *c, const char *data, size_t len) {
  if (c->failed) return TLS_FAIL;
  while (len) {
    size_t n = 0;
    if (BIO_write_ex(c->rbio, data, len, &n) != 1 || n == 0) return fail(c, "out of memory");
    data += n;
    len -= n;
  }
  return 0;
}

int tls_conn_read(tls_conn_t *c, char *buf, size_t cap) {
  if (c->failed) return TLS_FAIL;
  ERR_clear_error();
  if (!c->established) {
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return TLS_AGAIN;
      return fail(c, e == SSL_ERROR_SYSCALL ? "unexpected end of handshake" : "handshake failed");
    }
    c->established = 1;
  }
  if (cap > 0x40000000) cap = 0x40000000;
  size_t n = 0;
  int r = SSL_read_ex(c->ssl, buf, cap, &n);
  if (r == 1) return (int)n;
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return TLS_AGAIN;
  if (e == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return TLS_CLOSED;
  }
  return fail(c, "bad record");
}

int tls_conn_write(tls_conn_t *c, const void *data, size_t len) {
  if (c->failed || !c->established) return TLS_FAIL;
  ERR_clear_error();
  const char *p = data;
  while (len) { /* a memory BIO takes everything: one pass, unless a record limit splits it */
    size_t n = 0;
    if (SSL_write_ex(c->ssl, p, len, &n) != 1) return fail(c, "write failed");
    p += n;
    len -= n;
  }
  return 0;
}

void tls_conn_close_notify(tls_conn_t *c) {
  if (c->failed || !c->established) return;
  ERR_clear_error();
  SSL_shutdown(c->ssl);
  ERR_clear_error();
}

size_t tls_conn_pending(const tls_conn_t *c) {
  return BIO_ctrl_pending(c->wbio);
}

size_t tls_conn_take(tls_conn_t *c, char *dst, size_t cap) {
  size_t n = 0;
  if (cap == 0 || BIO_read_ex(c->wbio, dst, cap, &n) != 1) return 0;
  return n;
}

int tls_conn_established(const tls_conn_t *c) {
  return c->established;
}

const char *tls_conn_error(const tls_conn_t *c) {
  return c->error;
}
