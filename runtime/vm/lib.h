/* lib.h - the Lua bindings: each lib_*.c fills part of the `chatgw` table of a new state.
 *
 * What the bindings need from the process (the loop, the API token, the data dir, start time,
 * reload counts, the HTTP server) is one lib_host_t that the runtime owns and passes in; it is
 * held as an upvalue of the functions that use it (as luv keeps its loop context), never read
 * from a global. */
#ifndef CHATGW_LIB_H
#define CHATGW_LIB_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http_server.h"
#include "store.h"
#include "vm.h"

typedef struct {
  uint64_t count; /* reloads attempted and finished (ok or failed) */
  uint64_t ok;
  uint64_t failed;
  double last_time; /* wall clock seconds of the last finished reload, 0 if none */
  int last_ok;
  char last_error[4096]; /* problems of the last failed reload, "file:line: message" lines */
} lib_reload_stats_t;

/* The process model (docs/operations.md, "Process model"): filled by rt.c from what the master
 * passed down; all 0 without a master. */
typedef struct {
  long master_pid; /* 0: no master (--no-master, CHATGW_NO_MASTER=1) */
  uint64_t worker_restarts;
  int last_valid; /* a worker died before this one */
  long last_pid;
  int last_code;        /* when last_signal is "" */
  char last_signal[16]; /* "SIGKILL", or "" */
  char last_cause[16];  /* "watchdog" (exit 70), "signal", "exit" */
  double last_at;
  double last_ran_s;
} lib_process_info_t;

typedef struct {
  uv_loop_t *loop;
  http_server_t *http;  /* NULL until the listeners are up */
  const char *data_dir; /* the running data directory (locks live in it) */
  char token[256];      /* the bearer token of the API ("" until boot set it up) */
  size_t token_len;
  int check_only;   /* `chatgw check`: nothing may start */
  const char *mode; /* "run", "check" or "test" (chatgw._mode) */
  double started_wall;
  uint64_t started_ms; /* uv_now at start */
  lib_reload_stats_t reloads;
  store_t *store; /* the embedded store, NULL until boot opens it (never in `chatgw check`) */
  int stopping;   /* SIGTERM/SIGINT seen: draining (GET /healthz answers 503) */
  lib_process_info_t process;
} lib_host_t;

/* vm_options_t.open for the runtime's states: the chatgw table with every binding below, then
 * the runtime's Lua layer (require "chatgw.runtime"), whose dispatcher serves HTTP requests.
 * ud is the lib_host_t. */
int lib_open_state(lua_State *L, vm_t *vm, void *ud, char *err, size_t errlen);
/* The WebSocket hooks (lib_ws.c): handshake, messages and disconnects run in the current
 * state's Lua layer. Installed once at boot. */
void lib_ws_install_hooks(void);

/* Each fills its part of the chatgw table at index t. */
void lib_core_register(lua_State *L, int t, vm_t *vm, lib_host_t *host);
void lib_shared_register(lua_State *L, int t, lib_host_t *host);
void lib_metrics_register(lua_State *L, int t);
void lib_http_register(lua_State *L, int t, lib_host_t *host);
void lib_limiter_register(lua_State *L, int t);
void lib_breaker_register(lua_State *L, int t);
void lib_exec_register(lua_State *L, int t, vm_t *vm, lib_host_t *host);
void lib_ws_register(lua_State *L, int t);
void lib_store_register(lua_State *L, int t, lib_host_t *host);
void lib_event_register(lua_State *L, int t, lib_host_t *host);
/* t._ffi[name] = p (a lightuserdata): the function pointers and handles that lua/chatgw/cffi.lua
 * takes, casts with ffi.cast and removes before any handler loads (docs/architecture.md). */
void lib_ffi_set(lua_State *L, int t, const char *name, void *p);
void lib_ffi_table(lua_State *L, int t); /* pushes t._ffi, made when absent (t absolute) */
void lib_crypto_register(lua_State *L, int t);
void lib_fs_register(lua_State *L, int t);
void lib_redis_register(lua_State *L, int t, lib_host_t *host);
/* Closes the Redis clients (process exit, before the loop closes). */
void lib_redis_shutdown(void);

#endif
