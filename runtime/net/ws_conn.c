/* ws_conn.c - WebSocket connections: the table by number and the per-address counts, closing
 * (close handshake, hard close, failures), the sweep timer (handshake, heartbeat and close
 * timeouts), the connect answer (accept/refuse), conn.data, settings, stop and final close.
 * See ws_internal.h for how the module's files divide the work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "siphash.h"
#include "textbuf.h"
#include "ws_internal.h"

ws__state_t ws__g;

static void on_sweep(uv_timer_t *t);

static char *xstrdup(const char *s) {
  return s ? strdup(s) : NULL;
}

void ws_settings_default(ws_settings_t *s) {
  memset(s, 0, sizeof *s);
  s->enabled = 1;
  snprintf(s->path, sizeof s->path, "/ws");
  s->max_payload = 1048576;
  s->max_buffered_bytes = 1048576;
  s->ping_interval_ms = 30000;
  s->pong_timeout_ms = 60000;
  s->handshake_timeout_ms = 10000;
  s->close_timeout_ms = 1000;
  s->lingering_timeout_ms = 5000;
  s->max_connections = 10000;
  s->max_per_ip = 1000;
  s->rate_per_second = 50;
  s->rate_burst = 100;
  s->rate_close_after = 100;
  s->presence_batch_size = 50;
  s->presence_flush_interval_ms = 100;
  s->data_max_bytes = 4096;
}

const ws_settings_t *ws_settings(void) {
  return &ws__g.set;
}

static void init_metrics(void) {
  const char *err = NULL;
  static const char *const reason[] = {"reason"};
  static const char *const code[] = {"code"};
  static const double bbuckets[] = {0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                    0.0025,  0.005,   0.01,   0.025,   0.05,   0.1};
  ws__g.m_active =
      metrics_gauge("chatgw_websocket_connections_active",
                    "Open WebSocket connections (upgraded, not yet closed)", NULL, 0, &err);
  ws__g.m_total = metrics_counter("chatgw_websocket_connections_total",
                                  "WebSocket upgrades accepted", NULL, 0, &err);
  ws__g.m_recv = metrics_counter("chatgw_websocket_messages_received_total",
                                 "WebSocket data messages received from clients", NULL, 0, &err);
  ws__g.m_sent = metrics_counter("chatgw_websocket_messages_sent_total",
                                 "WebSocket data messages (res and event frames) queued to clients",
                                 NULL, 0, &err);
  ws__g.m_slow = metrics_counter("chatgw_websocket_slow_consumer_closes_total",
                                 "WebSocket connections dropped as slow consumers", NULL, 0, &err);
  ws__g.m_bdur = metrics_histogram("chatgw_websocket_broadcast_duration_seconds",
                                   "Time to encode and queue one broadcast to every recipient",
                                   NULL, 0, bbuckets, sizeof bbuckets / sizeof bbuckets[0], &err);
  ws__g.m_pulse =
      metrics_counter("chatgw_websocket_messages_pulse_total",
                      "WebSocket pong frames received (heartbeat answers)", NULL, 0, &err);
  ws__g.m_rejected =
      metrics_counter("chatgw_websocket_upgrades_rejected_total",
                      "WebSocket upgrade requests refused, by reason", reason, 1, &err);
  ws__g.m_limited =
      metrics_counter("chatgw_websocket_rate_limited_total",
                      "WebSocket messages refused by the per-connection rate limit", NULL, 0, &err);
  ws__g.m_closes = metrics_counter(
      "chatgw_websocket_closes_total",
      "WebSocket connections closed, by close code (1006: no close frame)", code, 1, &err);
}

static uint64_t sweep_interval(void) {
  uint64_t m = ws__g.set.ping_interval_ms;
  if (ws__g.set.pong_timeout_ms < m) m = ws__g.set.pong_timeout_ms;
  if (ws__g.set.handshake_timeout_ms < m) m = ws__g.set.handshake_timeout_ms;
  if (ws__g.set.close_timeout_ms < m) m = ws__g.set.close_timeout_ms;
  m /= 4;
  if (m < 10) m = 10;
  if (m > 250) m = 250;
  return m;
}

void ws_init(uv_loop_t *loop) {
  ws__g.loop = loop;
  uv_timer_init(loop, &ws__g.sweep);
  uv_timer_init(loop, &ws__g.pres_timer);
  uv_timer_init(loop, &ws__g.linger_timer);
  uv_prepare_init(loop, &ws__g.prep);
  uv_check_init(loop, &ws__g.check);
  /* getrandom through libuv: OpenSSL stays out of boot (and of RSS) */
  unsigned char r[4];
  if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) != 0) {
    uint64_t t = uv_hrtime();
    memcpy(r, &t, sizeof r);
  }
  snprintf(ws__g.boot, sizeof ws__g.boot, "%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
  siphash_process_key(ws__g.ip_key);
  ws__g.next_num = 1;
  init_metrics();
  ws__g.ready = 1;
}

