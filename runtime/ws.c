/* ws.c - WebSocket connections (see ws.h and docs/websocket.md).
 *
 * Connection states:
 *   WC_HANDSHAKE   upgraded, challenge sent, waiting for the first message (connect)
 *   WC_CONNECTING  the connect message is with Lua; reading is paused until it answers
 *   WC_OPEN        connected: method calls, events, broadcasts, pings
 *   WC_CLOSING     a close frame was sent (or answered); waiting for the peer / the last write /
 *                  close_timeout_ms, then the socket is closed
 *   WC_CLOSED      uv_close called; freed in the close callback
 *
 * Memory per idle connection is kept small: the wslay frame context (4 KiB of input buffer)
 * and the message buffer exist only while a frame or message is incomplete (contexts are
 * pooled), reads go through one shared buffer, timers are per module (one sweep), and output
 * lives in the queue only until the loop turn ends.
 *
 * Output: frames are queued per connection (ws_out_t: a private head, optionally followed by
 * a reference-counted payload shared with other connections) and written at the end of the
 * loop turn with one uv_write per connection (prepare + check handles). A connection whose
 * unsent bytes (queue + libuv's write queue) would exceed max_buffered_bytes is dropped as a
 * slow consumer: its queue is discarded, a close 1008 is sent, and the socket is closed after
 * close_timeout_ms at the latest. */
#include "ws.h"

#include <lauxlib.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "log.h"
#include "metrics.h"
#include "rt.h"
#include "textbuf.h"
#include "vm.h"
#include "ws_frame.h"

#define RBUF_SIZE 65536
#define CTX_POOL_MAX 64
#define RATE_WINDOW_MS 10000
#define FLUSH_EAGER_BYTES 65536 /* a queue this big is written at once, not at the turn's end */
#define ID_MAX 32

enum { WC_HANDSHAKE, WC_CONNECTING, WC_OPEN, WC_CLOSING, WC_CLOSED };

typedef struct ws_shared {
  unsigned refs;
  size_t len;
  char data[];
} ws_shared_t;

typedef struct ws_out {
  struct ws_out *next;
  ws_shared_t *sh; /* sent after data, or NULL */
  size_t len;
  uint8_t data[];
} ws_out_t;

typedef struct {
  uv_write_t req;
  ws_out_t *items;
} ws_wr_t;

typedef struct ws_kv {
  struct ws_kv *next;
  size_t klen, vlen;
  char *val; /* JSON text */
  char key[];
} ws_kv_t;

typedef struct ip_entry {
  struct ip_entry *next;
  size_t n;
  char ip[64];
} ip_entry_t;

struct ws_conn {
  uv_tcp_t tcp;
  uint64_t num;
  char id[ID_MAX];
  int state;
  unsigned connected : 1; /* the connect handshake succeeded */
  unsigned reading : 1;
  unsigned paused : 1;  /* reading stopped until Lua answers the connect */
  unsigned in_work : 1; /* linked in the work list */
  unsigned resume : 1;  /* work: parse the stash and start reading again */
  unsigned close_after_flush : 1;
  unsigned close_received : 1;
  unsigned frame_active : 1;
  unsigned msg_active : 1;
  unsigned msg_direct : 1;
  unsigned disc_set : 1;
  uint8_t frame_op;
  uint8_t msg_op;
  uint16_t disc_code;
  char *disc_reason;
  uint64_t opened_ms, last_seen_ms, last_ping_ms, close_deadline_ms;
  double connected_at;
  uint64_t seq;
  uint64_t bstamp; /* last broadcast that reached it (dedupes include lists) */
  char *role;
  char **scopes; /* one block: pointers then strings */
  size_t nscopes;
  char *device, *client_id, *client_version;
  char *pre_token; /* from ?token= or Authorization, until the connect is answered */
  char remote[64];
  int remote_port;
  ip_entry_t *ip;
  /* output */
  ws_out_t *qhead, *qtail;
  size_t queued;
  unsigned writes;
  /* input */
  wslay_frame_context_ptr fctx;
  const uint8_t *in;
  size_t in_len;
  uint64_t fed, used; /* bytes given to / accounted from the frame context */
  uint64_t frame_left;
  uint8_t *stash;
  size_t stash_len;
  uint8_t *msg;
  size_t msg_len, msg_cap;
  uint32_t utf8;
  uint8_t ctrl[WS_MAX_CONTROL];
  size_t ctrl_len;
  /* rate limit */
  double tokens;
  uint64_t tokens_ms;
  unsigned rejects;
  uint64_t rejects_since_ms;
  /* per-connection data */
  ws_kv_t *data;
  size_t data_bytes;
  /* lists */
  ws_conn_t *prev, *next; /* g_conns: every connection not yet closed */
  ws_conn_t *hnext;       /* hash chain by num */
  ws_conn_t *work_next;
};

/* ---- module state ------------------------------------------------------------------------- */

static ws_settings_t g_set;
static int g_ready; /* handles initialised */
static int g_stopping, g_final;
static uv_loop_t *g_loop;
static uv_timer_t g_sweep, g_pres_timer;
static uv_prepare_t g_prep;
static uv_check_t g_check;
static uint64_t g_sweep_every;
static ws_conn_t *g_conns;
static size_t g_nconns;
static ws_conn_t *g_work;
static ws_conn_t **g_tab;
static size_t g_tabcap, g_tabn;
static ip_entry_t *g_ips[256];
static uint64_t g_next_num = 1;
static char g_boot[9];
static uint64_t g_state_version;
static uint8_t g_rbuf[RBUF_SIZE];
static ws_conn_t *g_parsing;
static wslay_frame_context_ptr g_pool[CTX_POOL_MAX];
static size_t g_npool;
static uv_buf_t *g_bufs;
static size_t g_bufs_cap;
static char *g_pres;
static size_t g_pres_len, g_pres_cap, g_pres_n;

static metric_t *m_active, *m_total, *m_recv, *m_sent, *m_slow, *m_bdur, *m_pulse, *m_rejected,
    *m_limited, *m_closes;

/* ---- small helpers ------------------------------------------------------------------------ */

/* JSON string (with quotes); NULL gives null. */
static void sb_json_str(textbuf_t *b, const char *s) {
  if (!s) {
    textbuf_str(b, "null");
    return;
  }
  textbuf_add(b, "\"", 1);
  const char *run = s;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p >= 0x20 && *p != '"' && *p != '\\') continue;
    textbuf_add(b, run, (size_t)((const char *)p - run));
    char esc[8];
    if (*p == '"' || *p == '\\')
      snprintf(esc, sizeof esc, "\\%c", *p);
    else
      snprintf(esc, sizeof esc, "\\u%04x", *p);
    textbuf_str(b, esc);
    run = (const char *)p + 1;
  }
  textbuf_str(b, run);
  textbuf_add(b, "\"", 1);
}

static char *xstrdup(const char *s) {
  return s ? strdup(s) : NULL;
}

static double wall_now(void) {
  return rt_wall_time();
}

static uint64_t now_ms(void) {
  return uv_now(g_loop);
}

static int eq_ci(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  return alen == blen && strncasecmp(a, b, blen) == 0;
}

/* 1 if the comma-separated header value contains token (case-insensitive). */
static int has_token(const char *v, const char *token) {
  size_t tl = strlen(token);
  while (v && *v) {
    while (*v == ' ' || *v == '\t' || *v == ',')
      v++;
    const char *e = v;
    while (*e && *e != ',')
      e++;
    const char *te = e;
    while (te > v && (te[-1] == ' ' || te[-1] == '\t'))
      te--;
    if ((size_t)(te - v) == tl && strncasecmp(v, token, tl) == 0) return 1;
    v = e;
  }
  return 0;
}

static const char *req_header(const http_request_t *req, const char *name) {
  for (size_t i = 0; i < req->nheaders; i++)
    if (eq_ci(req->headers[i].name, req->headers[i].name_len, name)) return req->headers[i].value;
  return NULL;
}

/* ---- settings ----------------------------------------------------------------------------- */

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
  s->max_connections = 10000;
  s->max_per_ip = 1000;
  s->rate_per_second = 50;
  s->rate_burst = 100;
  s->rate_close_after = 100;
  s->presence_batch_size = 50;
  s->presence_flush_interval_ms = 100;
  s->data_max_bytes = 4096;
}

static void rd_num(lua_State *L, int t, const char *k, double *out) {
  lua_getfield(L, t, k);
  if (lua_type(L, -1) == LUA_TNUMBER) *out = lua_tonumber(L, -1);
  lua_pop(L, 1);
}

