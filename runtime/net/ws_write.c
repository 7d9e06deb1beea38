/* ws_write.c - the WebSocket write path.
 *
 * Frames are queued per connection (ws_out_t: a private head, optionally followed by a
 * reference-counted payload shared with other connections) and written at the end of the loop
 * turn with one uv_write per connection (prepare + check handles). A connection whose unsent
 * bytes (queue + libuv's write queue) would exceed max_buffered_bytes is dropped as a slow
 * consumer: its queue is discarded, a close 1008 is sent, and the socket is closed after
 * close_timeout_ms at the latest. Broadcasts, sends and presence batches are built here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "textbuf.h"
#include "ws_internal.h"

#define FLUSH_EAGER_BYTES 65536 /* a queue this big is written at once, not at the turn's end */

static uv_buf_t *g_iov; /* one array for every flush: the write copies it */
static size_t g_iov_cap;

static void conn_slow_consumer(ws_conn_t *c);
static void on_write(uv_write_t *req, int status);
static void on_prepare(uv_prepare_t *h);
static void on_check(uv_check_t *h);

static void shared_unref(ws_shared_t *sh) {
  if (sh && --sh->refs == 0) free(sh);
}

void ws__outs_free(ws_out_t *o) {
  while (o) {
    ws_out_t *n = o->next;
    shared_unref(o->sh);
    free(o);
    o = n;
  }
}

void ws__work_link(ws_conn_t *c) {
  if (c->in_work || c->state == WC_CLOSED) return;
  c->in_work = 1;
  c->work_next = ws__g.work;
  ws__g.work = c;
  if (ws__g.ready && !uv_is_active((uv_handle_t *)&ws__g.prep)) {
    uv_prepare_start(&ws__g.prep, on_prepare);
    uv_check_start(&ws__g.check, on_check);
  }
}

size_t ws__unsent(const ws_conn_t *c) {
  return c->queued + c->tcp.write_queue_size;
}

/* Appends o (consumed) to c's queue. exempt 1: close frames and handshake bytes, which never
 * trigger the slow-consumer drop (2: a pong, which does; every byte counts in ws__unsent). Returns
 * 0, -1 (closed) or -2 (dropped as a slow consumer). */
int ws__queue(ws_conn_t *c, ws_out_t *o, int exempt) {
  if (c->state == WC_CLOSED || (c->close_after_flush && !exempt)) {
    ws__outs_free(o);
    return -1;
  }
  size_t bytes = o->len + (o->sh ? o->sh->len : 0);
  o->next = NULL;
  if (c->qtail)
    c->qtail->next = o;
  else
    c->qhead = o;
  c->qtail = o;
  c->queued += bytes;
  if (c->queued >= FLUSH_EAGER_BYTES)
    ws__flush(c); /* the kernel takes what it can now; the rest is libuv's write queue */
  else
    ws__work_link(c);
  if (exempt != 1 && ws__unsent(c) > ws__g.set.max_buffered_bytes) { /* 2: a pong, counted */
    conn_slow_consumer(c);
    return -2;
  }
  return 0;
}

ws_out_t *ws__out_new(size_t len) {
  ws_out_t *o = malloc(sizeof *o + len);
  if (o) {
    o->next = NULL;
    o->sh = NULL;
    o->len = len;
  }
  return o;
}

/* One frame with an inline payload. */
int ws__frame(ws_conn_t *c, unsigned op, const void *p, size_t n, int exempt) {
  ws_out_t *o = ws__out_new(WS_MAX_HEADER + n);
  if (!o) return -1;
  size_t h = ws_frame_header(o->data, op, n);
  if (n) memcpy(o->data + h, p, n);
  o->len = h + n;
  return ws__queue(c, o, exempt);
}

