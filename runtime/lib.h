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

/* The value a runtime wait yields from inside a user coroutine (see vm_wait). */
void *lib_yield_marker(void);

#endif
