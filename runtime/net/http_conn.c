/* http_conn.c - one connection's life (see http_server.h for the behaviour and http_internal.h
 * for how the files divide the work).
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
 * NULL and the response is dropped when it comes.
 *
 * On a TLS listener (c->tls) the socket's bytes go through the session first (on_read_tls): the
 * plaintext lands in the same buffer and takes the same path; every write (responses, 100
 * Continue, handshake records, alerts, close_notify) is ciphertext moved out of the session
 * into a uv_write (tls_flush). Until the handshake is done the connection is S_IDLE under the
 * header timeout; a handshake that fails sends its alert and closes. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_internal.h"
#include "log.h"
#include "siphash.h"

static void conn_process(conn_t *c);
static void conn_fail(conn_t *c, int status);
static void on_timer(uv_timer_t *t);
static void conn_linger(conn_t *c);
static void conn_read_start(conn_t *c);
static void tls_log_failure(conn_t *c, const char *why);

static void on_write(uv_write_t *w, int status) {
  wreq_t *wr = (wreq_t *)w;
  conn_t *c = wr->c;
  free(wr->head);
  free(wr);
  c->writes--;
  if (c->closing) return;
  if (status < 0) {
    http__conn_close(c);
    return;
  }
  if (c->writes == 0 && c->state == S_FLUSH) conn_linger(c);
  if (c->blocked && http__unsent(c) <= c->srv->lim.max_unsent_bytes) {
    c->blocked = 0; /* drained: parse what is buffered, read again */
    uv_timer_start(&c->timer, on_timer, 0, 0);
    conn_read_start(c);
  }
}

/* TLS: writes the ciphertext the session has ready (a uv_write of a copy). 0 or -1. */
static int tls_flush(conn_t *c) {
  size_t n = tls_conn_pending(c->tls);
  if (n == 0) return 0;
  wreq_t *wr = malloc(sizeof *wr + n);
  if (!wr) return -1;
  memset(wr, 0, sizeof *wr);
  wr->c = c;
  n = tls_conn_take(c->tls, wr->body, n);
  if (c->writes == 0) { /* usually the socket takes it all now */
    uv_buf_t b = uv_buf_init(wr->body, (unsigned)n);
    int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (w > 0 && (size_t)w == n) {
      free(wr);
      return 0;
    }
    if (w > 0) {
      memmove(wr->body, wr->body + w, n - (size_t)w);
      n -= (size_t)w;
    }
  }
  uv_buf_t b = uv_buf_init(wr->body, (unsigned)n);
  if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    free(wr);
    return -1;
  }
  c->writes++;
  return 0;
}

/* TLS: encrypts the buffers and writes the result, 64 KiB at a time so the session's write
 * buffer stays small after a large response. 0 or -1. */
static int tls_send(conn_t *c, const uv_buf_t *bufs, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    for (size_t off = 0; off < bufs[i].len;) {
      size_t k = bufs[i].len - off < 65536 ? bufs[i].len - off : 65536;
      if (tls_conn_write(c->tls, bufs[i].base + off, k) != 0) return -1;
      off += k;
      if (tls_conn_pending(c->tls) >= 65536 && tls_flush(c) != 0) return -1;
    }
  }
  return tls_flush(c);
}

static int write_static(conn_t *c, const char *data, size_t len) {
  if (c->tls) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    return tls_send(c, &b, 1);
  }
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
  textbuf_t b = {0};
  int no_body = http__response_head(&b, c->srv, status, hs, nh, blen, keep, rid, http10);
  if (b.oom) {
    free(b.p);
    return -1;
  }
  size_t send_body = (no_body || head_only) ? 0 : blen;
  if (c->tls) {
    uv_buf_t tb[2] = {uv_buf_init(b.p, (unsigned)b.len),
                      uv_buf_init((char *)body, (unsigned)send_body)};
    int r = tls_send(c, tb, send_body ? 2 : 1);
    free(b.p);
    return r;
  }
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

