/* lib_store.c - chatgw._db: the C primitives under chatgw.db (lua/chatgw/db.lua wraps them).
 *
 *   _db.exec(tx, sql, ...)    -> changes, last_id | nil, "db: ..." | nil, "busy: ..."
 *   _db.query(tx, sql, ...)   -> rows (array of {column = value}) | nil, err
 *   _db.write_query(tx, sql, ...) -> rows, on the writer (a write with RETURNING)
 *   _db.script(tx, sql)       -> true | nil, err   (several statements, no parameters)
 *   _db.tx_begin()            -> tx id (once the writer is reserved) | nil, err
 *   _db.tx_end(tx, commit)    -> true | nil, err   (a rollback does not wait)
 *   _db.restrict(on)          mark the running coroutine as inside a transaction
 *   _db.blob(bytes)           a value bound as a BLOB (strings bind as TEXT)
 *   _db.available()           -> boolean
 *
 * tx is nil outside a transaction. Parameters after sql are positional (`?`), or one table of
 * named ones (`:name`). Values: nil/cjson.null -> NULL, booleans -> 0/1, integral numbers ->
 * INTEGER, other numbers -> REAL, strings -> TEXT, blobs -> BLOB. Results: INTEGER as a number
 * (as a decimal string beyond 2^53, where a Lua number would lose digits), REAL, TEXT and BLOB
 * as strings, NULL as nil (absent from the row table). Every call waits (yields); the waits
 * of a transaction are the only ones allowed inside it. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib.h"
#include "lib_opts.h"
#include "store.h"
#include "vm.h"

#define BLOB_MT "chatgw.db.blob"
#define MAX_PARAMS 999

typedef struct {
  pending_t base;
  store_job_t *job;
  int kind;    /* what the result is turned into */
  uint64_t tx; /* RES_TX: the transaction begun */
} db_wait_t;

enum { RES_EXEC, RES_QUERY, RES_OK, RES_TX };

static const char TX_RESTRICTION[] =
    "chatgw.db.tx: cannot wait here: inside a transaction only the database may be waited on "
    "(make the HTTP call, sleep or exec before or after chatgw.db.tx)";

static store_t *host_store(lua_State *L, const char *fn) {
  const lib_host_t *host = lua_touserdata(L, lua_upvalueindex(1));
  if (!host->store)
    luaL_error(L, "%s: the store is not open (it opens at start; not available in `chatgw check`)",
               fn);
  return host->store;
}

#define EXACT_INT 9007199254740992LL /* 2^53: integers a Lua number holds exactly */

static void push_value(lua_State *L, const store_value_t *v) {
  switch (v->type) {
  case STORE_INT:
    if (v->i > EXACT_INT || v->i < -EXACT_INT) {
      char buf[32];
      snprintf(buf, sizeof buf, "%lld", (long long)v->i);
      lua_pushstring(L, buf);
    } else {
      lua_pushnumber(L, (lua_Number)v->i);
    }
    break;
  case STORE_REAL:
    lua_pushnumber(L, v->r);
    break;
  case STORE_TEXT:
  case STORE_BLOB:
    lua_pushlstring(L, v->p, v->len);
    break;
  default:
    lua_pushnil(L);
  }
}

static void on_done(const store_result_t *r, void *ud) {
  db_wait_t *w = ud;
  co_t *co = w->base.co;
  int kind = w->kind;
  uint64_t tx = w->tx;
  free(w);
  vm_wait_done(co);
  lua_State *T = vm_co_thread(co);
  if (r->error) {
    lua_pushnil(T);
    lua_pushstring(T, r->error);
    vm_resume(co, 2);
    return;
  }
  switch (kind) {
  case RES_EXEC:
    lua_pushnumber(T, (lua_Number)r->changes);
    if (r->last_id) /* the rowid this statement inserted; nil when it inserted none */
      lua_pushnumber(T, (lua_Number)r->last_id);
    else
      lua_pushnil(T);
    vm_resume(co, 2);
    return;
  case RES_QUERY:
    lua_createtable(T, (int)r->nrows, 0);
    for (size_t i = 0; i < r->nrows; i++) {
      lua_createtable(T, 0, (int)r->ncols);
      for (size_t c = 0; c < r->ncols; c++) {
        const store_value_t *v = &r->rows[i * r->ncols + c];
        if (v->type == STORE_NULL) continue;
        push_value(T, v);
        lua_setfield(T, -2, r->cols[c]);
      }
      lua_rawseti(T, -2, (int)i + 1);
    }
    vm_resume(co, 1);
    return;
  case RES_TX:
    lua_pushnumber(T, (lua_Number)tx);
    vm_resume(co, 1);
    return;
  default:
    lua_pushboolean(T, 1);
    vm_resume(co, 1);
  }
}

