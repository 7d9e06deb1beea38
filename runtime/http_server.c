/* http_server.c - HTTP/1.1 server on libuv + http-parser 2.9 (see http_server.h).
 *
 * Connection life cycle (conn_t.state):
 *   S_IDLE     waiting for the first byte of a request (idle timer; also the state right after a
 *              keep-alive response, when a 0 ms timer "resumes" parsing of buffered bytes)
 *   S_HEADERS  first byte seen, headers incomplete (header timer, not reset by later bytes)
 *   S_BODY     headers complete, body incomplete (body timer)
 *   S_BUSY     request handed to the consumer, parser paused; no timer; bytes are buffered
 *   S_FLUSH    final response queued (Connection: close); incoming bytes discarded
 *   S_LINGER   final response written, write side shut down; read and discard until EOF or
 *              LINGER_MS so that the peer sees the response instead of a reset
 * Each connection owns a uv_tcp_t and a uv_timer_t; it is freed when both are closed. Requests
 * live independently of their connection: when the connection dies first, req->conn becomes
 * NULL and the response is dropped when it comes. */
#include "http_server.h"

#include <fcntl.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "textbuf.h"

#define MAX_HEADERS 100
#define LINGER_MS 2000         /* drain the peer's leftovers after a final response */
#define LINGER_STOPPING_MS 250 /* ... shorter while the server drains */
#define CONN_BUF_MIN 16384
#define CONN_BUF_KEEP 65536 /* an idle connection keeps at most this much read buffer */
#define BUSY_BUF_EXTRA 65536
#define LISTEN_BACKLOG 511
#define RID_MAX 128

enum { S_IDLE, S_HEADERS, S_BODY, S_BUSY, S_FLUSH, S_LINGER };
enum { CB_NONE, CB_URL, CB_FIELD, CB_VALUE };

typedef struct listener {
  uv_tcp_t tcp;
  http_server_t *srv;
  char *name;
  int port;
  int open;   /* listening, handle not closed */
  int linked; /* in srv->listeners (else a failed bind whose handle is being closed) */
  struct listener *next;
} listener_t;

typedef struct {
  size_t name_off, name_len, value_off, value_len;
} hdr_ref_t;

typedef struct conn conn_t;

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
  int closing, nclosed, reading, resume, peer_eof, rejected;
  size_t writes; /* uv_write requests in flight */
  uint64_t accepted_ns;
  char remote[64];
  int remote_port;
  conn_t *prev, *next;
};

struct http_server {
  uv_loop_t *loop;
  http_limits_t lim;
  http_request_cb cb;
  void *ud;
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

/* ---- small helpers ------------------------------------------------------------------------ */

static int eq_ci(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  return alen == blen && strncasecmp(a, b, blen) == 0;
}

static int is_tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return 1;
  return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int valid_request_id(const char *s, size_t n) {
  if (n < 1 || n > RID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '.' || ch == '_' || ch == ':' || ch == '-'))
      return 0;
  }
  return 1;
}

/* Request ids: 128 bits from a splitmix64 stream seeded once from the OS. Unique and
 * unguessable enough for tracing, and no syscall per request. */
static uint64_t g_rid_state;
static int g_rid_seeded;

static uint64_t splitmix64(void) {
  uint64_t z = (g_rid_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void gen_request_id(char out[33]) {
  if (!g_rid_seeded) {
    /* getrandom through libuv: OpenSSL stays uninitialised (and out of RSS) until needed */
    if (uv_random(NULL, NULL, &g_rid_state, sizeof g_rid_state, 0, NULL) != 0)
      g_rid_state = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    g_rid_seeded = 1;
  }
  uint64_t v[2] = {splitmix64(), splitmix64()};
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++)
    out[i] = hex[(v[i / 16] >> ((i % 16) * 4)) & 15];
  out[32] = 0;
}

static const char *reason_phrase(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 304:
    return "Not Modified";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 413:
    return "Payload Too Large";
  case 415:
    return "Unsupported Media Type";
  case 422:
    return "Unprocessable Entity";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  default:
    return "Unknown";
  }
}

static const char *error_reason(int status) {
  switch (status) {
  case 400:
    return "bad_request";
  case 408:
    return "request_timeout";
  case 413:
    return "payload_too_large";
  case 431:
    return "request_header_fields_too_large";
  case 503:
    return "service_unavailable";
  default:
    return "internal_error";
  }
}

