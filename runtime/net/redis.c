/* redis.c - the asynchronous Redis client (see redis.h). */
#include "redis.h"

#include <ctype.h>
#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SWEEP_MS 50

typedef enum { C_DOWN, C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_UP, C_CLOSED } cstate_t;

struct redis_cmd {
  redis_cmd_t *next, *prev;
  redis_client_t *c;
  uint64_t deadline;
  redis_reply_fn cb;
  void *ud;
  const char *fail; /* set: not sent, fail with this at the next sweep */
  int sent;         /* hiredis holds it (its callback frees it) */
};

typedef struct sub {
  struct sub *next;
  char *channel;
  redis_message_fn fn;
  void *ud;
} sub_t;

struct redis_client {
  redis_client_t *next_client;
  uv_loop_t *loop;
  redis_url_t url;
  char shown[600]; /* the URL without credentials */
  char name[16];
  uint64_t connect_timeout_ms;
  cstate_t state;
  redisAsyncContext *ac;
  uv_getaddrinfo_t gai;
  int gai_busy;
  uv_timer_t timer; /* connect deadline, or the reconnect backoff */
  uv_timer_t sweep; /* command deadlines and deferred failures */
  int handles_open;
  uint64_t backoff_ms;
  redis_cmd_t *cmds; /* every command not yet answered, newest first */
  sub_t *subs;
  int subscriber;
  int ever_up;
  redis_stats_t st;
  char said[256]; /* the last connect failure logged (logged again only when it changes) */
};

static redis_client_t *g_clients;

/* ---- URLs ---- */

static int pct_decode(const char *s, size_t n, char *out, size_t outlen) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
        isxdigit((unsigned char)s[i + 2])) {
      char hex[3] = {s[i + 1], s[i + 2], 0};
      ch = (char)strtol(hex, NULL, 16);
      i += 2;
    }
    if (o + 1 >= outlen) return -1;
    out[o++] = ch;
  }
  out[o] = 0;
  return 0;
}

static int parse_db(const char *s, int *db) {
  if (!*s) return 0;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v < 0 || v > 100000 || !isdigit((unsigned char)*s)) return -1;
  *db = (int)v;
  return 0;
}