#define RD_U64(k, field)                                                                           \
  do {                                                                                             \
    double d_ = (double)(s->field);                                                                \
    rd_num(L, t, k, &d_);                                                                          \
    s->field = d_ > 0 ? (__typeof__(s->field))d_ : 0;                                              \
  } while (0)

void ws_settings_read(lua_State *L, int cfg_idx, ws_settings_t *s) {
  ws_settings_default(s);
  int top = lua_gettop(L);
  int ci = cfg_idx > 0 ? cfg_idx : top + cfg_idx + 1;
  lua_getfield(L, ci, "ws");
  if (!lua_istable(L, -1)) {
    lua_settop(L, top);
    return;
  }
  int t = lua_gettop(L);
  lua_getfield(L, t, "enabled");
  if (lua_type(L, -1) == LUA_TBOOLEAN) s->enabled = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, t, "path");
  if (lua_type(L, -1) == LUA_TSTRING) snprintf(s->path, sizeof s->path, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, t, "origins");
  if (lua_istable(L, -1)) {
    size_t off = 0, n = lua_objlen(L, -1);
    for (size_t i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, (int)i);
      size_t l = 0;
      const char *o = lua_tolstring(L, -1, &l);
      if (o && l && off + l + 2 < sizeof s->origins) {
        memcpy(s->origins + off, o, l + 1);
        off += l + 1;
      }
      lua_pop(L, 1);
    }
    s->origins[off] = 0;
  }
  lua_pop(L, 1);
  RD_U64("max_payload", max_payload);
  RD_U64("max_buffered_bytes", max_buffered_bytes);
  RD_U64("ping_interval_ms", ping_interval_ms);
  RD_U64("pong_timeout_ms", pong_timeout_ms);
  RD_U64("handshake_timeout_ms", handshake_timeout_ms);
  RD_U64("close_timeout_ms", close_timeout_ms);
  RD_U64("max_connections", max_connections);
  RD_U64("max_per_ip", max_per_ip);
  RD_U64("data_max_bytes", data_max_bytes);
  lua_getfield(L, t, "rate_limit");
  if (lua_istable(L, -1)) {
    int rt = lua_gettop(L);
    rd_num(L, rt, "messages_per_second", &s->rate_per_second);
    rd_num(L, rt, "burst", &s->rate_burst);
    double d = s->rate_close_after;
    rd_num(L, rt, "close_after", &d);
    s->rate_close_after = (unsigned)d;
  }
  lua_pop(L, 1);
  lua_getfield(L, t, "presence");
  if (lua_istable(L, -1)) {
    int pt = lua_gettop(L);
    double d = (double)s->presence_batch_size;
    rd_num(L, pt, "batch_size", &d);
    s->presence_batch_size = (size_t)d;
    d = (double)s->presence_flush_interval_ms;
    rd_num(L, pt, "flush_interval_ms", &d);
    s->presence_flush_interval_ms = (uint64_t)d;
  }
  lua_settop(L, top);
}

const ws_settings_t *ws_settings(void) {
  return &g_set;
}

static void on_sweep(uv_timer_t *t);
static void on_prepare(uv_prepare_t *h);
static void on_check(uv_check_t *h);

static void init_metrics(void) {
  const char *err = NULL;
  static const char *const reason[] = {"reason"};
  static const char *const code[] = {"code"};
  static const double bbuckets[] = {0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                    0.0025,  0.005,   0.01,   0.025,   0.05,   0.1};
  m_active = metrics_gauge("chatgw_websocket_connections_active",
                           "Open WebSocket connections (upgraded, not yet closed)", NULL, 0, &err);
  m_total = metrics_counter("chatgw_websocket_connections_total", "WebSocket upgrades accepted",
                            NULL, 0, &err);
  m_recv = metrics_counter("chatgw_websocket_messages_received_total",
                           "WebSocket data messages received from clients", NULL, 0, &err);
  m_sent = metrics_counter("chatgw_websocket_messages_sent_total",
                           "WebSocket data messages (res and event frames) queued to clients", NULL,
                           0, &err);
  m_slow = metrics_counter("chatgw_websocket_slow_consumer_closes_total",
                           "WebSocket connections dropped as slow consumers", NULL, 0, &err);
  m_bdur = metrics_histogram("chatgw_websocket_broadcast_duration_seconds",
                             "Time to encode and queue one broadcast to every recipient", NULL, 0,
                             bbuckets, sizeof bbuckets / sizeof bbuckets[0], &err);
  m_pulse = metrics_counter("chatgw_websocket_messages_pulse_total",
                            "WebSocket pong frames received (heartbeat answers)", NULL, 0, &err);
  m_rejected = metrics_counter("chatgw_websocket_upgrades_rejected_total",
                               "WebSocket upgrade requests refused, by reason", reason, 1, &err);
  m_limited =
      metrics_counter("chatgw_websocket_rate_limited_total",
                      "WebSocket messages refused by the per-connection rate limit", NULL, 0, &err);
  m_closes = metrics_counter("chatgw_websocket_closes_total",
                             "WebSocket connections closed, by close code (1006: no close frame)",
                             code, 1, &err);
}

static uint64_t sweep_interval(void) {
  uint64_t m = g_set.ping_interval_ms;
  if (g_set.pong_timeout_ms < m) m = g_set.pong_timeout_ms;
  if (g_set.handshake_timeout_ms < m) m = g_set.handshake_timeout_ms;
  if (g_set.close_timeout_ms < m) m = g_set.close_timeout_ms;
  m /= 4;
  if (m < 10) m = 10;
  if (m > 250) m = 250;
  return m;
}