static const char *date_now(http_server_t *s) {
  static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t t = time(NULL);
  if (t != s->date_sec || !s->date[0]) {
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(s->date, sizeof s->date, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    s->date_sec = t;
  }
  return s->date;
}

static void fill_limits(http_limits_t *dst, const http_limits_t *src) {
  http_limits_t d;
  http_limits_default(&d);
  if (!src) {
    *dst = d;
    return;
  }
  *dst = *src;
  if (!dst->max_header_bytes) dst->max_header_bytes = d.max_header_bytes;
  if (!dst->max_body_bytes) dst->max_body_bytes = d.max_body_bytes;
  if (!dst->header_timeout_ms) dst->header_timeout_ms = d.header_timeout_ms;
  if (!dst->body_timeout_ms) dst->body_timeout_ms = d.body_timeout_ms;
  if (!dst->idle_timeout_ms) dst->idle_timeout_ms = d.idle_timeout_ms;
  if (!dst->max_connections) dst->max_connections = d.max_connections;
}

/* http_parser's header limit is process-global: only ever raise it, to a bit above the largest
 * configured max_header_bytes; the configured limit itself is enforced per request. */
static void raise_parser_limit(size_t max_header_bytes) {
  static uint32_t current = HTTP_MAX_HEADER_SIZE;
  size_t want = max_header_bytes + 4096;
  if (want > UINT32_MAX - 1) want = UINT32_MAX - 1;
  if (want > current) {
    current = (uint32_t)want;
    http_parser_set_max_header_size(current);
  }
}

/* ---- logging and metrics ------------------------------------------------------------------ */

static void record(http_server_t *s, const char *method, const char *route, const char *path,
                   int status, uint64_t start_ns, const char *rid, const char *remote,
                   const char *listener, int aborted) {
  uint64_t now = uv_hrtime();
  double secs = now > start_ns ? (double)(now - start_ns) / 1e9 : 0.0;
  char st[16];
  snprintf(st, sizeof st, "%d", status);
  const char *r = route && *route ? route : "-";
  if (log_enabled(LOG_INFO)) {
    char dur[32];
    snprintf(dur, sizeof dur, "%.3f", secs * 1000.0);
    log_field_t f[9] = {
        {"method", method ? method : "-", 0},
        {"route", r, 0},
        {"path", path ? path : "-", 0},
        {"status", st, 1},
        {"duration_ms", dur, 1},
        {"request_id", rid ? rid : "-", 0},
        {"remote", remote ? remote : "-", 0},
        {"listener", listener ? listener : "-", 0},
        {"aborted", "true", 1},
    };
    log_write(LOG_INFO, "request", f, aborted ? 9 : 8);
  }
  const char *lv[2] = {r, st};
  if (s->m_requests) metrics_inc(s->m_requests, lv, 1);
  if (s->m_duration) metrics_observe(s->m_duration, lv, secs);
}

/* ---- forward declarations ----------------------------------------------------------------- */

static void conn_close(conn_t *c);
static void conn_process(conn_t *c);
static void conn_fail(conn_t *c, int status);
static void conn_arm(conn_t *c);
static void on_timer(uv_timer_t *t);
static void server_maybe_done(http_server_t *s);
static void server_free_now(http_server_t *s);

/* ---- requests ----------------------------------------------------------------------------- */

static void req_free(req_t *r) {
  if (!r) return;
  free(r->data);
  free(r->hrefs);
  free(r->hdrs);
  free(r->body);
  free(r);
}

static int req_reserve(req_t *r, size_t extra) {
  if (r->dlen + extra + 1 <= r->dcap) return 0;
  size_t ncap = r->dcap ? r->dcap : 512;
  while (ncap < r->dlen + extra + 1)
    ncap *= 2;
  char *np = realloc(r->data, ncap);
  if (!np) return -1;
  r->data = np;
  r->dcap = ncap;
  return 0;
}

static int req_add(req_t *r, const char *at, size_t len) {
  if (req_reserve(r, len)) return -1;
  memcpy(r->data + r->dlen, at, len);
  r->dlen += len;
  r->data[r->dlen] = 0;
  return 0;
}

static int req_nul(req_t *r) {
  if (req_reserve(r, 1)) return -1;
  r->data[r->dlen++] = 0;
  return 0;
}

/* ---- parser callbacks --------------------------------------------------------------------- */

static int fail_in_cb(conn_t *c, int status) {
  c->pending_status = status;
  return -1;
}

static int check_hdr_bytes(conn_t *c, req_t *r) {
  return r->hdr_bytes > c->srv->lim.max_header_bytes ? fail_in_cb(c, 431) : 0;
}

static int on_message_begin(http_parser *p) {
  conn_t *c = p->data;
  req_t *r = calloc(1, sizeof *r);
  if (!r) return fail_in_cb(c, 503);
  r->srv = c->srv;
  r->pub.start_ns = uv_hrtime();
  r->pub.listener = c->lis->name;
  memcpy(r->remote, c->remote, sizeof r->remote);
  r->pub.remote_addr = r->remote;
  r->pub.remote_port = c->remote_port;
  req_free(c->cur);
  c->cur = r;
  c->state = S_HEADERS;
  conn_arm(c);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  if (!r) return fail_in_cb(c, 400);
  if (r->last == CB_NONE) {
    r->url_off = r->dlen;
    r->last = CB_URL;
    r->hdr_bytes += strlen(http_method_str((enum http_method)p->method)) + 1 + 11;
  }
  if (req_add(r, at, len)) return fail_in_cb(c, 503);
  r->url_len += len;
  r->hdr_bytes += len;
  return check_hdr_bytes(c, r);
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  if (!r) return fail_in_cb(c, 400);
  if (r->headers_done) return 0; /* chunked trailers are dropped */
  if (r->last != CB_FIELD) {
    if (r->last == CB_URL || r->last == CB_VALUE) {
      if (req_nul(r)) return fail_in_cb(c, 503);
    }
    if (r->nh >= MAX_HEADERS) return fail_in_cb(c, 431);
    if (r->nh == r->hcap) {
      size_t ncap = r->hcap ? r->hcap * 2 : 16;
      hdr_ref_t *nh = realloc(r->hrefs, ncap * sizeof *nh);
      if (!nh) return fail_in_cb(c, 503);
      r->hrefs = nh;
      r->hcap = ncap;
    }
    hdr_ref_t *h = &r->hrefs[r->nh++];
    memset(h, 0, sizeof *h);
    h->name_off = r->dlen;
    r->last = CB_FIELD;
    r->hdr_bytes += 4; /* ": " and CRLF */
  }
  size_t start = r->dlen;
  if (req_add(r, at, len)) return fail_in_cb(c, 503);
  for (size_t i = start; i < r->dlen; i++) {
    char ch = r->data[i];
    if (ch >= 'A' && ch <= 'Z') r->data[i] = (char)(ch + 32);
  }
  r->hrefs[r->nh - 1].name_len += len;
  r->hdr_bytes += len;
  return check_hdr_bytes(c, r);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  if (!r) return fail_in_cb(c, 400);
  if (r->headers_done) return 0;
  if (r->nh == 0) return fail_in_cb(c, 400);
  hdr_ref_t *h = &r->hrefs[r->nh - 1];
  if (r->last != CB_VALUE) {
    if (req_nul(r)) return fail_in_cb(c, 503);
    h->value_off = r->dlen;
    r->last = CB_VALUE;
  }
  if (req_add(r, at, len)) return fail_in_cb(c, 503);
  h->value_len += len;
  r->hdr_bytes += len;
  return check_hdr_bytes(c, r);
}

/* Terminates the last string and fills path/query and the public header array. */
static int req_finish_headers(req_t *r) {
  if (r->last == CB_NONE) { /* cannot happen: the parser requires a URL */
    r->url_off = r->dlen;
    if (req_nul(r)) return -1;
  } else if (r->last == CB_FIELD) { /* a header without value callback: empty value */
    if (req_nul(r)) return -1;
    r->hrefs[r->nh - 1].value_off = r->dlen;
    if (req_nul(r)) return -1;
  } else {
    if (req_nul(r)) return -1;
  }
  /* Split the URL into path and query (origin form, or the path of an absolute URL). */
  size_t poff = r->url_off, plen = r->url_len, qoff = 0, qlen = 0;
  const char *url = r->data + r->url_off;
  if (r->url_len && url[0] != '/' && url[0] != '*') {
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, r->url_len, 0, &u) == 0) {
      if (u.field_set & (1 << UF_PATH)) {
        poff = r->url_off + u.field_data[UF_PATH].off;
        plen = u.field_data[UF_PATH].len;
      } else {
        plen = 0;
      }
      if (u.field_set & (1 << UF_QUERY)) {
        qoff = r->url_off + u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
      }
    }
  } else {
    const char *q = memchr(url, '?', r->url_len);
    const char *hash = memchr(url, '#', r->url_len);
    size_t end = hash ? (size_t)(hash - url) : r->url_len;
    if (q && (size_t)(q - url) < end) {
      plen = (size_t)(q - url);
      qoff = r->url_off + plen + 1;
      qlen = end - plen - 1;
    } else {
      plen = end;
    }
  }
  size_t path_at = r->dlen;
  if (plen == 0) {
    if (req_add(r, "/", 1) || req_nul(r)) return -1;
  } else {
    if (req_reserve(r, plen + 1)) return -1;
    memcpy(r->data + r->dlen, r->data + poff, plen);
    r->dlen += plen;
    if (req_nul(r)) return -1;
  }
  size_t query_at = r->dlen;
  if (req_reserve(r, qlen + 1)) return -1;
  memcpy(r->data + r->dlen, r->data + qoff, qlen);
  r->dlen += qlen;
  if (req_nul(r)) return -1;
  /* data no longer grows: pointers are stable from here on. */
  r->pub.path = r->data + path_at;
  r->pub.query = r->data + query_at;
  if (r->nh) {
    r->hdrs = calloc(r->nh, sizeof *r->hdrs);
    if (!r->hdrs) return -1;
    for (size_t i = 0; i < r->nh; i++) {
      r->hdrs[i].name = r->data + r->hrefs[i].name_off;
      r->hdrs[i].name_len = r->hrefs[i].name_len;
      r->hdrs[i].value = r->data + r->hrefs[i].value_off;
      r->hdrs[i].value_len = r->hrefs[i].value_len;
    }
  }
  r->pub.headers = r->hdrs;
  r->pub.nheaders = r->nh;
  r->headers_done = 1;
  return 0;
}

