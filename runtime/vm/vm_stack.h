/* vm_stack.h - vm.c's helpers that read a Lua stack (vm_stack.c). */
#ifndef CHATGW_VM_STACK_H
#define CHATGW_VM_STACK_H

#include <lua.h>

/* The text of the non-string error value at the top of co_L, by chatgw.errtrace's text function
 * (a table as JSON), left on L's stack; NULL when there is no such function or it failed. */
const char *vm__error_text(lua_State *L, lua_State *co_L);
/* Whether `require` (the original, kept in the registry) is on L's call stack. */
int vm__inside_require(lua_State *L);

#endif
