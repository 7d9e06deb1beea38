/* lib_shared.c - Lua binding for shared dictionaries: chatgw.shared(name [, {max_bytes = N}]).
 *
 * The userdata only points at the C dictionary (which lives until process exit), so objects
 * from an old Lua state and a new one share the same data. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <string.h>

#include "lib.h"
#include "shared.h"

#define DICT_MT "chatgw.shared_dict"

/* TTLs above this (about 285,000 years) are clamped: keeps the double -> uint64 cast defined. */
#define MAX_TTL_MS 9.0e15

typedef struct {
  shared_dict_t *d;
  char name[]; /* for __tostring */
} ldict_t;

/* The dictionaries' clock: the loop time of the host (upvalue 1 of every method). */
static uint64_t now_ms(lua_State *L) {
  const lib_host_t *host = lua_touserdata(L, lua_upvalueindex(1));
  return uv_now(host->loop);
}

static ldict_t *check_self(lua_State *L, const char *method) {
  ldict_t *ud = luaL_testudata(L, 1, DICT_MT);
  if (!ud)
    luaL_error(L, "dict:%s: self must be a shared dict (call it as d:%s(...))", method, method);
  return ud;
}

static const char *check_key(lua_State *L, int idx, const char *method, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "dict:%s: key must be a non-empty string", method);
  const char *k = lua_tolstring(L, idx, len);
  if (*len == 0) luaL_error(L, "dict:%s: key must be a non-empty string", method);
  return k;
}

/* Optional TTL argument: nil/none = 0 (no expiry); fractions round up so a positive TTL
 * never turns into "no expiry". */
static uint64_t opt_ttl(lua_State *L, int idx, const char *method, const char *what) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "dict:%s: %s must be a non-negative number", method, what);
  double v = lua_tonumber(L, idx);
  if (!(v >= 0) || isinf(v))
    luaL_error(L, "dict:%s: %s must be a non-negative number", method, what);
  if (v > MAX_TTL_MS) v = MAX_TTL_MS;
  return (uint64_t)ceil(v);
}

static void check_value(lua_State *L, int idx, const char *method, int allow_nil,
                        shared_value_t *v) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    v->type = SHARED_STRING;
    v->str = lua_tolstring(L, idx, &v->len);
    return;
  case LUA_TNUMBER:
    v->type = SHARED_NUMBER;
    v->num = lua_tonumber(L, idx);
    return;
  case LUA_TBOOLEAN:
    v->type = SHARED_BOOLEAN;
    v->boolean = lua_toboolean(L, idx);
    return;
  case LUA_TNIL:
  case LUA_TNONE:
    if (allow_nil) {
      v->type = SHARED_NIL;
      return;
    }
    break;
  default:
    break;
  }
  luaL_error(L, "dict:%s: value must be a string, number or boolean", method);
}

static void push_value(lua_State *L, const shared_value_t *v) {
  switch (v->type) {
  case SHARED_STRING:
    lua_pushlstring(L, v->str, v->len);
    break;
  case SHARED_NUMBER:
    lua_pushnumber(L, v->num);
    break;
  case SHARED_BOOLEAN:
    lua_pushboolean(L, v->boolean);
    break;
  default:
    lua_pushnil(L);
  }
}

/* Pushes nil, "too_large: ..." and, when with_forcible, false. */
static int push_too_large(lua_State *L, shared_dict_t *d, int with_forcible) {
  lua_pushnil(L);
  lua_pushfstring(L, "too_large: the entry does not fit in the dict's max_bytes (%f)",
                  (lua_Number)shared_max_bytes(d));
  if (!with_forcible) return 2;
  lua_pushboolean(L, 0);
  return 3;
}

static int l_get(lua_State *L) {
  ldict_t *ud = check_self(L, "get");
  size_t klen;
  const char *key = check_key(L, 2, "get", &klen);
  shared_value_t v;
  if (!shared_get(ud->d, key, klen, now_ms(L), &v)) {
    lua_pushnil(L);
    return 1;
  }
  push_value(L, &v);
  return 1;
}

static int l_set(lua_State *L) {
  ldict_t *ud = check_self(L, "set");
  size_t klen;
  const char *key = check_key(L, 2, "set", &klen);
  shared_value_t v;
  check_value(L, 3, "set", 1, &v);
  uint64_t ttl = opt_ttl(L, 4, "set", "ttl_ms");
  int forcible = 0;
  if (shared_set(ud->d, key, klen, &v, ttl, now_ms(L), &forcible) != 0)
    return push_too_large(L, ud->d, 1);
  lua_pushboolean(L, 1);
  lua_pushnil(L);
  lua_pushboolean(L, forcible);
  return 3;
}

