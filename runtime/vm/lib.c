/* lib.c - fills the `chatgw` table of a new state (one line per binding module) and loads the
 * runtime's Lua layer into it. */
#include "lib.h"

#include <stdio.h>

#include "request.h"

int lib_open_state(lua_State *L, vm_t *vm, void *ud, char *err, size_t errlen) {
  lib_host_t *host = ud;
  lua_newtable(L); /* the chatgw table */
  int t = lua_gettop(L);
  lib_core_register(L, t, vm, host);
  lib_shared_register(L, t, host);
  lib_metrics_register(L, t);
  lib_ws_register(L, t);
  lib_exec_register(L, t, vm, host);
  lib_http_register(L, t, host);
  lib_limiter_register(L, t);
  lib_breaker_register(L, t);
  lib_store_register(L, t, host);
  lib_event_register(L, t, host);
  lib_crypto_register(L, t);
  lib_fs_register(L, t);
  lib_redis_register(L, t, host);
  lib_ffi_set(L, t, "req_header", request_ffi_header());
  lib_ffi_set(L, t, "req_view", request_ffi_view());
  lib_ffi_set(L, t, "req_header_at", request_ffi_header_at());
  lua_setglobal(L, "chatgw");

  /* The runtime's Lua layer: sandbox, loader, router, dispatcher. */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "chatgw.runtime");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    snprintf(err, errlen, "%s", lua_tostring(L, -1));
    return -1;
  }
  lua_getfield(L, -1, "dispatch");
  request_set_dispatcher(L);
  lua_getfield(L, -1, "precheck");
  request_set_precheck(L);
  lua_pop(L, 1);
  return 0;
}