void ws_set_hooks(const ws_hooks_t *hooks) {
  ws__g.hooks = *hooks;
}

void ws_apply_settings(const ws_settings_t *s) {
  ws__g.set = *s; /* validated by the config schema (lua/chatgw/ws.lua) */
  if (ws__g.ready && ws__g.nconns) {
    uint64_t every = sweep_interval();
    if (every != ws__g.sweep_every) {
      ws__g.sweep_every = every;
      uv_timer_start(&ws__g.sweep, on_sweep, every, every);
    }
  }
}

static void tab_put(ws_conn_t *c) {
  if (ws__g.tabn + 1 > ws__g.tabcap / 2) {
    size_t nc = ws__g.tabcap ? ws__g.tabcap * 2 : 64;
    ws_conn_t **nt = calloc(nc, sizeof *nt);
    if (!nt && !ws__g.tabcap) return;
    if (nt) { /* else keep the old table, with longer chains */
      for (size_t i = 0; i < ws__g.tabcap; i++) {
        ws_conn_t *x = ws__g.tab[i];
        while (x) {
          ws_conn_t *n = x->hnext;
          size_t b = (size_t)(x->num & (nc - 1));
          x->hnext = nt[b];
          nt[b] = x;
          x = n;
        }
      }
      free(ws__g.tab);
      ws__g.tab = nt;
      ws__g.tabcap = nc;
    }
  }
  size_t b = (size_t)(c->num & (ws__g.tabcap - 1));
  c->hnext = ws__g.tab[b];
  ws__g.tab[b] = c;
  ws__g.tabn++;
}

static void tab_del(ws_conn_t *c) {
  if (!ws__g.tabcap) return;
  ws_conn_t **pp = &ws__g.tab[c->num & (ws__g.tabcap - 1)];
  while (*pp && *pp != c)
    pp = &(*pp)->hnext;
  if (*pp) {
    *pp = c->hnext;
    ws__g.tabn--;
  }
}

ws_conn_t *ws__tab_get(uint64_t num) {
  if (!ws__g.tabcap) return NULL;
  for (ws_conn_t *x = ws__g.tab[num & (ws__g.tabcap - 1)]; x; x = x->hnext)
    if (x->num == num) return x;
  return NULL;
}

/* "<boot>-<num>" -> num, or 0. */
static uint64_t parse_id(const char *id) {
  if (!id || strncmp(id, ws__g.boot, 8) != 0 || id[8] != '-') return 0;
  const char *p = id + 9;
  if (!*p || *p == '0') return 0;
  uint64_t n = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || n > UINT64_MAX / 10) return 0;
    n = n * 10 + (uint64_t)(*p - '0');
  }
  return n;
}

ws_conn_t *ws_find_num(uint64_t num) {
  ws_conn_t *c = ws__tab_get(num);
  return c && c->state <= WC_OPEN ? c : NULL;
}

ws_conn_t *ws_find(const char *id) {
  return ws_find_num(parse_id(id));
}

/* Client addresses index a fixed table: keyed SipHash, so no one can aim them at one chain. */
static unsigned ip_hash(const char *s) {
  return (unsigned)(siphash13(s, strlen(s), ws__g.ip_key) & 255);
}