/* An event frame: per-connection `{"type":"event","seq":N,` then the shared rest. */
static int conn_event(ws_conn_t *c, ws_shared_t *sh) {
  char pre[64];
  int pl = snprintf(pre, sizeof pre, "{\"type\":\"event\",\"seq\":%llu,",
                    (unsigned long long)(c->seq + 1));
  ws_out_t *o = ws__out_new(WS_MAX_HEADER + (size_t)pl);
  if (!o) return -1;
  size_t h = ws_frame_header(o->data, WS_OP_TEXT, (uint64_t)pl + sh->len);
  memcpy(o->data + h, pre, (size_t)pl);
  o->len = h + (size_t)pl;
  o->sh = sh;
  sh->refs++;
  int r = ws__queue(c, o, 0);
  if (r == 0) c->seq++;
  return r;
}

/* Broken socket. Not closed here (callers may be walking the connection list): the sweep
 * closes it. */
static void write_failed(ws_conn_t *c) {
  c->peer_gone = 1;
  ws__set_disc(c, 1006, "write failed");
  if (c->state < WC_CLOSING) c->state = WC_CLOSING;
  c->close_after_flush = 1;
  c->close_deadline_ms = 0;
}

void ws__flush(ws_conn_t *c) {
  if (!c->qhead || c->state == WC_CLOSED) return;
  size_t n = 0;
  for (ws_out_t *o = c->qhead; o; o = o->next)
    n += o->sh ? 2 : 1;
  if (n > g_iov_cap) {
    size_t nc = g_iov_cap ? g_iov_cap : 64;
    while (nc < n)
      nc *= 2;
    uv_buf_t *nb = realloc(g_iov, nc * sizeof *nb);
    if (!nb) return; /* retried next turn */
    g_iov = nb;
    g_iov_cap = nc;
  }
  ws_wr_t *w = malloc(sizeof *w);
  if (!w) return;
  size_t i = 0;
  for (ws_out_t *o = c->qhead; o; o = o->next) {
    g_iov[i++] = uv_buf_init((char *)o->data, (unsigned)o->len);
    if (o->sh) g_iov[i++] = uv_buf_init(o->sh->data, (unsigned)o->sh->len);
  }
  w->items = c->qhead;
  ws_out_t *items = c->qhead;
  c->qhead = c->qtail = NULL;
  c->queued = 0;
  c->pong = NULL; /* written now: the next ping gets a pong of its own */
  if (c->tls) {   /* wss: the queue becomes one write of ciphertext */
    free(w);
    int bad = 0;
    for (size_t k = 0; k < i && !bad; k++)
      bad = tls_conn_write(c->tls, g_iov[k].base, g_iov[k].len) != 0;
    ws__outs_free(items);
    if (bad)
      write_failed(c);
    else
      ws__tls_send(c);
    return;
  }
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, g_iov, (unsigned)n, on_write) != 0) {
    ws__outs_free(items);
    free(w);
    write_failed(c);
    return;
  }
  c->writes++;
}

void ws__tls_send(ws_conn_t *c) {
  size_t n = c->tls ? tls_conn_pending(c->tls) : 0;
  if (!n || c->state == WC_CLOSED) return;
  ws_out_t *o = ws__out_new(n);
  ws_wr_t *w = o ? malloc(sizeof *w) : NULL;
  if (!w) {
    free(o);
    write_failed(c);
    return;
  }
  o->len = tls_conn_take(c->tls, (char *)o->data, n);
  w->items = o;
  uv_buf_t b = uv_buf_init((char *)o->data, (unsigned)o->len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    ws__outs_free(o);
    free(w);
    write_failed(c);
    return;
  }
  c->writes++;
}

static void conn_slow_consumer(ws_conn_t *c) {
  size_t unsent = ws__unsent(c);
  ws__outs_free(c->qhead);
  c->qhead = c->qtail = NULL;
  c->queued = 0;
  c->pong = NULL;
  if (ws__g.m_slow) metrics_inc(ws__g.m_slow, NULL, 1);
  char b[32];
  snprintf(b, sizeof b, "%zu", unsent);
  log_field_t f[] = {{"conn", c->id, 0}, {"remote", c->remote, 0}, {"unsent_bytes", b, 1}};
  log_write(LOG_WARN, "ws slow consumer dropped", f, 3);
  if (c->state >= WC_CLOSING) {
    c->close_deadline_ms = ws__loop_ms(); /* closed at the next sweep */
    return;
  }
  ws__fail_close(c, 1008, "slow consumer");
}