void http__conn_arm(conn_t *c) {
  const http_limits_t *l = &c->srv->lim;
  uint64_t ms;
  switch (c->state) {
  case S_IDLE: /* a TLS handshake and a new connection's first byte: the header timeout */
    if (c->blocked)
      ms = l->body_timeout_ms; /* a peer that does not read its responses */
    else if (c->nreq == 0 || (c->tls && !tls_conn_established(c->tls)))
      ms = l->header_timeout_ms;
    else
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
  http__req_free(c->cur);
  tls_conn_free(c->tls);
  free(c->buf);
  free(c);
  http__server_maybe_done(s);
}

/* ---- open connections per address ---- */

static unsigned ip_bucket(const http_server_t *s, const char *ip) {
  return (unsigned)(siphash13(ip, strlen(ip), s->ip_key) % IP_BUCKETS);
}

int http__ip_acquire(conn_t *c) {
  http_server_t *s = c->srv;
  unsigned b = ip_bucket(s, c->remote);
  ip_count_t *e = s->ips[b];
  while (e && strcmp(e->ip, c->remote) != 0)
    e = e->next;
  if (e && e->n >= s->lim.max_per_ip) return -1;
  if (!e) {
    e = calloc(1, sizeof *e);
    if (!e) return 0; /* uncounted rather than refused */
    snprintf(e->ip, sizeof e->ip, "%s", c->remote);
    e->next = s->ips[b];
    s->ips[b] = e;
  }
  e->n++;
  c->ip = e;
  return 0;
}

static void ip_release(conn_t *c) {
  ip_count_t *e = c->ip;
  c->ip = NULL;
  if (!e || --e->n > 0) return;
  ip_count_t **pp = &c->srv->ips[ip_bucket(c->srv, e->ip)];
  while (*pp && *pp != e)
    pp = &(*pp)->next;
  if (*pp) *pp = e->next;
  free(e);
}

void http__conn_close(conn_t *c) {
  if (c->closing) return;
  http_server_t *s = c->srv;
  c->closing = 1;
  if (c->handed) {
    c->handed->conn = NULL; /* the request stays valid; its response will be dropped */
    c->handed = NULL;
  }
  http__req_free(c->cur);
  c->cur = NULL;
  s->nconns--;
  if (!c->rejected) s->nactive--;
  ip_release(c);
  if (s->m_open) metrics_inc(s->m_open, NULL, -1);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->handle->data;
  if (status < 0 && !c->closing) http__conn_close(c);
}

/* The final response is written: half-close and drain the peer's leftovers for a while. */
static void conn_linger(conn_t *c) {
  if (c->peer_eof) {
    http__conn_close(c);
    return;
  }
  if (c->tls) { /* close_notify, then the TCP half-close after it */
    tls_conn_close_notify(c->tls);
    if (tls_flush(c) != 0) {
      http__conn_close(c);
      return;
    }
  }
  if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    http__conn_close(c);
    return;
  }
  c->state = S_LINGER;
  conn_read_start(c);
  http__conn_arm(c);
}

/* After EOF from the peer: a connection with nothing left to do is closed (after its writes). */
static void conn_eof_check(conn_t *c) {
  if (c->closing || !c->peer_eof || c->resume) return;
  if (c->state != S_IDLE && c->state != S_HEADERS && c->state != S_BODY) return;
  http__req_free(c->cur); /* a partial request can never complete now */
  c->cur = NULL;
  if (c->writes) {
    c->state = S_FLUSH;
    http__conn_arm(c);
  } else {
    http__conn_close(c);
  }
}

/* Room for at least 4 KiB more input at buf + len (NULL when out of memory). */
static char *conn_reserve(conn_t *c) {
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
      if (!nb) return NULL;
      c->buf = nb;
      c->cap = ncap;
    }
  }
  return c->buf + c->len;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  conn_t *c = h->data;
  (void)suggested;
  char *p = conn_reserve(c);
  *out = p ? uv_buf_init(p, (unsigned)(c->cap - c->len)) : uv_buf_init(NULL, 0); /* ENOBUFS */
}

