/* rt.h - the one runtime struct: loop, listeners, current Lua state, settings, reload state.
 *
 * There is exactly one runtime per process (g_rt). Everything else is reached from it. */
#ifndef CHATGW_RT_H
#define CHATGW_RT_H

#include <stdint.h>
#include <uv.h>

#include "http_server.h"
#include "ws.h"

typedef struct vm vm_t;

typedef struct {
  char host[256];
  int port;
  char name[64];
} rt_listener_conf_t;

#define RT_MAX_LISTENERS 8

/* Settings read from config (see lua/chatgw/config.lua); C copies what it needs. */
typedef struct {
  rt_listener_conf_t listeners[RT_MAX_LISTENERS];
  int nlisteners;
  http_limits_t http;
  ws_settings_t ws; /* the ws: section (ws.c) */
  uint64_t drain_timeout_ms;
  char data_dir[1024];
  char log_level[16];
} rt_settings_t;

typedef struct {
  uint64_t count; /* reloads attempted and finished (ok or failed) */
  uint64_t ok;
  uint64_t failed;
  double last_time; /* wall clock seconds of the last finished reload, 0 if none */
  int last_ok;
  char last_error[4096]; /* problems of the last failed reload, "file:line: message" lines */
} rt_reload_stats_t;

typedef struct rt {
  uv_loop_t *loop;
  http_server_t *http;
  vm_t *vm; /* the current Lua state: new requests go here */
  rt_settings_t settings;
  char handlers_dir[1024];
  char config_path[1024];
  int config_path_explicit;
  char lua_dir[1024];      /* directory holding the chatgw Lua layer */
  char token[256];         /* the bearer token for the API */
  char token_source[1100]; /* "env" or the path of the generated token file */
  size_t token_len;
  double started_wall; /* wall clock seconds at start */
  uint64_t started_ms; /* uv_now at start */
  rt_reload_stats_t reloads;
  int reloading;    /* a reload is in progress */
  int reload_again; /* a SIGHUP arrived during the reload */
  int stopping;     /* SIGTERM/SIGINT seen */
  int check_only;   /* chatgw check */
  int exit_code;
} rt_t;

extern rt_t g_rt;

/* Monotonic milliseconds of the loop (uv_now). */
uint64_t rt_now_ms(void);
/* Wall clock seconds with sub-second precision. */
double rt_wall_time(void);

/* Runs the whole program: boot, serve until stopped. Returns the process exit code. */
int rt_run(const char *handlers_dir, const char *config_path, int config_explicit, int check_only);
#endif