static int l_add(lua_State *L) {
  ldict_t *ud = check_self(L, "add");
  size_t klen;
  const char *key = check_key(L, 2, "add", &klen);
  shared_value_t v;
  check_value(L, 3, "add", 0, &v);
  uint64_t ttl = opt_ttl(L, 4, "add", "ttl_ms");
  int forcible = 0;
  int rc = shared_add(ud->d, key, klen, &v, ttl, now_ms(L), &forcible);
  if (rc < 0) return push_too_large(L, ud->d, 1);
  if (rc == 0) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "exists");
    lua_pushboolean(L, 0);
    return 3;
  }
  lua_pushboolean(L, 1);
  lua_pushnil(L);
  lua_pushboolean(L, forcible);
  return 3;
}

static int l_incr(lua_State *L) {
  ldict_t *ud = check_self(L, "incr");
  size_t klen;
  const char *key = check_key(L, 2, "incr", &klen);
  if (lua_type(L, 3) != LUA_TNUMBER) luaL_error(L, "dict:incr: by must be a number");
  double by = lua_tonumber(L, 3);
  int has_init = !lua_isnoneornil(L, 4);
  if (has_init && lua_type(L, 4) != LUA_TNUMBER)
    luaL_error(L, "dict:incr: init must be a number or nil");
  double init = has_init ? lua_tonumber(L, 4) : 0;
  uint64_t ttl = opt_ttl(L, 5, "incr", "init_ttl_ms");
  double result = 0;
  int rc = shared_incr(ud->d, key, klen, by, has_init, init, ttl, now_ms(L), &result);
  switch (rc) {
  case 0:
    lua_pushnumber(L, result);
    return 1;
  case -1:
    lua_pushnil(L);
    lua_pushliteral(L, "not_found: the key does not exist and no init was given");
    return 2;
  case -2:
    lua_pushnil(L);
    lua_pushliteral(L, "not_a_number: the stored value is not a number");
    return 2;
  default:
    return push_too_large(L, ud->d, 0);
  }
}

static int l_delete(lua_State *L) {
  ldict_t *ud = check_self(L, "delete");
  size_t klen;
  const char *key = check_key(L, 2, "delete", &klen);
  lua_pushboolean(L, shared_delete(ud->d, key, klen));
  return 1;
}

static int l_ttl(lua_State *L) {
  ldict_t *ud = check_self(L, "ttl");
  size_t klen;
  const char *key = check_key(L, 2, "ttl", &klen);
  int64_t t = shared_ttl(ud->d, key, klen, now_ms(L));
  if (t < 0)
    lua_pushnil(L);
  else
    lua_pushnumber(L, (lua_Number)t);
  return 1;
}

typedef struct {
  lua_State *L;
  int n;
} keys_ctx_t;

static void push_key(const char *key, size_t klen, void *ud) {
  keys_ctx_t *c = ud;
  lua_pushlstring(c->L, key, klen);
  lua_rawseti(c->L, -2, ++c->n);
}

static int l_keys(lua_State *L) {
  ldict_t *ud = check_self(L, "keys");
  size_t max = 0;
  if (!lua_isnoneornil(L, 2)) {
    double m = lua_type(L, 2) == LUA_TNUMBER ? lua_tonumber(L, 2) : -1;
    if (!(m >= 0) || m != floor(m) || m > 1e15)
      luaL_error(L, "dict:keys: max must be a non-negative integer");
    max = (size_t)m;
  }
  lua_newtable(L);
  keys_ctx_t c = {L, 0};
  shared_keys(ud->d, now_ms(L), max, push_key, &c);
  return 1;
}

static int l_count(lua_State *L) {
  ldict_t *ud = check_self(L, "count");
  lua_pushnumber(L, (lua_Number)shared_count(ud->d, now_ms(L)));
  return 1;
}

static int l_flush(lua_State *L) {
  ldict_t *ud = check_self(L, "flush");
  shared_flush(ud->d);
  return 0;
}

static int l_bytes(lua_State *L) {
  ldict_t *ud = check_self(L, "bytes");
  lua_pushnumber(L, (lua_Number)shared_bytes_used(ud->d));
  lua_pushnumber(L, (lua_Number)shared_max_bytes(ud->d));
  return 2;
}

static int l_tostring(lua_State *L) {
  ldict_t *ud = luaL_checkudata(L, 1, DICT_MT);
  lua_pushfstring(L, "chatgw.shared_dict(\"%s\")", ud->name);
  return 1;
}

static int l_eq(lua_State *L) {
  ldict_t *a = luaL_testudata(L, 1, DICT_MT), *b = luaL_testudata(L, 2, DICT_MT);
  lua_pushboolean(L, a && b && a->d == b->d);
  return 1;
}

