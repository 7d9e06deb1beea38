/* settings.c - copy the validated config table into rt_settings_t (see settings.h). */
#include "settings.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

void settings_default(rt_settings_t *s) {
  memset(s, 0, sizeof *s);
  s->nlisteners = 1;
  snprintf(s->listeners[0].name, sizeof s->listeners[0].name, "main");
  snprintf(s->listeners[0].host, sizeof s->listeners[0].host, "127.0.0.1");
  s->listeners[0].port = 8787;
  http_limits_default(&s->http);
  ws_settings_default(&s->ws);
  s->drain_timeout_ms = 10000;
  snprintf(s->data_dir, sizeof s->data_dir, "./data");
  snprintf(s->log_level, sizeof s->log_level, "info");
}

/* Reads t[k1][k2] (k2 may be NULL) as a number; keeps *out when absent. */
static void get_num(lua_State *L, int t, const char *k1, const char *k2, double *out) {
  lua_getfield(L, t, k1);
  if (k2 && lua_istable(L, -1)) {
    lua_getfield(L, -1, k2);
    lua_remove(L, -2);
  }
  if (lua_type(L, -1) == LUA_TNUMBER) *out = lua_tonumber(L, -1);
  lua_pop(L, 1);
}

static void get_str(lua_State *L, int t, const char *k1, const char *k2, char *out, size_t len) {
  lua_getfield(L, t, k1);
  if (k2 && lua_istable(L, -1)) {
    lua_getfield(L, -1, k2);
    lua_remove(L, -2);
  }
  if (lua_type(L, -1) == LUA_TSTRING) snprintf(out, len, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
}

static void get_u64(lua_State *L, int t, const char *k1, const char *k2, uint64_t *out) {
  double d = (double)*out;
  get_num(L, t, k1, k2, &d);
  *out = (uint64_t)d;
}

static void get_size(lua_State *L, int t, const char *k1, const char *k2, size_t *out) {
  double d = (double)*out;
  get_num(L, t, k1, k2, &d);
  *out = (size_t)d;
}

/* Listeners: "main" first, then the others in name order, so logs and ports are stable. */
static int read_listeners(lua_State *L, int t, rt_settings_t *s, char *err, size_t errlen) {
  lua_getfield(L, t, "listeners");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  int lt = lua_gettop(L);
  rt_listener_conf_t all[RT_MAX_LISTENERS];
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, lt) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
      if (n == RT_MAX_LISTENERS) {
        snprintf(err, errlen, "config: at most %d listeners", RT_MAX_LISTENERS);
        lua_pop(L, 3);
        return -1;
      }
      rt_listener_conf_t *l = &all[n++];
      memset(l, 0, sizeof *l);
      snprintf(l->name, sizeof l->name, "%s", lua_tostring(L, -2));
      snprintf(l->host, sizeof l->host, "127.0.0.1");
      get_str(L, lua_gettop(L), "host", NULL, l->host, sizeof l->host);
      double port = 0;
      get_num(L, lua_gettop(L), "port", NULL, &port);
      l->port = (int)port;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  /* insertion sort by name with main first */
  for (int i = 1; i < n; i++) {
    rt_listener_conf_t tmp = all[i];
    int j = i - 1;
    while (j >= 0 && (strcmp(tmp.name, "main") == 0 ||
                      (strcmp(all[j].name, "main") != 0 && strcmp(all[j].name, tmp.name) > 0))) {
      all[j + 1] = all[j];
      j--;
    }
    all[j + 1] = tmp;
  }
  if (n) {
    memcpy(s->listeners, all, sizeof(all[0]) * (size_t)n);
    s->nlisteners = n;
  }
  return 0;
}

int settings_read(lua_State *L, int idx, rt_settings_t *s, char *err, size_t errlen) {
  settings_default(s);
  if (!lua_istable(L, idx)) {
    snprintf(err, errlen, "config: the loader returned no table");
    return -1;
  }
  int t = idx > 0 ? idx : lua_gettop(L) + idx + 1;
  if (read_listeners(L, t, s, err, errlen) != 0) return -1;
  get_str(L, t, "data_dir", NULL, s->data_dir, sizeof s->data_dir);
  get_str(L, t, "log", "level", s->log_level, sizeof s->log_level);
  get_size(L, t, "http", "max_header_bytes", &s->http.max_header_bytes);
  get_size(L, t, "http", "max_body_bytes", &s->http.max_body_bytes);
  get_u64(L, t, "http", "header_timeout_ms", &s->http.header_timeout_ms);
  get_u64(L, t, "http", "body_timeout_ms", &s->http.body_timeout_ms);
  get_u64(L, t, "http", "idle_timeout_ms", &s->http.idle_timeout_ms);
  get_size(L, t, "http", "max_connections", &s->http.max_connections);
  get_u64(L, t, "shutdown", "drain_timeout_ms", &s->drain_timeout_ms);
  ws_settings_read(L, t, &s->ws);
  return 0;
}

void settings_apply_runtime(const rt_settings_t *s) {
  log_level_t level;
  if (log_level_parse(s->log_level, &level) == 0) log_set_level(level);
  if (g_rt.http) http_server_set_limits(g_rt.http, &s->http);
  ws_apply_settings(&s->ws);
}

void settings_warn_restart_only(const rt_settings_t *running, const rt_settings_t *loaded) {
  int same = running->nlisteners == loaded->nlisteners;
  for (int i = 0; same && i < running->nlisteners; i++) {
    const rt_listener_conf_t *a = &running->listeners[i], *b = &loaded->listeners[i];
    same = strcmp(a->name, b->name) == 0 && strcmp(a->host, b->host) == 0 && a->port == b->port;
  }
  if (!same) log_warnf("reload: listener changes take effect only after a restart");
  if (strcmp(running->data_dir, loaded->data_dir) != 0)
    log_warnf("reload: data_dir changes take effect only after a restart");
}