/* nread bytes of input were appended at buf + len: parse them, or keep them for later. */
static void conn_input(conn_t *c, size_t nread) {
  c->len += nread;
  if (c->state == S_BUSY || c->resume) { /* buffered; parsed after the response / on resume */
    if (c->len - c->off > c->srv->lim.max_header_bytes + BUSY_BUF_EXTRA) {
      uv_read_stop((uv_stream_t *)&c->tcp); /* back-pressure until the response is queued */
      c->reading = 0;
    }
    return;
  }
  conn_process(c);
}

/* The peer closed (UV_EOF) or the read failed. */
static void conn_read_end(conn_t *c, ssize_t nread) {
  if (nread != UV_EOF || c->state == S_BUSY || c->state == S_LINGER) {
    http__conn_close(c); /* a request with the consumer is aborted */
    return;
  }
  c->peer_eof = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  conn_eof_check(c);
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
    conn_input(c, (size_t)nread);
    return;
  }
  if (nread == 0) return;
  conn_read_end(c, nread);
}

/* ---- TLS: ciphertext from the socket into the session, its plaintext into buf ---- */

static char g_tls_in[65536]; /* one loop thread: a read's ciphertext is used up at once */

static void on_alloc_tls(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  (void)h;
  (void)suggested;
  *out = uv_buf_init(g_tls_in, sizeof g_tls_in);
}

static void tls_log_failure(conn_t *c, const char *why) {
  if (!log_enabled(LOG_DEBUG)) return;
  log_field_t f[] = {{"listener", c->lis->name, 0}, {"remote", c->remote, 0}, {"error", why, 0}};
  log_write(LOG_DEBUG, "tls: handshake failed", f, 3);
}

static void on_read_tls(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = st->data;
  if (c->closing) return;
  if (nread == 0) return;
  if (nread < 0) {
    if (!tls_conn_established(c->tls)) tls_log_failure(c, "closed during the handshake");
    conn_read_end(c, nread);
    return;
  }
  if (c->state == S_FLUSH || c->state == S_LINGER) return; /* discarded, as in plaintext */
  int was = tls_conn_established(c->tls);
  if (tls_conn_feed(c->tls, buf->base, (size_t)nread) != 0) {
    http__conn_close(c);
    return;
  }
  size_t got = 0;
  int r;
  for (;;) { /* all the plaintext now: none may stay inside the session unseen */
    char *p = conn_reserve(c);
    if (!p) {
      http__conn_close(c);
      return;
    }
    r = tls_conn_read(c->tls, p, c->cap - c->len);
    if (r <= 0) break;
    got += (size_t)r;
    c->len += (size_t)r; /* counted now so the next conn_reserve keeps them */
  }
  c->len -= got;           /* conn_input adds them back */
  if (tls_flush(c) != 0) { /* handshake records, alerts, tickets */
    http__conn_close(c);
    return;
  }
  if (r == TLS_FAIL) {
    tls_log_failure(c, tls_conn_error(c->tls));
    if (c->writes) { /* the alert goes out first */
      c->off = c->len = 0;
      c->state = S_FLUSH;
      http__conn_arm(c);
    } else {
      http__conn_close(c);
    }
    return;
  }
  if (!was && tls_conn_established(c->tls)) {
    if (c->tls_reject) { /* over max_connections: now the 503 can be read */
      conn_fail(c, 503);
      return;
    }
    if (c->state == S_IDLE && !got) http__conn_arm(c); /* from the header to the idle timeout */
  }
  if (got) conn_input(c, got);
  if (r == TLS_CLOSED && !c->closing) conn_read_end(c, UV_EOF);
}

