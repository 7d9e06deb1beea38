/* vm_stack.c - what the scheduler asks of a Lua stack: an error value's text, and whether a
 * wait happens inside `require` (see vm_stack.h). */
#include "vm_stack.h"

#include <lauxlib.h>

/* The text of a non-string error value at the top of co_L, by chatgw.errtrace's function (a
 * table as JSON); it stays valid while that value's text is on L's stack (popped by the caller's
 * luaL_traceback push order: we leave it below). NULL when there is no such function. */
const char *vm__error_text(lua_State *L, lua_State *co_L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "chatgw.error_text");
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_pushvalue(co_L, -1);
  lua_xmove(co_L, L, 1);
  if (lua_pcall(L, 1, 1, 0) != 0 || !lua_isstring(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  return lua_tostring(L, -1);
}

/* Whether `require` is on L's call stack: a module body runs inside it, a C function, so it
 * cannot yield even inside a coroutine. The original require is kept in the registry. */
int vm__inside_require(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "chatgw.require");
  lua_Debug ar;
  int found = 0;
  for (int level = 1; !found && level < 200 && lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "f", &ar)) continue;
    found = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return found;
}
