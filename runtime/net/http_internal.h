/* http_internal.h - what the files of the HTTP server share (http__ prefix): the connection,
 * request and server structs. The files call each other one way only:
 *
 *   http_server.c   the server: listeners, accept, graceful stop, close, free
 *     -> http_conn.c     a connection's life: reading, the parse loop, timers, writing,
 *                        linger, answering and upgrading requests, teardown accounting
 *          -> http_parse.c     http-parser callbacks: request building, header/body limits,
 *                              request ids (callbacks only record; http_conn.c acts)
 *          -> http_response.c  response heads, reason phrases, the Date cache, access log and
 *                              metrics of each answered request
 *          -> tls_*.c          (not part of this module) a TLS listener's sessions: http_conn.c
 *                              feeds them the socket's bytes and parses their plaintext */
#ifndef CHATGW_HTTP_INTERNAL_H
#define CHATGW_HTTP_INTERNAL_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "http_server.h"
#include "metrics.h"
#include "textbuf.h"
#include "tls.h"

#define MAX_HEADERS 100
#define LINGER_MS 2000         /* drain the peer's leftovers after a final response */
#define LINGER_STOPPING_MS 250 /* ... shorter while the server drains */
#define CONN_BUF_MIN 16384
#define CONN_BUF_KEEP 65536 /* an idle connection keeps at most this much read buffer */
#define BUSY_BUF_EXTRA 65536
#define RID_MAX 128

#define HTTP_ANSWERED 1 /* pending_status: http_request_reject answered inside a callback */

enum { S_IDLE, S_HEADERS, S_BODY, S_BUSY, S_FLUSH, S_LINGER };
enum { CB_NONE, CB_URL, CB_FIELD, CB_VALUE };

typedef struct listener {
  uv_tcp_t tcp;
  http_server_t *srv;
  char *name;
  int port;
  int open;       /* listening, handle not closed */
  int linked;     /* in srv->listeners (else a failed bind whose handle is being closed) */
  tls_ctx_t *tls; /* NULL: plaintext */
  struct listener *next;
} listener_t;

typedef struct {
  size_t name_off, name_len, value_off, value_len;
} hdr_ref_t;

typedef struct conn conn_t;

/* Open connections per client address (http.max_per_ip), keyed SipHash buckets. */
typedef struct ip_count {
  struct ip_count *next;
  size_t n;
  char ip[64];
} ip_count_t;
#define IP_BUCKETS 256

typedef struct req {
  http_request_t pub; /* first member: http_request_t * <-> req_t * */
  http_server_t *srv;
  conn_t *conn; /* NULL once the connection is gone */
  char *data;   /* url, header names and values, path, query; each NUL-terminated */
  size_t dlen, dcap;
  size_t url_off, url_len;
  hdr_ref_t *hrefs;
  size_t nh, hcap;
  http_header_t *hdrs;
  char *body;
  size_t blen, bcap;
  size_t hdr_bytes;
  int last;
  int headers_done;
  int early_done; /* 1: in the headers callback; 2: it answered the request */
  int discard;    /* answered early, the connection kept: the body is read and dropped */
  /* strict framing (http-parser is built non-strict; see http_parse.c) */
  const char *scan;     /* end of the last header callback's bytes in the current execute */
  int gap_nl, gap_fold; /* the bytes between two header callbacks: a line end, then SP/HT */
  int crlf_need;        /* chunked: bytes of the CRLF after a chunk's data still to check */
  int nhost;
  int keep_alive;
  int http10;
  char rid[RID_MAX + 1];
  char remote[64];
} req_t;

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shut;
  http_server_t *srv;
  listener_t *lis;
  http_parser parser;
  char *buf; /* unparsed input is buf[off..len) */
  size_t off, len, cap;
  int state;
  req_t *cur;         /* being parsed */
  req_t *handed;      /* with the consumer */
  int pending_status; /* error decided inside a parser callback */
  int rearm;          /* a parser callback changed state: re-arm the timer after execute */
  int send_continue;  /* a parser callback saw Expect: 100-continue with a body to come */
  int closing, nclosed, reading, resume, peer_eof, rejected;
  int blocked;         /* unsent output over max_unsent_bytes: no parsing, no reading */
  unsigned nreq;       /* requests begun on this connection (0: the first byte is still due) */
  struct ip_count *ip; /* this connection's address in the per-address table */
  const char *exec_start, *exec_end; /* the bytes of the http_parser_execute running now */
  size_t writes;                     /* uv_write requests in flight */
  tls_conn_t *tls; /* a TLS listener's session (NULL: plaintext; moved out by an upgrade) */
  int tls_reject;  /* over max_connections: answered 503 once the handshake is done */
  uint64_t accepted_ns;
  char remote[64];
  int remote_port;
  conn_t *prev, *next;
};

