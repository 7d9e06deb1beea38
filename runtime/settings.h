/* settings.h - the part of the validated config (a Lua table built by lua/chatgw/config.lua)
 * that the C runtime uses: listeners, HTTP limits, the ws: section, the drain timeout, the data
 * dir and the log level. The schema gives every value its default and range, so this file
 * copies values and has no defaults of its own. */
#ifndef CHATGW_SETTINGS_H
#define CHATGW_SETTINGS_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "http_server.h"
#include "ws.h"

typedef struct {
  char host[256];
  int port;
  char name[64];
  char tls_cert[1024], tls_key[1024]; /* "" when the listener is plaintext */
} settings_listener_t;

#define SETTINGS_MAX_LISTENERS 8

typedef struct {
  settings_listener_t listeners[SETTINGS_MAX_LISTENERS]; /* "main" first, then by name */
  int nlisteners;
  http_limits_t http;
  ws_settings_t ws;
  uint64_t drain_timeout_ms;
  char data_dir[1024];
  char log_level[16];
} settings_t;

/* Reads the config table at idx of L into s. Returns 0, or -1 with err set (a missing value
 * means the schema and this reader disagree: a bug, reported rather than guessed). */
int settings_read(lua_State *L, int idx, settings_t *s, char *err, size_t errlen);
/* Applies what can change at run time: log level, HTTP limits (http may be NULL before the
 * listeners exist) and the ws settings. */
void settings_apply_runtime(const settings_t *s, http_server_t *http);
/* Logs a WARN for each setting a reload cannot change (listeners and their tls paths, data
 * dir). */
void settings_warn_restart_only(const settings_t *running, const settings_t *loaded);

#endif
