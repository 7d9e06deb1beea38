/* lib_core.c - chatgw.sleep/spawn/every/now/env/log and the runtime's private helpers.
 *
 * Misuse (wrong argument types) raises a Lua error naming the function; a wait that cannot
 * complete returns nil, "ECODE: message". */
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "lib.h"
#include "lib_opts.h"
#include "log.h"
#include "strutil.h"
#include "watchdog.h"

/* Functions registered with the state's vm and the host as upvalues 1 and 2. */
static vm_t *upvalue_vm(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

static lib_host_t *upvalue_host(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(2));
}

/* ---- chatgw.sleep ---- */

static int l_sleep(lua_State *L) {
  if (lua_type(L, 1) != LUA_TNUMBER)
    return luaL_error(L, "chatgw.sleep: ms must be a number, got %s", luaL_typename(L, 1));
  double ms = lua_tonumber(L, 1);
  if (!(ms >= 0) || ms > 1e12) return luaL_error(L, "chatgw.sleep: ms must be >= 0");
  co_t *co = vm_check_yieldable(L, "chatgw.sleep");
  return vm_wait_timer(L, co, (uint64_t)ceil(ms));
}

/* ---- chatgw.spawn / chatgw.every ---- */

static void spawn_done(co_t *co, int ok, void *ud) {
  (void)ud;
  if (!ok) {
    log_field_t f[] = {{"error", lua_tostring(vm_co_thread(co), -1), 0}};
    log_write(LOG_ERROR, "chatgw.spawn: task failed", f, 1);
  }
}