static void wait_cancel(pending_t *p) {
  db_wait_t *w = (db_wait_t *)p;
  store_cancel(w->job); /* it still runs; its result is dropped */
  free(w);
}

/* Converts the Lua value at idx into v (strings stay owned by Lua until bound: bind copies). */
static void to_value(lua_State *L, int idx, const char *fn, int argn, store_value_t *v) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
  case LUA_TNONE:
    v->type = STORE_NULL;
    return;
  case LUA_TBOOLEAN:
    v->type = STORE_INT;
    v->i = lua_toboolean(L, idx);
    return;
  case LUA_TNUMBER: {
    double d = lua_tonumber(L, idx);
    if (d == floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
      v->type = STORE_INT;
      v->i = (int64_t)d;
    } else {
      v->type = STORE_REAL;
      v->r = d;
    }
    return;
  }
  case LUA_TSTRING:
    v->type = STORE_TEXT;
    v->p = lua_tolstring(L, idx, &v->len);
    return;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) { /* cjson.null */
      v->type = STORE_NULL;
      return;
    }
    break;
  case LUA_TUSERDATA: {
    size_t *b = luaL_testudata(L, idx, BLOB_MT);
    if (b) {
      v->type = STORE_BLOB;
      v->p = (const char *)(b + 1);
      v->len = *b;
      return;
    }
    break;
  }
  default:
    break;
  }
  luaL_error(
      L, "%s: parameter %d must be nil, a boolean, a number, a string or chatgw.db.blob(), got %s",
      fn, argn, luaL_typename(L, idx));
}

/* Builds the job for sql at index 2 with parameters from index 3 on. */
static store_job_t *build_job(lua_State *L, const char *fn, int script) {
  size_t len = 0;
  if (lua_type(L, 2) != LUA_TSTRING)
    luaL_error(L, "%s: sql must be a string, got %s", fn, luaL_typename(L, 2));
  const char *sql = lua_tolstring(L, 2, &len);
  int top = lua_gettop(L);
  if (script && top > 2) luaL_error(L, "%s: a script takes no parameters", fn);
  int named = top == 3 && lua_type(L, 3) == LUA_TTABLE;
  if (!named && top - 2 > MAX_PARAMS) luaL_error(L, "%s: at most %d parameters", fn, MAX_PARAMS);
  /* Check every value before allocating, so that raising leaks nothing. */
  store_value_t v;
  if (named) {
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_objlen(L, -2) == 0 || lua_objlen(L, -2) > 200)
        luaL_error(L, "%s: named parameters need string keys (the :name without its colon)", fn);
      to_value(L, -1, fn, 2, &v);
      lua_pop(L, 1);
    }
  } else {
    for (int i = 3; i <= top; i++)
      to_value(L, i, fn, i - 1, &v);
  }
  store_job_t *j = store_job_new(sql, len, script);
  if (!j) luaL_error(L, "%s: out of memory", fn);
  int bad = 0;
  if (named) {
    lua_pushnil(L);
    while (lua_next(L, 3) != 0) {
      to_value(L, -1, fn, 2, &v);
      bad |= store_job_bind(j, lua_tostring(L, -2), &v);
      lua_pop(L, 1);
    }
  } else {
    for (int i = 3; i <= top; i++) {
      to_value(L, i, fn, i - 1, &v);
      bad |= store_job_bind(j, NULL, &v);
    }
  }
  if (bad) {
    store_job_free(j);
    luaL_error(L, "%s: out of memory", fn);
  }
  return j;
}

static uint64_t check_tx(lua_State *L, const char *fn) {
  if (lua_isnil(L, 1)) return 0;
  if (lua_type(L, 1) != LUA_TNUMBER || !(lua_tonumber(L, 1) >= 1))
    luaL_error(L, "%s: bad transaction handle", fn);
  return (uint64_t)lua_tonumber(L, 1);
}

/* The coroutine to wait in: none while handlers load (the store may not be open yet, and a
 * load should not depend on data), and no plain call inside a transaction (it would wait for
 * the transaction, which waits for it). */
static co_t *check_caller(lua_State *L, const char *fn, uint64_t tx) {
  co_t *co = vm_check_yieldable(L, fn);
  if (vm_co_kind(co) == CO_LOAD)
    luaL_error(L,
               "%s: not available while handlers load (use it in a handler, a task or a "
               "migration)",
               fn);
  if (!tx && vm_co_restricted(co))
    luaL_error(L, "%s: inside chatgw.db.tx use the transaction's own tx:exec/tx:query", fn);
  return co;
}