static int write_static(conn_t *c, const char *data, size_t len);

static int on_headers_complete(http_parser *p) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  http_server_t *s = c->srv;
  if (!r) return fail_in_cb(c, 400);
  if (r->headers_done) return 0;
  r->hdr_bytes += 2;
  if (check_hdr_bytes(c, r)) return -1;
  if (req_finish_headers(r)) return fail_in_cb(c, 503);
  r->pub.method = http_method_str((enum http_method)p->method);
  r->pub.is_head = p->method == HTTP_HEAD;
  r->http10 = p->http_major < 1 || (p->http_major == 1 && p->http_minor == 0);
  int expect_continue = 0;
  r->pub.request_id = NULL;
  for (size_t i = 0; i < r->nh; i++) {
    const http_header_t *h = &r->hdrs[i];
    if (!r->pub.request_id && eq_ci(h->name, h->name_len, "x-request-id") &&
        valid_request_id(h->value, h->value_len))
      r->pub.request_id = h->value;
    else if (eq_ci(h->name, h->name_len, "expect") && eq_ci(h->value, h->value_len, "100-continue"))
      expect_continue = 1;
  }
  if (!r->pub.request_id) {
    gen_request_id(r->rid);
    r->pub.request_id = r->rid;
  }
  int chunked = (p->flags & F_CHUNKED) != 0;
  int has_len = !chunked && p->content_length != ULLONG_MAX;
  if (has_len && p->content_length > s->lim.max_body_bytes) return fail_in_cb(c, 413);
  int has_body = chunked || (has_len && p->content_length > 0);
  if (has_len && p->content_length > 0) {
    r->bcap = (size_t)p->content_length + 1;
    r->body = malloc(r->bcap);
    if (!r->body) return fail_in_cb(c, 503);
  }
  if (has_body && expect_continue && !r->http10) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (write_static(c, cont, sizeof cont - 1)) return fail_in_cb(c, 503);
  }
  c->state = S_BODY;
  conn_arm(c);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  if (!r) return fail_in_cb(c, 400);
  if (r->blen + len > c->srv->lim.max_body_bytes) return fail_in_cb(c, 413);
  if (r->blen + len + 1 > r->bcap) {
    size_t ncap = r->bcap ? r->bcap : 1024;
    while (ncap < r->blen + len + 1)
      ncap *= 2;
    if (ncap > c->srv->lim.max_body_bytes + 1) ncap = c->srv->lim.max_body_bytes + 1;
    char *nb = realloc(r->body, ncap);
    if (!nb) return fail_in_cb(c, 503);
    r->body = nb;
    r->bcap = ncap;
  }
  memcpy(r->body + r->blen, at, len);
  r->blen += len;
  return 0;
}