int redis_url_parse(const char *url, redis_url_t *u, char *err, size_t errlen) {
  memset(u, 0, sizeof *u);
  u->port = 6379;
  if (!url || !*url) {
    snprintf(err, errlen, "the Redis URL is empty");
    return -1;
  }
  if (strncasecmp(url, "rediss://", 9) == 0) {
    snprintf(err, errlen,
             "rediss:// (TLS) is not supported: this hiredis (0.14) has no TLS; run a local TLS "
             "tunnel (stunnel, spiped) and give its redis:// or unix:// address "
             "(docs/cluster.md)");
    return -1;
  }
  if (strncasecmp(url, "unix://", 7) == 0) {
    const char *p = url + 7, *q = strchr(p, '?');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n == 0 || n >= sizeof u->path || p[0] != '/') {
      snprintf(err, errlen,
               "a unix:// Redis URL needs an absolute socket path (unix:///run/redis.sock)");
      return -1;
    }
    memcpy(u->path, p, n);
    u->is_unix = 1;
    if (q) {
      if (strncmp(q, "?db=", 4) != 0 || parse_db(q + 4, &u->db) != 0) {
        snprintf(err, errlen, "a unix:// Redis URL takes only ?db=N after the path");
        return -1;
      }
    }
    return 0;
  }
  if (strncasecmp(url, "redis://", 8) != 0) {
    snprintf(err, errlen, "the Redis URL must start with redis:// or unix://");
    return -1;
  }
  const char *p = url + 8;
  const char *slash = strchr(p, '/');
  size_t authority_len = slash ? (size_t)(slash - p) : strlen(p);
  const char *at = NULL;
  for (size_t i = 0; i < authority_len; i++)
    if (p[i] == '@')
      at = p + i; /* the last one: a password may hold '@' only encoded, but be kind */
  const char *hp = p;
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
      if (pct_decode(p, (size_t)(colon - p), u->user, sizeof u->user) != 0 ||
          pct_decode(colon + 1, (size_t)(at - colon - 1), u->pass, sizeof u->pass) != 0) {
        snprintf(err, errlen, "the Redis URL's user or password is too long");
        return -1;
      }
    } else if (pct_decode(p, (size_t)(at - p), u->pass, sizeof u->pass) != 0) {
      snprintf(err, errlen, "the Redis URL's password is too long");
      return -1;
    }
    hp = at + 1;
  }
  size_t hl = (size_t)(p + authority_len - hp);
  char hostport[300];
  if (hl == 0 || hl >= sizeof hostport) {
    snprintf(err, errlen, "the Redis URL needs a host (redis://host:port/db)");
    return -1;
  }
  memcpy(hostport, hp, hl);
  hostport[hl] = 0;
  char *hs = hostport, *port = NULL;
  if (hs[0] == '[') {
    char *close = strchr(hs, ']');
    if (!close) {
      snprintf(err, errlen, "the Redis URL has an unclosed [IPv6] host");
      return -1;
    }
    *close = 0;
    hs++;
    if (close[1] == ':')
      port = close + 2;
    else if (close[1]) {
      snprintf(err, errlen, "the Redis URL has text after its [IPv6] host");
      return -1;
    }
  } else {
    char *colon = strrchr(hs, ':');
    if (colon) {
      *colon = 0;
      port = colon + 1;
    }
  }
  if (!*hs || strlen(hs) >= sizeof u->host) {
    snprintf(err, errlen, "the Redis URL needs a host (redis://host:port/db)");
    return -1;
  }
  memcpy(u->host, hs, strlen(hs) + 1); /* fits: checked above */
  if (port) {
    char *end;
    long v = strtol(port, &end, 10);
    if (!*port || *end || v < 1 || v > 65535) {
      snprintf(err, errlen, "the Redis URL's port must be 1..65535");
      return -1;
    }
    u->port = (int)v;
  }
  if (slash && parse_db(slash + 1, &u->db) != 0) {
    snprintf(err, errlen, "the Redis URL's database must be a number (redis://host:port/0)");
    return -1;
  }
  return 0;
}