static int spawn_kind(lua_State *L, co_kind_t kind, const char *fname) {
  vm_t *vm = upvalue_vm(L);
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return luaL_error(L, "%s: fn must be a function, got %s", fname, luaL_typename(L, 1));
  if (vm_is_retired(vm)) {
    lua_pushnil(L);
    lua_pushliteral(L, "cancelled: reload");
    return 2;
  }
  int nargs = lua_gettop(L) - 1;
  char label[WATCHDOG_LABEL_MAX] = "";
  lua_Debug ar;
  lua_pushvalue(L, 1);
  if (lua_getinfo(L, ">S", &ar))
    snprintf(label, sizeof label, "%s (%s:%d)", fname, ar.short_src, ar.linedefined);
  lua_State *M = vm_state(vm);
  /* Copy fn and its arguments to the state's main thread, which owns new coroutines. */
  if (L != M) {
    lua_xmove(L, M, nargs + 1);
  } else {
    lua_checkstack(M, nargs + 1);
    for (int i = 1; i <= nargs + 1; i++)
      lua_pushvalue(M, i);
  }
  co_t *co = vm_spawn_deferred(vm, kind, nargs, spawn_done, NULL);
  if (!co) return luaL_error(L, "%s: out of memory", fname);
  vm_co_set_label(co, label);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_spawn(lua_State *L) {
  return spawn_kind(L, CO_BACKGROUND, "chatgw.spawn");
}

/* chatgw._spawn_task(fn, ...): like spawn, but a reload does not cancel it (it finishes on its
 * state, as a request does). For the runtime's own work that must not stop half way. */
static int l_spawn_task(lua_State *L) {
  return spawn_kind(L, CO_TASK, "chatgw._spawn_task");
}

#define EVERY_MT "chatgw.every"

typedef struct {
  vm_t *vm;
  int id;
} every_handle_t;

static int l_every(lua_State *L) {
  vm_t *vm = upvalue_vm(L);
  if (lua_type(L, 1) != LUA_TNUMBER)
    return luaL_error(L, "chatgw.every: ms must be a number, got %s", luaL_typename(L, 1));
  double ms = lua_tonumber(L, 1);
  if (!(ms >= 1) || ms > 1e12) return luaL_error(L, "chatgw.every: ms must be >= 1");
  if (lua_type(L, 2) != LUA_TFUNCTION)
    return luaL_error(L, "chatgw.every: fn must be a function, got %s", luaL_typename(L, 2));
  if (vm_is_retired(vm)) {
    lua_pushnil(L);
    lua_pushliteral(L, "cancelled: reload");
    return 2;
  }
  int id = vm_every_start(L, vm, (uint64_t)ms, 2);
  every_handle_t *h = lua_newuserdata(L, sizeof *h);
  h->vm = vm;
  h->id = id;
  luaL_getmetatable(L, EVERY_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_every_cancel(lua_State *L) {
  every_handle_t *h = luaL_checkudata(L, 1, EVERY_MT);
  /* The handle lives in the same state as its timer, so h->vm is alive here. */
  lua_pushboolean(L, vm_every_cancel(h->vm, h->id));
  return 1;
}

/* ---- time, env ---- */

static int l_now(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e6);
  return 1;
}

static int l_time(lua_State *L) {
  lua_pushnumber(L, clock_wall_s());
  return 1;
}

static int l_env_index(lua_State *L) {
  const char *name = lua_tostring(L, 2);
  const char *v = name ? getenv(name) : NULL;
  if (v)
    lua_pushstring(L, v);
  else
    lua_pushnil(L);
  return 1;
}

static int l_env_call(lua_State *L) {
  if (lua_type(L, 2) != LUA_TSTRING)
    return luaL_error(L, "chatgw.env: name must be a string, got %s", luaL_typename(L, 2));
  const char *v = getenv(lua_tostring(L, 2));
  if (v && *v)
    lua_pushstring(L, v);
  else
    lua_pushvalue(L, 3);
  return 1;
}

extern char **environ;

/* chatgw._env_names(prefix) -> the names of the environment variables starting with prefix,
 * sorted (the boot check of unknown CHAT_GATEWAY_* names; values are never read here). */
static int l_env_names(lua_State *L) {
  size_t plen;
  const char *prefix = luaL_checklstring(L, 1, &plen);
  lua_newtable(L);
  int n = 0;
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq || strncmp(*e, prefix, plen) != 0) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

static int l_env_newindex(lua_State *L) {
  return luaL_error(L, "chatgw.env: is read-only");
}

/* ---- logging ---- */

/* Renders a field value: numbers and booleans raw, tables as JSON (via chatgw.json). */
static const char *field_value(lua_State *L, int idx, int *raw) {
  int t = lua_type(L, idx);
  *raw = 0;
  if (t == LUA_TNUMBER) {
    double d = lua_tonumber(L, idx);
    if (isfinite(d)) *raw = 1;
    lua_pushfstring(L, "%s", lua_tostring(L, idx)); /* a copy: tostring converts in place */
    return lua_tostring(L, -1);
  }
  if (t == LUA_TBOOLEAN) {
    *raw = 1;
    lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
    return lua_tostring(L, -1);
  }
  if (t == LUA_TTABLE) {
    lua_getglobal(L, "chatgw");
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "json");
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "encode");
        lua_pushvalue(L, idx);
        if (lua_pcall(L, 1, 1, 0) == 0 && lua_isstring(L, -1)) {
          lua_replace(L, -3);
          lua_pop(L, 1);
          *raw = 1;
          return lua_tostring(L, -1);
        }
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (t == LUA_TSTRING) {
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);
  }
  lua_getglobal(L, "tostring");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  return lua_tostring(L, -1);
}

#define MAX_LOG_FIELDS 32

