/* lib_limiter.c - chatgw.limiter{...}: named rate limiters over limiter.c.
 *
 *   local lim = chatgw.limiter{ name = "tg_chat", rate = 1, burst = 1 }      -- token bucket
 *   local lim = chatgw.limiter{ name = "api", limit = 100, window_ms = 60000 } -- sliding window
 *   lim:take(key [, n])  -> true | false, retry_after_ms
 *   lim:wait(key [, n])  -> true (after waiting its turn) | nil, "cancelled: ..."
 *   lim:reset(key), lim:count(), lim.name
 *
 * The userdata points at the C limiter, which lives until process exit: a reloaded state that
 * asks for the same name gets the same buckets. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "lib.h"
#include "lib_opts.h"
#include "limiter.h"
#include "log.h"
#include "metrics.h"
#include "vm.h"

#define LIMITER_MT "chatgw.limiter"

typedef struct {
  limiter_t *l;
} llim_t;

static metric_t *g_m_rejections;

#define FN "chatgw.limiter"

static int l_limiter(lua_State *L) {
  static const char *const known[] = {"name",      "rate",     "burst", "limit",
                                      "window_ms", "max_keys", NULL};
  lib_opts_check(L, 1, "chatgw.limiter", known);
  const char *name = lib_opts_name(L, 1, "chatgw.limiter", "limiters");
  limiter_conf_t c;
  memset(&c, 0, sizeof c);
  int has_rate, has_burst, has_limit, has_window, has_max;
  double mk = 0;
  has_rate = lib_opts_number(L, 1, FN, "rate", &c.rate);
  has_burst = lib_opts_number(L, 1, FN, "burst", &c.burst);
  has_limit = lib_opts_number(L, 1, FN, "limit", &c.limit);
  has_window = lib_opts_number(L, 1, FN, "window_ms", &c.window_ms);
  has_max = lib_opts_number(L, 1, FN, "max_keys", &mk);
  if (has_rate) {
    if (has_limit || has_window)
      return luaL_error(L, "chatgw.limiter: give rate/burst (token bucket) or limit/window_ms "
                           "(sliding window), not both");
    if (!(c.rate > 0)) return luaL_error(L, "chatgw.limiter: rate must be > 0 (per second)");
    if (!has_burst) c.burst = c.rate < 1 ? 1 : c.rate;
    if (!(c.burst >= 1)) return luaL_error(L, "chatgw.limiter: burst must be >= 1");
    c.kind = LIMITER_BUCKET;
  } else if (has_limit || has_window) {
    if (has_burst) return luaL_error(L, "chatgw.limiter: burst goes with rate (token bucket)");
    if (!has_limit || !(c.limit >= 1))
      return luaL_error(L, "chatgw.limiter: limit must be a number >= 1");
    if (!has_window || !(c.window_ms > 0))
      return luaL_error(L, "chatgw.limiter: window_ms must be a number > 0");
    c.kind = LIMITER_WINDOW;
  } else {
    return luaL_error(L, "chatgw.limiter: give rate (and burst) for a token bucket, or limit and "
                         "window_ms for a sliding window");
  }
  if (has_max) {
    if (!(mk >= 1) || mk > 1e8 || mk != floor(mk))
      return luaL_error(L, "chatgw.limiter: max_keys must be an integer >= 1");
    c.max_keys = (size_t)mk;
  }
  int changed = 0;
  limiter_t *l = limiter_get(name, &c, &changed);
  if (!l) return luaL_error(L, "chatgw.limiter: out of memory");
  if (changed) {
    log_field_t f[] = {{"limiter", name, 0}};
    log_write(LOG_WARN, "chatgw.limiter: kind changed, its keys were reset", f, 1);
  }
  if (!g_m_rejections) {
    const char *lbl[] = {"name"};
    g_m_rejections =
        metrics_counter("chatgw_limiter_rejections_total",
                        "Rate limiter takes refused (lim:take returned false).", lbl, 1, NULL);
  }
  llim_t *u = lua_newuserdata(L, sizeof *u);
  u->l = l;
  luaL_getmetatable(L, LIMITER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static llim_t *check_self(lua_State *L, const char *m) {
  llim_t *u = luaL_testudata(L, 1, LIMITER_MT);
  if (!u) luaL_error(L, "lim:%s: self must be a limiter (call it as lim:%s(...))", m, m);
  return u;
}

static const char *check_key(lua_State *L, const char *m, size_t *len) {
  int t = lua_type(L, 2);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    luaL_error(L, "lim:%s: key must be a string, got %s", m, luaL_typename(L, 2));
  return lua_tolstring(L, 2, len);
}

static double check_n(lua_State *L, limiter_t *l, const char *m) {
  if (lua_isnoneornil(L, 3)) return 1;
  if (lua_type(L, 3) != LUA_TNUMBER)
    luaL_error(L, "lim:%s: n must be a number, got %s", m, luaL_typename(L, 3));
  double n = lua_tonumber(L, 3);
  if (!(n > 0) || n > limiter_capacity(l))
    luaL_error(L, "lim:%s: n must be > 0 and <= %s (%f)", m,
               limiter_conf(l)->kind == LIMITER_BUCKET ? "burst" : "limit", limiter_capacity(l));
  return n;
}

static int l_take(lua_State *L) {
  llim_t *u = check_self(L, "take");
  size_t kl;
  const char *key = check_key(L, "take", &kl);
  double n = check_n(L, u->l, "take");
  double retry = 0;
  int r = limiter_take(u->l, key, kl, n, clock_mono_ms(), &retry);
  if (r < 0) return luaL_error(L, "lim:take: out of memory");
  if (r == 1) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (g_m_rejections) {
    const char *lv[] = {limiter_name(u->l)};
    metrics_inc(g_m_rejections, lv, 1);
  }
  lua_pushboolean(L, 0);
  lua_pushinteger(L, (lua_Integer)ceil(retry));
  return 2;
}

/* FFI hot path of lim:take (lua/chatgw/cffi.lua): 1 taken, 0 refused (*retry_ms set, the
 * rejection counted), -1 out of memory, -2 bad arguments (the Lua side then calls l_take, for
 * its checks and messages). l comes from l_limiter_ptr on a checked userdata. */