void ws_apply_settings(const ws_settings_t *s) {
  g_set = *s;
  if (!g_set.max_payload) g_set.max_payload = 1048576;
  if (!g_set.max_buffered_bytes) g_set.max_buffered_bytes = 1048576;
  if (!g_set.ping_interval_ms) g_set.ping_interval_ms = 30000;
  if (!g_set.pong_timeout_ms) g_set.pong_timeout_ms = 60000;
  if (!g_set.handshake_timeout_ms) g_set.handshake_timeout_ms = 10000;
  if (!g_set.close_timeout_ms) g_set.close_timeout_ms = 1000;
  if (!g_set.presence_batch_size) g_set.presence_batch_size = 1;
  if (!g_set.rate_per_second) g_set.rate_per_second = 1;
  if (g_set.rate_burst < 1) g_set.rate_burst = 1;
  if (!g_ready && !g_final && g_rt.loop) {
    g_loop = g_rt.loop;
    uv_timer_init(g_loop, &g_sweep);
    uv_timer_init(g_loop, &g_pres_timer);
    uv_prepare_init(g_loop, &g_prep);
    uv_check_init(g_loop, &g_check);
    unsigned char r[4];
    if (RAND_bytes(r, sizeof r) != 1) {
      uint64_t t = uv_hrtime();
      memcpy(r, &t, sizeof r);
    }
    snprintf(g_boot, sizeof g_boot, "%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    init_metrics();
    g_ready = 1;
  }
  if (g_ready && g_nconns) {
    uint64_t every = sweep_interval();
    if (every != g_sweep_every) {
      g_sweep_every = every;
      uv_timer_start(&g_sweep, on_sweep, every, every);
    }
  }
}

/* ---- connection table --------------------------------------------------------------------- */

static void tab_put(ws_conn_t *c) {
  if (g_tabn + 1 > g_tabcap / 2) {
    size_t nc = g_tabcap ? g_tabcap * 2 : 64;
    ws_conn_t **nt = calloc(nc, sizeof *nt);
    if (!nt && !g_tabcap) return;
    if (nt) { /* else keep the old table, with longer chains */
      for (size_t i = 0; i < g_tabcap; i++) {
        ws_conn_t *x = g_tab[i];
        while (x) {
          ws_conn_t *n = x->hnext;
          size_t b = (size_t)(x->num & (nc - 1));
          x->hnext = nt[b];
          nt[b] = x;
          x = n;
        }
      }
      free(g_tab);
      g_tab = nt;
      g_tabcap = nc;
    }
  }
  size_t b = (size_t)(c->num & (g_tabcap - 1));
  c->hnext = g_tab[b];
  g_tab[b] = c;
  g_tabn++;
}

static void tab_del(ws_conn_t *c) {
  if (!g_tabcap) return;
  ws_conn_t **pp = &g_tab[c->num & (g_tabcap - 1)];
  while (*pp && *pp != c)
    pp = &(*pp)->hnext;
  if (*pp) {
    *pp = c->hnext;
    g_tabn--;
  }
}

static ws_conn_t *tab_get(uint64_t num) {
  if (!g_tabcap) return NULL;
  for (ws_conn_t *x = g_tab[num & (g_tabcap - 1)]; x; x = x->hnext)
    if (x->num == num) return x;
  return NULL;
}

/* "<boot>-<num>" -> num, or 0. */
static uint64_t parse_id(const char *id) {
  if (!id || strncmp(id, g_boot, 8) != 0 || id[8] != '-') return 0;
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
  ws_conn_t *c = tab_get(num);
  return c && c->state <= WC_OPEN ? c : NULL;
}

ws_conn_t *ws_find(const char *id) {
  return ws_find_num(parse_id(id));
}

static unsigned ip_hash(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h & 255;
}

static ip_entry_t *ip_get(const char *ip, int create) {
  unsigned b = ip_hash(ip);
  for (ip_entry_t *e = g_ips[b]; e; e = e->next)
    if (strcmp(e->ip, ip) == 0) return e;
  if (!create) return NULL;
  ip_entry_t *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  snprintf(e->ip, sizeof e->ip, "%s", ip);
  e->next = g_ips[b];
  g_ips[b] = e;
  return e;
}

static void ip_release(ip_entry_t *e) {
  if (!e || --e->n > 0) return;
  ip_entry_t **pp = &g_ips[ip_hash(e->ip)];
  while (*pp && *pp != e)
    pp = &(*pp)->next;
  if (*pp) *pp = e->next;
  free(e);
}

/* ---- output ------------------------------------------------------------------------------- */

static void shared_unref(ws_shared_t *sh) {
  if (sh && --sh->refs == 0) free(sh);
}

static void outs_free(ws_out_t *o) {
  while (o) {
    ws_out_t *n = o->next;
    shared_unref(o->sh);
    free(o);
    o = n;
  }
}

static void work_link(ws_conn_t *c) {
  if (c->in_work || c->state == WC_CLOSED) return;
  c->in_work = 1;
  c->work_next = g_work;
  g_work = c;
  if (g_ready && !uv_is_active((uv_handle_t *)&g_prep)) {
    uv_prepare_start(&g_prep, on_prepare);
    uv_check_start(&g_check, on_check);
  }
}

static size_t conn_unsent(const ws_conn_t *c) {
  return c->queued + c->tcp.write_queue_size;
}

static void conn_slow_consumer(ws_conn_t *c);
static void conn_flush(ws_conn_t *c);

/* Appends o (consumed) to c's queue. exempt: control frames and handshake bytes, which never
 * trigger the slow-consumer drop. Returns 0, -1 (closed) or -2 (dropped as a slow consumer). */
static int conn_queue(ws_conn_t *c, ws_out_t *o, int exempt) {
  if (c->state == WC_CLOSED || (c->close_after_flush && !exempt)) {
    outs_free(o);
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
    conn_flush(c); /* the kernel takes what it can now; the rest is libuv's write queue */
  else
    work_link(c);
  if (!exempt && conn_unsent(c) > g_set.max_buffered_bytes) {
    conn_slow_consumer(c);
    return -2;
  }
  return 0;
}

static ws_out_t *out_new(size_t len) {
  ws_out_t *o = malloc(sizeof *o + len);
  if (o) {
    o->next = NULL;
    o->sh = NULL;
    o->len = len;
  }
  return o;
}

/* One frame with an inline payload. */
static int conn_frame(ws_conn_t *c, unsigned op, const void *p, size_t n, int exempt) {
  ws_out_t *o = out_new(WS_MAX_HEADER + n);
  if (!o) return -1;
  size_t h = ws_frame_header(o->data, op, n);
  if (n) memcpy(o->data + h, p, n);
  o->len = h + n;
  return conn_queue(c, o, exempt);
}

/* An event frame: per-connection `{"type":"event","seq":N,` then the shared rest. */
static int conn_event(ws_conn_t *c, ws_shared_t *sh) {
  char pre[64];
  int pl = snprintf(pre, sizeof pre, "{\"type\":\"event\",\"seq\":%llu,",
                    (unsigned long long)(c->seq + 1));
  ws_out_t *o = out_new(WS_MAX_HEADER + (size_t)pl);
  if (!o) return -1;
  size_t h = ws_frame_header(o->data, WS_OP_TEXT, (uint64_t)pl + sh->len);
  memcpy(o->data + h, pre, (size_t)pl);
  o->len = h + (size_t)pl;
  o->sh = sh;
  sh->refs++;
  int r = conn_queue(c, o, 0);
  if (r == 0) c->seq++;
  return r;
}

static void on_write(uv_write_t *req, int status);
static void set_disc(ws_conn_t *c, unsigned code, const char *reason);

static void conn_flush(ws_conn_t *c) {
  if (!c->qhead || c->state == WC_CLOSED) return;
  size_t n = 0;
  for (ws_out_t *o = c->qhead; o; o = o->next)
    n += o->sh ? 2 : 1;
  if (n > g_bufs_cap) {
    size_t nc = g_bufs_cap ? g_bufs_cap : 64;
    while (nc < n)
      nc *= 2;
    uv_buf_t *nb = realloc(g_bufs, nc * sizeof *nb);
    if (!nb) return; /* retried next turn */
    g_bufs = nb;
    g_bufs_cap = nc;
  }
  ws_wr_t *w = malloc(sizeof *w);
  if (!w) return;
  size_t i = 0;
  for (ws_out_t *o = c->qhead; o; o = o->next) {
    g_bufs[i++] = uv_buf_init((char *)o->data, (unsigned)o->len);
    if (o->sh) g_bufs[i++] = uv_buf_init(o->sh->data, (unsigned)o->sh->len);
  }
  w->items = c->qhead;
  ws_out_t *items = c->qhead;
  c->qhead = c->qtail = NULL;
  c->queued = 0;
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, g_bufs, (unsigned)n, on_write) != 0) {
    outs_free(items);
    free(w);
    /* Broken socket. Not closed here (callers may be walking the connection list): the
     * sweep closes it. */
    set_disc(c, 1006, "write failed");
    if (c->state < WC_CLOSING) c->state = WC_CLOSING;
    c->close_after_flush = 1;
    c->close_deadline_ms = 0;
    return;
  }
  c->writes++;
}

/* ---- closing ------------------------------------------------------------------------------ */

static void on_closed(uv_handle_t *h);
static void presence_add(ws_conn_t *c, const char *status);
static void spawn_disconnect(ws_conn_t *c);

static void set_disc(ws_conn_t *c, unsigned code, const char *reason) {
  if (c->disc_set) return;
  c->disc_set = 1;
  c->disc_code = (uint16_t)code;
  free(c->disc_reason);
  c->disc_reason = xstrdup(reason ? reason : "");
}

/* Closes the socket now. Bookkeeping (counts, presence, on_disconnect) happens here; the
 * memory goes in the close callback. */
static void conn_hard_close(ws_conn_t *c, unsigned code, const char *reason) {
  if (c->state == WC_CLOSED) return;
  set_disc(c, code, reason);
  int was_connected = c->connected;
  c->state = WC_CLOSED;
  outs_free(c->qhead);
  c->qhead = c->qtail = NULL;
  c->queued = 0;
  if (c->prev)
    c->prev->next = c->next;
  else
    g_conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  tab_del(c);
  g_nconns--;
  ip_release(c->ip);
  c->ip = NULL;
  if (m_active) metrics_inc(m_active, NULL, -1);
  char cs[16];
  snprintf(cs, sizeof cs, "%u", (unsigned)c->disc_code);
  const char *lv[1] = {cs};
  if (m_closes) metrics_inc(m_closes, lv, 1);
  if (log_enabled(LOG_INFO)) {
    log_field_t f[] = {{"conn", c->id, 0},
                       {"remote", c->remote, 0},
                       {"code", cs, 1},
                       {"reason", c->disc_reason ? c->disc_reason : "", 0},
                       {"role", c->role ? c->role : "-", 0}};
    log_write(LOG_INFO, "ws closed", f, 5);
  }
  if (was_connected) {
    presence_add(c, "offline");
    spawn_disconnect(c);
  }
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
  if (!g_nconns && g_ready) {
    uv_timer_stop(&g_sweep);
    g_sweep_every = 0;
  }
}