ip_entry_t *ws__ip_get(const char *ip, int create) {
  unsigned b = ip_hash(ip);
  for (ip_entry_t *e = ws__g.ips[b]; e; e = e->next)
    if (strcmp(e->ip, ip) == 0) return e;
  if (!create) return NULL;
  ip_entry_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  snprintf(e->ip, sizeof e->ip, "%s", ip);
  e->next = ws__g.ips[b];
  ws__g.ips[b] = e;
  return e;
}

void ws__ip_release(ip_entry_t *e) {
  if (!e || --e->n > 0) return;
  ip_entry_t **pp = &ws__g.ips[ip_hash(e->ip)];
  while (*pp && *pp != e)
    pp = &(*pp)->next;
  if (*pp) *pp = e->next;
  free(e);
}

void ws__set_disc(ws_conn_t *c, unsigned code, const char *reason) {
  if (c->disc_set) return;
  c->disc_set = 1;
  c->disc_code = (uint16_t)code;
  free(c->disc_reason);
  c->disc_reason = xstrdup(reason ? reason : "");
}

/* Closes the socket now. Bookkeeping (counts, presence, on_disconnect) happens here; the
 * memory goes in the close callback. */
void ws__hard_close(ws_conn_t *c, unsigned code, const char *reason) {
  if (c->state == WC_CLOSED) return;
  ws__set_disc(c, code, reason);
  int was_connected = c->connected;
  c->state = WC_CLOSED;
  ws__outs_free(c->qhead);
  c->qhead = c->qtail = NULL;
  c->queued = 0;
  c->pong = NULL;
  if (c->prev)
    c->prev->next = c->next;
  else
    ws__g.conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  tab_del(c);
  ws__g.nconns--;
  ws__ip_release(c->ip);
  c->ip = NULL;
  if (ws__g.m_active) metrics_inc(ws__g.m_active, NULL, -1);
  char cs[16];
  snprintf(cs, sizeof cs, "%u", (unsigned)c->disc_code);
  const char *lv[1] = {cs};
  if (ws__g.m_closes) metrics_inc(ws__g.m_closes, lv, 1);
  if (log_enabled(LOG_INFO)) {
    log_field_t f[] = {{"conn", c->id, 0},
                       {"remote", c->remote, 0},
                       {"code", cs, 1},
                       {"reason", c->disc_reason ? c->disc_reason : "", 0},
                       {"role", c->role ? c->role : "-", 0}};
    log_write(LOG_INFO, "ws closed", f, 5);
  }
  if (was_connected) {
    ws__presence_add(c, "offline");
    if (!ws__g.final && ws__g.hooks.disconnect)
      ws__g.hooks.disconnect(c, c->disc_code, c->disc_reason ? c->disc_reason : "");
  }
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  /* Lingering close (nginx's lingering_close): the peer reads our close frame instead of a
   * reset caused by input we never read. */
  if (ws__linger_start(c) != 0) uv_close((uv_handle_t *)&c->tcp, ws__on_closed);
  if (!ws__g.nconns && ws__g.ready) {
    uv_timer_stop(&ws__g.sweep);
    ws__g.sweep_every = 0;
  }
}

/* Sends a close frame and waits (close_timeout_ms at most) for the peer's. */
void ws__start_close(ws_conn_t *c, unsigned code, const char *reason) {
  if (c->state >= WC_CLOSING) return;
  ws__set_disc(c, code, reason);
  c->state = WC_CLOSING;
  c->paused = 0;
  uint8_t pl[WS_MAX_CONTROL];
  size_t n = ws_close_payload(pl, code, reason);
  ws__frame(c, WS_OP_CLOSE, pl, n, 1);
  c->close_deadline_ms = ws__loop_ms() + ws__g.set.close_timeout_ms;
  c->resume = 1; /* keep reading: the peer's close frame comes next */
  ws__work_link(c);
}

/* Fail the connection: the frames queued so far (e.g. an error `res`), a close frame, then the
 * socket is closed once they are written (close_timeout_ms at most); input is ignored. */