static int submit_and_wait(lua_State *L, co_t *co, store_t *s, store_job_t *j, int write,
                           uint64_t tx, int kind) {
  db_wait_t *w = calloc(1, sizeof *w);
  if (!w) {
    store_job_free(j);
    return luaL_error(L, "chatgw.db: out of memory");
  }
  w->base.cancel = wait_cancel;
  w->base.restricted_ok = 1;
  w->job = j;
  w->kind = kind;
  char err[256];
  if (store_submit(s, j, write, tx, on_done, w, err, sizeof err) != 0) {
    free(w);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return vm_wait(L, co, &w->base);
}

static int run_stmt(lua_State *L, const char *fn, int write, int script, int kind) {
  uint64_t tx = check_tx(L, fn);
  co_t *co = check_caller(L, fn, tx);
  store_t *s = host_store(L, fn);
  store_job_t *j = build_job(L, fn, script);
  return submit_and_wait(L, co, s, j, write, tx, kind);
}

static int l_exec(lua_State *L) {
  return run_stmt(L, "chatgw.db.exec", 1, 0, RES_EXEC);
}

static int l_query(lua_State *L) {
  /* Inside a transaction a query goes to the writer, so it sees the transaction's writes. */
  return run_stmt(L, "chatgw.db.query", !lua_isnil(L, 1), 0, RES_QUERY);
}

/* A write whose rows come back (INSERT/UPDATE/DELETE ... RETURNING): runs on the writer. */
static int l_write_query(lua_State *L) {
  return run_stmt(L, "chatgw.db.write_query", 1, 0, RES_QUERY);
}

static int l_script(lua_State *L) {
  return run_stmt(L, "chatgw.db.script", 1, 1, RES_OK);
}

static int l_tx_begin(lua_State *L) {
  const char *fn = "chatgw.db.tx";
  co_t *co = check_caller(L, fn, 0);
  store_t *s = host_store(L, fn);
  db_wait_t *w = calloc(1, sizeof *w);
  if (!w) return luaL_error(L, "%s: out of memory", fn);
  w->base.cancel = wait_cancel;
  w->kind = RES_TX;
  char err[256];
  uint64_t tx = 0;
  store_job_t *j = store_tx_begin(s, &tx, on_done, w, err, sizeof err);
  if (!j) {
    free(w);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  w->job = j;
  w->tx = tx;
  return vm_wait(L, co, &w->base);
}

static int l_tx_end(lua_State *L) {
  const char *fn = "chatgw.db.tx";
  store_t *s = host_store(L, fn);
  uint64_t tx = check_tx(L, fn);
  if (!tx) return luaL_error(L, "%s: bad transaction handle", fn);
  int commit = lua_toboolean(L, 2);
  char err[256];
  if (!commit) { /* fire and forget: works from a cancelled coroutine too */
    if (store_tx_end(s, tx, 0, NULL, NULL, err, sizeof err) != 0) {
      lua_pushnil(L);
      lua_pushstring(L, err);
      return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
  }
  co_t *co = vm_check_yieldable(L, fn);
  db_wait_t *w = calloc(1, sizeof *w);
  if (!w) return luaL_error(L, "%s: out of memory", fn);
  w->base.cancel = wait_cancel;
  w->base.restricted_ok = 1;
  w->kind = RES_OK;
  /* tx_end has no job handle to cancel: keep none (a commit always completes). */
  if (store_tx_end(s, tx, 1, on_done, w, err, sizeof err) != 0) {
    free(w);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return vm_wait(L, co, &w->base);
}

static int l_restrict(lua_State *L) {
  co_t *co = vm_check_yieldable(L, "chatgw.db.tx");
  vm_co_restrict(co, lua_toboolean(L, 1) ? TX_RESTRICTION : NULL);
  return 0;
}

static int l_blob(lua_State *L) {
  size_t len = 0;
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L, "chatgw.db.blob: bytes must be a string, got %s", luaL_typename(L, 1));
  const char *p = lua_tolstring(L, 1, &len);
  size_t *b = lua_newuserdata(L, sizeof(size_t) + len);
  *b = len;
  memcpy(b + 1, p, len);
  luaL_getmetatable(L, BLOB_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_available(lua_State *L) {
  const lib_host_t *host = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushboolean(L, host->store != NULL);
  return 1;
}

void lib_store_register(lua_State *L, int t, lib_host_t *host) {
  if (t < 0 && t > LUA_REGISTRYINDEX) t = lua_gettop(L) + t + 1;
  luaL_newmetatable(L, BLOB_MT);
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"exec", l_exec},
                                 {"query", l_query},
                                 {"write_query", l_write_query},
                                 {"script", l_script},
                                 {"tx_begin", l_tx_begin},
                                 {"tx_end", l_tx_end},
                                 {"restrict", l_restrict},
                                 {"blob", l_blob},
                                 {"available", l_available},
                                 {NULL, NULL}};
  lua_newtable(L);
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushlightuserdata(L, host);
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, -2, r->name);
  }
  lua_setfield(L, t, "_db");
}
