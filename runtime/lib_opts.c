/* lib_opts.c - options tables of the bindings (see lib_opts.h). */
#include "lib_opts.h"

#include <lauxlib.h>
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
    if (!ok) luaL_error(L, "%s: unknown option '%s'", fn, k ? k : "?");
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
  if (type == LUA_TNUMBER) *v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return type == LUA_TNUMBER;
}