static void conn_read_start(conn_t *c) {
  if (c->reading || c->closing || c->peer_eof) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, c->tls ? on_alloc_tls : on_alloc,
                    c->tls ? on_read_tls : on_read) == 0)
    c->reading = 1;
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
  while (!c->closing && !c->blocked && c->state <= S_BODY && c->off < c->len) {
    size_t n = c->len - c->off;
    c->exec_start = c->buf + c->off;
    c->exec_end = c->buf + c->len;
    if (c->cur) {
      c->cur->scan = c->cur->scan ? c->exec_start : NULL;
      if (c->cur->crlf_need && http__check_crlf(c, c->exec_start, c->exec_end) != 0) {
        if (!c->cur->discard) { /* a chunk's data not followed by CRLF */
          conn_fail(c, 400);
          return;
        }
        c->pending_status = HTTP_ANSWERED; /* answered already: just stop */
        n = 0;
      }
    }
    size_t np = n ? http_parser_execute(&c->parser, &http__parser_settings, c->buf + c->off, n) : 0;
    c->off += np;
    if (c->pending_status == HTTP_ANSWERED) { /* answered early: no more parsing, linger */
      c->pending_status = 0;
      http__req_free(c->cur);
      c->cur = NULL;
      if (!c->closing && c->state != S_FLUSH) { /* a discarded body too large */
        c->state = S_FLUSH;
        if (c->writes)
          http__conn_arm(c);
        else
          conn_linger(c);
      }
      return;
    }
    if (!c->pending_status && c->cur && !c->cur->headers_done && http__scan_tail(c) != 0)
      c->pending_status = 400;
    /* What the callbacks recorded: a new state's timer, a 100 Continue owed to the client. */
    if (c->rearm) {
      c->rearm = 0;
      http__conn_arm(c);
    }
    if (c->send_continue) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      c->send_continue = 0;
      if (!c->pending_status && write_static(c, cont, sizeof cont - 1)) c->pending_status = 503;
    }
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
    http__gen_request_id(rid);
  }
  char body[128];
  int blen =
      snprintf(body, sizeof body, "{\"ok\":false,\"error\":\"%s\"}", http__error_reason(status));
  http__record(s, method, NULL, path, status, r ? r->pub.start_ns : c->accepted_ns, rid, c->remote,
               c->lis->name, 0);
  http__req_free(c->cur);
  c->cur = NULL;
  static const http_header_t ct[] = {{"Content-Type", 12, "application/json", 16},
                                     {"Retry-After", 11, "1", 1}};
  int keep = 0;
  c->state = S_FLUSH;
  if (send_response(c, status, ct, status == 503 ? 2 : 1, body, (size_t)blen, &keep, 0, rid, 0) !=
      0) {
    http__conn_close(c);
    return;
  }
  http__conn_arm(c);
}

static void on_timer(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->closing) return;
  switch (c->state) {
  case S_IDLE:
    if (c->blocked) { /* its responses were not read for body_timeout_ms */
      http__conn_close(c);
      break;
    }
    if (!c->resume) {
      if (c->tls && !tls_conn_established(c->tls)) tls_log_failure(c, "handshake timeout");
      http__conn_close(c); /* idle keep-alive connection, or a TLS handshake not done */
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
        http__conn_arm(c);
      } else {
        http__conn_close(c);
      }
      break;
    }
    http__conn_arm(c);
    break;
  case S_HEADERS:
  case S_BODY:
    conn_fail(c, 408);
    break;
  case S_FLUSH:
  case S_LINGER:
    http__conn_close(c);
    break;
  default:
    break;
  }
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
  http__record(s, pub->method, route, pub->path, status, pub->start_ns, pub->request_id,
               pub->remote_addr, pub->listener, c == NULL);
  if (c) {
    c->handed = NULL;
    int keep = r->keep_alive && !s->stopping && !c->peer_eof;
    if (send_response(c, status, headers, nheaders, body, body_len, &keep, pub->is_head,
                      pub->request_id, r->http10) != 0) {
      http__conn_close(c);
    } else if (keep && http__unsent(c) > s->lim.max_unsent_bytes) {
      /* Back-pressure: a client that pipelines and does not read gets nothing parsed and
       * nothing read until its responses drain (on_write resumes). */
      c->state = S_IDLE;
      c->resume = 1;
      c->blocked = 1;
      uv_read_stop((uv_stream_t *)&c->tcp);
      c->reading = 0;
      http__conn_arm(c);
    } else if (keep) {
      c->state = S_IDLE;
      c->resume = 1; /* parse what is buffered from the next loop iteration on */
      uv_timer_start(&c->timer, on_timer, 0, 0);
      conn_read_start(c);
    } else {
      c->state = S_FLUSH;
      conn_read_start(c);
      http__conn_arm(c);
    }
  }
  s->inflight--;
  http__req_free(r);
  if (s->free_requested && s->closed && s->inflight == 0 && !s->in_done) http__server_free_now(s);
}