void ws__fail_close(ws_conn_t *c, unsigned code, const char *reason) {
  if (c->state >= WC_CLOSING) return;
  ws__start_close(c, code, reason);
  c->close_after_flush = 1;
  ws__pause(c);
}

static void data_free(ws_conn_t *c) {
  ws_kv_t *kv = c->data;
  while (kv) {
    ws_kv_t *n = kv->next;
    free(kv->val);
    free(kv);
    kv = n;
  }
  c->data = NULL;
  c->data_bytes = 0;
}

void ws__on_closed(uv_handle_t *h) {
  ws_conn_t *c = h->data;
  if (c->fctx) wslay_frame_context_free(c->fctx);
  tls_conn_free(c->tls);
  free(c->shut);
  free(c->stash);
  free(c->msg);
  free(c->role);
  free(c->scopes);
  free(c->device);
  free(c->client_id);
  free(c->client_version);
  free(c->pre_query);
  free(c->pre_bearer);
  free(c->disc_reason);
  data_free(c);
  free(c);
}

void ws__fail(ws_conn_t *c, const char *code, const char *message, unsigned close_code,
              const char *reason) {
  if (c->state >= WC_CLOSING) return;
  if (code) {
    textbuf_t b = {0};
    textbuf_str(&b, "{\"type\":\"res\",\"id\":null,\"ok\":false,\"error\":{\"code\":");
    textbuf_json_str(&b, code);
    textbuf_str(&b, ",\"message\":");
    textbuf_json_str(&b, message);
    textbuf_str(&b, "}}");
    if (!b.oom) ws__frame(c, WS_OP_TEXT, b.p, b.len, 1);
    free(b.p);
  }
  ws__fail_close(c, close_code, reason);
}

ws_conn_t *ws__conn_any(uint64_t num) {
  ws_conn_t *c = ws__tab_get(num);
  return c && c->state != WC_CLOSED ? c : NULL;
}

static void on_sweep(uv_timer_t *t) {
  (void)t;
  uint64_t now = ws__loop_ms();
  ws_conn_t *c = ws__g.conns;
  while (c) {
    ws_conn_t *next = c->next;
    switch (c->state) {
    case WC_HANDSHAKE:
    case WC_CONNECTING:
      if (now - c->opened_ms >= ws__g.set.handshake_timeout_ms)
        ws__fail(c, "handshake_timeout", "no connect request in time", 1008, "handshake timeout");
      break;
    case WC_OPEN:
      if (now - c->last_seen_ms >= ws__g.set.pong_timeout_ms) {
        ws__start_close(c, 1001, "heartbeat timeout");
      } else if (now - c->last_ping_ms >= ws__g.set.ping_interval_ms) {
        c->last_ping_ms = now;
        ws__frame(c, WS_OP_PING, NULL, 0, 1);
      }
      break;
    case WC_CLOSING:
      if (now >= c->close_deadline_ms) ws__hard_close(c, c->disc_code, c->disc_reason);
      break;
    default:
      break;
    }
    c = next;
  }
}

void ws__linger_sweep(uv_timer_t *t) {
  (void)t;
  uint64_t now = ws__loop_ms();
  ws_conn_t *c = ws__g.lingering;
  while (c) {
    ws_conn_t *next = c->next;
    if (now >= c->close_deadline_ms) ws__linger_end(c);
    c = next;
  }
}

void ws__sweep_ensure(void) {
  if (!ws__g.ready || ws__g.sweep_every) return;
  ws__g.sweep_every = sweep_interval();
  uv_timer_start(&ws__g.sweep, on_sweep, ws__g.sweep_every, ws__g.sweep_every);
}

static const char *state_name(int s) {
  switch (s) {
  case WC_HANDSHAKE:
  case WC_CONNECTING:
    return "connecting";
  case WC_OPEN:
    return "open";
  case WC_CLOSING:
    return "closing";
  default:
    return "closed";
  }
}