static int on_message_complete(http_parser *p) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  if (!r || !r->headers_done) return fail_in_cb(c, 400);
  r->keep_alive = http_should_keep_alive(p) && !p->upgrade && p->method != HTTP_CONNECT;
  r->pub.upgrade = p->upgrade && p->method != HTTP_CONNECT;
  if (r->body) {
    r->body[r->blen] = 0;
    r->pub.body = r->body;
  } else {
    r->pub.body = "";
  }
  r->pub.body_len = r->blen;
  http_parser_pause(p, 1); /* execute returns right after this message */
  return 0;
}

static const http_parser_settings g_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- writing ------------------------------------------------------------------------------ */

static void conn_linger(conn_t *c);

static void on_write(uv_write_t *w, int status) {
  wreq_t *wr = (wreq_t *)w;
  conn_t *c = wr->c;
  free(wr->head);
  free(wr);
  c->writes--;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->writes == 0 && c->state == S_FLUSH) conn_linger(c);
}

static int write_static(conn_t *c, const char *data, size_t len) {
  wreq_t *wr = calloc(1, sizeof *wr);
  if (!wr) return -1;
  wr->c = c;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    free(wr);
    return -1;
  }
  c->writes++;
  return 0;
}

/* Builds and queues one response. *keep may be cleared (the consumer asked for close). */
static int send_response(conn_t *c, int status, const http_header_t *hs, size_t nh,
                         const char *body, size_t blen, int *keep, int head_only, const char *rid,
                         int http10) {
  for (size_t i = 0; i < nh; i++) {
    const char *n = hs[i].name, *v = hs[i].value;
    if (!n || !v) continue;
    size_t nl = hs[i].name_len ? hs[i].name_len : strlen(n);
    size_t vl = hs[i].value_len ? hs[i].value_len : strlen(v);
    if (eq_ci(n, nl, "connection") && vl >= 5) {
      for (size_t j = 0; j + 5 <= vl; j++)
        if (strncasecmp(v + j, "close", 5) == 0) *keep = 0;
    }
  }
  textbuf_t b = {0};
  textbuf_fmt(&b, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
  int have_date = 0, have_rid = 0;
  for (size_t i = 0; i < nh; i++) {
    const char *n = hs[i].name, *v = hs[i].value;
    if (!n || !v) continue;
    size_t nl = hs[i].name_len ? hs[i].name_len : strlen(n);
    size_t vl = hs[i].value_len ? hs[i].value_len : strlen(v);
    int ok = nl > 0;
    for (size_t j = 0; ok && j < nl; j++)
      ok = is_tchar((unsigned char)n[j]);
    for (size_t j = 0; ok && j < vl; j++)
      ok = v[j] != '\r' && v[j] != '\n' && v[j] != 0;
    if (!ok) {
      log_warnf("http: dropping invalid response header %.*s", (int)(nl > 64 ? 64 : nl), n);
      continue;
    }
    if (eq_ci(n, nl, "content-length") || eq_ci(n, nl, "transfer-encoding") ||
        eq_ci(n, nl, "connection"))
      continue;
    if (eq_ci(n, nl, "date")) have_date = 1;
    if (eq_ci(n, nl, "x-request-id")) have_rid = 1;
    textbuf_add(&b, n, nl);
    textbuf_add(&b, ": ", 2);
    textbuf_add(&b, v, vl);
    textbuf_add(&b, "\r\n", 2);
  }
  if (!have_date) {
    textbuf_str(&b, "Date: ");
    textbuf_str(&b, date_now(c->srv));
    textbuf_add(&b, "\r\n", 2);
  }
  if (!have_rid && rid) {
    textbuf_str(&b, "X-Request-Id: ");
    textbuf_str(&b, rid);
    textbuf_add(&b, "\r\n", 2);
  }
  int no_body = status < 200 || status == 204 || status == 304;
  if (!no_body) textbuf_fmt(&b, "Content-Length: %zu\r\n", blen);
  if (!*keep)
    textbuf_str(&b, "Connection: close\r\n");
  else if (http10)
    textbuf_str(&b, "Connection: keep-alive\r\n");
  textbuf_add(&b, "\r\n", 2);
  if (b.oom) {
    free(b.p);
    return -1;
  }
  size_t send_body = (no_body || head_only) ? 0 : blen;
  wreq_t *wr = malloc(sizeof *wr + send_body);
  if (!wr) {
    free(b.p);
    return -1;
  }
  uv_buf_t bufs[2] = {uv_buf_init(b.p, (unsigned)b.len),
                      uv_buf_init((char *)body, (unsigned)send_body)};
  unsigned nbufs = send_body ? 2 : 1;
  if (*keep && c->writes == 0) {
    /* Usually the socket takes the whole response now: no write request, no poll change. */
    int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
    if (n > 0 && (size_t)n == b.len + send_body) {
      free(b.p);
      free(wr);
      return 0;
    }
    if (n > 0) { /* partial: queue what is left */
      size_t done = (size_t)n;
      if (done >= b.len) {
        done -= b.len;
        bufs[0] = uv_buf_init(b.p + b.len, 0);
      } else {
        bufs[0] = uv_buf_init(b.p + done, (unsigned)(b.len - done));
        done = 0;
      }
      bufs[1] = uv_buf_init((char *)body + done, (unsigned)(send_body - done));
    }
  }
  memset(wr, 0, sizeof *wr);
  wr->c = c;
  wr->head = b.p;
  if (send_body) memcpy(wr->body, bufs[1].base, bufs[1].len);
  bufs[1].base = wr->body;
  if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write) != 0) {
    free(b.p);
    free(wr);
    return -1;
  }
  c->writes++;
  return 0;
}

