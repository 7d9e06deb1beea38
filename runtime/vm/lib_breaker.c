/* lib_breaker.c - the C half of chatgw.breaker (the Lua half, br:call, is
 * lua/chatgw/breaker.lua).
 *
 *   local c = chatgw._breaker(opts)        -- the named C breaker (created or updated)
 *   c:acquire()  -> true, ticket | false, "open: ...", retry_after_ms
 *   c:record(ticket, "success" | "failure" | "ignore")
 *   c:state(), c:stats(), c:reset(), c:trip(), c.name
 *
 * State changes are logged (WARN when it opens) and counted in chatgw_breaker_state{name}
 * (0 closed, 1 open, 2 half-open) and chatgw_breaker_transitions_total{name,from,to}; calls in
 * chatgw_breaker_calls_total{name,result} (success, failure, rejected). */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "breaker.h"
#include "lib.h"
#include "lib_opts.h"
#include "log.h"
#include "metrics.h"
#include "clock.h"

#define BREAKER_MT "chatgw.breaker_c"

typedef struct {
  breaker_t *b;
} lbr_t;

static metric_t *g_m_state, *g_m_transitions, *g_m_calls;

static void metrics_setup(void) {
  if (g_m_state) return;
  const char *n[] = {"name"};
  const char *nft[] = {"name", "from", "to"};
  const char *nr[] = {"name", "result"};
  g_m_state = metrics_gauge("chatgw_breaker_state",
                            "Circuit breaker state: 0 closed, 1 open, 2 half-open.", n, 1, NULL);
  g_m_transitions = metrics_counter("chatgw_breaker_transitions_total",
                                    "Circuit breaker state changes.", nft, 3, NULL);
  g_m_calls = metrics_counter("chatgw_breaker_calls_total",
                              "Calls through circuit breakers by result (success, failure, "
                              "rejected).",
                              nr, 2, NULL);
}

static void observer(breaker_t *b, breaker_state_t from, breaker_state_t to) {
  const char *name = breaker_name(b);
  const char *lv[] = {name, breaker_state_name(from), breaker_state_name(to)};
  if (g_m_transitions) metrics_inc(g_m_transitions, lv, 1);
  const char *ln[] = {name};
  if (g_m_state) metrics_set(g_m_state, ln, (double)to);
  char open_ms[32];
  snprintf(open_ms, sizeof open_ms, "%.0f", breaker_open_ms(b));
  log_field_t f[] = {{"breaker", name, 0},
                     {"from", breaker_state_name(from), 0},
                     {"to", breaker_state_name(to), 0},
                     {"open_ms", open_ms, 1}};
  log_write(to == BREAKER_OPEN ? LOG_WARN : LOG_INFO, "circuit breaker state change", f,
            to == BREAKER_OPEN ? 4 : 3);
}

/* ---- chatgw._breaker(opts) ---- */