int http_request_aborted(const http_request_t *req) {
  return ((const req_t *)req)->conn == NULL;
}

int http_request_upgrade(http_request_t *pub, uv_tcp_t *tcp, char **rest, size_t *rest_len,
                         tls_conn_t **tls, const char *route) {
  req_t *r = (req_t *)pub;
  conn_t *c = r->conn;
  http_server_t *s = r->srv;
  *rest = NULL;
  *rest_len = 0;
  *tls = NULL;
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
  *tls = c->tls; /* the session goes with the socket */
  c->tls = NULL;
  http__record(s, pub->method, route, pub->path, 101, pub->start_ns, pub->request_id,
               pub->remote_addr, pub->listener, 0);
  c->handed = NULL;
  c->off = c->len = 0;
  http__conn_close(c); /* closes the original descriptor; the duplicate keeps the socket open */
  s->inflight--;
  http__req_free(r);
  if (s->free_requested && s->closed && s->inflight == 0 && !s->in_done) http__server_free_now(s);
  return 0;
}

void http__server_maybe_done(http_server_t *s) {
  if (!s->closing || s->handles > 0 || s->closed) return;
  s->closed = 1;
  if (s->done) {
    s->in_done = 1;
    s->done(s->done_ud);
    s->in_done = 0;
  }
  if (s->free_requested && s->inflight == 0) http__server_free_now(s);
}

void http__server_free_now(http_server_t *s) {
  listener_t *l = s->listeners;
  while (l) {
    listener_t *n = l->next;
    tls_ctx_free(l->tls);
    free(l->name);
    free(l);
    l = n;
  }
  free(s);
}

int http__conn_reject(conn_t *c, int status, const http_header_t *hs, size_t nh, const char *body,
                      size_t blen, const char *route, int keep) {
  req_t *r = c->cur;
  http_server_t *s = c->srv;
  if (status < 200 || status > 999) status = 500;
  http__record(s, r->pub.method, route, r->pub.path, status, r->pub.start_ns, r->pub.request_id,
               c->remote, c->lis->name, 0);
  keep = keep && !s->stopping && !c->peer_eof;
  if (send_response(c, status, hs, nh, body ? body : "", body ? blen : 0, &keep, r->pub.is_head,
                    r->pub.request_id, r->http10) != 0) {
    http__conn_close(c);
    c->pending_status = HTTP_ANSWERED;
    return 0;
  }
  if (keep) return 1; /* the body is read and dropped, then the next request */
  c->state = S_FLUSH;
  c->pending_status = HTTP_ANSWERED;
  http__conn_arm(c);
  return 0;
}

void http_request_reject(http_request_t *pub, int status, const http_header_t *headers,
                         size_t nheaders, const char *body, size_t body_len, const char *route) {
  req_t *r = (req_t *)pub;
  conn_t *c = r->conn;
  if (!c || c->closing || c->cur != r || r->early_done != 1) return; /* only in the callback */
  r->early_done = 2;
  if (http__conn_reject(c, status, headers, nheaders, body, body_len, route, r->keep_alive))
    r->discard = 1;
}

void http__conn_start(conn_t *c, int over) {
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->state = S_IDLE;
  conn_read_start(c);
  if (!over && http__ip_acquire(c) != 0) { /* over http.max_per_ip: 503 and close, as above */
    over = 1;
    c->rejected = 1;
    c->srv->nactive--;
  }
  if (over && c->tls) { /* a 503 needs the handshake first (under the header timeout) */
    c->tls_reject = 1;
    http__conn_arm(c);
    return;
  }
  if (over) {
    conn_fail(c, 503);
    return;
  }
  http__conn_arm(c);
}