/* ---- connections -------------------------------------------------------------------------- */

static void conn_read_start(conn_t *c);

static void conn_arm(conn_t *c) {
  const http_limits_t *l = &c->srv->lim;
  uint64_t ms;
  switch (c->state) {
  case S_IDLE:
    ms = l->idle_timeout_ms;
    break;
  case S_HEADERS:
    ms = l->header_timeout_ms;
    break;
  case S_BODY:
    ms = l->body_timeout_ms;
    break;
  case S_FLUSH:
    ms = l->body_timeout_ms;
    break; /* a peer that does not read its response */
  case S_LINGER:
    ms = c->srv->stopping ? LINGER_STOPPING_MS : LINGER_MS;
    break;
  default:
    uv_timer_stop(&c->timer);
    return;
  }
  uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  http_server_t *s = c->srv;
  s->handles--;
  if (++c->nclosed < 2) return;
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  req_free(c->cur);
  free(c->buf);
  free(c);
  server_maybe_done(s);
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  http_server_t *s = c->srv;
  c->closing = 1;
  if (c->handed) {
    c->handed->conn = NULL; /* the request stays valid; its response will be dropped */
    c->handed = NULL;
  }
  req_free(c->cur);
  c->cur = NULL;
  s->nconns--;
  if (!c->rejected) s->nactive--;
  if (s->m_open) metrics_inc(s->m_open, NULL, -1);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->handle->data;
  if (status < 0 && !c->closing) conn_close(c);
}

/* The final response is written: half-close and drain the peer's leftovers for a while. */
static void conn_linger(conn_t *c) {
  if (c->peer_eof) {
    conn_close(c);
    return;
  }
  if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  c->state = S_LINGER;
  conn_read_start(c);
  conn_arm(c);
}

