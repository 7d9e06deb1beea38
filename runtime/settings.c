/* settings.c - copy the validated config table into settings_t (see settings.h). */
#include "settings.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

/* A reader of one config table: the first missing or mistyped value stops it with an error. */
typedef struct {
  lua_State *L;
  char *err;
  size_t errlen;
  int failed;
} reader_t;

/* Pushes t[k1][k2] (k2 may be NULL; t is an absolute index) and returns 1 if it has the Lua
 * type wanted; else records the error (the first one wins) and returns 0. Pop it either way. */
static int push_value(reader_t *r, int t, const char *k1, const char *k2, int type) {
  lua_State *L = r->L;
  lua_getfield(L, t, k1);
  if (k2) {
    if (lua_istable(L, -1))
      lua_getfield(L, -1, k2);
    else
      lua_pushnil(L);
    lua_remove(L, -2);
  }
  if (lua_type(L, -1) == type) return 1;
  if (!r->failed)
    snprintf(r->err, r->errlen, "config: internal: %s%s%s is not a %s (schema and reader disagree)",
             k1, k2 ? "." : "", k2 ? k2 : "", lua_typename(L, type));
  r->failed = 1;
  return 0;
}

static double num(reader_t *r, int t, const char *k1, const char *k2) {
  double v = push_value(r, t, k1, k2, LUA_TNUMBER) ? lua_tonumber(r->L, -1) : 0;
  lua_pop(r->L, 1);
  return v;
}

static void str(reader_t *r, int t, const char *k1, const char *k2, char *out, size_t len) {
  if (push_value(r, t, k1, k2, LUA_TSTRING)) snprintf(out, len, "%s", lua_tostring(r->L, -1));
  lua_pop(r->L, 1);
}

static int boolean(reader_t *r, int t, const char *k1, const char *k2) {
  int v = push_value(r, t, k1, k2, LUA_TBOOLEAN) && lua_toboolean(r->L, -1);
  lua_pop(r->L, 1);
  return v;
}

/* Listeners: "main" first, then the others in name order, so logs and ports are stable. */
static int read_listeners(reader_t *r, int t, settings_t *s) {
  lua_State *L = r->L;
  if (!push_value(r, t, "listeners", NULL, LUA_TTABLE)) {
    lua_pop(L, 1);
    return -1;
  }
  int lt = lua_gettop(L);
  settings_listener_t all[SETTINGS_MAX_LISTENERS];
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, lt) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
      if (n == SETTINGS_MAX_LISTENERS) {
        snprintf(r->err, r->errlen, "config: at most %d listeners", SETTINGS_MAX_LISTENERS);
        lua_pop(L, 3);
        return -1;
      }
      settings_listener_t *l = &all[n++];
      memset(l, 0, sizeof *l);
      snprintf(l->name, sizeof l->name, "%s", lua_tostring(L, -2));
      int e = lua_gettop(L);
      str(r, e, "host", NULL, l->host, sizeof l->host);
      l->port = (int)num(r, e, "port", NULL);
      lua_getfield(L, e, "tls"); /* absent: plaintext */
      if (lua_istable(L, -1)) {
        int tt = lua_gettop(L);
        str(r, tt, "cert", NULL, l->tls_cert, sizeof l->tls_cert);
        str(r, tt, "key", NULL, l->tls_key, sizeof l->tls_key);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* insertion sort by name with main first */
  for (int i = 1; i < n; i++) {
    settings_listener_t tmp = all[i];
    int j = i - 1;
    while (j >= 0 && (strcmp(tmp.name, "main") == 0 ||
                      (strcmp(all[j].name, "main") != 0 && strcmp(all[j].name, tmp.name) > 0))) {
      all[j + 1] = all[j];
      j--;
    }
    all[j + 1] = tmp;
  }
  memcpy(s->listeners, all, sizeof(all[0]) * (size_t)n);
  s->nlisteners = n;
  return r->failed ? -1 : 0;
}

static void read_http(reader_t *r, int t, http_limits_t *h) {
  h->max_header_bytes = (size_t)num(r, t, "http", "max_header_bytes");
  h->max_body_bytes = (size_t)num(r, t, "http", "max_body_bytes");
  h->header_timeout_ms = (uint64_t)num(r, t, "http", "header_timeout_ms");
  h->body_timeout_ms = (uint64_t)num(r, t, "http", "body_timeout_ms");
  h->idle_timeout_ms = (uint64_t)num(r, t, "http", "idle_timeout_ms");
  h->max_connections = (size_t)num(r, t, "http", "max_connections");
  h->max_per_ip = (size_t)num(r, t, "http", "max_per_ip");
  h->max_unsent_bytes = (size_t)num(r, t, "http", "max_unsent_bytes");
  h->max_buffered_body_bytes = (size_t)num(r, t, "http", "max_buffered_body_bytes");
}