int ws_accept(uint64_t num, const char *role, const char *const *scopes, size_t nscopes,
              const char *device, const char *client_id, const char *client_version,
              const char *hello, size_t hello_len) {
  ws_conn_t *c = ws__tab_get(num);
  if (!c || c->state != WC_CONNECTING) return -1;
  size_t bytes = (nscopes + 1) * sizeof(char *);
  for (size_t i = 0; i < nscopes; i++)
    bytes += strlen(scopes[i]) + 1;
  char **blk = malloc(bytes);
  if (!blk) return -1;
  char *sp = (char *)(blk + nscopes + 1);
  for (size_t i = 0; i < nscopes; i++) {
    size_t l = strlen(scopes[i]) + 1;
    memcpy(sp, scopes[i], l);
    blk[i] = sp;
    sp += l;
  }
  blk[nscopes] = NULL;
  free(c->scopes);
  c->scopes = blk;
  c->nscopes = nscopes;
  free(c->role);
  c->role = xstrdup(role);
  free(c->device);
  c->device = device && *device ? strdup(device) : NULL;
  c->client_id = xstrdup(client_id);
  c->client_version = xstrdup(client_version);
  free(c->pre_query);
  free(c->pre_bearer);
  c->pre_query = c->pre_bearer = NULL;
  c->state = WC_OPEN;
  c->connected = 1;
  c->connected_at = clock_wall_s();
  c->last_seen_ms = c->last_ping_ms = ws__loop_ms();
  token_bucket_init(&c->bucket, ws__g.set.rate_burst, (double)ws__loop_ms());
  ws__frame(c, WS_OP_TEXT, hello, hello_len, 1);
  if (ws__g.m_sent) metrics_inc(ws__g.m_sent, NULL, 1);
  if (log_enabled(LOG_INFO)) {
    log_field_t f[] = {{"conn", c->id, 0},
                       {"remote", c->remote, 0},
                       {"role", c->role ? c->role : "-", 0},
                       {"device", c->device ? c->device : "-", 0}};
    log_write(LOG_INFO, "ws connected", f, 4);
  }
  ws__presence_add(c, "online");
  ws__resume(c);
  return 0;
}

const char *ws_data_get(uint64_t num, const char *key, size_t *len) {
  ws_conn_t *c = ws__tab_get(num);
  if (!c) return NULL;
  for (ws_kv_t *kv = c->data; kv; kv = kv->next)
    if (strcmp(kv->key, key) == 0) {
      *len = kv->vlen;
      return kv->val;
    }
  return NULL;
}

int ws_data_set(uint64_t num, const char *key, const char *json, size_t jlen) {
  ws_conn_t *c = ws__tab_get(num);
  if (!c || c->state == WC_CLOSED) return -1;
  ws_kv_t **pp = &c->data;
  while (*pp && strcmp((*pp)->key, key) != 0)
    pp = &(*pp)->next;
  ws_kv_t *old = *pp;
  size_t klen = strlen(key);
  size_t old_bytes = old ? old->klen + old->vlen : 0;
  if (!json) {
    if (old) {
      *pp = old->next;
      c->data_bytes -= old_bytes;
      free(old->val);
      free(old);
    }
    return 0;
  }
  if (c->data_bytes - old_bytes + klen + jlen > ws__g.set.data_max_bytes) return -2;
  char *v = malloc(jlen + 1);
  if (!v) return -2;
  memcpy(v, json, jlen);
  v[jlen] = 0;
  if (old) {
    free(old->val);
    old->val = v;
    old->vlen = jlen;
  } else {
    ws_kv_t *kv = malloc(sizeof *kv + klen + 1);
    if (!kv) {
      free(v);
      return -2;
    }
    memcpy(kv->key, key, klen + 1);
    kv->klen = klen;
    kv->val = v;
    kv->vlen = jlen;
    kv->next = NULL;
    *pp = kv;
  }
  c->data_bytes = c->data_bytes - old_bytes + klen + jlen;
  return 0;
}

void ws_stop(void) {
  if (!ws__g.ready || ws__g.stopping) return;
  ws__presence_flush();
  ws__g.stopping = 1;
  static const char payload[] = "{\"reason\":\"server_stopping\"}";
  ws_broadcast("shutdown", payload, sizeof payload - 1, NULL);
  for (ws_conn_t *c = ws__g.conns; c; c = c->next)
    if (c->state < WC_CLOSING) ws__start_close(c, 1001, "server shutting down");
}

