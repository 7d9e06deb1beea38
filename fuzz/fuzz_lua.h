/* fuzz_lua.h - the runtime's own Lua state for the harnesses of Lua code: the process set up as
 * rt.c sets it up (metrics, scheduler, exec, WebSocket module and hooks, requests) and one
 * state filled by lib_open_state (every binding, then the runtime's Lua layer), made current.
 * The loop is never run by this file: the harness runs it when its code waits. */
#ifndef CHATGW_FUZZ_LUA_H
#define CHATGW_FUZZ_LUA_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "vm.h"

#define FUZZ_TOKEN "fuzz-token" /* the API token of the harnesses' runtime */

/* Once per process: the runtime's process-wide modules on the default loop. */
uv_loop_t *fuzz_runtime_init(void);
/* The state (created at the first call). Its globals have `fuzz`, the harnesses' helpers:
 * fuzz.settings_read(cfg) (settings.c's copy of a validated config: nil or its error) and
 * fuzz.cbc_encrypt(key32, iv16, plain) (AES-256-CBC with PKCS#7, which chatgw.crypto only
 * decrypts), fuzz.abort(message) (a finding: prints it and aborts). */
lua_State *fuzz_lua_state(void);
/* fuzz/lua/<name>.lua run in L: a reference to the function it returns. Aborts on failure. */
int fuzz_lua_target(lua_State *L, const char *name);
/* The function of ref called with the input as a string. A Lua error is not a finding unless
 * FUZZ_STRICT=1 is set in the environment (then it aborts, printing it). */
void fuzz_lua_call(lua_State *L, int ref, const uint8_t *data, size_t size);

#endif