static int l_log(lua_State *L) {
  log_level_t level = (log_level_t)lua_tointeger(L, lua_upvalueindex(1));
  const char *fname = lua_tostring(L, lua_upvalueindex(2));
  if (!log_enabled(level)) return 0;
  if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER)
    return luaL_error(L, "%s: msg must be a string, got %s", fname, luaL_typename(L, 1));
  if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2))
    return luaL_error(L, "%s: fields must be a table, got %s", fname, luaL_typename(L, 2));
  log_field_t f[MAX_LOG_FIELDS];
  int raw[MAX_LOG_FIELDS];
  size_t n = 0;
  if (lua_istable(L, 2)) {
    /* Render into a scratch table so the strings stay alive until the line is written. */
    lua_settop(L, 2);
    lua_newtable(L); /* 3: key1, value1, key2, value2, ... */
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
      if (n < MAX_LOG_FIELDS && lua_type(L, -2) == LUA_TSTRING) {
        lua_pushvalue(L, -2);
        lua_rawseti(L, 3, (int)(2 * n + 1));
        field_value(L, lua_gettop(L), &raw[n]);
        lua_rawseti(L, 3, (int)(2 * n + 2));
        n++;
      }
      lua_pop(L, 1);
    }
    for (size_t i = 0; i < n; i++) {
      lua_rawgeti(L, 3, (int)(2 * i + 1));
      lua_rawgeti(L, 3, (int)(2 * i + 2));
      f[i] = (log_field_t){lua_tostring(L, -2), lua_tostring(L, -1), raw[i]};
      lua_pop(L, 2); /* the strings are still referenced by the scratch table */
    }
  }
  log_write(level, lua_tostring(L, 1), f, n);
  return 0;
}

static void register_log(lua_State *L, int t) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  lua_newtable(L);
  for (int i = 0; i <= LOG_ERROR; i++) {
    lua_pushinteger(L, i);
    lua_pushfstring(L, "chatgw.log.%s", names[i]);
    lua_pushcclosure(L, l_log, 2);
    lua_setfield(L, -2, names[i]);
  }
  lua_setfield(L, t, "log");
}

/* ---- runtime private helpers (used by lua/chatgw) ---- */

/* chatgw._auth(authorization_header) -> boolean. The comparison takes the same time
 * whatever the header holds (only its length, which the client chose, shows). */
/* chatgw._data_dir() -> the data directory in use, or nil before the settings are read. */
static int l_data_dir(lua_State *L) {
  const lib_host_t *host = lua_touserdata(L, lua_upvalueindex(1));
  if (!host->data_dir || !host->data_dir[0]) return 0;
  lua_pushstring(L, host->data_dir);
  return 1;
}

static int l_auth(lua_State *L) {
  const lib_host_t *host = lua_touserdata(L, lua_upvalueindex(1));
  size_t len = 0, gl = 0;
  const char *h = lua_tolstring(L, 1, &len), *given = NULL;
  lua_pushboolean(L, host->token_len && str_bearer(h, len, &given, &gl) &&
                         str_ct_equal(given, gl, host->token, host->token_len));
  return 1;
}

/* ---- FFI hot paths (lua/chatgw/cffi.lua): C functions the runtime's Lua layer calls through
 * ffi.cast function pointers, with no exported symbol. They check their arguments (a NULL or
 * an empty string is answered, never read), and handlers cannot reach them (no raw ffi). ---- */

void lib_ffi_table(lua_State *L, int t) {
  lua_getfield(L, t, "_ffi");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, t, "_ffi");
  }
}