/* After EOF from the peer: a connection with nothing left to do is closed (after its writes). */
static void conn_eof_check(conn_t *c) {
  if (c->closing || !c->peer_eof || c->resume) return;
  if (c->state != S_IDLE && c->state != S_HEADERS && c->state != S_BODY) return;
  req_free(c->cur); /* a partial request can never complete now */
  c->cur = NULL;
  if (c->writes) {
    c->state = S_FLUSH;
    conn_arm(c);
  } else {
    conn_close(c);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  conn_t *c = h->data;
  (void)suggested;
  if (c->state == S_FLUSH || c->state == S_LINGER || c->off == c->len) c->off = c->len = 0;
  if (c->cap - c->len < 4096) {
    if (c->off) {
      memmove(c->buf, c->buf + c->off, c->len - c->off);
      c->len -= c->off;
      c->off = 0;
    }
    if (c->cap - c->len < 4096) {
      size_t ncap = c->cap ? c->cap * 2 : CONN_BUF_MIN;
      while (ncap - c->len < 4096)
        ncap *= 2;
      char *nb = realloc(c->buf, ncap);
      if (!nb) {
        *out = uv_buf_init(NULL, 0); /* UV_ENOBUFS */
        return;
      }
      c->buf = nb;
      c->cap = ncap;
    }
  }
  *out = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = st->data;
  (void)buf;
  if (c->closing) return;
  if (nread > 0) {
    if (c->state == S_FLUSH || c->state == S_LINGER) {
      c->off = c->len = 0; /* discard */
      return;
    }
    c->len += (size_t)nread;
    if (c->state == S_BUSY || c->resume) { /* buffered; parsed after the response / on resume */
      if (c->len - c->off > c->srv->lim.max_header_bytes + BUSY_BUF_EXTRA) {
        uv_read_stop(st); /* back-pressure until the current response is queued */
        c->reading = 0;
      }
      return;
    }
    conn_process(c);
    return;
  }
  if (nread == 0) return;
  if (nread != UV_EOF || c->state == S_BUSY || c->state == S_LINGER) {
    conn_close(c); /* a request with the consumer is aborted */
    return;
  }
  c->peer_eof = 1;
  uv_read_stop(st);
  c->reading = 0;
  conn_eof_check(c);
}

static void conn_read_start(conn_t *c) {
  if (c->reading || c->closing || c->peer_eof) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

static void conn_dispatch(conn_t *c) {
  http_server_t *s = c->srv;
  req_t *r = c->cur;
  c->cur = NULL;
  c->handed = r;
  r->conn = c;
  c->state = S_BUSY;
  uv_timer_stop(&c->timer);
  s->inflight++;
  s->cb(&r->pub, s->ud);
}

/* Parses buffered input until a request is complete (then hands it out and stops), the input
 * is used up, or an error ends the connection. */
static void conn_process(conn_t *c) {
  c->resume = 0;
  while (!c->closing && c->state <= S_BODY && c->off < c->len) {
    size_t n = c->len - c->off;
    size_t np = http_parser_execute(&c->parser, &g_settings, c->buf + c->off, n);
    c->off += np;
    if (c->pending_status) {
      int st = c->pending_status;
      c->pending_status = 0;
      conn_fail(c, st);
      return;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
      http_parser_pause(&c->parser, 0);
      conn_dispatch(c);
      break;
    }
    if (e != HPE_OK) {
      conn_fail(c, e == HPE_HEADER_OVERFLOW ? 431 : 400);
      return;
    }
    if (np < n) { /* stopped without an error or a complete message */
      conn_fail(c, 400);
      return;
    }
  }
  if (!c->closing && c->off == c->len) c->off = c->len = 0;
}

/* Server-generated error response: JSON body, Connection: close, then linger and close. */
static void conn_fail(conn_t *c, int status) {
  http_server_t *s = c->srv;
  req_t *r = c->cur;
  char rid[RID_MAX + 1];
  const char *method = "-", *path = "-";
  if (r && r->headers_done) {
    method = r->pub.method;
    path = r->pub.path;
    snprintf(rid, sizeof rid, "%s", r->pub.request_id);
  } else {
    if (r && r->last != CB_NONE) method = http_method_str((enum http_method)c->parser.method);
    gen_request_id(rid);
  }
  char body[128];
  int blen = snprintf(body, sizeof body, "{\"ok\":false,\"error\":\"%s\"}", error_reason(status));
  record(s, method, NULL, path, status, r ? r->pub.start_ns : c->accepted_ns, rid, c->remote,
         c->lis->name, 0);
  req_free(c->cur);
  c->cur = NULL;
  static const http_header_t ct[] = {{"Content-Type", 12, "application/json", 16}};
  int keep = 0;
  c->state = S_FLUSH;
  if (send_response(c, status, ct, 1, body, (size_t)blen, &keep, 0, rid, 0) != 0) {
    conn_close(c);
    return;
  }
  conn_arm(c);
}

static void on_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->closing) return;
  switch (c->state) {
  case S_IDLE:
    if (!c->resume) {
      conn_close(c); /* idle keep-alive connection */
      break;
    }
    conn_process(c); /* resume after a keep-alive response */
    conn_eof_check(c);
    /* A synchronous answer inside conn_process re-armed the 0 ms resume: keep it. */
    if (c->closing || c->state != S_IDLE || c->resume) break;
    if (c->len == 0 && c->cap > CONN_BUF_KEEP) {
      free(c->buf);
      c->buf = NULL;
      c->cap = 0;
    }
    if (c->srv->stopping) {
      if (c->writes) {
        c->state = S_FLUSH;
        conn_arm(c);
      } else {
        conn_close(c);
      }
      break;
    }
    conn_arm(c);
    break;
  case S_HEADERS:
  case S_BODY:
    conn_fail(c, 408);
    break;
  case S_FLUSH:
  case S_LINGER:
    conn_close(c);
    break;
  default:
    break;
  }
}

static void on_connection(uv_stream_t *ls, int status) {
  listener_t *l = ls->data;
  http_server_t *s = l->srv;
  if (status < 0) {
    log_warnf("http: accept on %s: %s", l->name, uv_strerror(status));
    return;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    log_errorf("http: out of memory accepting a connection on %s", l->name);
    return;
  }
  c->srv = s;
  c->lis = l;
  c->accepted_ns = uv_hrtime();
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  s->handles += 2;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (s->m_open) metrics_inc(s->m_open, NULL, 1);
  if (s->m_total) metrics_inc(s->m_total, NULL, 1);
  int over = s->nactive >= s->lim.max_connections;
  if (over)
    c->rejected = 1;
  else
    s->nactive++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  snprintf(c->remote, sizeof c->remote, "-");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      uv_ip4_name(a, c->remote, sizeof c->remote);
      c->remote_port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      uv_ip6_name(a, c->remote, sizeof c->remote);
      c->remote_port = ntohs(a->sin6_port);
      if (strncmp(c->remote, "::ffff:", 7) == 0 && strchr(c->remote + 7, '.'))
        memmove(c->remote, c->remote + 7, strlen(c->remote + 7) + 1);
    }
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->state = S_IDLE;
  conn_read_start(c);
  if (over) {
    conn_fail(c, 503);
    return;
  }
  conn_arm(c);
}