static void on_write(uv_write_t *req, int status) {
  ws_wr_t *w = (ws_wr_t *)req;
  ws_conn_t *c = req->handle->data;
  ws__outs_free(w->items);
  free(w);
  c->writes--;
  if (c->state == WC_CLOSED) return;
  if (status < 0) {
    c->peer_gone = 1;
    ws__hard_close(c, 1006, "write failed");
    return;
  }
  if (c->close_after_flush && !c->writes && !c->qhead) ws__hard_close(c, 1000, NULL);
}

void ws__run_work(void) {
  while (ws__g.work) {
    ws_conn_t *list = ws__g.work;
    ws__g.work = NULL;
    while (list) {
      ws_conn_t *c = list;
      list = c->work_next;
      c->in_work = 0;
      if (c->state == WC_CLOSED) continue;
      if (c->resume && !c->paused) {
        c->resume = 0;
        if (c->stash) {
          uint8_t *s = c->stash;
          size_t n = c->stash_len;
          c->stash = NULL;
          c->stash_len = 0;
          ws__parse(c, s, n); /* may stash again (a copy) */
          free(s);
        } else if (c->fctx && c->fed > c->used) {
          /* The frame context read ahead before the pause (frames that came in one segment
           * with the connect): parse what it holds before waiting for the socket. */
          ws__parse(c, NULL, 0);
        } else {
          ws__read_start(c);
        }
      }
      if (c->state != WC_CLOSED) ws__flush(c);
    }
  }
  if (ws__g.ready) {
    uv_prepare_stop(&ws__g.prep);
    uv_check_stop(&ws__g.check);
  }
}

static void on_prepare(uv_prepare_t *h) {
  (void)h;
  ws__run_work();
}

static void on_check(uv_check_t *h) {
  (void)h;
  ws__run_work();
}

void ws__presence_flush(void) {
  if (!ws__g.pres_n) return;
  if (ws__g.ready) uv_timer_stop(&ws__g.pres_timer);
  size_t online = 0;
  for (ws_conn_t *c = ws__g.conns; c; c = c->next)
    if (c->connected && c->state <= WC_OPEN) online++;
  textbuf_t b = {0};
  textbuf_str(&b, "{\"changes\":[");
  textbuf_add(&b, ws__g.pres ? ws__g.pres : "", ws__g.pres_len);
  textbuf_fmt(&b, "],\"online\":%zu}", online);
  ws__g.pres_len = 0;
  ws__g.pres_n = 0;
  if (!b.oom) {
    ws_filter_t f = {0};
    f.scope = "operator.read";
    ws_broadcast("presence", b.p, b.len, &f);
  }
  free(b.p);
}

static void on_pres_timer(uv_timer_t *t) {
  (void)t;
  ws__presence_flush();
}

void ws__presence_add(ws_conn_t *c, const char *status) {
  if (ws__g.final || ws__g.stopping || !ws__g.ready) return;
  textbuf_t b = {ws__g.pres, ws__g.pres_len, ws__g.pres_cap, 0, 0};
  if (ws__g.pres_n) textbuf_add(&b, ",", 1);
  textbuf_str(&b, "{\"connId\":");
  textbuf_json_str(&b, c->id);
  textbuf_str(&b, ",\"deviceId\":");
  textbuf_json_str(&b, c->device);
  textbuf_str(&b, ",\"role\":");
  textbuf_json_str(&b, c->role);
  textbuf_str(&b, ",\"status\":");
  textbuf_json_str(&b, status);
  textbuf_fmt(&b, ",\"ts\":%.3f}", clock_wall_s());
  ws__g.pres = b.p;
  ws__g.pres_cap = b.cap;
  if (b.oom) return;
  ws__g.pres_len = b.len;
  ws__g.pres_n++;
  if (ws__g.pres_n >= ws__g.set.presence_batch_size)
    ws__presence_flush();
  else if (!uv_is_active((uv_handle_t *)&ws__g.pres_timer))
    uv_timer_start(&ws__g.pres_timer, on_pres_timer, ws__g.set.presence_flush_interval_ms, 0);
}