static int l_breaker(lua_State *L) {
  static const char *const known[] = {"name",       "failures", "ratio",       "min_calls",
                                      "window_ms",  "open_ms",  "max_open_ms", "half_open_calls",
                                      "is_failure", NULL};
  lib_opts_check(L, 1, "chatgw.breaker", known);
  const char *name = lib_opts_name(L, 1, "chatgw.breaker", "breakers");
  breaker_conf_t c;
  breaker_conf_default(&c);
  c.failures = (unsigned)lib_opts_range(L, 1, "chatgw.breaker", "failures", c.failures, 0, 1e6, 1);
  c.ratio = lib_opts_range(L, 1, "chatgw.breaker", "ratio", c.ratio, 0, 1, 0);
  c.min_calls =
      (unsigned)lib_opts_range(L, 1, "chatgw.breaker", "min_calls", c.min_calls, 1, 1e9, 1);
  c.window_ms = lib_opts_range(L, 1, "chatgw.breaker", "window_ms", c.window_ms, 10, 1e10, 0);
  c.open_ms = lib_opts_range(L, 1, "chatgw.breaker", "open_ms", c.open_ms, 1, 1e10, 0);
  lua_getfield(L, 1, "max_open_ms");
  int has_max = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!has_max && c.max_open_ms < c.open_ms) c.max_open_ms = c.open_ms;
  c.max_open_ms =
      lib_opts_range(L, 1, "chatgw.breaker", "max_open_ms", c.max_open_ms, c.open_ms, 1e10, 0);
  c.half_open_calls = (unsigned)lib_opts_range(L, 1, "chatgw.breaker", "half_open_calls",
                                               c.half_open_calls, 1, 1e6, 1);
  breaker_set_observer(observer);
  metrics_setup();
  breaker_t *b = breaker_get(name, &c);
  if (!b) return luaL_error(L, "chatgw.breaker: out of memory");
  const char *lv[] = {name};
  if (g_m_state) metrics_set(g_m_state, lv, (double)breaker_state(b, clock_mono_ms()));
  lbr_t *u = lua_newuserdata(L, sizeof *u);
  u->b = b;
  luaL_getmetatable(L, BREAKER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static lbr_t *check_self(lua_State *L, const char *m) {
  lbr_t *u = luaL_testudata(L, 1, BREAKER_MT);
  if (!u) luaL_error(L, "br:%s: self must be a breaker", m);
  return u;
}

static void count_call(breaker_t *b, const char *result) {
  const char *lv[] = {breaker_name(b), result};
  if (g_m_calls) metrics_inc(g_m_calls, lv, 1);
}

static int l_acquire(lua_State *L) {
  lbr_t *u = check_self(L, "acquire");
  uint64_t ticket = 0;
  double retry = 0;
  if (breaker_acquire(u->b, clock_mono_ms(), &ticket, &retry)) {
    lua_pushboolean(L, 1);
    lua_pushnumber(L, (double)ticket);
    return 2;
  }
  count_call(u->b, "rejected");
  breaker_state_t s = breaker_state(u->b, clock_mono_ms());
  lua_pushnil(L);
  if (s == BREAKER_OPEN)
    lua_pushfstring(L, "open: circuit breaker '%s' is open", breaker_name(u->b));
  else
    lua_pushfstring(L, "open: circuit breaker '%s' is half-open and its trial calls are running",
                    breaker_name(u->b));
  lua_pushinteger(L, (lua_Integer)ceil(retry));
  return 3;
}

static int l_record(lua_State *L) {
  lbr_t *u = check_self(L, "record");
  if (lua_type(L, 2) != LUA_TNUMBER) return luaL_error(L, "br:record: ticket must be a number");
  uint64_t ticket = (uint64_t)lua_tonumber(L, 2);
  const char *r = luaL_checkstring(L, 3);
  breaker_result_t res;
  if (strcmp(r, "success") == 0)
    res = BREAKER_SUCCESS;
  else if (strcmp(r, "failure") == 0)
    res = BREAKER_FAILURE;
  else if (strcmp(r, "ignore") == 0)
    res = BREAKER_IGNORE;
  else
    return luaL_error(L, "br:record: result must be success, failure or ignore");
  if (res != BREAKER_IGNORE) count_call(u->b, r);
  breaker_record(u->b, ticket, res, clock_mono_ms());
  return 0;
}

static int l_state(lua_State *L) {
  lbr_t *u = check_self(L, "state");
  lua_pushstring(L, breaker_state_name(breaker_state(u->b, clock_mono_ms())));
  return 1;
}

static int l_stats(lua_State *L) {
  lbr_t *u = check_self(L, "stats");
  breaker_stats_t st;
  breaker_stats(u->b, clock_mono_ms(), &st);
  const breaker_conf_t *c = breaker_conf(u->b);
  lua_createtable(L, 0, 20);
  lua_pushstring(L, breaker_name(u->b));
  lua_setfield(L, -2, "name");
  lua_pushstring(L, breaker_state_name(st.state));
  lua_setfield(L, -2, "state");
  lib_set_num(L, "consecutive_failures", st.consecutive_failures);
  lib_set_num(L, "window_calls", (double)st.window_calls);
  lib_set_num(L, "window_failures", (double)st.window_failures);
  lib_set_num(L, "open_ms", st.open_ms);
  lib_set_num(L, "retry_after_ms", ceil(st.retry_after_ms));
  lib_set_num(L, "half_open_inflight", st.half_open_inflight);
  lib_set_num(L, "half_open_successes", st.half_open_successes);
  lib_set_num(L, "successes", (double)st.successes);
  lib_set_num(L, "failures", (double)st.failures);
  lib_set_num(L, "rejections", (double)st.rejections);
  lib_set_num(L, "opens", (double)st.opens);
  lua_createtable(L, 0, 7);
  lib_set_num(L, "failures", c->failures);
  lib_set_num(L, "ratio", c->ratio);
  lib_set_num(L, "min_calls", c->min_calls);
  lib_set_num(L, "window_ms", c->window_ms);
  lib_set_num(L, "open_ms", c->open_ms);
  lib_set_num(L, "max_open_ms", c->max_open_ms);
  lib_set_num(L, "half_open_calls", c->half_open_calls);
  lua_setfield(L, -2, "config");
  return 1;
}

static int l_reset(lua_State *L) {
  lbr_t *u = check_self(L, "reset");
  breaker_reset(u->b, clock_mono_ms());
  return 0;
}

static int l_trip(lua_State *L) {
  lbr_t *u = check_self(L, "trip");
  breaker_trip(u->b, clock_mono_ms());
  return 0;
}

static int l_index(lua_State *L) {
  lbr_t *u = luaL_checkudata(L, 1, BREAKER_MT);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "name") == 0) {
    lua_pushstring(L, breaker_name(u->b));
    return 1;
  }
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

void lib_breaker_register(lua_State *L, int t) {
  if (t < 0) t = lua_gettop(L) + t + 1;
  if (luaL_newmetatable(L, BREAKER_MT)) {
    static const luaL_Reg methods[] = {
        {"acquire", l_acquire}, {"record", l_record}, {"state", l_state}, {"stats", l_stats},
        {"reset", l_reset},     {"trip", l_trip},     {NULL, NULL}};
    lua_newtable(L);
    for (const luaL_Reg *r = methods; r->name; r++) {
      lua_pushcfunction(L, r->func);
      lua_setfield(L, -2, r->name);
    }
    lua_pushcclosure(L, l_index, 1);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_breaker);
  lua_setfield(L, t, "_breaker");
}
