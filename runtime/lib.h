/* lib.h - the Lua bindings: each lib_*.c fills part of the `chatgw` table. */
#ifndef CHATGW_LIB_H
#define CHATGW_LIB_H

#include <lua.h>

typedef struct vm vm_t;

/* Registers every binding below into the chatgw table at chatgw_index (see lib.c). */
void lib_register_all(lua_State *L, int chatgw_index, vm_t *vm);

/* chatgw.sleep/spawn/every/now/env/log and the runtime's private helpers (chatgw._*). */
void lib_core_register(lua_State *L, int chatgw_index, vm_t *vm);
/* chatgw.shared(name [, opts]) */
void lib_shared_register(lua_State *L, int chatgw_index);
/* chatgw.metrics.{counter,gauge,histogram,render} */
void lib_metrics_register(lua_State *L, int chatgw_index);

/* chatgw._http_start/_http_next (outbound HTTP; chatgw.http is lua/chatgw/http.lua) */
void lib_http_register(lua_State *L, int chatgw_index);
/* chatgw.limiter{...} (limiter.c) */
void lib_limiter_register(lua_State *L, int chatgw_index);
/* chatgw._breaker (breaker.c; chatgw.breaker is lua/chatgw/breaker.lua) */
void lib_breaker_register(lua_State *L, int chatgw_index);

/* chatgw._exec (chatgw.exec is lua/chatgw/exec.lua), chatgw.lock, supervisor helpers */
void lib_exec_register(lua_State *L, int chatgw_index, vm_t *vm);

/* chatgw._ws (ws.c; chatgw.ws is lua/chatgw/ws.lua) */
void lib_ws_register(lua_State *L, int chatgw_index);

/* The value a runtime wait yields from inside a user coroutine (see vm_wait). */
void *lib_yield_marker(void);

#endif