static int ffi_limiter_take(limiter_t *l, const char *key, size_t kl, double n, double *retry_ms) {
  if (!l || !key || !retry_ms || !(n > 0) || n > limiter_capacity(l)) return -2;
  double retry = 0;
  int r = limiter_take(l, key, kl, n, clock_mono_ms(), &retry);
  if (r < 0) return -1;
  if (r == 1) return 1;
  if (g_m_rejections) {
    const char *lv[] = {limiter_name(l)};
    metrics_inc(g_m_rejections, lv, 1);
  }
  *retry_ms = ceil(retry);
  return 0;
}

/* _ffi.limiter_ptr(lim) -> the C limiter of a limiter object (a lightuserdata), or nil */
static int l_limiter_ptr(lua_State *L) {
  llim_t *u = luaL_testudata(L, 1, LIMITER_MT);
  if (!u) return 0;
  lua_pushlightuserdata(L, u->l);
  return 1;
}

/* lim:peek(key [, n]): what take would answer, taking nothing (no rejection is counted) */
static int l_peek(lua_State *L) {
  llim_t *u = check_self(L, "peek");
  size_t kl;
  const char *key = check_key(L, "peek", &kl);
  double n = check_n(L, u->l, "peek");
  double retry = 0;
  if (limiter_peek(u->l, key, kl, n, clock_mono_ms(), &retry)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushinteger(L, (lua_Integer)ceil(retry));
  return 2;
}

/* ---- lim:wait: a timer wait like chatgw.sleep ---- */

static int l_wait(lua_State *L) {
  llim_t *u = check_self(L, "wait");
  size_t kl;
  const char *key = check_key(L, "wait", &kl);
  double n = check_n(L, u->l, "wait");
  co_t *co = vm_check_yieldable(L, "lim:wait");
  double delay = limiter_reserve(u->l, key, kl, n, clock_mono_ms());
  if (delay < 0) return luaL_error(L, "lim:wait: out of memory");
  if (delay <= 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  /* +1: the loop's timers count whole milliseconds; the booking used the precise clock */
  return vm_wait_timer(L, co, (uint64_t)ceil(delay) + 1);
}

static int l_reset(lua_State *L) {
  llim_t *u = check_self(L, "reset");
  size_t kl;
  const char *key = check_key(L, "reset", &kl);
  lua_pushboolean(L, limiter_reset_key(u->l, key, kl));
  return 1;
}

static int l_count(lua_State *L) {
  llim_t *u = check_self(L, "count");
  limiter_sweep(u->l, clock_mono_ms());
  lua_pushinteger(L, (lua_Integer)limiter_key_count(u->l));
  return 1;
}

static int l_index(lua_State *L) {
  llim_t *u = luaL_checkudata(L, 1, LIMITER_MT);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "name") == 0) {
    lua_pushstring(L, limiter_name(u->l));
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static int l_tostring(lua_State *L) {
  llim_t *u = luaL_checkudata(L, 1, LIMITER_MT);
  lua_pushfstring(L, "chatgw.limiter(%s)", limiter_name(u->l));
  return 1;
}

void lib_limiter_register(lua_State *L, int t) {
  if (t < 0) t = lua_gettop(L) + t + 1;
  if (luaL_newmetatable(L, LIMITER_MT)) {
    static const luaL_Reg methods[] = {{"take", l_take},   {"peek", l_peek},   {"wait", l_wait},
                                       {"reset", l_reset}, {"count", l_count}, {NULL, NULL}};
    lua_newtable(L);
    for (const luaL_Reg *r = methods; r->name; r++) {
      lua_pushcfunction(L, r->func);
      lua_setfield(L, -2, r->name);
    }
    /* the method table, for cffi.lua to put its take in (taken with the rest of _ffi) */
    lib_ffi_table(L, t);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "limiter_methods");
    lua_pushcfunction(L, l_limiter_ptr);
    lua_setfield(L, -2, "limiter_ptr");
    lua_pop(L, 1);
    lua_pushcclosure(L, l_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lib_ffi_table(L, t); /* cffi.lua's __index: the methods from Lua, lim.name from l_index */
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "limiter_mt");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lib_ffi_set(L, t, "limiter_take", (void *)ffi_limiter_take);
  lua_pushcfunction(L, l_limiter);
  lua_setfield(L, t, "limiter");
}