static int conn_match(const ws_conn_t *c, const ws_filter_t *f) {
  if (c->state != WC_OPEN) return 0;
  if (!f) return 1;
  if (f->role && (!c->role || strcmp(c->role, f->role) != 0)) return 0;
  if (f->scope && !ws_has_scope(c, f->scope)) return 0;
  for (size_t i = 0; i < f->nexclude; i++)
    if (strcmp(f->exclude[i], c->id) == 0) return 0;
  return 1;
}

static ws_shared_t *shared_event(const char *event, const char *payload, size_t plen,
                                 uint64_t version) {
  char head[256];
  int hl = version ? snprintf(head, sizeof head,
                              "\"event\":\"%s\",\"stateVersion\":%llu,\"payload\":", event,
                              (unsigned long long)version)
                   : snprintf(head, sizeof head, "\"event\":\"%s\",\"payload\":", event);
  if (hl < 0 || (size_t)hl >= sizeof head) return NULL;
  ws_shared_t *sh = malloc(sizeof *sh + (size_t)hl + plen + 1);
  if (!sh) return NULL;
  sh->refs = 1;
  memcpy(sh->data, head, (size_t)hl);
  memcpy(sh->data + hl, payload, plen);
  sh->data[(size_t)hl + plen] = '}';
  sh->len = (size_t)hl + plen + 1;
  return sh;
}

size_t ws_broadcast(const char *event, const char *payload, size_t plen, const ws_filter_t *f) {
  if (!ws__g.ready) return 0;
  uint64_t t0 = uv_hrtime();
  uint64_t version = ++ws__g.state_version;
  ws_shared_t *sh = shared_event(event, payload, plen, version);
  if (!sh) return 0;
  size_t sent = 0;
  if (f && f->include) {
    for (size_t i = 0; i < f->ninclude; i++) {
      ws_conn_t *c = ws_find(f->include[i]);
      if (!c || c->bstamp == version || !conn_match(c, f)) continue;
      c->bstamp = version;
      if (conn_event(c, sh) == 0) sent++;
    }
  } else {
    for (ws_conn_t *c = ws__g.conns; c; c = c->next)
      if (conn_match(c, f) && conn_event(c, sh) == 0) sent++;
  }
  shared_unref(sh);
  if (ws__g.m_sent && sent) metrics_inc(ws__g.m_sent, NULL, (double)sent);
  if (ws__g.m_bdur) metrics_observe(ws__g.m_bdur, NULL, (double)(uv_hrtime() - t0) / 1e9);
  return sent;
}

int ws_send_event(const char *id, const char *event, const char *payload, size_t plen) {
  ws_conn_t *c = ws_find(id);
  if (!c || c->state != WC_OPEN) return -1;
  ws_shared_t *sh = shared_event(event, payload, plen, 0);
  if (!sh) return -1;
  int r = conn_event(c, sh);
  shared_unref(sh);
  if (r == 0 && ws__g.m_sent) metrics_inc(ws__g.m_sent, NULL, 1);
  return r;
}

int ws_send_text(uint64_t num, const char *text, size_t len) {
  ws_conn_t *c = ws__tab_get(num);
  if (!c || c->state != WC_OPEN) return -1;
  int r = ws__frame(c, WS_OP_TEXT, text, len, 0);
  if (r == 0 && ws__g.m_sent) metrics_inc(ws__g.m_sent, NULL, 1);
  return r;
}

int ws_close_id(const char *id, unsigned code, const char *reason) {
  ws_conn_t *c = ws_find(id);
  if (!c) return -1;
  ws__start_close(c, code, reason);
  return 0;
}

void ws__write_cleanup(void) {
  free(g_iov);
  g_iov = NULL;
  g_iov_cap = 0;
  free(ws__g.pres);
  ws__g.pres = NULL;
  ws__g.pres_len = ws__g.pres_cap = ws__g.pres_n = 0;
}
