/* http_server.h - HTTP/1.1 server on libuv + http-parser (libhttp-parser-dev 2.9).
 *
 * Owns listeners and connections. Each complete request is handed to one callback; the
 * consumer answers it exactly once with http_request_respond(), now or later (from another
 * loop iteration). One request per connection is in flight at a time: the parser is paused
 * at message end and resumed after the response is queued, so pipelined requests are
 * answered in order. The server itself answers malformed input (400, then close), oversize
 * headers (431), oversize bodies (413, decided from Content-Length before the body is read),
 * and slow clients (408 on header/body timeout, then close); keep-alive connections idle for
 * longer than idle_timeout_ms are closed. Hostile clients (docs/operations.md): a connection
 * whose unsent output passes max_unsent_bytes is neither read nor parsed until it drains; the
 * first byte is due within header_timeout_ms; max_per_ip connections per address (503 beyond);
 * bodies grow as they arrive under a global max_buffered_body_bytes (503 beyond); strict
 * framing on top of the non-strict http-parser (400); no query string in logged paths. Every
 * response carries X-Request-Id (the client's X-Request-Id when it is sane, else a generated one),
 * is written to the access log and counted in metrics (chatgw_http_requests_total{route,status},
 * chatgw_http_request_duration_seconds{route}, chatgw_http_connections_open). */
#ifndef CHATGW_HTTP_SERVER_H
#define CHATGW_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tls.h"

typedef struct http_server http_server_t;
typedef struct http_request http_request_t;

typedef struct {
  const char *name; /* request headers: lower-cased; NUL-terminated */
  size_t name_len;
  const char *value; /* NUL-terminated */
  size_t value_len;
} http_header_t;

typedef struct {
  size_t max_header_bytes;    /* request line + headers; beyond: 431. default 16384 */
  size_t max_body_bytes;      /* beyond: 413. default 1048576 */
  uint64_t header_timeout_ms; /* first byte to end of headers; beyond: 408 + close. 10000 */
  uint64_t body_timeout_ms;   /* end of headers to end of body; beyond: 408 + close. 30000 */
  uint64_t idle_timeout_ms;   /* keep-alive wait for the next request; beyond: close. 60000 */
  size_t max_connections;     /* beyond: the new connection gets 503 and is closed. 1024 */
  size_t max_per_ip;          /* open connections per client address; beyond: 503 + close. 256 */
  size_t max_unsent_bytes;    /* a connection's unsent output; beyond: no parsing, no reading
                                 until it drains (pipelining back-pressure). 262144 */
  size_t
      max_buffered_body_bytes; /* request bodies held by the server in all; beyond: 503. 64 MiB */
} http_limits_t;

void http_limits_default(http_limits_t *l);

struct http_request {
  const char *method;     /* "GET", "POST", ... */
  const char *path;       /* raw path without query, e.g. "/v1/items/42" */
  const char *query;      /* raw query without '?', "" when none */
  http_header_t *headers; /* in arrival order; repeated headers appear repeatedly */
  size_t nheaders;
  const char *body; /* de-chunked; NUL-terminated; body_len 0 when none */
  size_t body_len;
  const char *remote_addr; /* peer IP as text, "127.0.0.1" or "::1" */
  int remote_port;
  const char *listener;   /* name of the listener it arrived on, e.g. "main" */
  const char *request_id; /* from X-Request-Id if 1..128 chars of [A-Za-z0-9._:-], else generated */
  uint64_t start_ns;      /* uv_hrtime() when the request started arriving */
  int is_head;            /* HEAD: the consumer answers as for GET; the server drops the body */
  void *user;             /* free for the consumer */
  int upgrade;            /* http-parser saw `Connection: upgrade` + `Upgrade:` (see
                             http_request_upgrade); the connection closes after a normal answer */
};

/* Called once per complete request. */
typedef void (*http_request_cb)(http_request_t *req, void *ud);

/* Called at headers-complete for a request with a body to come (Content-Length > 0 or chunked),
 * before any byte of the body is read and before `100 Continue`: method, path, query, headers,
 * remote and listener are set; body is not. The callback either returns and the body is read
 * (then http_request_cb gets the whole request), or answers it with http_request_reject (a
 * final response with Connection: close; the body is never read). It must not keep req. */
typedef void (*http_headers_cb)(http_request_t *req, void *ud);
void http_server_set_headers_cb(http_server_t *s, http_headers_cb cb);
/* From inside http_headers_cb only: answers req now (Connection: close, access log, metrics);
 * the connection discards the body and lingers before it closes. */
