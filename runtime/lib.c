/* lib.c - fills the `chatgw` table of a new state: one line per binding module. */
#include "lib.h"

void lib_register_all(lua_State *L, int chatgw_index, vm_t *vm) {
  lib_core_register(L, chatgw_index, vm);
  lib_shared_register(L, chatgw_index);
  lib_metrics_register(L, chatgw_index);
  lib_ws_register(L, chatgw_index);
  lib_exec_register(L, chatgw_index, vm);
  lib_http_register(L, chatgw_index);
  lib_limiter_register(L, chatgw_index);
  lib_breaker_register(L, chatgw_index);
}