size_t ws_connection_count(void) {
  return ws__g.nconns;
}

void ws_close_all(void) {
  ws__g.final = 1;
  ws__g.stopping = 1;
  while (ws__g.conns)
    ws__hard_close(ws__g.conns, 1001, "server stopped");
  while (ws__g.lingering)
    ws__linger_end(ws__g.lingering);
  ws__g.work = NULL;
  if (ws__g.ready) {
    uv_close((uv_handle_t *)&ws__g.linger_timer, NULL);
    ws__g.ready = 0;
    uv_close((uv_handle_t *)&ws__g.sweep, NULL);
    uv_close((uv_handle_t *)&ws__g.pres_timer, NULL);
    uv_close((uv_handle_t *)&ws__g.prep, NULL);
    uv_close((uv_handle_t *)&ws__g.check, NULL);
  }
  ws__read_cleanup();
  ws__write_cleanup();
  free(ws__g.tab);
  ws__g.tab = NULL;
  ws__g.tabcap = ws__g.tabn = 0;
  for (size_t i = 0; i < 256; i++) {
    while (ws__g.ips[i]) {
      ip_entry_t *e = ws__g.ips[i];
      ws__g.ips[i] = e->next;
      free(e);
    }
  }
}

void ws_refuse(uint64_t num, const char *text, size_t len, unsigned code, const char *reason) {
  ws_conn_t *c = ws__conn_any(num);
  if (!c || c->state > WC_CONNECTING) return; /* accepted, closing or gone */
  free(c->pre_query);
  free(c->pre_bearer);
  c->pre_query = c->pre_bearer = NULL;
  if (text) ws__frame(c, WS_OP_TEXT, text, len, 1);
  ws__fail_close(c, code, reason);
}

void ws__register(ws_conn_t *c) {
  c->num = ws__g.next_num++;
  snprintf(c->id, sizeof c->id, "%s-%llu", ws__g.boot, (unsigned long long)c->num);
  c->state = WC_HANDSHAKE;
  c->opened_ms = c->last_seen_ms = c->last_ping_ms = ws__loop_ms();
  c->next = ws__g.conns;
  if (ws__g.conns) ws__g.conns->prev = c;
  ws__g.conns = c;
  ws__g.nconns++;
  tab_put(c);
  if (ws__g.m_active) metrics_inc(ws__g.m_active, NULL, 1);
  if (ws__g.m_total) metrics_inc(ws__g.m_total, NULL, 1);
  ws__sweep_ensure();
}

void ws_info(const ws_conn_t *c, ws_info_t *out) {
  out->id = c->id;
  out->num = c->num;
  out->role = c->role;
  out->scopes = (const char *const *)c->scopes;
  out->nscopes = c->nscopes;
  out->device = c->device;
  out->client_id = c->client_id;
  out->client_version = c->client_version;
  out->remote = c->remote;
  out->remote_port = c->remote_port;
  out->connected = c->connected;
  out->connected_at = c->connected_at;
  uint64_t now = ws__g.loop ? ws__loop_ms() : c->last_seen_ms;
  out->last_seen = clock_wall_s() - (double)(now - c->last_seen_ms) / 1000.0;
  out->buffered = ws__unsent(c);
  out->seq = c->seq;
  out->state = state_name(c->state);
}

int ws_has_scope(const ws_conn_t *c, const char *scope) {
  for (size_t i = 0; i < c->nscopes; i++)
    if (strcmp(c->scopes[i], scope) == 0) return 1;
  return 0;
}

void ws_each_open(void (*fn)(ws_conn_t *c, void *ud), void *ud) {
  for (ws_conn_t *c = ws__g.conns; c; c = c->next)
    if (c->state == WC_OPEN) fn(c, ud);
}

void ws_data_each(const ws_conn_t *c,
                  void (*fn)(const char *key, const char *json, size_t len, void *ud), void *ud) {
  for (ws_kv_t *kv = c->data; kv; kv = kv->next)
    fn(kv->key, kv->val, kv->vlen, ud);
}