/* Sends a close frame and waits (close_timeout_ms at most) for the peer's. */
static void conn_start_close(ws_conn_t *c, unsigned code, const char *reason) {
  if (c->state >= WC_CLOSING) return;
  set_disc(c, code, reason);
  c->state = WC_CLOSING;
  c->paused = 0;
  uint8_t pl[WS_MAX_CONTROL];
  size_t n = ws_close_payload(pl, code, reason);
  conn_frame(c, WS_OP_CLOSE, pl, n, 1);
  c->close_deadline_ms = now_ms() + g_set.close_timeout_ms;
  c->resume = 1; /* keep reading: the peer's close frame comes next */
  work_link(c);
}

static void conn_pause(ws_conn_t *c);

/* Fail the connection: the frames queued so far (e.g. an error `res`), a close frame, then the
 * socket is closed once they are written (close_timeout_ms at most); input is ignored. */
static void conn_fail_close(ws_conn_t *c, unsigned code, const char *reason) {
  if (c->state >= WC_CLOSING) return;
  conn_start_close(c, code, reason);
  c->close_after_flush = 1;
  conn_pause(c);
}

static void conn_slow_consumer(ws_conn_t *c) {
  size_t unsent = conn_unsent(c);
  outs_free(c->qhead);
  c->qhead = c->qtail = NULL;
  c->queued = 0;
  if (m_slow) metrics_inc(m_slow, NULL, 1);
  char b[32];
  snprintf(b, sizeof b, "%zu", unsent);
  log_field_t f[] = {{"conn", c->id, 0}, {"remote", c->remote, 0}, {"unsent_bytes", b, 1}};
  log_write(LOG_WARN, "ws slow consumer dropped", f, 3);
  if (c->state >= WC_CLOSING) {
    c->close_deadline_ms = now_ms(); /* closed at the next sweep */
    return;
  }
  conn_fail_close(c, 1008, "slow consumer");
}