static void read_ws(reader_t *r, int cfg, ws_settings_t *w) {
  lua_State *L = r->L;
  memset(w, 0, sizeof *w);
  if (!push_value(r, cfg, "ws", NULL, LUA_TTABLE)) {
    lua_pop(L, 1);
    return;
  }
  int t = lua_gettop(L);
  w->enabled = boolean(r, t, "enabled", NULL);
  str(r, t, "path", NULL, w->path, sizeof w->path);
  lua_getfield(L, t, "origins");
  size_t off = 0, n = lua_istable(L, -1) ? lua_objlen(L, -1) : 0;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (int)i);
    size_t l = 0;
    const char *o = lua_tolstring(L, -1, &l);
    if (o && l && off + l + 2 < sizeof w->origins) {
      memcpy(w->origins + off, o, l + 1);
      off += l + 1;
    }
    lua_pop(L, 1);
  }
  w->origins[off] = 0;
  lua_pop(L, 1);
  w->max_payload = (size_t)num(r, t, "max_payload", NULL);
  w->max_buffered_bytes = (size_t)num(r, t, "max_buffered_bytes", NULL);
  w->ping_interval_ms = (uint64_t)num(r, t, "ping_interval_ms", NULL);
  w->pong_timeout_ms = (uint64_t)num(r, t, "pong_timeout_ms", NULL);
  w->handshake_timeout_ms = (uint64_t)num(r, t, "handshake_timeout_ms", NULL);
  w->close_timeout_ms = (uint64_t)num(r, t, "close_timeout_ms", NULL);
  w->lingering_timeout_ms = (uint64_t)num(r, t, "lingering_timeout_ms", NULL);
  w->max_connections = (size_t)num(r, t, "max_connections", NULL);
  w->max_per_ip = (size_t)num(r, t, "max_per_ip", NULL);
  w->data_max_bytes = (size_t)num(r, t, "data_max_bytes", NULL);
  w->rate_per_second = num(r, t, "rate_limit", "messages_per_second");
  w->rate_burst = num(r, t, "rate_limit", "burst");
  w->rate_close_after = (unsigned)num(r, t, "rate_limit", "close_after");
  w->presence_batch_size = (size_t)num(r, t, "presence", "batch_size");
  w->presence_flush_interval_ms = (uint64_t)num(r, t, "presence", "flush_interval_ms");
  lua_pop(L, 1);
}

int settings_read(lua_State *L, int idx, settings_t *s, char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  if (!lua_istable(L, idx)) {
    snprintf(err, errlen, "config: the loader returned no table");
    return -1;
  }
  int t = idx > 0 ? idx : lua_gettop(L) + idx + 1;
  reader_t r = {L, err, errlen, 0};
  if (read_listeners(&r, t, s) != 0) return -1;
  str(&r, t, "data_dir", NULL, s->data_dir, sizeof s->data_dir);
  str(&r, t, "log", "level", s->log_level, sizeof s->log_level);
  read_http(&r, t, &s->http);
  s->drain_timeout_ms = (uint64_t)num(&r, t, "shutdown", "drain_timeout_ms");
  read_ws(&r, t, &s->ws);
  return r.failed ? -1 : 0;
}

void settings_apply_runtime(const settings_t *s, http_server_t *http) {
  log_level_t level;
  if (log_level_parse(s->log_level, &level) == 0) log_set_level(level);
  if (http) http_server_set_limits(http, &s->http);
  ws_apply_settings(&s->ws);
}

void settings_warn_restart_only(const settings_t *running, const settings_t *loaded) {
  int same = running->nlisteners == loaded->nlisteners;
  for (int i = 0; same && i < running->nlisteners; i++) {
    const settings_listener_t *a = &running->listeners[i], *b = &loaded->listeners[i];
    same = strcmp(a->name, b->name) == 0 && strcmp(a->host, b->host) == 0 && a->port == b->port &&
           strcmp(a->tls_cert, b->tls_cert) == 0 && strcmp(a->tls_key, b->tls_key) == 0;
  }
  if (!same) log_warnf("reload: listener changes take effect only after a restart");
  if (strcmp(running->data_dir, loaded->data_dir) != 0)
    log_warnf("reload: data_dir changes take effect only after a restart");
}