/* ---- server ------------------------------------------------------------------------------- */

void http_limits_default(http_limits_t *l) {
  l->max_header_bytes = 16384;
  l->max_body_bytes = 1048576;
  l->header_timeout_ms = 10000;
  l->body_timeout_ms = 30000;
  l->idle_timeout_ms = 60000;
  l->max_connections = 1024;
}

http_server_t *http_server_new(uv_loop_t *loop, const http_limits_t *limits, http_request_cb cb,
                               void *ud) {
  http_server_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->loop = loop;
  s->cb = cb;
  s->ud = ud;
  fill_limits(&s->lim, limits);
  raise_parser_limit(s->lim.max_header_bytes);
  uv_timer_init(loop, &s->anchor);
  s->anchor.data = s;
  s->handles = 1;
  static const char *const l_rs[] = {"route", "status"};
  static const char *const l_r[] = {"route"};
  const char *err = NULL;
  s->m_requests = metrics_counter("chatgw_http_requests_total",
                                  "HTTP responses by route and status", l_rs, 2, &err);
  if (!s->m_requests) log_warnf("http: metric chatgw_http_requests_total: %s", err ? err : "?");
  err = NULL;
  s->m_duration = metrics_histogram("chatgw_http_request_duration_seconds",
                                    "HTTP request duration by route", l_r, 1, NULL, 0, &err);
  if (!s->m_duration)
    log_warnf("http: metric chatgw_http_request_duration_seconds: %s", err ? err : "?");
  err = NULL;
  s->m_open = metrics_gauge("chatgw_http_connections_open", "Open HTTP connections", NULL, 0, &err);
  if (!s->m_open) log_warnf("http: metric chatgw_http_connections_open: %s", err ? err : "?");
  err = NULL;
  s->m_total =
      metrics_counter("chatgw_http_connections_total", "Accepted HTTP connections", NULL, 0, &err);
  if (!s->m_total) log_warnf("http: metric chatgw_http_connections_total: %s", err ? err : "?");
  return s;
}

void http_server_set_limits(http_server_t *s, const http_limits_t *limits) {
  fill_limits(&s->lim, limits);
  raise_parser_limit(s->lim.max_header_bytes);
}

static listener_t *find_listener(const http_server_t *s, const char *name) {
  for (listener_t *l = s->listeners; l; l = l->next)
    if (l->open && strcmp(l->name, name) == 0) return l;
  return NULL;
}

static void on_listener_closed(uv_handle_t *h) {
  listener_t *l = h->data;
  http_server_t *s = l->srv;
  s->handles--;
  if (!l->linked) {
    free(l->name);
    free(l);
  }
  server_maybe_done(s);
}

int http_server_listen(http_server_t *s, const char *name, const char *host, int port, char *err,
                       size_t errlen) {
  char hostbuf[256];
  if (!name || !*name) name = "main";
  if (!host || !*host || strcmp(host, "*") == 0) host = "0.0.0.0";
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof hostbuf) {
    memcpy(hostbuf, host + 1, hl - 2);
    hostbuf[hl - 2] = 0;
  } else {
    snprintf(hostbuf, sizeof hostbuf, "%s", host);
  }
  int v6 = strchr(hostbuf, ':') != NULL;
  char where[300];
  snprintf(where, sizeof where, v6 ? "[%s]:%d" : "%s:%d", hostbuf, port);
  if (s->closing || s->stopping) {
    snprintf(err, errlen, "listen %s %s: server is stopping", name, where);
    return -1;
  }
  if (find_listener(s, name)) {
    snprintf(err, errlen, "listen %s %s: a listener with this name exists", name, where);
    return -1;
  }
  if (port < 0 || port > 65535) {
    snprintf(err, errlen, "listen %s %s: invalid port", name, where);
    return -1;
  }
  struct sockaddr_storage ss;
  int r = v6 ? uv_ip6_addr(hostbuf, port, (struct sockaddr_in6 *)&ss)
             : uv_ip4_addr(hostbuf, port, (struct sockaddr_in *)&ss);
  if (r != 0) {
    snprintf(err, errlen, "listen %s %s: invalid address (an IP literal or localhost expected)",
             name, where);
    return -1;
  }
  listener_t *l = calloc(1, sizeof *l);
  char *lname = strdup(name);
  if (!l || !lname) {
    free(l);
    free(lname);
    snprintf(err, errlen, "listen %s %s: out of memory", name, where);
    return -1;
  }
  l->srv = s;
  l->name = lname;
  uv_tcp_init(s->loop, &l->tcp);
  l->tcp.data = l;
  s->handles++;
  r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
  if (r != 0) {
    snprintf(err, errlen, "listen %s %s: %s", name, where, uv_strerror(r));
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed); /* frees l (not linked) */
    return -1;
  }
  struct sockaddr_storage bound;
  int bl = sizeof bound;
  l->port = port;
  if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &bl) == 0)
    l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
  l->open = 1;
  l->linked = 1;
  /* append: keeps listeners in configuration order */
  listener_t **pp = &s->listeners;
  while (*pp)
    pp = &(*pp)->next;
  *pp = l;
  return 0;
}

int http_server_port(http_server_t *s, const char *name) {
  listener_t *l = name ? find_listener(s, name) : NULL;
  return l ? l->port : -1;
}

