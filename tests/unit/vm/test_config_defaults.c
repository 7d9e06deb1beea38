/* test_config_defaults.c - the C structs' *_defaults() (used by unit tests that run without a
 * config) hold the values of the one schema the runtime reads: lua/chatgw/config.lua (http),
 * lua/chatgw/ws.lua (ws) and lua/chatgw/limits.lua (exec). At run time C never defaults
 * anything itself; this keeps the test copies honest. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "http_server.h"
#include "watchdog.h"
#include "ws.h"

#include "check.h"

static lua_State *L;

/* The value at dotted path of the table at the top of the stack, as a number (NAN if absent). */
static double at(const char *root, const char *path) {
  char code[512];
  snprintf(code, sizeof code, "return %s.%s", root, path);
  if (luaL_dostring(L, code) != 0 || lua_type(L, -1) != LUA_TNUMBER) {
    printf("FAIL %s.%s: %s\n", root, path, lua_tostring(L, -1));
    lua_settop(L, 0);
    return -1;
  }
  double v = lua_tonumber(L, -1);
  lua_settop(L, 0);
  return v;
}

#define SAME(root, path, c_value)                                                                  \
  CHECK_MSG(at(root, path) == (double)(c_value), "%s.%s: schema %g, C default %g", root, path,     \
            at(root, path), (double)(c_value))

int main(void) {
  const char *src = getenv("CHATGW_SRC");
  if (!src) src = ".";
  L = luaL_newstate();
  luaL_openlibs(L);
  char code[2048];
  snprintf(code, sizeof code,
           "package.path = '%s/lua/?.lua;' .. package.path\n"
           "chatgw = { _ws = {} }\n"
           "local config = require 'chatgw.config'\n"
           "require 'chatgw.ws'\n"
           "cfg = assert(config.load(nil, { env = {} }))\n"
           "exec = require('chatgw.limits').resolve('exec', 'default', nil, function() end)\n",
           src);
  if (luaL_dostring(L, code) != 0) {
    printf("FAIL loading the schema: %s\n", lua_tostring(L, -1));
    return 1;
  }

  http_limits_t h;
  http_limits_default(&h);
  SAME("cfg", "http.max_header_bytes", h.max_header_bytes);
  SAME("cfg", "http.max_body_bytes", h.max_body_bytes);
  SAME("cfg", "http.header_timeout_ms", h.header_timeout_ms);
  SAME("cfg", "http.body_timeout_ms", h.body_timeout_ms);
  SAME("cfg", "http.idle_timeout_ms", h.idle_timeout_ms);
  SAME("cfg", "http.max_connections", h.max_connections);
  SAME("cfg", "http.max_per_ip", h.max_per_ip);
  SAME("cfg", "http.max_unsent_bytes", h.max_unsent_bytes);
  SAME("cfg", "http.max_buffered_body_bytes", h.max_buffered_body_bytes);

  ws_settings_t w;
  ws_settings_default(&w);
  lua_settop(L, 0);
  luaL_dostring(L, "return cfg.ws.enabled, cfg.ws.path");
  CHECK(lua_toboolean(L, 1) == w.enabled);
  CHECK(strcmp(lua_tostring(L, 2), w.path) == 0);
  lua_settop(L, 0);
  SAME("cfg", "ws.max_payload", w.max_payload);
  SAME("cfg", "ws.max_buffered_bytes", w.max_buffered_bytes);
  SAME("cfg", "ws.ping_interval_ms", w.ping_interval_ms);
  SAME("cfg", "ws.pong_timeout_ms", w.pong_timeout_ms);
  SAME("cfg", "ws.handshake_timeout_ms", w.handshake_timeout_ms);
  SAME("cfg", "ws.close_timeout_ms", w.close_timeout_ms);
  SAME("cfg", "ws.lingering_timeout_ms", w.lingering_timeout_ms);
  SAME("cfg", "ws.max_connections", w.max_connections);
  SAME("cfg", "ws.max_per_ip", w.max_per_ip);
  SAME("cfg", "ws.data_max_bytes", w.data_max_bytes);
  SAME("cfg", "ws.rate_limit.messages_per_second", w.rate_per_second);
  SAME("cfg", "ws.rate_limit.burst", w.rate_burst);
  SAME("cfg", "ws.rate_limit.close_after", w.rate_close_after);
  SAME("cfg", "ws.presence.batch_size", w.presence_batch_size);
  SAME("cfg", "ws.presence.flush_interval_ms", w.presence_flush_interval_ms);

  watchdog_settings_t wd;
  watchdog_settings_default(&wd);
  SAME("cfg", "watchdog.stall_ms", wd.stall_ms);
  SAME("cfg", "watchdog.abort_ms", wd.abort_ms);

  exec_limits_t e;
  exec_limits_default(&e);
  SAME("exec", "max_global", e.max_global);
  SAME("exec", "queue_max", e.queue_max);
  SAME("exec", "warn_queue", e.warn_queue);
  SAME("exec", "warn_wait_ms", e.warn_wait_ms);
  SAME("exec", "log_interval_ms", e.log_interval_ms);
  SAME("exec", "kill_grace_ms", e.kill_grace_ms);

  lua_close(L);
  printf("checked %d values\n", g_pass + g_fail);
  return check_report();
}