void lib_ffi_set(lua_State *L, int t, const char *name, void *p) {
  lib_ffi_table(L, t);
  lua_pushlightuserdata(L, p);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* The gateway token's bearer check, as chatgw._auth: 1 when header (len bytes) carries it. */
static int ffi_auth(const lib_host_t *host, const char *h, size_t len) {
  const char *given = NULL;
  size_t gl = 0;
  if (!host || !h) return 0;
  return host->token_len && str_bearer(h, len, &given, &gl) &&
         str_ct_equal(given, gl, host->token, host->token_len);
}

/* chatgw._co_label's work: what (and file, may be NULL) label the running coroutine. */
static void ffi_co_label(const char *what, const char *file) {
  co_t *co = vm_current();
  if (!co || !what) return;
  if (file) {
    char f[WATCHDOG_LABEL_MAX];
    size_t l = strlen(file);
    if (l > sizeof f - 2) l = sizeof f - 2;
    memcpy(f, file, l);
    f[l] = ')';
    f[l + 1] = 0;
    vm_co_set_label3(co, what, " (", f);
  } else {
    vm_co_set_label3(co, what, NULL, NULL);
  }
}

/* The plain /health's view of the reload and TLS checks: bit 1 when the last reload failed, bit 2
 * when a TLS listener's last certificate load failed (then the checks ask _runtime_info for the
 * details). */
static int ffi_health_flags(const lib_host_t *host) {
  if (!host) return 0;
  int flags = 0;
  if (host->reloads.count && !host->reloads.last_ok) flags |= 1;
  tls_info_t ti;
  const char *lname = NULL;
  for (int i = 0; host->http && http_server_tls_info(host->http, i, &lname, &ti) == 0; i++)
    if (ti.last_error && ti.last_error[0]) flags |= 2;
  return flags;
}

static double ffi_time(void) {
  return clock_wall_s();
}

static double ffi_now(void) {
  return (double)uv_hrtime() / 1e6;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* chatgw._listdir(dir) -> sorted array of "*.lua" names, or nil, err. */
static int l_listdir(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  DIR *d = opendir(dir);
  if (!d) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", dir, strerror(errno));
    return 2;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l < 5 || e->d_name[0] == '.' || strcmp(e->d_name + l - 4, ".lua") != 0) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      char **nn = realloc(names, cap * sizeof *names);
      if (!nn) break;
      names = nn;
    }
    names[n] = strdup(e->d_name);
    if (names[n]) n++;
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, cmp_str);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, (int)i + 1);
    free(names[i]);
  }
  free(names);
  return 1;
}

static void push_reloads(lua_State *L, const lib_reload_stats_t *r) {
  lua_newtable(L);
  lib_set_num(L, "count", (double)r->count);
  lib_set_num(L, "ok", (double)r->ok);
  lib_set_num(L, "failed", (double)r->failed);
  if (r->count) {
    lib_set_num(L, "last_time", r->last_time);
    lua_pushstring(L, r->last_ok ? "ok" : "failed");
    lua_setfield(L, -2, "last_result");
  }
  if (r->last_error[0]) {
    lua_pushstring(L, r->last_error);
    lua_setfield(L, -2, "last_error");
  }
}

static void set_tls(lua_State *L, const lib_host_t *host);

/* chatgw._runtime_info() -> table for /health?verbose=1; chatgw._runtime_info("reloads") and
 * ("tls") -> only that part (nil: no TLS listener), for the plain /health's checks. */
static int l_runtime_info(lua_State *L) {
  vm_t *vm = upvalue_vm(L);
  const lib_host_t *host = upvalue_host(L);
  const lib_reload_stats_t *r = &host->reloads;
  const char *part = lua_tostring(L, 1);
  if (part && strcmp(part, "reloads") == 0) {
    push_reloads(L, r);
    return 1;
  }
  lua_newtable(L);
  if (part && strcmp(part, "tls") == 0) {
    set_tls(L, host);
    lua_getfield(L, -1, "tls");
    return 1;
  }
  lua_pushstring(L, CHATGW_VERSION);
  lua_setfield(L, -2, "version");
  lib_set_num(L, "uptime_s", (double)(uv_now(host->loop) - host->started_ms) / 1000.0);
  lib_set_num(L, "started_at", host->started_wall);
  lib_set_num(L, "pid", (double)getpid());
  lib_set_num(L, "generation", (double)vm_generation(vm));
  lib_set_num(L, "lua_states", (double)vm_live_count());
  lib_set_num(L, "connections", host->http ? (double)http_server_connection_count(host->http) : 0);
  lib_set_num(L, "inflight", host->http ? (double)http_server_inflight(host->http) : 0);
  const lib_process_info_t *pi = &host->process;
  lua_newtable(L);
  if (pi->master_pid) lib_set_num(L, "master_pid", (double)pi->master_pid);
  lib_set_num(L, "worker_pid", (double)getpid());
  lib_set_num(L, "worker_restarts", (double)pi->worker_restarts);
  if (pi->last_valid) {
    lua_newtable(L);
    if (pi->last_signal[0]) {
      lua_pushstring(L, pi->last_signal);
      lua_setfield(L, -2, "signal");
    } else {
      lib_set_num(L, "code", (double)pi->last_code);
    }
    lua_pushstring(L, pi->last_cause);
    lua_setfield(L, -2, "cause");
    lib_set_num(L, "at", pi->last_at);
    lib_set_num(L, "pid", (double)pi->last_pid);
    lib_set_num(L, "ran_s", pi->last_ran_s);
    lua_setfield(L, -2, "last_worker_exit");
  }
  lua_setfield(L, -2, "process");
  push_reloads(L, r);
  lua_setfield(L, -2, "reloads");
  set_tls(L, host);
  return 1;
}