int http_server_has_listener(http_server_t *s, const char *name) {
  return name && find_listener(s, name) != NULL;
}

void http_request_respond(http_request_t *pub, int status, const http_header_t *headers,
                          size_t nheaders, const char *body, size_t body_len, const char *route) {
  if (!pub) return;
  req_t *r = (req_t *)pub;
  http_server_t *s = r->srv;
  conn_t *c = r->conn;
  if (status < 200 || status > 999) { /* 1xx is never a final response */
    log_warnf("http: invalid status %d for %s %s, sending 500", status, pub->method, pub->path);
    status = 500;
  }
  if (!body) body_len = 0;
  record(s, pub->method, route, pub->path, status, pub->start_ns, pub->request_id, pub->remote_addr,
         pub->listener, c == NULL);
  if (c) {
    c->handed = NULL;
    int keep = r->keep_alive && !s->stopping && !c->peer_eof;
    if (send_response(c, status, headers, nheaders, body, body_len, &keep, pub->is_head,
                      pub->request_id, r->http10) != 0) {
      conn_close(c);
    } else if (keep) {
      c->state = S_IDLE;
      c->resume = 1; /* parse what is buffered from the next loop iteration on */
      uv_timer_start(&c->timer, on_timer, 0, 0);
      conn_read_start(c);
    } else {
      c->state = S_FLUSH;
      conn_read_start(c);
      conn_arm(c);
    }
  }
  s->inflight--;
  req_free(r);
  if (s->free_requested && s->closed && s->inflight == 0 && !s->in_done) server_free_now(s);
}

int http_request_aborted(const http_request_t *req) {
  return ((const req_t *)req)->conn == NULL;
}

int http_request_upgrade(http_request_t *pub, uv_tcp_t *tcp, char **rest, size_t *rest_len,
                         const char *route) {
  req_t *r = (req_t *)pub;
  conn_t *c = r->conn;
  http_server_t *s = r->srv;
  *rest = NULL;
  *rest_len = 0;
  /* Only the request being served, on a connection with nothing left to write: a response
   * still queued on the old handle would be cancelled when it closes. */
  if (!pub->upgrade || !c || c->closing || c->handed != r || c->writes || c->peer_eof) return -1;
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return -1;
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (nfd < 0) return -1;
  size_t n = c->len - c->off;
  char *tail = NULL;
  if (n) {
    tail = malloc(n);
    if (!tail) {
      close(nfd);
      return -1;
    }
    memcpy(tail, c->buf + c->off, n);
  }
  if (uv_tcp_open(tcp, nfd) != 0) {
    close(nfd);
    free(tail);
    return -1;
  }
  *rest = tail;
  *rest_len = n;
  record(s, pub->method, route, pub->path, 101, pub->start_ns, pub->request_id, pub->remote_addr,
         pub->listener, 0);
  c->handed = NULL;
  c->off = c->len = 0;
  conn_close(c); /* closes the original descriptor; the duplicate keeps the socket open */
  s->inflight--;
  req_free(r);
  if (s->free_requested && s->closed && s->inflight == 0 && !s->in_done) server_free_now(s);
  return 0;
}

void http_server_stop_accepting(http_server_t *s) {
  s->stopping = 1;
  for (listener_t *l = s->listeners; l; l = l->next) {
    if (!l->open) continue;
    l->open = 0;
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
  }
  for (conn_t *c = s->conns; c; c = c->next) {
    if (c->closing || c->state != S_IDLE || c->resume) continue;
    if (c->writes) {
      c->state = S_FLUSH;
      conn_arm(c);
    } else {
      conn_close(c);
    }
  }
}

size_t http_server_connection_count(const http_server_t *s) {
  return s->nconns;
}

size_t http_server_inflight(const http_server_t *s) {
  return s->inflight;
}

static void on_anchor_closed(uv_handle_t *h) {
  http_server_t *s = h->data;
  s->handles--;
  server_maybe_done(s);
}

void http_server_close(http_server_t *s, void (*done)(void *ud), void *ud) {
  if (s->closing) {
    log_warnf("http: server closed twice");
    return;
  }
  s->closing = 1;
  s->stopping = 1;
  s->done = done;
  s->done_ud = ud;
  for (listener_t *l = s->listeners; l; l = l->next) {
    if (!l->open) continue;
    l->open = 0;
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
  }
  for (conn_t *c = s->conns; c; c = c->next)
    conn_close(c);
  uv_close((uv_handle_t *)&s->anchor, on_anchor_closed);
}

static void server_maybe_done(http_server_t *s) {
  if (!s->closing || s->handles > 0 || s->closed) return;
  s->closed = 1;
  if (s->done) {
    s->in_done = 1;
    s->done(s->done_ud);
    s->in_done = 0;
  }
  if (s->free_requested && s->inflight == 0) server_free_now(s);
}

static void server_free_now(http_server_t *s) {
  listener_t *l = s->listeners;
  while (l) {
    listener_t *n = l->next;
    free(l->name);
    free(l);
    l = n;
  }
  free(s);
}

void http_server_free(http_server_t *s) {
  if (!s) return;
  if (!s->closed || s->inflight > 0 || s->in_done) {
    if (!s->closing) {
      log_errorf("http: http_server_free before http_server_close; closing first");
      http_server_close(s, NULL, NULL);
    }
    s->free_requested = 1; /* freed once closed and every request is answered */
    return;
  }
  server_free_now(s);
}