static void on_write(uv_write_t *req, int status) {
  ws_wr_t *w = (ws_wr_t *)req;
  ws_conn_t *c = req->handle->data;
  outs_free(w->items);
  free(w);
  c->writes--;
  if (c->state == WC_CLOSED) return;
  if (status < 0) {
    conn_hard_close(c, 1006, "write failed");
    return;
  }
  if (c->close_after_flush && !c->writes && !c->qhead) conn_hard_close(c, 1000, NULL);
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

static void on_closed(uv_handle_t *h) {
  ws_conn_t *c = h->data;
  if (c->fctx) wslay_frame_context_free(c->fctx);
  free(c->stash);
  free(c->msg);
  free(c->role);
  free(c->scopes);
  free(c->device);
  free(c->client_id);
  free(c->client_version);
  free(c->pre_token);
  free(c->disc_reason);
  data_free(c);
  free(c);
}

/* Error `res` without a request id (the message could not be parsed), then close. */
static void conn_fail(ws_conn_t *c, const char *code, const char *message, unsigned close_code,
                      const char *reason) {
  if (c->state >= WC_CLOSING) return;
  if (code) {
    textbuf_t b = {0};
    textbuf_str(&b, "{\"type\":\"res\",\"id\":null,\"ok\":false,\"error\":{\"code\":");
    sb_json_str(&b, code);
    textbuf_str(&b, ",\"message\":");
    sb_json_str(&b, message);
    textbuf_str(&b, "}}");
    if (!b.oom) conn_frame(c, WS_OP_TEXT, b.p, b.len, 1);
    free(b.p);
  }
  conn_fail_close(c, close_code, reason);
}

/* ---- Lua calls ---------------------------------------------------------------------------- */

/* Pushes package.loaded["chatgw.ws"][name] on L; 0 (nothing pushed) if missing. */
static int push_ws_fn(lua_State *L, const char *name) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "chatgw.ws");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 3);
    return 0;
  }
  lua_getfield(L, -1, name);
  lua_replace(L, -4);
  lua_pop(L, 2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static co_t *spawn(vm_t *vm, int nargs, co_done_fn done, uint64_t num) {
  void *ud = (void *)(uintptr_t)num;
  /* Never resume a coroutine from inside another one (see vm.h): defer when called from Lua. */
  if (vm_current()) return vm_spawn_deferred(vm, CO_WS, nargs, done, ud);
  return vm_spawn(vm, CO_WS, nargs, done, ud);
}

static ws_conn_t *conn_any(uint64_t num) {
  ws_conn_t *c = tab_get(num);
  return c && c->state != WC_CLOSED ? c : NULL;
}

static void log_lua_error(const char *what, ws_conn_t *c, lua_State *T) {
  log_field_t f[] = {{"conn", c ? c->id : "-", 0}, {"error", lua_tostring(T, -1), 0}};
  log_write(LOG_ERROR, what, f, 2);
}

/* _handshake returns nothing (accepted), or text, close_code, close_reason. */
static void handshake_done(co_t *co, int ok, void *ud) {
  lua_State *T = vm_co_thread(co);
  ws_conn_t *c = conn_any((uint64_t)(uintptr_t)ud);
  if (!ok) {
    log_lua_error("ws connect handler failed", c, T);
    if (c && c->state <= WC_CONNECTING)
      conn_fail(c, "internal_error", "internal error", 1011, "internal error");
    return;
  }
  if (!c || c->state > WC_CONNECTING) return; /* accepted (or gone) */
  free(c->pre_token);
  c->pre_token = NULL;
  size_t tl = 0;
  const char *text = lua_type(T, 1) == LUA_TSTRING ? lua_tolstring(T, 1, &tl) : NULL;
  unsigned code = lua_type(T, 2) == LUA_TNUMBER ? (unsigned)lua_tointeger(T, 2) : 1008;
  const char *reason = lua_type(T, 3) == LUA_TSTRING ? lua_tostring(T, 3) : "connect failed";
  if (text) conn_frame(c, WS_OP_TEXT, text, tl, 1);
  conn_fail_close(c, code, reason);
}

/* _on_message returns the `res` text (or nothing). */
static void message_done(co_t *co, int ok, void *ud) {
  lua_State *T = vm_co_thread(co);
  uint64_t num = (uint64_t)(uintptr_t)ud;
  if (!ok) {
    log_lua_error("ws message dispatcher failed", conn_any(num), T);
    return;
  }
  size_t tl = 0;
  if (lua_type(T, 1) == LUA_TSTRING) {
    const char *text = lua_tolstring(T, 1, &tl);
    ws_send_text(num, text, tl);
  }
}

static void hook_done(co_t *co, int ok, void *ud) {
  (void)ud;
  if (!ok) log_lua_error("ws hook dispatcher failed", NULL, vm_co_thread(co));
}

static void spawn_disconnect(ws_conn_t *c) {
  if (g_final || !g_rt.vm) return;
  lua_State *L = vm_state(g_rt.vm);
  if (!push_ws_fn(L, "_on_disconnect")) return;
  ws_push_info(L, c, 1);
  lua_pushinteger(L, c->disc_code);
  lua_pushstring(L, c->disc_reason ? c->disc_reason : "");
  if (!spawn(g_rt.vm, 3, hook_done, 0)) log_errorf("ws: cannot start on_disconnect");
}

/* ---- input -------------------------------------------------------------------------------- */

static ssize_t fr_recv(uint8_t *buf, size_t len, int flags, void *ud) {
  (void)flags;
  (void)ud;
  ws_conn_t *c = g_parsing;
  if (!c || !c->in_len) return 0;
  size_t n = len < c->in_len ? len : c->in_len;
  memcpy(buf, c->in, n);
  c->in += n;
  c->in_len -= n;
  c->fed += n;
  return (ssize_t)n;
}

static ssize_t fr_send(const uint8_t *d, size_t l, int f, void *ud) {
  (void)d;
  (void)l;
  (void)f;
  (void)ud;
  return -1; /* never used: server frames are built in ws_frame.c */
}

static int fr_genmask(uint8_t *b, size_t l, void *ud) {
  (void)b;
  (void)l;
  (void)ud;
  return -1;
}

static const struct wslay_frame_callbacks g_fr_cb = {fr_send, fr_recv, fr_genmask};

static wslay_frame_context_ptr ctx_get(void) {
  if (g_npool) return g_pool[--g_npool];
  wslay_frame_context_ptr ctx = NULL;
  if (wslay_frame_context_init(&ctx, &g_fr_cb, NULL) != 0) return NULL;
  return ctx;
}

/* Only for a context at a frame boundary with nothing buffered. */
static void ctx_put(wslay_frame_context_ptr ctx) {
  if (g_npool < CTX_POOL_MAX)
    g_pool[g_npool++] = ctx;
  else
    wslay_frame_context_free(ctx);
}

static void conn_pause(ws_conn_t *c) {
  c->paused = 1;
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static void conn_read_start(ws_conn_t *c);

static void conn_resume(ws_conn_t *c) {
  if (!c->paused) return;
  c->paused = 0;
  if (g_parsing == c) return; /* the parse loop goes on */
  c->resume = 1;
  work_link(c);
}

static int rate_take(ws_conn_t *c, uint64_t *retry_ms) {
  uint64_t now = now_ms();
  double rate = g_set.rate_per_second, burst = g_set.rate_burst;
  if (now > c->tokens_ms) {
    c->tokens += (double)(now - c->tokens_ms) * rate / 1000.0;
    if (c->tokens > burst) c->tokens = burst;
    c->tokens_ms = now;
  }
  if (c->tokens >= 1.0) {
    c->tokens -= 1.0;
    return 1;
  }
  *retry_ms = (uint64_t)ceil((1.0 - c->tokens) * 1000.0 / rate);
  if (*retry_ms < 1) *retry_ms = 1;
  return 0;
}

static void conn_message(ws_conn_t *c, const uint8_t *p, size_t n, unsigned op) {
  if (m_recv) metrics_inc(m_recv, NULL, 1);
  if (c->state == WC_HANDSHAKE) {
    if (op != WS_OP_TEXT) {
      conn_fail(c, "invalid_request", "the first message must be a connect request (JSON text)",
                1003, "binary messages are not supported");
      return;
    }
    if (!g_rt.vm) return;
    lua_State *L = vm_state(g_rt.vm);
    if (!push_ws_fn(L, "_handshake")) {
      conn_fail(c, "internal_error", "internal error", 1011, "internal error");
      return;
    }
    c->state = WC_CONNECTING;
    conn_pause(c);
    lua_pushnumber(L, (lua_Number)c->num);
    lua_pushstring(L, c->id);
    lua_pushlstring(L, (const char *)p, n);
    if (c->pre_token)
      lua_pushstring(L, c->pre_token);
    else
      lua_pushnil(L);
    lua_pushstring(L, c->remote);
    if (!spawn(g_rt.vm, 5, handshake_done, c->num))
      conn_fail(c, "internal_error", "internal error", 1011, "internal error");
    return;
  }
  if (c->state != WC_OPEN) return; /* after our close frame: ignored */
  if (op != WS_OP_TEXT) {
    static const char e[] = "{\"type\":\"res\",\"id\":null,\"ok\":false,\"error\":{\"code\":"
                            "\"unsupported_data\",\"message\":\"binary messages are not "
                            "supported\"}}";
    conn_frame(c, WS_OP_TEXT, e, sizeof e - 1, 0);
    return;
  }
  uint64_t retry = 0;
  int allowed = rate_take(c, &retry);
  if (!allowed) {
    if (m_limited) metrics_inc(m_limited, NULL, 1);
    uint64_t now = now_ms();
    if (now - c->rejects_since_ms > RATE_WINDOW_MS) {
      c->rejects_since_ms = now;
      c->rejects = 0;
    }
    if (++c->rejects > g_set.rate_close_after) {
      log_field_t f[] = {{"conn", c->id, 0}, {"remote", c->remote, 0}};
      log_write(LOG_WARN, "ws rate limit: closing an abusive connection", f, 2);
      conn_start_close(c, 1008, "rate limit exceeded");
      return;
    }
  }
  if (!g_rt.vm) return;
  lua_State *L = vm_state(g_rt.vm);
  if (!push_ws_fn(L, "_on_message")) return;
  lua_pushnumber(L, (lua_Number)c->num);
  lua_pushlstring(L, (const char *)p, n);
  lua_pushnumber(L, allowed ? 0 : (lua_Number)retry);
  spawn(g_rt.vm, 3, message_done, c->num);
}

static void conn_control(ws_conn_t *c, unsigned op) {
  if (op == WS_OP_PING) {
    if (c->state <= WC_OPEN) conn_frame(c, WS_OP_PONG, c->ctrl, c->ctrl_len, 1);
    return;
  }
  if (op == WS_OP_PONG) {
    if (m_pulse) metrics_inc(m_pulse, NULL, 1);
    return;
  }
  /* close */
  unsigned code = 1005;
  char reason[WS_MAX_CONTROL];
  reason[0] = 0;
  if (c->ctrl_len == 1) {
    conn_fail(c, NULL, NULL, 1002, "bad close frame");
    return;
  }
  if (c->ctrl_len >= 2) {
    code = ((unsigned)c->ctrl[0] << 8) | c->ctrl[1];
    if (!ws_close_code_valid(code)) {
      conn_fail(c, NULL, NULL, 1002, "invalid close code");
      return;
    }
    if (!ws_utf8_valid(c->ctrl + 2, c->ctrl_len - 2)) {
      conn_fail(c, NULL, NULL, 1007, "invalid UTF-8 in close reason");
      return;
    }
    memcpy(reason, c->ctrl + 2, c->ctrl_len - 2);
    reason[c->ctrl_len - 2] = 0;
  }
  c->close_received = 1;
  if (c->state == WC_CLOSING) { /* the answer to our close */
    conn_hard_close(c, code, reason);
    return;
  }
  /* The peer closes: answer with the same code, then close once it is written. */
  set_disc(c, code, reason);
  c->state = WC_CLOSING;
  uint8_t pl[WS_MAX_CONTROL];
  size_t n = ws_close_payload(pl, code == 1005 ? 0 : code, NULL);
  conn_frame(c, WS_OP_CLOSE, pl, n, 1);
  c->close_after_flush = 1;
  c->close_deadline_ms = now_ms() + g_set.close_timeout_ms;
  conn_pause(c);
}

/* First chunk of a frame: checks that wslay leaves to the caller. 0 ok, -1 failed (closed). */
static int frame_begin(ws_conn_t *c, const struct wslay_frame_iocb *io) {
  c->frame_active = 1;
  c->frame_op = io->opcode;
  c->frame_left = io->payload_length;
  c->used += ws_client_header_len(io->payload_length, io->mask);
  if (io->rsv) {
    conn_fail(c, NULL, NULL, 1002, "reserved bits set (no extension was negotiated)");
    return -1;
  }
  if (!io->mask) {
    conn_fail(c, NULL, NULL, 1002, "client frames must be masked");
    return -1;
  }
  unsigned op = io->opcode;
  if (op >= WS_OP_CLOSE) {
    if (op > WS_OP_PONG) {
      conn_fail(c, NULL, NULL, 1002, "unknown opcode");
      return -1;
    }
    c->ctrl_len = 0; /* wslay checked: <= 125 bytes, not fragmented */
    return 0;
  }
  if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY) {
    conn_fail(c, NULL, NULL, 1002, "unknown opcode");
    return -1;
  }
  if (op == WS_OP_CONT && !c->msg_active) {
    conn_fail(c, NULL, NULL, 1002, "continuation frame without a message");
    return -1;
  }
  if (op != WS_OP_CONT && c->msg_active) {
    conn_fail(c, NULL, NULL, 1002, "new message inside a fragmented one");
    return -1;
  }
  if (op != WS_OP_CONT) {
    c->msg_active = 1;
    c->msg_op = (uint8_t)op;
    c->msg_len = 0;
    c->utf8 = 0;
    c->msg_direct = 0;
  }
  size_t limit = c->state <= WC_CONNECTING && WS_HANDSHAKE_MAX_BYTES < g_set.max_payload
                     ? WS_HANDSHAKE_MAX_BYTES
                     : g_set.max_payload;
  if (io->payload_length > limit || c->msg_len + io->payload_length > limit) {
    if (c->state <= WC_CONNECTING)
      conn_fail(c, "too_large", "the connect message is too large", 1009, "message too big");
    else
      conn_fail(c, NULL, NULL, 1009, "message too big");
    return -1;
  }
  return 0;
}

static int msg_append(ws_conn_t *c, const uint8_t *p, size_t n) {
  if (c->msg_len + n > c->msg_cap) {
    size_t nc = c->msg_cap ? c->msg_cap : 1024;
    while (nc < c->msg_len + n)
      nc *= 2;
    uint8_t *nm = realloc(c->msg, nc);
    if (!nm) return -1;
    c->msg = nm;
    c->msg_cap = nc;
  }
  memcpy(c->msg + c->msg_len, p, n);
  c->msg_len += n;
  return 0;
}

/* One chunk of the current frame. */
static void frame_chunk(ws_conn_t *c, const struct wslay_frame_iocb *io) {
  size_t n = io->data_length;
  c->used += n;
  c->frame_left -= n;
  int done = c->frame_left == 0;
  unsigned op = c->frame_op;
  if (op >= WS_OP_CLOSE) {
    memcpy(c->ctrl + c->ctrl_len, io->data, n);
    c->ctrl_len += n;
    if (done) {
      c->frame_active = 0;
      conn_control(c, op);
    }
    return;
  }
  if (c->msg_op == WS_OP_TEXT) {
    c->utf8 = ws_utf8_step(c->utf8, io->data, n);
    if (c->utf8 == WS_UTF8_BAD) {
      conn_fail(c, NULL, NULL, 1007, "invalid UTF-8 in a text message");
      return;
    }
  }
  if (done) c->frame_active = 0;
  int final = done && io->fin;
  if (final && c->msg_len == 0 && n == io->payload_length) {
    /* The whole message is in this chunk: no copy. */
    c->msg_active = 0;
    if (c->msg_op == WS_OP_TEXT && c->utf8 != 0) {
      conn_fail(c, NULL, NULL, 1007, "invalid UTF-8 in a text message");
      return;
    }
    conn_message(c, io->data, n, c->msg_op);
    return;
  }
  if (n && msg_append(c, io->data, n) != 0) {
    conn_fail(c, NULL, NULL, 1011, "out of memory");
    return;
  }
  if (final) {
    c->msg_active = 0;
    if (c->msg_op == WS_OP_TEXT && c->utf8 != 0) {
      conn_fail(c, NULL, NULL, 1007, "invalid UTF-8 in a text message");
      return;
    }
    conn_message(c, c->msg, c->msg_len, c->msg_op);
    free(c->msg); /* an idle connection keeps no message buffer */
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
  }
}

/* Parses p[0..n) (and whatever the frame context holds). Stops when the connection pauses
 * (the rest is stashed) or fails. */
static void conn_parse(ws_conn_t *c, const uint8_t *p, size_t n) {
  ws_conn_t *saved = g_parsing;
  g_parsing = c;
  c->in = p;
  c->in_len = n;
  c->last_seen_ms = now_ms();
  while (c->state != WC_CLOSED && !c->paused && !c->close_after_flush) {
    if (c->close_received) {
      c->in_len = 0; /* nothing after a close frame */
      break;
    }
    if (!c->fctx) {
      if (!c->in_len) break;
      c->fctx = ctx_get();
      c->fed = c->used = 0;
      if (!c->fctx) {
        conn_hard_close(c, 1011, "out of memory");
        break;
      }
    }
    struct wslay_frame_iocb io;
    memset(&io, 0, sizeof io);
    ssize_t r = wslay_frame_recv(c->fctx, &io);
    if (r == WSLAY_ERR_WANT_READ) {
      if (!c->frame_active && c->fed == c->used) { /* at a frame boundary, nothing buffered */
        ctx_put(c->fctx);
        c->fctx = NULL;
      }
      if (!c->in_len) break;
      continue;
    }
    if (r < 0) {
      wslay_frame_context_free(c->fctx);
      c->fctx = NULL;
      conn_fail(c, NULL, NULL, 1002, "protocol error");
      break;
    }
    if (!c->frame_active && frame_begin(c, &io) != 0) break;
    frame_chunk(c, &io);
  }
  if (c->state != WC_CLOSED && c->in_len) {
    if (c->paused && !c->close_received && !c->close_after_flush) {
      uint8_t *s = malloc(c->stash_len + c->in_len);
      if (s) {
        if (c->stash_len) memcpy(s, c->stash, c->stash_len);
        memcpy(s + c->stash_len, c->in, c->in_len);
      }
      free(c->stash);
      c->stash = s;
      c->stash_len = s ? c->stash_len + c->in_len : 0;
    }
  }
  c->in = NULL;
  c->in_len = 0;
  g_parsing = saved;
  if (c->state != WC_CLOSED && !c->paused && !c->reading) conn_read_start(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  (void)h;
  (void)suggested;
  *out = uv_buf_init((char *)g_rbuf, sizeof g_rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  ws_conn_t *c = st->data;
  if (c->state == WC_CLOSED) return;
  if (nread > 0) {
    if (c->close_after_flush || c->close_received) return; /* ignored until the socket closes */
    if (c->paused) { /* cannot happen (reading is stopped), but keep the bytes */
      uint8_t *s = realloc(c->stash, c->stash_len + (size_t)nread);
      if (!s) {
        conn_hard_close(c, 1011, "out of memory");
        return;
      }
      memcpy(s + c->stash_len, buf->base, (size_t)nread);
      c->stash = s;
      c->stash_len += (size_t)nread;
      return;
    }
    conn_parse(c, (const uint8_t *)buf->base, (size_t)nread);
    return;
  }
  if (nread == 0) return;
  if (c->close_received && c->state == WC_CLOSING)
    conn_hard_close(c, c->disc_code, c->disc_reason);
  else
    conn_hard_close(c, 1006,
                    nread == UV_EOF ? "connection closed without a close frame"
                                    : uv_strerror((int)nread));
}

static void conn_read_start(ws_conn_t *c) {
  if (c->reading || c->paused || c->state == WC_CLOSED || c->close_received) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

/* ---- end of loop turn: resume parsing, flush output --------------------------------------- */

static void run_work(void) {
  while (g_work) {
    ws_conn_t *list = g_work;
    g_work = NULL;
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
          conn_parse(c, s, n); /* may stash again (a copy) */
          free(s);
        } else {
          conn_read_start(c);
        }
      }
      if (c->state != WC_CLOSED) conn_flush(c);
    }
  }
  if (g_ready) {
    uv_prepare_stop(&g_prep);
    uv_check_stop(&g_check);
  }
}

static void on_prepare(uv_prepare_t *h) {
  (void)h;
  run_work();
}

static void on_check(uv_check_t *h) {
  (void)h;
  run_work();
}

/* ---- timers ------------------------------------------------------------------------------- */

static void on_sweep(uv_timer_t *t) {
  (void)t;
  uint64_t now = now_ms();
  ws_conn_t *c = g_conns;
  while (c) {
    ws_conn_t *next = c->next;
    switch (c->state) {
    case WC_HANDSHAKE:
    case WC_CONNECTING:
      if (now - c->opened_ms >= g_set.handshake_timeout_ms)
        conn_fail(c, "handshake_timeout", "no connect request in time", 1008, "handshake timeout");
      break;
    case WC_OPEN:
      if (now - c->last_seen_ms >= g_set.pong_timeout_ms) {
        conn_start_close(c, 1001, "heartbeat timeout");
      } else if (now - c->last_ping_ms >= g_set.ping_interval_ms) {
        c->last_ping_ms = now;
        conn_frame(c, WS_OP_PING, NULL, 0, 1);
      }
      break;
    case WC_CLOSING:
      if (now >= c->close_deadline_ms) conn_hard_close(c, c->disc_code, c->disc_reason);
      break;
    default:
      break;
    }
    c = next;
  }
}

static void sweep_ensure(void) {
  if (!g_ready || g_sweep_every) return;
  g_sweep_every = sweep_interval();
  uv_timer_start(&g_sweep, on_sweep, g_sweep_every, g_sweep_every);
}

/* ---- presence ----------------------------------------------------------------------------- */

static void presence_flush(void) {
  if (!g_pres_n) return;
  if (g_ready) uv_timer_stop(&g_pres_timer);
  size_t online = 0;
  for (ws_conn_t *c = g_conns; c; c = c->next)
    if (c->connected && c->state <= WC_OPEN) online++;
  textbuf_t b = {0};
  textbuf_str(&b, "{\"changes\":[");
  textbuf_add(&b, g_pres ? g_pres : "", g_pres_len);
  textbuf_fmt(&b, "],\"online\":%zu}", online);
  g_pres_len = 0;
  g_pres_n = 0;
  if (!b.oom) {
    ws_filter_t f = {0};
    f.scope = "operator.read";
    ws_broadcast("presence", b.p, b.len, &f);
  }
  free(b.p);
}

static void on_pres_timer(uv_timer_t *t) {
  (void)t;
  presence_flush();
}

static void presence_add(ws_conn_t *c, const char *status) {
  if (g_final || g_stopping || !g_ready) return;
  textbuf_t b = {g_pres, g_pres_len, g_pres_cap, 0};
  if (g_pres_n) textbuf_add(&b, ",", 1);
  textbuf_str(&b, "{\"connId\":");
  sb_json_str(&b, c->id);
  textbuf_str(&b, ",\"deviceId\":");
  sb_json_str(&b, c->device);
  textbuf_str(&b, ",\"role\":");
  sb_json_str(&b, c->role);
  textbuf_str(&b, ",\"status\":");
  sb_json_str(&b, status);
  textbuf_fmt(&b, ",\"ts\":%.3f}", wall_now());
  g_pres = b.p;
  g_pres_cap = b.cap;
  if (b.oom) return;
  g_pres_len = b.len;
  g_pres_n++;
  if (g_pres_n >= g_set.presence_batch_size)
    presence_flush();
  else if (!uv_is_active((uv_handle_t *)&g_pres_timer))
    uv_timer_start(&g_pres_timer, on_pres_timer, g_set.presence_flush_interval_ms, 0);
}

/* ---- broadcast and sends ------------------------------------------------------------------ */

static int conn_has_scope(const ws_conn_t *c, const char *scope) {
  for (size_t i = 0; i < c->nscopes; i++)
    if (strcmp(c->scopes[i], scope) == 0) return 1;
  return 0;
}

static int conn_match(const ws_conn_t *c, const ws_filter_t *f) {
  if (c->state != WC_OPEN) return 0;
  if (!f) return 1;
  if (f->role && (!c->role || strcmp(c->role, f->role) != 0)) return 0;
  if (f->scope && !conn_has_scope(c, f->scope)) return 0;
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
  if (!g_ready) return 0;
  uint64_t t0 = uv_hrtime();
  uint64_t version = ++g_state_version;
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
    for (ws_conn_t *c = g_conns; c; c = c->next)
      if (conn_match(c, f) && conn_event(c, sh) == 0) sent++;
  }
  shared_unref(sh);
  if (m_sent && sent) metrics_inc(m_sent, NULL, (double)sent);
  if (m_bdur) metrics_observe(m_bdur, NULL, (double)(uv_hrtime() - t0) / 1e9);
  return sent;
}