void redis_url_redacted(const redis_url_t *u, char *out, size_t outlen) {
  if (u->is_unix) {
    if (u->db)
      snprintf(out, outlen, "unix://%s?db=%d", u->path, u->db);
    else
      snprintf(out, outlen, "unix://%s", u->path);
    return;
  }
  int v6 = strchr(u->host, ':') != NULL;
  snprintf(out, outlen, "redis://%s%s%s%s:%d/%d", u->pass[0] || u->user[0] ? "***@" : "",
           v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
}

/* ---- logging ---- */

static void log_client(redis_client_t *c, log_level_t lv, const char *msg, const char *error) {
  log_field_t f[3] = {{"redis", c->shown, 0}, {"conn", c->name, 0}, {"error", error, 0}};
  log_write(lv, msg, f, error ? 3 : 2);
}

/* ---- commands ---- */

static void cmd_unlink(redis_cmd_t *cmd) {
  redis_client_t *c = cmd->c;
  if (cmd->prev)
    cmd->prev->next = cmd->next;
  else
    c->cmds = cmd->next;
  if (cmd->next) cmd->next->prev = cmd->prev;
  cmd->next = cmd->prev = NULL;
}

static void on_sweep(uv_timer_t *t);

static void sweep_start(redis_client_t *c, uint64_t first) {
  if (c->state == C_CLOSED || !c->handles_open) return;
  uv_timer_start(&c->sweep, on_sweep, first, SWEEP_MS);
}

static void drop(redis_client_t *c, const char *why);

static void on_sweep(uv_timer_t *t) {
  redis_client_t *c = t->data;
  uint64_t now = uv_now(c->loop);
  int expired = 0;
  redis_cmd_t *cmd = c->cmds;
  while (cmd) {
    redis_cmd_t *next = cmd->next;
    if (cmd->fail) {
      redis_reply_fn cb = cmd->cb;
      void *ud = cmd->ud;
      const char *why = cmd->fail;
      cmd_unlink(cmd);
      free(cmd);
      if (cb) cb(ud, NULL, why);
    } else if (cmd->cb && now >= cmd->deadline) {
      redis_reply_fn cb = cmd->cb;
      cmd->cb = NULL; /* the hiredis callback (with NULL, at the drop) frees it */
      c->st.timeouts++;
      c->st.errors++;
      expired = 1;
      cb(cmd->ud, NULL, "timeout: Redis did not answer in time");
    }
    cmd = next;
  }
  if (expired) drop(c, "a command timed out");
  if (!c->cmds) uv_timer_stop(&c->sweep);
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata) {
  (void)ac;
  redis_cmd_t *cmd = privdata;
  redisReply *reply = r;
  redis_reply_fn cb = cmd->cb;
  void *ud = cmd->ud;
  redis_client_t *c = cmd->c;
  cmd_unlink(cmd);
  free(cmd);
  if (!cb) return;
  if (!reply) {
    c->st.errors++;
    cb(ud, NULL, "lost: the Redis connection was lost");
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) c->st.errors++;
  cb(ud, reply, NULL);
}

redis_cmd_t *redis_command(redis_client_t *c, int argc, const char **argv, const size_t *lens,
                           uint64_t timeout_ms, redis_reply_fn cb, void *ud) {
  if (c->state == C_CLOSED) return NULL;
  redis_cmd_t *cmd = calloc(1, sizeof *cmd);
  if (!cmd) return NULL;
  cmd->c = c;
  cmd->cb = cb;
  cmd->ud = ud;
  cmd->deadline = uv_now(c->loop) + (timeout_ms ? timeout_ms : 1);
  cmd->next = c->cmds;
  if (c->cmds) c->cmds->prev = cmd;
  c->cmds = cmd;
  c->st.commands++;
  if (c->subscriber) {
    cmd->fail = "down: a subscriber connection takes no commands";
  } else if (c->state != C_UP || !c->ac) {
    cmd->fail = "down: Redis is not connected";
  } else if (redisAsyncCommandArgv(c->ac, on_reply, cmd, argc, argv, lens) != REDIS_OK) {
    cmd->fail = "down: the command could not be sent";
  } else {
    cmd->sent = 1;
  }
  if (cmd->fail) {
    c->st.errors++;
    sweep_start(c, 0);
  } else if (!uv_is_active((uv_handle_t *)&c->sweep)) {
    sweep_start(c, SWEEP_MS);
  }
  return cmd;
}

void redis_cmd_cancel(redis_cmd_t *cmd) {
  if (!cmd) return;
  cmd->cb = NULL;
  if (cmd->fail) {
    cmd_unlink(cmd);
    free(cmd);
  }
}

/* ---- the event hooks (hiredis' adapters/libuv.h, with poll errors handled) ---- */

typedef struct {
  redisAsyncContext *ac;
  uv_poll_t handle;
  int events;
} ev_t;

static void ev_poll(uv_poll_t *h, int status, int events) {
  ev_t *p = h->data;
  if (!p->ac) return;
  if (status < 0) {
    redis_client_t *c = p->ac->data;
    char why[128];
    snprintf(why, sizeof why, "poll: %s", uv_strerror(status));
    if (c && c->ac == p->ac) drop(c, why);
    return;
  }
  if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
  if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void ev_update(ev_t *p) {
  if (p->events)
    uv_poll_start(&p->handle, p->events, ev_poll);
  else
    uv_poll_stop(&p->handle);
}

static void ev_add_read(void *d) {
  ev_t *p = d;
  p->events |= UV_READABLE;
  ev_update(p);
}
static void ev_del_read(void *d) {
  ev_t *p = d;
  p->events &= ~UV_READABLE;
  ev_update(p);
}
static void ev_add_write(void *d) {
  ev_t *p = d;
  p->events |= UV_WRITABLE;
  ev_update(p);
}
static void ev_del_write(void *d) {
  ev_t *p = d;
  p->events &= ~UV_WRITABLE;
  ev_update(p);
}
static void ev_closed(uv_handle_t *h) {
  free(h->data);
}
static void ev_cleanup(void *d) {
  ev_t *p = d;
  p->ac = NULL;
  uv_close((uv_handle_t *)&p->handle, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  ev_t *p = calloc(1, sizeof *p);
  if (!p) return -1;
  if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
    free(p);
    return -1;
  }
  p->ac = ac;
  p->handle.data = p;
  ac->ev.data = p;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  return 0;
}

/* ---- the connection's life ---- */

static void start_connect(redis_client_t *c);

static void on_retry(uv_timer_t *t) {
  redis_client_t *c = t->data;
  if (c->state == C_DOWN) start_connect(c);
}

static void on_connect_deadline(uv_timer_t *t) {
  redis_client_t *c = t->data;
  if (c->state == C_RESOLVING || c->state == C_CONNECTING || c->state == C_HANDSHAKE)
    drop(c, "connect timeout");
}

/* c is down (its context gone or never made): fail its commands, retry after the backoff. */
static void went_down(redis_client_t *c, const char *why) {
  int was_up = c->state == C_UP;
  if (c->state == C_CLOSED) return;
  c->state = C_DOWN;
  c->st.up = 0;
  if (was_up || !c->st.down_since_ms) c->st.down_since_ms = uv_now(c->loop);
  snprintf(c->st.last_error, sizeof c->st.last_error, "%s", why);
  if (was_up) {
    log_client(c, LOG_WARN, "redis: connection lost", why);
    snprintf(c->said, sizeof c->said, "%s", why);
  } else if (strcmp(c->said, why) != 0) {
    log_client(c, LOG_WARN, "redis: cannot connect", why);
    snprintf(c->said, sizeof c->said, "%s", why);
  }
  /* Commands not sent yet (none are: they fail at once while down) and those hiredis held
   * were answered by its free; nothing is left but deferred failures. */
  uint64_t delay = c->backoff_ms + (uint64_t)(rand() % (int)(c->backoff_ms / 4 + 1));
  c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
  uv_timer_start(&c->timer, on_retry, delay, 0);
}

static void drop(redis_client_t *c, const char *why) {
  if (c->gai_busy) uv_cancel((uv_req_t *)&c->gai); /* its callback sees ECANCELED */
  redisAsyncContext *ac = c->ac;
  c->ac = NULL;
  if (ac) redisAsyncFree(ac); /* answers what it held with NULL (deferred inside a callback) */
  went_down(c, why);
}

static void subscribe_one(redis_client_t *c, sub_t *s);

static void on_handshake(redisAsyncContext *ac, void *r, void *privdata) {
  redis_client_t *c = privdata;
  redisReply *reply = r;
  if (!reply || c->ac != ac) return;
  if (reply->type == REDIS_REPLY_ERROR) {
    char why[256];
    /* The server's words (WRONGPASS, NOAUTH, ...), never what was sent. */
    snprintf(why, sizeof why, "handshake refused: %.200s", reply->str ? reply->str : "error");
    drop(c, why);
    return;
  }
  if (reply->type == REDIS_REPLY_STATUS && reply->str && strcmp(reply->str, "PONG") == 0) {
    uv_timer_stop(&c->timer);
    c->state = C_UP;
    if (c->ever_up) c->st.reconnects++;
    c->ever_up = 1;
    c->st.up = 1;
    c->st.down_since_ms = 0;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->said[0] = 0;
    log_client(c, LOG_INFO, "redis: connected", NULL);
    for (sub_t *s = c->subs; s; s = s->next)
      subscribe_one(c, s);
  }
}

static void on_connected(const redisAsyncContext *cac, int status) {
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  redis_client_t *c = ac->data;
  if (!c || c->ac != ac) return;
  if (status != REDIS_OK) {
    c->ac = NULL; /* hiredis frees it after this callback */
    went_down(c, ac->errstr[0] ? ac->errstr : "connect failed");
    return;
  }
  c->state = C_HANDSHAKE;
  if (c->url.pass[0]) {
    const char *argv[3] = {"AUTH", c->url.user, c->url.pass};
    size_t lens[3] = {4, strlen(c->url.user), strlen(c->url.pass)};
    if (c->url.user[0])
      redisAsyncCommandArgv(ac, on_handshake, c, 3, argv, lens);
    else {
      argv[1] = c->url.pass;
      lens[1] = lens[2];
      redisAsyncCommandArgv(ac, on_handshake, c, 2, argv, lens);
    }
  }
  if (c->url.db) {
    char db[16];
    snprintf(db, sizeof db, "%d", c->url.db);
    const char *argv[2] = {"SELECT", db};
    size_t lens[2] = {6, strlen(db)};
    redisAsyncCommandArgv(ac, on_handshake, c, 2, argv, lens);
  }
  const char *ping[1] = {"PING"};
  size_t plen[1] = {4};
  redisAsyncCommandArgv(ac, on_handshake, c, 1, ping, plen);
}

static void on_disconnected(const redisAsyncContext *cac, int status) {
  (void)status;
  redisAsyncContext *ac = (redisAsyncContext *)cac;
  redis_client_t *c = ac->data;
  if (!c || c->ac != ac) return;
  c->ac = NULL;
  went_down(c, ac->err && ac->errstr[0] ? ac->errstr : "the server closed the connection");
}

static void connect_to(redis_client_t *c, const char *ip) {
  redisAsyncContext *ac =
      c->url.is_unix ? redisAsyncConnectUnix(c->url.path) : redisAsyncConnect(ip, c->url.port);
  if (!ac) {
    went_down(c, "out of memory");
    return;
  }
  if (ac->err) {
    char why[256];
    snprintf(why, sizeof why, "%s", ac->errstr);
    redisAsyncFree(ac);
    went_down(c, why);
    return;
  }
  if (ev_attach(ac, c->loop) != 0) {
    redisAsyncFree(ac);
    went_down(c, "cannot watch the socket");
    return;
  }
  ac->data = c;
  c->ac = ac;
  c->state = C_CONNECTING;
  redisAsyncSetConnectCallback(ac, on_connected);
  redisAsyncSetDisconnectCallback(ac, on_disconnected);
}

static void client_release(redis_client_t *c) {
  if (--c->handles_open == 0) free(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  redis_client_t *c = req->data;
  c->gai_busy = 0;
  if (c->state == C_CLOSED) { /* redis_close_all: this request held c */
    if (res) uv_freeaddrinfo(res);
    client_release(c);
    return;
  }
  if (c->state != C_RESOLVING) { /* dropped or closed meanwhile */
    if (res) uv_freeaddrinfo(res);
    return;
  }
  if (status != 0 || !res) {
    char why[300];
    snprintf(why, sizeof why, "cannot resolve %s: %s", c->url.host, uv_strerror(status));
    if (res) uv_freeaddrinfo(res);
    uv_timer_stop(&c->timer);
    went_down(c, why);
    return;
  }
  char ip[64] = "";
  if (res->ai_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, sizeof ip);
  else
    uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, sizeof ip);
  uv_freeaddrinfo(res);
  connect_to(c, ip);
}

static void start_connect(redis_client_t *c) {
  if (c->gai_busy) { /* a cancelled resolve has not called back yet */
    uv_timer_start(&c->timer, on_retry, BACKOFF_MIN_MS, 0);
    return;
  }
  c->state = C_RESOLVING;
  uv_timer_start(&c->timer, on_connect_deadline, c->connect_timeout_ms, 0);
  if (c->url.is_unix) {
    connect_to(c, NULL);
    return;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  c->gai.data = c;
  if (uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->url.host, NULL, &hints) != 0) {
    uv_timer_stop(&c->timer);
    went_down(c, "cannot start resolving the host");
    return;
  }
  c->gai_busy = 1;
}

redis_client_t *redis_client_new(uv_loop_t *loop, const redis_url_t *u, const redis_opts_t *o) {
  redis_client_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->loop = loop;
  c->url = *u;
  redis_url_redacted(u, c->shown, sizeof c->shown);
  snprintf(c->name, sizeof c->name, "%s", o && o->name ? o->name : "cmd");
  c->connect_timeout_ms = o && o->connect_timeout_ms ? o->connect_timeout_ms : 2000;
  c->backoff_ms = BACKOFF_MIN_MS;
  uv_timer_init(loop, &c->timer);
  uv_timer_init(loop, &c->sweep);
  c->timer.data = c->sweep.data = c;
  c->handles_open = 2;
  c->next_client = g_clients;
  g_clients = c;
  c->st.down_since_ms = uv_now(loop);
  snprintf(c->st.last_error, sizeof c->st.last_error, "connecting");
  start_connect(c);
  return c;
}

int redis_client_up(const redis_client_t *c) {
  return c && c->state == C_UP;
}

void redis_client_stats(const redis_client_t *c, redis_stats_t *out) {
  *out = c->st;
}

/* ---- subscriptions ---- */

static void on_message(redisAsyncContext *ac, void *r, void *privdata) {
  redis_client_t *c = privdata;
  redisReply *reply = r;
  if (!reply || c->ac != ac || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) return;
  redisReply *kind = reply->element[0], *ch = reply->element[1], *data = reply->element[2];
  if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0 ||
      ch->type != REDIS_REPLY_STRING || data->type != REDIS_REPLY_STRING)
    return;
  c->st.messages++;
  for (sub_t *s = c->subs; s; s = s->next)
    if (strlen(s->channel) == ch->len && memcmp(s->channel, ch->str, ch->len) == 0)
      s->fn(s->ud, ch->str, ch->len, data->str, data->len);
}

static void subscribe_one(redis_client_t *c, sub_t *s) {
  if (!c->ac || c->state != C_UP) return;
  const char *argv[2] = {"SUBSCRIBE", s->channel};
  size_t lens[2] = {9, strlen(s->channel)};
  redisAsyncCommandArgv(c->ac, on_message, c, 2, argv, lens);
}

int redis_subscribe(redis_client_t *c, const char *channel, redis_message_fn fn, void *ud) {
  if (!channel || !*channel || strlen(channel) > 200) return -1;
  if (!c->subscriber && c->st.commands) return -1;
  c->subscriber = 1;
  for (sub_t *s = c->subs; s; s = s->next)
    if (strcmp(s->channel, channel) == 0) {
      s->fn = fn;
      s->ud = ud;
      return 0;
    }
  sub_t *s = calloc(1, sizeof *s);
  if (!s || !(s->channel = strdup(channel))) {
    free(s);
    return -1;
  }
  s->fn = fn;
  s->ud = ud;
  s->next = c->subs;
  c->subs = s;
  subscribe_one(c, s);
  return 0;
}

/* ---- exit ---- */

static void on_handle_closed(uv_handle_t *h) {
  client_release(h->data);
}

void redis_close_all(void) {
  while (g_clients) {
    redis_client_t *c = g_clients;
    g_clients = c->next_client;
    if (c->gai_busy) {
      c->handles_open++; /* released by on_resolved */
      uv_cancel((uv_req_t *)&c->gai);
    }
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    c->state = C_CLOSED;
    if (ac) redisAsyncFree(ac);
    while (c->cmds) {
      redis_cmd_t *cmd = c->cmds;
      redis_reply_fn cb = cmd->cb;
      void *ud = cmd->ud;
      cmd_unlink(cmd);
      free(cmd);
      if (cb) cb(ud, NULL, "closed");
    }
    while (c->subs) {
      sub_t *s = c->subs;
      c->subs = s->next;
      free(s->channel);
      free(s);
    }
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->sweep, on_handle_closed);
  }
}