void http_request_reject(http_request_t *req, int status, const http_header_t *headers,
                         size_t nheaders, const char *body, size_t body_len, const char *route);

http_server_t *http_server_new(uv_loop_t *loop, const http_limits_t *limits, http_request_cb cb,
                               void *ud);
void http_server_set_limits(http_server_t *s, const http_limits_t *limits); /* on reload */

/* Bind and listen. port 0 picks a free port (see http_server_port). Returns 0, or -1 with a
 * message in err ("listen main 127.0.0.1:8787: address already in use"). */
int http_server_listen(http_server_t *s, const char *name, const char *host, int port, char *err,
                       size_t errlen);
/* Listen on an already bound socket (one the master passed down: runtime/master.c). The
 * server owns fd from then on, on success and on failure. 0, or -1 with err. */
int http_server_listen_fd(http_server_t *s, const char *name, int fd, char *err, size_t errlen);
/* The listening descriptor of a listener (still the server's), -1 if no such listener. */
int http_server_listener_fd(http_server_t *s, const char *name);
int http_server_port(http_server_t *s, const char *name); /* bound port, -1 if no such listener */

/* TLS on a listener (after http_server_listen): loads cert and key (PEM paths) for its new
 * connections. 0, or -1 with err ("listener main: tls: certificate /x.pem: cannot open: ...").
 * Called again for the same listener it is a reload (see http_server_tls_reload). */
int http_server_set_tls(http_server_t *s, const char *name, const char *cert, const char *key,
                        char *err, size_t errlen);
/* SIGHUP: every TLS listener loads its files again. A listener whose files are bad keeps its
 * running certificate (ERROR logged, last_error in its info). Open connections keep theirs. */
void http_server_tls_reload(http_server_t *s);
/* The i-th TLS listener (0-based, in listener order): 0 and *name / *out set, -1 past the end. */
int http_server_tls_info(http_server_t *s, int i, const char **name, tls_info_t *out);
int http_server_has_listener(http_server_t *s, const char *name);

/* Answer a request. headers: extra response headers (e.g. Content-Type); the server adds
 * Content-Length, Connection, X-Request-Id (unless given), Date. route: the route template
 * for logs and metrics ("GET /v1/items/:id"), or NULL for unmatched ("-"). Safe to call after
 * the client went away (the response is dropped). Must be called exactly once per request;
 * req is invalid afterwards. */
void http_request_respond(http_request_t *req, int status, const http_header_t *headers,
                          size_t nheaders, const char *body, size_t body_len, const char *route);
int http_request_aborted(const http_request_t *req); /* 1 if the connection is gone */

/* Protocol switch (WebSocket) for a request with req->upgrade set: instead of answering it, take
 * its connection's socket. `tcp` is the caller's handle, initialised with uv_tcp_init and not
 * opened. On success (0) `tcp` owns a duplicate of the socket (not reading yet); *rest (malloc'd,
 * or NULL when *rest_len is 0; the caller frees it) holds the bytes the client sent after the
 * request (they belong to the new protocol); the request is logged with status 101 and `route`
 * and freed; the HTTP connection is closed (the socket stays open through the duplicate). The
 * caller writes the 101 response itself. On a TLS listener *tls is the connection's session
 * (the caller's from now on: it encrypts what it writes, decrypts what it reads, frees it), else
 * NULL; *rest is plaintext either way. On failure (-1: the connection is gone, a response is
 * still being written, or dup/open failed) nothing changed: the caller closes its handle and
 * answers req as usual. */
int http_request_upgrade(http_request_t *req, uv_tcp_t *tcp, char **rest, size_t *rest_len,
                         tls_conn_t **tls, const char *route);

/* Graceful stop: close listeners, close idle keep-alive connections now, and close each busy
 * connection after its current response (Connection: close). */
void http_server_stop_accepting(http_server_t *s);
size_t http_server_connection_count(const http_server_t *s);
size_t http_server_inflight(const http_server_t *s); /* requests handed out, not yet answered */
/* Close every connection and listener now; done(ud) runs once all handles are closed. Requests
 * still unanswered stay valid until answered (their responses are dropped). */
void http_server_close(http_server_t *s, void (*done)(void *ud), void *ud);
/* Frees the server; only after close's done callback and with no request unanswered. */
void http_server_free(http_server_t *s);

#endif