/* t.tls (t at the top): listener -> its certificate (only TLS listeners; none without one) */
static void set_tls(lua_State *L, const lib_host_t *host) {
  tls_info_t ti;
  const char *lname = NULL;
  for (int i = 0; host->http && http_server_tls_info(host->http, i, &lname, &ti) == 0; i++) {
    if (i == 0) {
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, "tls");
    }
    lua_newtable(L);
    lua_pushstring(L, ti.cert);
    lua_setfield(L, -2, "cert");
    lua_pushstring(L, ti.key);
    lua_setfield(L, -2, "key");
    lua_pushstring(L, ti.subject);
    lua_setfield(L, -2, "subject");
    lua_pushstring(L, ti.issuer);
    lua_setfield(L, -2, "issuer");
    lua_pushstring(L, ti.serial);
    lua_setfield(L, -2, "serial");
    lib_set_num(L, "not_before", ti.not_before);
    lib_set_num(L, "not_after", ti.not_after);
    lib_set_num(L, "loaded_at", ti.loaded_at);
    lib_set_num(L, "loads", (double)ti.loads);
    lib_set_num(L, "failures", (double)ti.failures);
    if (ti.last_error && ti.last_error[0]) {
      lua_pushstring(L, ti.last_error);
      lua_setfield(L, -2, "last_error");
      lib_set_num(L, "last_error_at", ti.last_error_at);
    }
    lua_setfield(L, -2, lname);
  }
  if (host->http && lname) lua_pop(L, 1);
}

/* chatgw._tls_check(listener, cert, key) -> nil | "why" (chatgw check: the files a TLS listener
 * would load at start, loaded the same way and dropped) */
static int l_tls_check(lua_State *L) {
  char err[1024];
  tls_ctx_t *t = tls_ctx_new(luaL_checkstring(L, 1), luaL_checkstring(L, 2), luaL_checkstring(L, 3),
                             err, sizeof err);
  if (t) {
    tls_ctx_free(t);
    return 0;
  }
  lua_pushstring(L, err);
  return 1;
}

static int l_stopping(lua_State *L) {
  lua_pushboolean(L, upvalue_host(L)->stopping);
  return 1;
}

/* chatgw._co_label(what[, file]): what the running coroutine does, for the watchdog's ERROR
 * and error ("GET /spin (handlers/w.lua)"). Once per request: one snprintf. */
static int l_co_label(lua_State *L) {
  co_t *co = vm_current();
  const char *what = luaL_checkstring(L, 1);
  const char *file = lua_tostring(L, 2);
  if (!co) return 0;
  char label[WATCHDOG_LABEL_MAX];
  if (file)
    snprintf(label, sizeof label, "%s (%s)", what, file);
  else
    snprintf(label, sizeof label, "%s", what);
  vm_co_set_label(co, label);
  return 0;
}

/* chatgw._watchdog(stall_ms, abort_ms): the config's watchdog section, applied as soon as the
 * config is read (so that the handler files loading next are watched with it). */
