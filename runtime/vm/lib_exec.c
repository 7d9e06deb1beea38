/* lib_exec.c - Lua bindings for subprocesses and locks:
 *   chatgw._exec(opts, limits)   the C half of chatgw.exec (lua/chatgw/exec.lua resolves the
 *                                per-module limits and calls this)
 *   chatgw.lock(name)            advisory lock held for the life of the process
 *   chatgw._exec_stats(), chatgw._locks(), chatgw._co_self(), chatgw._co_cancel(co, reason)
 *                                private helpers of lua/chatgw/supervisor.lua and health
 *
 * Misuse raises an error naming the function; failures return nil, "ECODE: message". */
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "lib.h"
#include "lib_opts.h"
#include "lock.h"
#include "vm.h"

#define EXEC_MAX_ARGS 4096

typedef struct {
  pending_t base;
  exec_job_t *job;
} exec_wait_t;

static void wait_cancel(pending_t *p) {
  exec_wait_t *w = (exec_wait_t *)p;
  exec_abandon(w->job);
  free(w);
}

static const char *signal_name(int sig, char *buf, size_t len) {
  const char *abbrev = sigabbrev_np(sig);
  if (abbrev)
    snprintf(buf, len, "SIG%s", abbrev);
  else
    snprintf(buf, len, "%d", sig);
  return buf;
}

static void on_done(const exec_result_t *r, void *ud) {
  exec_wait_t *w = ud;
  co_t *co = w->base.co;
  free(w);
  vm_wait_done(co);
  lua_State *T = vm_co_thread(co);
  if (r->kind != EXEC_RESULT_EXITED) {
    lua_pushnil(T);
    lua_pushstring(T, r->message);
    vm_resume(co, 2);
    return;
  }
  lua_createtable(T, 0, 7);
  if (r->term_signal) {
    char name[32];
    lib_set_num(T, "code", 128 + r->term_signal);
    lua_pushstring(T, signal_name(r->term_signal, name, sizeof name));
    lua_setfield(T, -2, "signal");
  } else {
    lib_set_num(T, "code", (double)r->exit_status);
  }
  lua_pushlstring(T, r->out, r->out_len);
  lua_setfield(T, -2, "stdout");
  lua_pushlstring(T, r->err, r->err_len);
  lua_setfield(T, -2, "stderr");
  lua_pushboolean(T, r->truncated);
  lua_setfield(T, -2, "truncated");
  lib_set_num(T, "wait_ms", r->wait_ms);
  lib_set_num(T, "duration_ms", r->run_ms);
  vm_resume(co, 1);
}

/* Reads limits[field], a non-negative integer that lua/chatgw/limits.lua resolved (with its
 * documented default) and checked: nothing is defaulted here. */
static uint64_t lim_field(lua_State *L, int idx, const char *field) {
  lua_getfield(L, idx, field);
  if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0))
    luaL_error(L, "chatgw.exec: internal: limits.%s missing", field);
  uint64_t v = (uint64_t)lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int valid_env_name(const char *s, size_t len) {
  if (len == 0 || len > 255) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
             (i > 0 && c >= '0' && c <= '9');
    if (!ok) return 0;
  }
  return 1;
}

static const char *const OPTION_NAMES[] = {"argv", "module", "timeout_ms", "cwd",
                                           "env",  "stdin",  "max_output", NULL};

