/* http_parse.c - http-parser callbacks: a request is built in one block of memory (URL, header
 * names lower-cased and values, path, query), its header bytes and body are held to the limits,
 * and its id is taken from X-Request-Id or generated. The callbacks change no timer and write
 * nothing: they record what happened in the connection (state, rearm, send_continue,
 * pending_status) and http_conn.c acts on it once http_parser_execute returns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_internal.h"
#include "strutil.h"

/* Request ids: 128 bits from a splitmix64 stream seeded once from the OS. Unique and
 * unguessable enough for tracing, and no syscall per request. */
static uint64_t g_rid_state;
static int g_rid_seeded;

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

static uint64_t splitmix64(void) {
  uint64_t z = (g_rid_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void http__gen_request_id(char out[33]) {
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

/* http_parser's header limit is process-global: only ever raise it, to a bit above the largest
 * configured max_header_bytes; the configured limit itself is enforced per request. */
void http__raise_parser_limit(size_t max_header_bytes) {
  static uint32_t current = HTTP_MAX_HEADER_SIZE;
  size_t want = max_header_bytes + 4096;
  if (want > UINT32_MAX - 1) want = UINT32_MAX - 1;
  if (want > current) {
    current = (uint32_t)want;
    http_parser_set_max_header_size(current);
  }
}

void http__req_free(req_t *r) {
  if (!r) return;
  r->srv->body_bytes -= r->bcap;
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

static int fail_in_cb(conn_t *c, int status) {
  c->pending_status = status;
  return -1;
}

static int check_hdr_bytes(conn_t *c, req_t *r) {
  return r->hdr_bytes > c->srv->lim.max_header_bytes ? fail_in_cb(c, 431) : 0;
}

/* ---- strict framing ----
 * Debian's http-parser is built with HTTP_PARSER_STRICT=0: it takes a space inside a header name
 * ("Transfer-Encoding : chunked" is chunked), obs-fold (a line starting with SP/HT continues the
 * previous value), a CR followed by any byte as a line end, and any two bytes after a chunk's
 * data as its CRLF. Each is a request-smuggling gadget behind a proxy that reads them otherwise,
 * so the bytes the parser skips are checked here: the "gap" between two header callbacks (within
 * one execute, and the tail of an execute: r->scan is where the last callback's bytes ended)
 * must not hold a line end followed by SP/HT, nor a CR not followed by LF; a header name must
 * be tchars; the two bytes after a chunk's data must be CRLF (checked where on_body sees them,
 * or at the start of the next execute). */
static int gap_add(req_t *r, const char *p, const char *end) {
  for (; p < end; p++) {
    char ch = *p;
    if (r->gap_nl == 2) { /* after a CR */
      if (ch != '\n') return -1;
      r->gap_nl = 1;
    } else if (ch == '\r') {
      r->gap_nl = 2;
    } else if (ch == '\n') {
      r->gap_nl = 1;
    } else if ((ch == ' ' || ch == '\t') && r->gap_nl) {
      r->gap_fold = 1;
    }
  }
  return 0;
}

/* Before a header callback's bytes at `at`: the gap since the last one. 0, or -1 (400 set). */
static int gap_check(conn_t *c, req_t *r, const char *at, int cont) {
  int bad = 0;
  if (r->scan) {
    const char *from = r->scan >= c->exec_start && r->scan <= at ? r->scan : at;
    /* cont: a value continued by a second callback; after a line end that is obs-fold (the
     * parser hands the continuation over with its leading SP/HT) */
    bad = gap_add(r, from, at) != 0 || r->gap_fold || r->gap_nl == 2 || (cont && r->gap_nl);
  }
  r->gap_nl = r->gap_fold = 0;
  return bad ? fail_in_cb(c, 400) : 0;
}

int http__scan_tail(conn_t *c) {
  req_t *r = c->cur;
  if (!r->scan || r->scan < c->exec_start || r->scan > c->exec_end) return 0;
  int bad = gap_add(r, r->scan, c->exec_end) != 0;
  r->scan = c->exec_end;
  return bad ? -1 : 0;
}

int http__check_crlf(conn_t *c, const char *p, const char *end) {
  req_t *r = c->cur;
  while (r->crlf_need && p < end) {
    if (*p != (r->crlf_need == 2 ? '\r' : '\n')) return -1;
    p++;
    r->crlf_need--;
  }
  return 0;
}

static int is_tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return 1;
  return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
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
  http__req_free(c->cur);
  c->cur = r;
  c->nreq++;
  c->state = S_HEADERS;
  c->rearm = 1;
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
  r->scan = at + len;
  r->gap_nl = r->gap_fold = 0;
  r->url_len += len;
  r->hdr_bytes += len;
  return check_hdr_bytes(c, r);
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  if (!r) return fail_in_cb(c, 400);
  if (r->headers_done) return 0; /* chunked trailers are dropped */
  if (gap_check(c, r, at, 0)) return -1;
  r->scan = at + len;
  for (size_t i = 0; i < len; i++)
    if (!is_tchar((unsigned char)at[i])) return fail_in_cb(c, 400); /* "Name :", "Na me:" */
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
  if (gap_check(c, r, at, r->last == CB_VALUE)) return -1; /* obs-fold */
  r->scan = at + len;
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
    if (http_parser_parse_url(url, r->url_len, 0, &u) != 0) return 1; /* unparseable: 400 */
    {
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

static int on_headers_complete(http_parser *p) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  http_server_t *s = c->srv;
  if (!r) return fail_in_cb(c, 400);
  if (r->headers_done) return 0;
  r->hdr_bytes += 2;
  if (check_hdr_bytes(c, r)) return -1;
  int fin = req_finish_headers(r);
  if (fin) return fail_in_cb(c, fin > 0 ? 400 : 503);
  r->pub.method = http_method_str((enum http_method)p->method);
  r->pub.is_head = p->method == HTTP_HEAD;
  r->http10 = p->http_major < 1 || (p->http_major == 1 && p->http_minor == 0);
  int expect_continue = 0, nhost = 0;
  r->pub.request_id = NULL;
  for (size_t i = 0; i < r->nh; i++) {
    const http_header_t *h = &r->hdrs[i];
    if (h->name_len == 4 && memcmp(h->name, "host", 4) == 0) nhost++;
    if (!r->pub.request_id && str_eq_ci(h->name, h->name_len, "x-request-id") &&
        valid_request_id(h->value, h->value_len))
      r->pub.request_id = h->value;
    else if (str_eq_ci(h->name, h->name_len, "expect") &&
             str_eq_ci(h->value, h->value_len, "100-continue"))
      expect_continue = 1;
  }
  if (!r->pub.request_id) {
    http__gen_request_id(r->rid);
    r->pub.request_id = r->rid;
  }
  if (nhost > 1 || (nhost == 0 && !r->http10)) return fail_in_cb(c, 400); /* RFC 9112 3.2 */
  int chunked = (p->flags & F_CHUNKED) != 0;
  int has_len = !chunked && p->content_length != ULLONG_MAX;
  if (has_len && p->content_length > s->lim.max_body_bytes) return fail_in_cb(c, 413);
  int has_body = chunked || (has_len && p->content_length > 0);
  if (has_body && s->hcb) { /* route and auth before the body (and before 100 Continue) */
    r->pub.body = "";
    r->pub.body_len = 0;
    r->conn = c;
    r->early_done = 1;
    /* Kept alive after an early answer only when the client sends the body anyway (no Expect:
     * it may never come): it is then read and dropped. */
    r->keep_alive = !expect_continue && http_should_keep_alive(p) && !p->upgrade;
    s->hcb(&r->pub, s->ud);
    if (r->early_done == 2 && !r->discard) return -1; /* c->pending_status: HTTP_ANSWERED */
    if (r->discard) {
      c->state = S_BODY;
      c->rearm = 1;
      return 0;
    }
  }
  if (has_body && expect_continue && !r->http10) c->send_continue = 1;
  c->state = S_BODY;
  c->rearm = 1;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  if (!r) return fail_in_cb(c, 400);
  if (r->discard) { /* answered already: dropped, up to max_body_bytes, then the close */
    r->blen += len;
    if (r->blen > c->srv->lim.max_body_bytes) return fail_in_cb(c, HTTP_ANSWERED);
  } else if (r->blen + len > c->srv->lim.max_body_bytes) {
    return fail_in_cb(c, 413);
  }
  if (r->discard) {
    if ((p->flags & F_CHUNKED) && p->content_length == 0) {
      r->crlf_need = 2;
      if (http__check_crlf(c, at + len, c->exec_end) != 0) return fail_in_cb(c, HTTP_ANSWERED);
    }
    return 0;
  }
  if (r->blen + len + 1 > r->bcap) { /* grown as the body arrives, never from Content-Length */
    http_server_t *s = c->srv;
    size_t ncap = r->bcap ? r->bcap : 4096;
    while (ncap < r->blen + len + 1)
      ncap *= 2;
    if (ncap > s->lim.max_body_bytes + 1) ncap = s->lim.max_body_bytes + 1;
    if (s->body_bytes - r->bcap + ncap > s->lim.max_buffered_body_bytes)
      return fail_in_cb(c, 503); /* every buffered body together: over the budget */
    char *nb = realloc(r->body, ncap);
    if (!nb) return fail_in_cb(c, 503);
    s->body_bytes += ncap - r->bcap;
    r->body = nb;
    r->bcap = ncap;
  }
  memcpy(r->body + r->blen, at, len);
  r->blen += len;
  if ((p->flags & F_CHUNKED) && p->content_length == 0) { /* a chunk's data ends: CRLF next */
    r->crlf_need = 2;
    if (http__check_crlf(c, at + len, c->exec_end) != 0) return fail_in_cb(c, 400);
  }
  return 0;
}

static int on_message_complete(http_parser *p) {
  conn_t *c = p->data;
  req_t *r = c->cur;
  if (!r || !r->headers_done) return fail_in_cb(c, 400);
  if (r->discard) { /* answered at headers-complete; the next request may follow */
    http__req_free(r);
    c->cur = NULL;
    c->state = S_IDLE;
    c->rearm = 1;
    return 0;
  }
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

const http_parser_settings http__parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};