int ws_send_event(const char *id, const char *event, const char *payload, size_t plen) {
  ws_conn_t *c = ws_find(id);
  if (!c || c->state != WC_OPEN) return -1;
  ws_shared_t *sh = shared_event(event, payload, plen, 0);
  if (!sh) return -1;
  int r = conn_event(c, sh);
  shared_unref(sh);
  if (r == 0 && m_sent) metrics_inc(m_sent, NULL, 1);
  return r;
}

int ws_send_text(uint64_t num, const char *text, size_t len) {
  ws_conn_t *c = tab_get(num);
  if (!c || c->state != WC_OPEN) return -1;
  int r = conn_frame(c, WS_OP_TEXT, text, len, 0);
  if (r == 0 && m_sent) metrics_inc(m_sent, NULL, 1);
  return r;
}

int ws_close_id(const char *id, unsigned code, const char *reason) {
  ws_conn_t *c = ws_find(id);
  if (!c) return -1;
  conn_start_close(c, code, reason);
  return 0;
}

/* ---- info for Lua ------------------------------------------------------------------------- */

static void set_str(lua_State *L, const char *k, const char *v) {
  if (!v) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
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

void ws_push_info(lua_State *L, ws_conn_t *c, int with_data) {
  lua_createtable(L, 0, 14);
  set_str(L, "id", c->id);
  set_num(L, "_num", (double)c->num);
  set_str(L, "role", c->role);
  lua_createtable(L, (int)c->nscopes, 0);
  for (size_t i = 0; i < c->nscopes; i++) {
    lua_pushstring(L, c->scopes[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "scopes");
  set_str(L, "device", c->device);
  lua_createtable(L, 0, 2);
  set_str(L, "id", c->client_id);
  set_str(L, "version", c->client_version);
  lua_setfield(L, -2, "client");
  set_str(L, "remote_addr", c->remote);
  set_num(L, "remote_port", c->remote_port);
  set_num(L, "connected_at", c->connected_at);
  uint64_t now = g_loop ? now_ms() : c->last_seen_ms;
  set_num(L, "last_seen", wall_now() - (double)(now - c->last_seen_ms) / 1000.0);
  set_num(L, "buffered", (double)(c->queued + c->tcp.write_queue_size));
  set_num(L, "seq", (double)c->seq);
  set_str(L, "state", state_name(c->state));
  if (with_data) {
    lua_newtable(L); /* key -> JSON text; the Lua side decodes */
    for (ws_kv_t *kv = c->data; kv; kv = kv->next) {
      lua_pushlstring(L, kv->val, kv->vlen);
      lua_setfield(L, -2, kv->key);
    }
    lua_setfield(L, -2, "_data");
  }
}

void ws_push_list(lua_State *L, const char *role, const char *scope, const char *device) {
  lua_newtable(L);
  int i = 0;
  for (ws_conn_t *c = g_conns; c; c = c->next) {
    if (c->state != WC_OPEN) continue;
    if (role && (!c->role || strcmp(role, c->role) != 0)) continue;
    if (scope && !conn_has_scope(c, scope)) continue;
    if (device && (!c->device || strcmp(device, c->device) != 0)) continue;
    ws_push_info(L, c, 0);
    lua_rawseti(L, -2, ++i);
  }
}

void ws_push_presence(lua_State *L) {
  lua_newtable(L);
  int t = lua_gettop(L);
  for (ws_conn_t *c = g_conns; c; c = c->next) {
    if (!c->connected || c->state != WC_OPEN) continue;
    const char *key = c->device ? c->device : c->id;
    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_createtable(L, 0, 4);
      set_str(L, "deviceId", c->device);
      set_str(L, "role", c->role);
      set_num(L, "since", c->connected_at);
      lua_newtable(L);
      lua_setfield(L, -2, "connections");
      lua_pushvalue(L, -1);
      lua_setfield(L, t, key);
    }
    double since = 0;
    lua_getfield(L, -1, "since");
    since = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (c->connected_at < since) set_num(L, "since", c->connected_at);
    lua_getfield(L, -1, "connections");
    lua_createtable(L, 0, 6);
    set_str(L, "connId", c->id);
    set_str(L, "role", c->role);
    set_num(L, "connectedAt", c->connected_at);
    set_str(L, "clientId", c->client_id);
    set_str(L, "clientVersion", c->client_version);
    set_str(L, "remoteAddr", c->remote);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    lua_pop(L, 2);
  }
}

int ws_accept(uint64_t num, const char *role, const char *const *scopes, size_t nscopes,
              const char *device, const char *client_id, const char *client_version,
              const char *hello, size_t hello_len) {
  ws_conn_t *c = tab_get(num);
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
  free(c->pre_token);
  c->pre_token = NULL;
  c->state = WC_OPEN;
  c->connected = 1;
  c->connected_at = wall_now();
  c->last_seen_ms = c->last_ping_ms = now_ms();
  c->tokens = g_set.rate_burst;
  c->tokens_ms = now_ms();
  conn_frame(c, WS_OP_TEXT, hello, hello_len, 1);
  if (m_sent) metrics_inc(m_sent, NULL, 1);
  if (log_enabled(LOG_INFO)) {
    log_field_t f[] = {{"conn", c->id, 0},
                       {"remote", c->remote, 0},
                       {"role", c->role ? c->role : "-", 0},
                       {"device", c->device ? c->device : "-", 0}};
    log_write(LOG_INFO, "ws connected", f, 4);
  }
  presence_add(c, "online");
  conn_resume(c);
  return 0;
}

const char *ws_data_get(uint64_t num, const char *key, size_t *len) {
  ws_conn_t *c = tab_get(num);
  if (!c) return NULL;
  for (ws_kv_t *kv = c->data; kv; kv = kv->next)
    if (strcmp(kv->key, key) == 0) {
      *len = kv->vlen;
      return kv->val;
    }
  return NULL;
}

int ws_data_set(uint64_t num, const char *key, const char *json, size_t jlen) {
  ws_conn_t *c = tab_get(num);
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
  if (c->data_bytes - old_bytes + klen + jlen > g_set.data_max_bytes) return -2;
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

/* ---- upgrade ------------------------------------------------------------------------------ */

static void respond(http_request_t *req, int status, const char *code, const http_header_t *extra,
                    size_t nextra, const char *reason_label) {
  http_header_t hs[4];
  size_t n = 0;
  hs[n++] = (http_header_t){"Content-Type", 12, "application/json", 16};
  for (size_t i = 0; i < nextra && n < 4; i++)
    hs[n++] = extra[i];
  char body[128];
  int bl = snprintf(body, sizeof body, "{\"ok\":false,\"error\":\"%s\"}", code);
  char route[WS_PATH_MAX + 8];
  snprintf(route, sizeof route, "GET %s", g_set.path);
  if (reason_label && m_rejected) {
    const char *lv[1] = {reason_label};
    metrics_inc(m_rejected, lv, 1);
  }
  http_request_respond(req, status, hs, n, body, (size_t)bl, route);
}

static int origin_allowed(const char *origin) {
  for (const char *o = g_set.origins; *o; o += strlen(o) + 1)
    if (strcmp(o, "*") == 0 || strcasecmp(o, origin) == 0) return 1;
  return 0;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* The value of ?token= (URL-decoded, malloc'd) or NULL. */
static char *query_token(const char *q) {
  while (q && *q) {
    const char *e = strchr(q, '&');
    size_t len = e ? (size_t)(e - q) : strlen(q);
    if (len > 6 && strncmp(q, "token=", 6) == 0) {
      char *out = malloc(len - 6 + 1);
      if (!out) return NULL;
      size_t o = 0;
      for (size_t i = 6; i < len; i++) {
        char ch = q[i];
        if (ch == '+') {
          ch = ' ';
        } else if (ch == '%' && i + 2 < len && hexval(q[i + 1]) >= 0 && hexval(q[i + 2]) >= 0) {
          ch = (char)(hexval(q[i + 1]) * 16 + hexval(q[i + 2]));
          i += 2;
        }
        out[o++] = ch;
      }
      out[o] = 0;
      return out;
    }
    q = e ? e + 1 : NULL;
  }
  return NULL;
}

static void queue_handshake(ws_conn_t *c, const char *accept, const char *rid) {
  textbuf_t b = {0};
  textbuf_str(&b,
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: ");
  textbuf_str(&b, accept);
  textbuf_str(&b, "\r\nX-Request-Id: ");
  textbuf_str(&b, rid);
  textbuf_str(&b, "\r\n\r\n");
  if (b.oom) {
    free(b.p);
    return;
  }
  ws_out_t *o = out_new(b.len);
  if (o) {
    memcpy(o->data, b.p, b.len);
    conn_queue(c, o, 1);
  }
  free(b.p);
  unsigned char r[16];
  if (RAND_bytes(r, sizeof r) != 1) uv_random(NULL, NULL, r, sizeof r, 0, NULL);
  char nonce[33];
  for (size_t i = 0; i < sizeof r; i++)
    snprintf(nonce + 2 * i, 3, "%02x", r[i]);
  char ev[160];
  int n = snprintf(ev, sizeof ev,
                   "{\"type\":\"event\",\"event\":\"connect.challenge\",\"payload\":{\"nonce\":"
                   "\"%s\",\"ts\":%.0f}}",
                   nonce, wall_now() * 1000.0);
  conn_frame(c, WS_OP_TEXT, ev, (size_t)n, 1);
}

int ws_handle_request(http_request_t *req) {
  if (!g_ready || !g_set.enabled || strcmp(req->listener, "main") != 0 ||
      strcmp(req->path, g_set.path) != 0)
    return 0;
  if (strcmp(req->method, "GET") != 0) {
    http_header_t allow = {"Allow", 5, "GET", 3};
    respond(req, 405, "method_not_allowed", &allow, 1, NULL);
    return 1;
  }
  static const http_header_t upgrade_hdrs[] = {{"Upgrade", 7, "websocket", 9},
                                               {"Sec-WebSocket-Version", 21, "13", 2}};
  const char *up = req_header(req, "upgrade");
  if (!req->upgrade || !up || !has_token(up, "websocket")) {
    respond(req, 426, "upgrade_required", upgrade_hdrs, 2, "not_websocket");
    return 1;
  }
  const char *ver = req_header(req, "sec-websocket-version");
  if (!ver || strcmp(ver, "13") != 0) {
    respond(req, 426, "unsupported_websocket_version", upgrade_hdrs, 2, "version");
    return 1;
  }
  const char *key = req_header(req, "sec-websocket-key");
  char accept[29];
  if (!key || ws_accept_key(key, strlen(key), accept) != 0) {
    respond(req, 400, "bad_websocket_key", NULL, 0, "bad_key");
    return 1;
  }
  const char *origin = req_header(req, "origin");
  if (origin && !origin_allowed(origin)) {
    log_field_t f[] = {{"origin", origin, 0}, {"remote", req->remote_addr, 0}};
    log_write(LOG_WARN, "ws upgrade refused: origin not allowed", f, 2);
    respond(req, 403, "origin_not_allowed", NULL, 0, "origin");
    return 1;
  }
  static const http_header_t retry[] = {{"Retry-After", 11, "1", 1}};
  if (g_stopping) {
    respond(req, 503, "shutting_down", retry, 1, "stopping");
    return 1;
  }
  ip_entry_t *ip = ip_get(req->remote_addr, 0);
  if (g_nconns >= g_set.max_connections || (ip && ip->n >= g_set.max_per_ip)) {
    respond(req, 503, "too_many_connections", retry, 1,
            g_nconns >= g_set.max_connections ? "max_connections" : "max_per_ip");
    return 1;
  }
  ws_conn_t *c = calloc(1, sizeof *c);
  ip = ip_get(req->remote_addr, 1);
  if (!c || !ip) {
    free(c);
    respond(req, 503, "service_unavailable", retry, 1, "memory");
    return 1;
  }
  uv_tcp_init(g_loop, &c->tcp);
  c->tcp.data = c;
  const char *auth = req_header(req, "authorization");
  char *tok = query_token(req->query);
  if (!tok && auth && strlen(auth) > 7 && strncasecmp(auth, "Bearer ", 7) == 0)
    tok = strdup(auth + 7);
  snprintf(c->remote, sizeof c->remote, "%s", req->remote_addr);
  c->remote_port = req->remote_port;
  char rid[130];
  snprintf(rid, sizeof rid, "%s", req->request_id);
  char route[WS_PATH_MAX + 8];
  snprintf(route, sizeof route, "GET %s", g_set.path);
  char *rest = NULL;
  size_t rest_len = 0;
  if (http_request_upgrade(req, &c->tcp, &rest, &rest_len, route) != 0) {
    free(tok);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    if (!ip->n) {
      ip->n = 1;
      ip_release(ip);
    }
    respond(req, 503, "service_unavailable", retry, 1, "takeover");
    return 1;
  }
  c->pre_token = tok;
  c->ip = ip;
  ip->n++;
  c->num = g_next_num++;
  snprintf(c->id, sizeof c->id, "%s-%llu", g_boot, (unsigned long long)c->num);
  c->state = WC_HANDSHAKE;
  c->opened_ms = c->last_seen_ms = c->last_ping_ms = now_ms();
  c->next = g_conns;
  if (g_conns) g_conns->prev = c;
  g_conns = c;
  g_nconns++;
  tab_put(c);
  if (m_active) metrics_inc(m_active, NULL, 1);
  if (m_total) metrics_inc(m_total, NULL, 1);
  sweep_ensure();
  queue_handshake(c, accept, rid);
  if (rest_len)
    conn_parse(c, (const uint8_t *)rest, rest_len);
  else
    conn_read_start(c);
  free(rest);
  return 1;
}

/* ---- stop --------------------------------------------------------------------------------- */

void ws_stop(void) {
  if (!g_ready || g_stopping) return;
  presence_flush();
  g_stopping = 1;
  static const char payload[] = "{\"reason\":\"server_stopping\"}";
  ws_broadcast("shutdown", payload, sizeof payload - 1, NULL);
  for (ws_conn_t *c = g_conns; c; c = c->next)
    if (c->state < WC_CLOSING) conn_start_close(c, 1001, "server shutting down");
}

size_t ws_connection_count(void) {
  return g_nconns;
}

void ws_close_all(void) {
  g_final = 1;
  g_stopping = 1;
  while (g_conns)
    conn_hard_close(g_conns, 1001, "server stopped");
  g_work = NULL;
  if (g_ready) {
    g_ready = 0;
    uv_close((uv_handle_t *)&g_sweep, NULL);
    uv_close((uv_handle_t *)&g_pres_timer, NULL);
    uv_close((uv_handle_t *)&g_prep, NULL);
    uv_close((uv_handle_t *)&g_check, NULL);
  }
  while (g_npool)
    wslay_frame_context_free(g_pool[--g_npool]);
  free(g_tab);
  g_tab = NULL;
  g_tabcap = g_tabn = 0;
  free(g_bufs);
  g_bufs = NULL;
  g_bufs_cap = 0;
  free(g_pres);
  g_pres = NULL;
  g_pres_len = g_pres_cap = g_pres_n = 0;
  for (size_t i = 0; i < 256; i++) {
    while (g_ips[i]) {
      ip_entry_t *e = g_ips[i];
      g_ips[i] = e->next;
      free(e);
    }
  }
}