/* chatgw._exec(opts, limits) -> result table | nil, err */
static int l_exec(lua_State *L) {
  if (!lua_istable(L, 1))
    return luaL_error(L, "chatgw.exec: expected a table like {argv = {...}}, got %s",
                      luaL_typename(L, 1));
  if (!lua_istable(L, 2)) return luaL_error(L, "chatgw.exec: internal: limits table missing");
  lua_settop(L, 2);
  lib_opts_check(L, 1, "chatgw.exec", OPTION_NAMES);

  /* 3: argv */
  lua_getfield(L, 1, "argv");
  size_t argc = lua_istable(L, 3) ? lua_objlen(L, 3) : 0;
  if (argc < 1 || argc > EXEC_MAX_ARGS)
    return luaL_error(L, "chatgw.exec: argv must be a non-empty array of strings (at most %d)",
                      EXEC_MAX_ARGS);
  for (size_t i = 1; i <= argc; i++) {
    lua_rawgeti(L, 3, (int)i);
    size_t len;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    if (!s) return luaL_error(L, "chatgw.exec: argv must be a non-empty array of strings");
    if (strlen(s) != len || (i == 1 && len == 0))
      return luaL_error(L, "chatgw.exec: argv[%d] must not %s", (int)i,
                        len ? "contain NUL bytes" : "be empty");
    lua_pop(L, 1);
  }

  /* 4: cwd */
  lua_getfield(L, 1, "cwd");
  if (!lua_isnil(L, 4) && lua_type(L, 4) != LUA_TSTRING)
    return luaL_error(L, "chatgw.exec: cwd must be a string, got %s", luaL_typename(L, 4));

  /* 5: stdin */
  lua_getfield(L, 1, "stdin");
  if (!lua_isnil(L, 5) && lua_type(L, 5) != LUA_TSTRING)
    return luaL_error(L, "chatgw.exec: stdin must be a string, got %s", luaL_typename(L, 5));

  /* 6: timeout_ms, 7: max_output */
  lua_getfield(L, 1, "timeout_ms");
  if (!lua_isnil(L, 6) &&
      (lua_type(L, 6) != LUA_TNUMBER || !(lua_tonumber(L, 6) >= 1) || lua_tonumber(L, 6) > 1e10))
    return luaL_error(L, "chatgw.exec: timeout_ms must be a number >= 1");
  lua_getfield(L, 1, "max_output");
  if (!lua_isnil(L, 7) && (lua_type(L, 7) != LUA_TNUMBER || !(lua_tonumber(L, 7) >= 0) ||
                           lua_tonumber(L, 7) > 1073741824.0))
    return luaL_error(L, "chatgw.exec: max_output must be a number of bytes 0..1073741824");

  /* 8: env; 9: a table anchoring the "NAME=value" strings built from it */
  lua_getfield(L, 1, "env");
  if (!lua_isnil(L, 8) && !lua_istable(L, 8))
    return luaL_error(L, "chatgw.exec: env must be a table of NAME = string|false, got %s",
                      luaL_typename(L, 8));
  lua_newtable(L);
  int nset = 0, nunset = 0;
  if (lua_istable(L, 8)) {
    lua_pushnil(L);
    while (lua_next(L, 8) != 0) {
      size_t klen = 0, vlen = 0;
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
      if (!k || !valid_env_name(k, klen))
        return luaL_error(L, "chatgw.exec: env names must match [A-Za-z_][A-Za-z0-9_]*");
      int t = lua_type(L, -1);
      if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
        lua_pushvalue(L, -2);
        lua_rawseti(L, 9, -(++nunset)); /* removals at negative indexes */
      } else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        lua_pushvalue(L, -1);
        const char *v = lua_tolstring(L, -1, &vlen); /* a copy: numbers convert in place */
        if (strlen(v) != vlen)
          return luaL_error(L, "chatgw.exec: env value of %s must not contain NUL bytes", k);
        lua_pushfstring(L, "%s=%s", k, v);
        lua_rawseti(L, 9, ++nset);
        lua_pop(L, 1);
      } else {
        return luaL_error(L, "chatgw.exec: env.%s must be a string, a number or false, got %s", k,
                          lua_typename(L, t));
      }
      lua_pop(L, 1);
    }
  }

  co_t *co = vm_check_yieldable(L, "chatgw.exec");

  /* Everything is checked: nothing below raises, so the C arrays cannot leak. */
  const char **argv = lua_newuserdata(L, (argc + 1) * sizeof *argv);
  for (size_t i = 1; i <= argc; i++) {
    lua_rawgeti(L, 3, (int)i);
    argv[i - 1] = lua_tostring(L, -1); /* kept alive by the argv table */
    lua_pop(L, 1);
  }
  argv[argc] = NULL;
  const char **env_set = lua_newuserdata(L, ((size_t)nset + 1) * sizeof *env_set);
  const char **env_unset = lua_newuserdata(L, ((size_t)nunset + 1) * sizeof *env_unset);
  for (int i = 1; i <= nset; i++) {
    lua_rawgeti(L, 9, i);
    env_set[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  env_set[nset] = NULL;
  for (int i = 1; i <= nunset; i++) {
    lua_rawgeti(L, 9, -i);
    env_unset[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  env_unset[nunset] = NULL;

  exec_limits_t lim;
  lim.max_global = (uint32_t)lim_field(L, 2, "max_global");
  lim.queue_max = (uint32_t)lim_field(L, 2, "queue_max");
  lim.warn_queue = (uint32_t)lim_field(L, 2, "warn_queue");
  lim.warn_wait_ms = lim_field(L, 2, "warn_wait_ms");
  lim.log_interval_ms = lim_field(L, 2, "log_interval_ms");
  lim.kill_grace_ms = lim_field(L, 2, "kill_grace_ms");
  uint64_t output_max = lim_field(L, 2, "output_max_bytes");
  uint64_t timeout_max = lim_field(L, 2, "timeout_ms");
  uint32_t module_max = (uint32_t)lim_field(L, 2, "max");
  exec_set_limits(&lim);

  lua_getfield(L, 2, "module");
  const char *module = lua_tostring(L, -1);
  exec_request_t req;
  memset(&req, 0, sizeof req);
  req.argv = argv;
  req.cwd = lua_tostring(L, 4);
  req.env_set = env_set;
  req.env_unset = env_unset;
  if (lua_type(L, 5) == LUA_TSTRING) {
    req.has_stdin = 1;
    req.stdin_data = lua_tolstring(L, 5, &req.stdin_len);
  }
  req.max_output = lua_isnil(L, 7) ? (size_t)output_max : (size_t)lua_tonumber(L, 7);
  req.timeout_ms = lua_isnil(L, 6) ? timeout_max : (uint64_t)lua_tonumber(L, 6);
  req.module = module && *module ? module : "default";
  req.module_max = module_max;

  exec_wait_t *w = calloc(1, sizeof *w);
  if (!w) return luaL_error(L, "chatgw.exec: out of memory");
  char err[512];
  exec_job_t *job = exec_submit(&req, on_done, w, err, sizeof err);
  if (!job) {
    free(w);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  w->job = job;
  w->base.cancel = wait_cancel;
  return vm_wait(L, co, &w->base);
}

/* chatgw._exec_stats() -> {inflight, queued} */
static int l_exec_stats(lua_State *L) {
  exec_stats_t s;
  exec_stats(&s);
  lua_createtable(L, 0, 2);
  lib_set_num(L, "inflight", (double)s.inflight);
  lib_set_num(L, "queued", (double)s.queued);
  return 1;
}

/* ---- locks ---- */

/* chatgw.lock(name) -> true | false, "held: ..." | nil, "lock: ..." */
static int l_lock(lua_State *L) {
  vm_t *vm = lua_touserdata(L, lua_upvalueindex(1));
  const lib_host_t *host = lua_touserdata(L, lua_upvalueindex(2));
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L, "chatgw.lock: name must be a string, got %s", luaL_typename(L, 1));
  const char *name = lua_tostring(L, 1);
  if (!lock_name_valid(name))
    return luaL_error(L, "chatgw.lock: name must match [a-z0-9_-]+ (1..%d characters), got '%s'",
                      LOCK_NAME_MAX, name);
  if (!vm_is_active(vm) || host->check_only)
    return luaL_error(L, "chatgw.lock: not available while handlers load (call it from a "
                         "running task, or use supervise{lock = ...})");
  char err[1400];
  long holder = 0;
  int rc = lock_acquire(host->data_dir, name, &holder, err, sizeof err);
  if (rc == 1) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc == 0) {
    lua_pushboolean(L, 0);
    if (holder > 0)
      lua_pushfstring(L, "held: lock '%s' is held by another process (pid %d)", name, (int)holder);
    else
      lua_pushfstring(L, "held: lock '%s' is held by another process", name);
    return 2;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "lock: %s", err);
  return 2;
}

/* chatgw._locks() -> array of the names this process holds */
static int l_locks(lua_State *L) {
  const char *names[256];
  size_t n = lock_list(names, sizeof names / sizeof names[0]);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 1;
}

/* ---- coroutine helpers for the supervisor ---- */

/* chatgw._co_self() -> the running coroutine's id (a number), or nil */
static int l_co_self(lua_State *L) {
  co_t *co = vm_current();
  if (co)
    lua_pushnumber(L, (lua_Number)vm_co_id(co));
  else
    lua_pushnil(L);
  return 1;
}

/* chatgw._co_cancel(handle, reason) -> true if that coroutine was still running here */
static int l_co_cancel(lua_State *L) {
  vm_t *vm = lua_touserdata(L, lua_upvalueindex(1));
  if (lua_type(L, 1) != LUA_TNUMBER)
    return luaL_error(L, "chatgw._co_cancel: handle must come from chatgw._co_self()");
  const char *reason = luaL_optstring(L, 2, "stopped");
  lua_pushboolean(L, vm_cancel_id(vm, (uint64_t)lua_tonumber(L, 1), reason));
  return 1;
}

void lib_exec_register(lua_State *L, int t, vm_t *vm, lib_host_t *host) {
  if (t < 0 && t > LUA_REGISTRYINDEX) t = lua_gettop(L) + t + 1;
  static const luaL_Reg with_vm[] = {{"lock", l_lock}, {"_co_cancel", l_co_cancel}, {NULL, NULL}};
  for (const luaL_Reg *r = with_vm; r->name; r++) {
    lua_pushlightuserdata(L, vm);
    lua_pushlightuserdata(L, host);
    lua_pushcclosure(L, r->func, 2);
    lua_setfield(L, t, r->name);
  }
  static const luaL_Reg plain[] = {{"_exec", l_exec},
                                   {"_exec_stats", l_exec_stats},
                                   {"_locks", l_locks},
                                   {"_co_self", l_co_self},
                                   {NULL, NULL}};
  for (const luaL_Reg *r = plain; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, t, r->name);
  }
}
