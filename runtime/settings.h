/* settings.h - the part of the validated config (a Lua table built by lua/chatgw/config.lua)
 * that the C runtime uses: listeners, HTTP limits, drain timeout, data dir, log level. */
#ifndef CHATGW_SETTINGS_H
#define CHATGW_SETTINGS_H

#include <lua.h>
#include <stddef.h>

#include "rt.h"

void settings_default(rt_settings_t *s);
/* Reads the config table at idx of L into s. Returns 0, or -1 with err set. */
int settings_read(lua_State *L, int idx, rt_settings_t *s, char *err, size_t errlen);
/* Applies what can change at run time: log level and HTTP limits. */
void settings_apply_runtime(const rt_settings_t *s);
/* Logs a WARN for each setting a reload cannot change (listeners, data dir). */
void settings_warn_restart_only(const rt_settings_t *running, const rt_settings_t *loaded);

#endif