/* chatgw.shared(name [, {max_bytes = N}]) */
static int l_shared(lua_State *L) {
  size_t nlen = 0;
  const char *name = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &nlen) : NULL;
  if (!name || nlen == 0 || strlen(name) != nlen)
    luaL_error(L, "chatgw.shared: name must be a non-empty string");
  size_t max_bytes = 0;
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_istable(L, 2)) luaL_error(L, "chatgw.shared: options must be a table");
    lua_getfield(L, 2, "max_bytes");
    if (!lua_isnil(L, -1)) {
      double m = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
      if (!(m >= 1) || m != floor(m) || m > 1e15)
        luaL_error(L, "chatgw.shared: max_bytes must be a positive integer");
      max_bytes = (size_t)m;
    }
    lua_pop(L, 1);
  }
  shared_dict_t *d = shared_dict_get(name, max_bytes);
  if (!d) luaL_error(L, "chatgw.shared: out of memory");
  ldict_t *ud = lua_newuserdata(L, sizeof *ud + nlen + 1);
  ud->d = d;
  memcpy(ud->name, name, nlen + 1);
  luaL_setmetatable(L, DICT_MT);
  return 1;
}

/* FFI hot path of d:incr (lua/chatgw/cffi.lua): 0 and *out, or -1 (not found), -2 (not a
 * number), -3 (too large), -4 (bad arguments); the Lua side calls l_incr for its message on any
 * failure (each leaves the dict as it was). d comes from l_dict_ptr on a checked userdata. */
static int ffi_shared_incr(const lib_host_t *host, shared_dict_t *d, const char *key, size_t klen,
                           double by, int has_init, double init, double *out) {
  if (!host || !d || !key || klen == 0 || !out) return -4;
  return shared_incr(d, key, klen, by, has_init, init, 0, uv_now(host->loop), out);
}

/* FFI hot path of d:get: 0 absent, 1 a string (*str, *len: copied at once by the caller, they
 * point into the dict), 2 a number (*num), 3 a boolean (*num 0 or 1), -4 bad arguments. */
static int ffi_shared_get(const lib_host_t *host, shared_dict_t *d, const char *key, size_t klen,
                          const char **str, size_t *len, double *num) {
  if (!host || !d || !key || klen == 0 || !str || !len || !num) return -4;
  shared_value_t v;
  if (!shared_get(d, key, klen, uv_now(host->loop), &v)) return 0;
  switch (v.type) {
  case SHARED_STRING:
    *str = v.str;
    *len = v.len;
    return 1;
  case SHARED_NUMBER:
    *num = v.num;
    return 2;
  case SHARED_BOOLEAN:
    *num = v.boolean ? 1 : 0;
    return 3;
  default:
    return 0;
  }
}

/* _ffi.shared_ptr(d) -> the C dictionary of a shared dict object (a lightuserdata), or nil */
static int l_dict_ptr(lua_State *L) {
  ldict_t *ud = luaL_testudata(L, 1, DICT_MT);
  if (!ud) return 0;
  lua_pushlightuserdata(L, ud->d);
  return 1;
}

static const luaL_Reg METHODS[] = {{"get", l_get},     {"set", l_set},       {"add", l_add},
                                   {"incr", l_incr},   {"delete", l_delete}, {"ttl", l_ttl},
                                   {"keys", l_keys},   {"count", l_count},   {"flush", l_flush},
                                   {"bytes", l_bytes}, {NULL, NULL}};

void lib_shared_register(lua_State *L, int t, lib_host_t *host) {
  if (t < 0 && t > LUA_REGISTRYINDEX) t = lua_gettop(L) + t + 1;
  if (luaL_newmetatable(L, DICT_MT)) {
    lua_newtable(L);
    lua_pushlightuserdata(L, host);
    luaL_setfuncs(L, METHODS, 1);
    /* the method table, for cffi.lua to put its incr in (taken with the rest of _ffi) */
    lib_ffi_table(L, t);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "shared_methods");
    lua_pushcfunction(L, l_dict_ptr);
    lua_setfield(L, -2, "shared_ptr");
    lua_pop(L, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_eq);
    lua_setfield(L, -2, "__eq");
    lua_pushliteral(L, "chatgw.shared_dict");
    lua_setfield(L, -2, "__metatable"); /* getmetatable() cannot tamper with the methods */
  }
  lua_pop(L, 1);
  lib_ffi_set(L, t, "shared_incr", (void *)ffi_shared_incr);
  lib_ffi_set(L, t, "shared_get", (void *)ffi_shared_get);
  lua_pushcfunction(L, l_shared);
  lua_setfield(L, t, "shared");
}
