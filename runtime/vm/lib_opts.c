/* lib_opts.c - arguments and options of the bindings (see lib_opts.h). */
#include "lib_opts.h"

#include <lauxlib.h>
#include <math.h>
#include <string.h>

void lib_opts_check(lua_State *L, int t, const char *fn, const char *const *known) {
  if (!lua_istable(L, t))
    luaL_error(L, "%s: opts must be a table, got %s", fn, luaL_typename(L, t));
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    int ok = 0;
    for (int i = 0; k && known[i]; i++)
      ok |= strcmp(k, known[i]) == 0;
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; known[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, known[i]);
      }
      luaL_pushresult(&b);
      luaL_error(L, "%s: unknown option '%s' (known: %s)", fn, k ? k : luaL_typename(L, -3),
                 lua_tostring(L, -1));
    }
    lua_pop(L, 1);
  }
}

const char *lib_opts_name(lua_State *L, int t, const char *fn, const char *what) {
  lua_getfield(L, t, "name");
  size_t nl = 0;
  const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &nl) : NULL;
  if (!name || nl == 0 || nl > 200)
    luaL_error(L, "%s: name must be a non-empty string (%s are shared by name and survive reloads)",
               fn, what);
  return name;
}

int lib_opts_number(lua_State *L, int t, const char *fn, const char *k, double *v) {
  lua_getfield(L, t, k);
  int type = lua_type(L, -1);
  if (type != LUA_TNIL && type != LUA_TNUMBER)
    luaL_error(L, "%s: %s must be a number, got %s", fn, k, lua_typename(L, type));
  if (type == LUA_TNUMBER) {
    *v = lua_tonumber(L, -1);
    if (!isfinite(*v)) luaL_error(L, "%s: %s must be a finite number", fn, k);
  }
  lua_pop(L, 1);
  return type == LUA_TNUMBER;
}

double lib_opts_range(lua_State *L, int t, const char *fn, const char *k, double dflt, double min,
                      double max, int integer) {
  double v = dflt;
  if (lib_opts_number(L, t, fn, k, &v) && (!(v >= min && v <= max) || (integer && v != floor(v)))) {
    const char *what = integer ? "an integer" : "a number";
    if (isinf(max))
      luaL_error(L, "%s: %s must be %s >= %g", fn, k, what, min);
    else
      luaL_error(L, "%s: %s must be %s in %g..%g", fn, k, what, min, max);
  }
  return v;
}

const char *lib_opts_string(lua_State *L, int t, const char *fn, const char *k, size_t *len) {
  lua_getfield(L, t, k);
  int type = lua_type(L, -1);
  const char *s = NULL;
  if (type == LUA_TSTRING)
    s = lua_tolstring(L, -1, len);
  else if (type != LUA_TNIL)
    luaL_error(L, "%s: %s must be a string, got %s", fn, k, lua_typename(L, type));
  lua_pop(L, 1);
  return s;
}

const char *lib_arg_string(lua_State *L, int idx, const char *fn, const char *what) {
  if (lua_isnoneornil(L, idx)) return NULL;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: %s must be a string, got %s", fn, what, luaL_typename(L, idx));
  return lua_tostring(L, idx);
}

void lib_set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

void lib_set_str(lua_State *L, const char *k, const char *v) {
  if (!v) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}