static int l_watchdog(lua_State *L) {
  watchdog_settings_t s;
  s.stall_ms = (uint64_t)luaL_checknumber(L, 1);
  s.abort_ms = (uint64_t)luaL_checknumber(L, 2);
  if (s.stall_ms < 1) s.stall_ms = 1;
  if (s.abort_ms && s.abort_ms < s.stall_ms) s.abort_ms = s.stall_ms;
  watchdog_configure(&s);
  return 0;
}

/* chatgw._memory_cap(mb): lua.max_memory_mb for this state (0: none). */
static int l_memory_cap(lua_State *L) {
  double mb = luaL_checknumber(L, 1);
  vm_set_memory_cap(upvalue_vm(L), mb > 0 ? (size_t)(mb * 1024 * 1024) : 0);
  return 0;
}

static int l_is_retired(lua_State *L) {
  lua_pushboolean(L, vm_is_retired(upvalue_vm(L)));
  return 1;
}

void lib_core_register(lua_State *L, int t, vm_t *vm, lib_host_t *host) {
  static const luaL_Reg with_vm[] = {{"spawn", l_spawn},
                                     {"_spawn_task", l_spawn_task},
                                     {"every", l_every},
                                     {"_runtime_info", l_runtime_info},
                                     {"_is_retired", l_is_retired},
                                     {"_memory_cap", l_memory_cap},
                                     {"_stopping", l_stopping},
                                     {"_tls_check", l_tls_check},
                                     {NULL, NULL}};
  for (const luaL_Reg *r = with_vm; r->name; r++) {
    lua_pushlightuserdata(L, vm);
    lua_pushlightuserdata(L, host);
    lua_pushcclosure(L, r->func, 2);
    lua_setfield(L, t, r->name);
  }
  lib_ffi_set(L, t, "host", host);
  lib_ffi_set(L, t, "auth", (void *)ffi_auth);
  lib_ffi_set(L, t, "co_label", (void *)ffi_co_label);
  lib_ffi_set(L, t, "health_flags", (void *)ffi_health_flags);
  lib_ffi_set(L, t, "time", (void *)ffi_time);
  lib_ffi_set(L, t, "now", (void *)ffi_now);
  lua_pushlightuserdata(L, host); /* the bearer check of every request: one upvalue */
  lua_pushcclosure(L, l_auth, 1);
  lua_setfield(L, t, "_auth");
  static const luaL_Reg plain[] = {{"sleep", l_sleep},
                                   {"now", l_now},
                                   {"time", l_time},
                                   {"_listdir", l_listdir},
                                   {"_env_names", l_env_names},
                                   {"_co_label", l_co_label},
                                   {"_watchdog", l_watchdog},
                                   {NULL, NULL}};
  for (const luaL_Reg *r = plain; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, t, r->name);
  }
  lua_pushstring(L, CHATGW_VERSION);
  lua_setfield(L, t, "version");
  lua_pushstring(L, host->mode ? host->mode : "run");
  lua_setfield(L, t, "_mode");
  lua_pushlightuserdata(L, host); /* the data directory in use (chatgw test: its temporary one) */
  lua_pushcclosure(L, l_data_dir, 1);
  lua_setfield(L, t, "_data_dir");
  lua_pushlightuserdata(L, vm_yield_marker());
  lua_setfield(L, t, "_yield_marker");

  luaL_newmetatable(L, EVERY_MT);
  lua_newtable(L);
  lua_pushcfunction(L, l_every_cancel);
  lua_setfield(L, -2, "cancel");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_newtable(L); /* chatgw.env */
  lua_newtable(L);
  lua_pushcfunction(L, l_env_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_env_call);
  lua_setfield(L, -2, "__call");
  lua_pushcfunction(L, l_env_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_setmetatable(L, -2);
  lua_setfield(L, t, "env");

  register_log(L, t);
}