struct http_server {
  uv_loop_t *loop;
  http_limits_t lim;
  http_request_cb cb;
  http_headers_cb hcb;
  void *ud;
  size_t body_bytes; /* capacity of the request bodies held, over every connection */
  ip_count_t *ips[IP_BUCKETS];
  uint64_t ip_key[2];
  listener_t *listeners;
  conn_t *conns;
  size_t nconns;  /* open connections (closing ones excluded) */
  size_t nactive; /* open connections that count against max_connections */
  size_t inflight;
  size_t handles;    /* libuv handles not yet closed */
  uv_timer_t anchor; /* makes the done callback always asynchronous */
  int stopping, closing, closed, in_done, free_requested;
  void (*done)(void *);
  void *done_ud;
  metric_t *m_requests, *m_duration, *m_open, *m_total;
  time_t date_sec;
  char date[128];
};

typedef struct {
  uv_write_t w;
  conn_t *c;
  char *head;  /* malloc'd, NULL for static data */
  char body[]; /* copy of the response body */
} wreq_t;

/* ---- http_parse.c ---- */

extern const http_parser_settings http__parser_settings;
void http__req_free(req_t *r);
void http__gen_request_id(char out[33]);
/* http_parser's header limit is process-global: only ever raised (see http_parse.c). */
void http__raise_parser_limit(size_t max_header_bytes);
/* Strict framing checks on the raw bytes the parser skips (http_parse.c): the bytes between the
 * last header callback and the end of the current execute; a chunk's CRLF at the start of the
 * next one. -1: the request is malformed (400). */
int http__scan_tail(conn_t *c);
int http__check_crlf(conn_t *c, const char *p, const char *end);

/* ---- http_response.c ---- */

/* Appends the status line and headers of a response to b: the caller's headers (invalid ones
 * dropped with a WARN; Content-Length, Transfer-Encoding and Connection replaced), Date and
 * X-Request-Id unless given, Content-Length unless the status has no body, and Connection.
 * *keep is cleared when the caller's headers ask for close. Returns 1 if the status carries no
 * body (1xx, 204, 304). */
int http__response_head(textbuf_t *b, http_server_t *s, int status, const http_header_t *hs,
                        size_t nh, size_t body_len, int *keep, const char *rid, int http10);
/* The JSON error code of a server-generated error status ("bad_request", ...). */
const char *http__error_reason(int status);
/* Access log line and metrics of one answered request. */
void http__record(http_server_t *s, const char *method, const char *route, const char *path,
                  int status, uint64_t start_ns, const char *rid, const char *remote,
                  const char *listener, int aborted);

/* ---- http_conn.c ---- */

/* Unsent output of a connection: libuv's write queue (TLS: the ciphertext, written at once). */
static inline size_t http__unsent(const conn_t *c) {
  return c->tcp.write_queue_size;
}
/* The per-address count of the connection's peer: 0, or -1 when the address is at its cap. */
int http__ip_acquire(conn_t *c);
/* Inside the headers callback: a final response now (http_request_reject). keep: the request
 * may keep the connection; then 1 is returned and the body is to be read and dropped; else 0
 * (Connection: close sent, c->pending_status is HTTP_ANSWERED, the connection lingers). */
int http__conn_reject(conn_t *c, int status, const http_header_t *hs, size_t nh, const char *body,
                      size_t blen, const char *route, int keep);

/* An accepted connection (linked, handles initialised, peer address known): start reading;
 * over: answer 503 and close. */
/* A new connection of listener l, linked into s's list and counted (what accept and the fuzz
 * harness share); the caller opens its socket, then calls http__conn_start. NULL without
 * memory. */
conn_t *http__conn_new(http_server_t *s, listener_t *l);
void http__conn_start(conn_t *c, int over);
void http__conn_close(conn_t *c);
void http__conn_arm(conn_t *c);
/* After a server handle closed: once every one is, the close is done (and the free, if asked). */
void http__server_maybe_done(http_server_t *s);
/* Frees the server and its listeners (closed, nothing in flight). */
void http__server_free_now(http_server_t *s);

#endif
