/* tls.h - TLS termination for the HTTP and WebSocket servers: OpenSSL over memory BIOs, so
 * the socket stays libuv's and OpenSSL never touches a descriptor.
 *
 *   tls_ctx_t   a listener's certificate and key: the current SSL_CTX (TLS 1.2+, ALPN
 *               http/1.1) and what /health shows. tls_ctx_reload builds a new SSL_CTX from
 *               the same files; new sessions use it, sessions already open keep theirs (each
 *               SSL holds a reference on its SSL_CTX). A bad file keeps the running one.
 *   tls_conn_t  one connection's session: ciphertext from the socket goes in with
 *               tls_conn_feed, plaintext comes out of tls_conn_read; plaintext goes in with
 *               tls_conn_write, and the ciphertext to send (handshake records, alerts,
 *               encrypted data, close_notify) is taken with tls_conn_take. The caller writes
 *               it to the socket after every call that may produce some (tls_conn_pending).
 *
 * Error texts name the file and OpenSSL's reason; they never contain key material. */
#ifndef CHATGW_TLS_H
#define CHATGW_TLS_H

#include <stddef.h>

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

/* What /health?verbose=1 shows of a listener's certificate. */
typedef struct {
  const char *cert, *key; /* the paths */
  char subject[256];      /* of the certificate in use, "/CN=example.org" */
  char issuer[256];
  char serial[80];              /* hex */
  double not_before, not_after; /* wall-clock seconds */
  double loaded_at;             /* when the certificate in use was loaded */
  const char *last_error;       /* of the last load that failed, "" after a good one */
  double last_error_at;
  unsigned long loads, failures; /* loads that succeeded / failed, boot included */
} tls_info_t;

/* Loads cert (PEM, the chain after the leaf) and key (PEM). NULL with err ("<path>: <reason>")
 * when a file cannot be read or parsed, or the key does not match the certificate. An expired
 * certificate loads (with a WARN). `name` (the listener) is only used in log lines. */
tls_ctx_t *tls_ctx_new(const char *name, const char *cert, const char *key, char *err,
                       size_t errlen);
/* Loads the same files again into a new SSL_CTX. 0: in use for new sessions; -1: the running one
 * is kept, err and last_error say why (and an ERROR is logged). */
int tls_ctx_reload(tls_ctx_t *t, char *err, size_t errlen);
void tls_ctx_info(const tls_ctx_t *t, tls_info_t *out);
/* Frees the context; sessions still open keep the SSL_CTX they use. */
void tls_ctx_free(tls_ctx_t *t);

enum {
  TLS_AGAIN = 0,   /* tls_conn_read: no plaintext now (more ciphertext needed) */
  TLS_FAIL = -1,   /* a fatal error (handshake refused, bad record): send what is pending, close */
  TLS_CLOSED = -2, /* the peer sent close_notify */
};

/* A server session on t's current SSL_CTX; NULL when out of memory. */
tls_conn_t *tls_conn_new(tls_ctx_t *t);
void tls_conn_free(tls_conn_t *c);
/* Ciphertext read from the socket. 0, or TLS_FAIL (out of memory). */
int tls_conn_feed(tls_conn_t *c, const char *data, size_t len);
/* Advances the handshake and decrypts: > 0 bytes of plaintext in buf, TLS_AGAIN, TLS_FAIL or
 * TLS_CLOSED. Call until it returns <= 0 so no plaintext is left inside the session. */
int tls_conn_read(tls_conn_t *c, char *buf, size_t cap);
/* Encrypts len bytes (only once established). 0 or TLS_FAIL. */
int tls_conn_write(tls_conn_t *c, const void *data, size_t len);
/* Queues a close_notify alert (established sessions that did not fail only). */
void tls_conn_close_notify(tls_conn_t *c);
size_t tls_conn_pending(const tls_conn_t *c);               /* ciphertext waiting to be sent */
size_t tls_conn_take(tls_conn_t *c, char *dst, size_t cap); /* moves it out, returns bytes */
int tls_conn_established(const tls_conn_t *c);              /* the handshake is complete */
/* Why the session failed ("unsupported protocol", "http request", ...), "" if it did not. */
const char *tls_conn_error(const tls_conn_t *c);

#endif
