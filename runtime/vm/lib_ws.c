/* lib_ws.c - chatgw._ws: the C primitives under chatgw.ws (lua/chatgw/ws.lua wraps them), and
 * the WebSocket hooks (ws.h) that run the protocol's meaning in the current state.
 *
 * Connection ids are strings ("<boot>-<n>"); the runtime's own calls use the number n. JSON is
 * encoded and decoded on the Lua side: these functions take and give JSON text. Misuse raises
 * an error naming the function; a connection that is gone gives nil, "not_found: ...". */
#include <lauxlib.h>
#include <stdint.h>
#include <string.h>

#include "lib.h"
#include "lib_opts.h"
#include "log.h"
#include "strutil.h"
#include "vm.h"
#include "ws.h"
#include "ws_frame.h"

#define MAX_FILTER_IDS 100000
#define MAX_SCOPES 64

static int valid_event(const char *s, size_t n) {
  if (n < 1 || n > 128) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '.' || ch == '_' || ch == ':' || ch == '/' || ch == '-'))
      return 0;
  }
  return 1;
}

static const char *check_event(lua_State *L, int idx, const char *fname) {
  size_t n = 0;
  const char *ev = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
  if (!ev || !valid_event(ev, n))
    luaL_error(L, "%s: event must be 1..128 characters of [A-Za-z0-9._:/-]", fname);
  return ev;
}

/* Collects the strings of the array at idx into a userdata-backed array (freed by the GC). */
static const char **id_array(lua_State *L, int idx, size_t *n, const char *fname,
                             const char *what) {
  *n = 0;
  if (lua_isnoneornil(L, idx)) return NULL;
  if (!lua_istable(L, idx)) luaL_error(L, "%s: %s must be an array of connection ids", fname, what);
  size_t len = lua_objlen(L, idx);
  if (len > MAX_FILTER_IDS) luaL_error(L, "%s: %s is too long", fname, what);
  const char **arr = lua_newuserdata(L, (len ? len : 1) * sizeof *arr);
  for (size_t i = 0; i < len; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: %s[%d] must be a string", fname, what, (int)i + 1);
    arr[i] = lua_tostring(L, -1); /* kept alive by the table */
    lua_pop(L, 1);
  }
  *n = len;
  return arr;
}

/* _ws.broadcast(event, payload_json, role, scope, include, exclude) -> n */
static int l_broadcast(lua_State *L) {
  const char *fn = "chatgw.ws.broadcast";
  const char *ev = check_event(L, 1, fn);
  size_t pl = 0;
  const char *payload = luaL_checklstring(L, 2, &pl);
  ws_filter_t f;
  memset(&f, 0, sizeof f);
  f.role = lib_arg_string(L, 3, fn, "role");
  f.scope = lib_arg_string(L, 4, fn, "scope");
  f.include = id_array(L, 5, &f.ninclude, fn, "include");
  f.exclude = id_array(L, 6, &f.nexclude, fn, "exclude");
  if (!ws_utf8_valid((const uint8_t *)payload, pl)) /* every client would fail the frame */
    return luaL_error(L, "%s: invalid_utf8: the payload is not valid UTF-8", fn);
  lua_pushnumber(L, (lua_Number)ws_broadcast(ev, payload, pl, &f));
  return 1;
}

/* ---- connection info as Lua tables ---- */

static void push_data_kv(const char *key, const char *json, size_t len, void *ud) {
  lua_State *L = ud;
  lua_pushlstring(L, json, len);
  lua_setfield(L, -2, key);
}

/* A table describing c; with_data: also `_data`, key -> JSON text (the Lua side decodes). */
static void push_info(lua_State *L, ws_conn_t *c, int with_data) {
  ws_info_t i;
  ws_info(c, &i);
  lua_createtable(L, 0, 14);
  lib_set_str(L, "id", i.id);
  lib_set_num(L, "_num", (double)i.num);
  lib_set_str(L, "role", i.role);
  lua_createtable(L, (int)i.nscopes, 0);
  for (size_t k = 0; k < i.nscopes; k++) {
    lua_pushstring(L, i.scopes[k]);
    lua_rawseti(L, -2, (int)k + 1);
  }
  lua_setfield(L, -2, "scopes");
  lib_set_str(L, "device", i.device);
  lua_createtable(L, 0, 2);
  lib_set_str(L, "id", i.client_id);
  lib_set_str(L, "version", i.client_version);
  lua_setfield(L, -2, "client");
  lib_set_str(L, "remote_addr", i.remote);
  lib_set_num(L, "remote_port", i.remote_port);
  lib_set_num(L, "connected_at", i.connected_at);
  lib_set_num(L, "last_seen", i.last_seen);
  lib_set_num(L, "buffered", (double)i.buffered);
  lib_set_num(L, "seq", (double)i.seq);
  lib_set_str(L, "state", i.state);
  if (with_data) {
    lua_newtable(L);
    ws_data_each(c, push_data_kv, L);
    lua_setfield(L, -2, "_data");
  }
}

typedef struct {
  lua_State *L;
  const char *role, *scope, *device;
  int n;
} list_ctx_t;

static void list_one(ws_conn_t *c, void *ud) {
  list_ctx_t *x = ud;
  ws_info_t i;
  ws_info(c, &i);
  if (x->role && (!i.role || strcmp(x->role, i.role) != 0)) return;
  if (x->scope && !ws_has_scope(c, x->scope)) return;
  if (x->device && (!i.device || strcmp(x->device, i.device) != 0)) return;
  push_info(x->L, c, 0);
  lua_rawseti(x->L, -2, ++x->n);
}

/* Presence snapshot keyed by device id (the connection id for a client without one). */
static void presence_one(ws_conn_t *c, void *ud) {
  lua_State *L = ud;
  ws_info_t i;
  ws_info(c, &i);
  if (!i.connected) return;
  int t = lua_gettop(L);
  const char *key = i.device ? i.device : i.id;
  lua_getfield(L, t, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lib_set_str(L, "deviceId", i.device);
    lib_set_str(L, "role", i.role);
    lib_set_num(L, "since", i.connected_at);
    lua_newtable(L);
    lua_setfield(L, -2, "connections");
    lua_pushvalue(L, -1);
    lua_setfield(L, t, key);
  }
  lua_getfield(L, -1, "since");
  double since = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (i.connected_at < since) lib_set_num(L, "since", i.connected_at);
  lua_getfield(L, -1, "connections");
  lua_createtable(L, 0, 6);
  lib_set_str(L, "connId", i.id);
  lib_set_str(L, "role", i.role);
  lib_set_num(L, "connectedAt", i.connected_at);
  lib_set_str(L, "clientId", i.client_id);
  lib_set_str(L, "clientVersion", i.client_version);
  lib_set_str(L, "remoteAddr", i.remote);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  lua_pop(L, 2);
}

static int not_found(lua_State *L, const char *id) {
  lua_pushnil(L);
  lua_pushfstring(L, "not_found: no open connection '%s'", id ? id : "?");
  return 2;
}

/* _ws.send(id, event, payload_json) -> true | nil, err */
static int l_send(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  const char *ev = check_event(L, 2, "chatgw.ws.send");
  size_t pl = 0;
  const char *payload = luaL_checklstring(L, 3, &pl);
  if (!ws_utf8_valid((const uint8_t *)payload, pl)) {
    lua_pushnil(L);
    lua_pushliteral(L, "invalid_utf8: the payload is not valid UTF-8");
    return 2;
  }
  int r = ws_send_event(id, ev, payload, pl);
  if (r == -1) return not_found(L, id);
  if (r == -2) {
    lua_pushnil(L);
    lua_pushliteral(L, "slow_consumer: the connection was dropped (too many unsent bytes)");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* _ws.close(id, code, reason) -> true | nil, err */
static int l_close(lua_State *L) {
  const char *id = luaL_checkstring(L, 1);
  unsigned code = (unsigned)luaL_optinteger(L, 2, 1000);
  const char *reason = luaL_optstring(L, 3, "");
  if (ws_close_id(id, code, reason) != 0) return not_found(L, id);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_list(lua_State *L) {
  const char *fn = "chatgw.ws.list";
  list_ctx_t x = {L, lib_arg_string(L, 1, fn, "role"), lib_arg_string(L, 2, fn, "scope"),
                  lib_arg_string(L, 3, fn, "device"), 0};
  lua_newtable(L);
  ws_each_open(list_one, &x);
  return 1;
}

static int l_get(lua_State *L) {
  ws_conn_t *c = ws_find(luaL_checkstring(L, 1));
  if (!c) return 0;
  push_info(L, c, 1);
  return 1;
}

static uint64_t check_num(lua_State *L, int idx) {
  double d = luaL_checknumber(L, idx);
  return d > 0 ? (uint64_t)d : 0;
}

static int l_info(lua_State *L) {
  ws_conn_t *c = ws_find_num(check_num(L, 1));
  if (!c) return 0;
  push_info(L, c, 0);
  return 1;
}

static int l_data_get(lua_State *L) {
  size_t n = 0;
  const char *v = ws_data_get(check_num(L, 1), luaL_checkstring(L, 2), &n);
  if (!v) return 0;
  lua_pushlstring(L, v, n);
  return 1;
}

static int l_data_set(lua_State *L) {
  uint64_t num = check_num(L, 1);
  const char *key = luaL_checkstring(L, 2);
  size_t n = 0;
  const char *v = lua_isnoneornil(L, 3) ? NULL : luaL_checklstring(L, 3, &n);
  int r = ws_data_set(num, key, v, n);
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  if (r == -1)
    lua_pushliteral(L, "not_found: the connection is closed");
  else
    lua_pushfstring(L, "too_large: conn.data is limited to %d bytes (ws.data_max_bytes)",
                    (int)ws_settings()->data_max_bytes);
  return 2;
}

/* _ws.accept(num, role, scopes, device, client_id, client_version, hello) -> boolean */
static int l_accept(lua_State *L) {
  uint64_t num = check_num(L, 1);
  const char *role = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  const char *scopes[MAX_SCOPES];
  size_t ns = lua_objlen(L, 3);
  if (ns > MAX_SCOPES) ns = MAX_SCOPES;
  for (size_t i = 0; i < ns; i++) {
    lua_rawgeti(L, 3, (int)i + 1);
    scopes[i] = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays referenced by the table */
    if (!scopes[i]) return luaL_error(L, "chatgw._ws.accept: scopes must be strings");
  }
  const char *device = lua_tostring(L, 4);
  const char *cid = lua_tostring(L, 5);
  const char *cver = lua_tostring(L, 6);
  size_t hl = 0;
  const char *hello = luaL_checklstring(L, 7, &hl);
  lua_pushboolean(L, ws_accept(num, role, scopes, ns, device, cid, cver, hello, hl) == 0);
  return 1;
}

static int l_presence(lua_State *L) {
  lua_newtable(L);
  ws_each_open(presence_one, L);
  return 1;
}

static int l_count(lua_State *L) {
  lua_pushnumber(L, (lua_Number)ws_connection_count());
  return 1;
}

void lib_ws_register(lua_State *L, int t) {
  static const luaL_Reg fns[] = {
      {"broadcast", l_broadcast}, {"send", l_send},         {"close", l_close},
      {"list", l_list},           {"get", l_get},           {"info", l_info},
      {"data_get", l_data_get},   {"data_set", l_data_set}, {"accept", l_accept},
      {"presence", l_presence},   {"count", l_count},       {NULL, NULL}};
  lua_newtable(L);
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  lua_setfield(L, t, "_ws");
}

/* ---- hooks: the protocol in the current state (lua/chatgw/ws.lua) ---- */

static const char INTERNAL_ERROR_RES[] =
    "{\"type\":\"res\",\"id\":null,\"ok\":false,\"error\":{\"code\":\"internal_error\","
    "\"message\":\"internal error\"}}";

/* Pushes package.loaded["chatgw.ws"][name] on L; 0 (nothing pushed) if missing. */
static int push_ws_fn(lua_State *L, const char *name) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "chatgw.ws");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 3);
    return 0;
  }
  lua_getfield(L, -1, name);
  lua_replace(L, -4);
  lua_pop(L, 2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static co_t *spawn(vm_t *vm, int nargs, co_done_fn done, uint64_t num) {
  void *ud = (void *)(uintptr_t)num;
  /* Never resume a coroutine from inside another one (see vm.h): defer when called from Lua. */
  if (vm_current()) return vm_spawn_deferred(vm, CO_WS, nargs, done, ud);
  return vm_spawn(vm, CO_WS, nargs, done, ud);
}

static void log_lua_error(const char *what, uint64_t num, lua_State *T) {
  ws_conn_t *c = num ? ws_find_num(num) : NULL;
  ws_info_t i = {0};
  if (c) ws_info(c, &i);
  log_field_t f[] = {{"conn", i.id ? i.id : "-", 0}, {"error", lua_tostring(T, -1), 0}};
  log_write(LOG_ERROR, what, f, 2);
}

/* _handshake returns nothing (accepted), or text, close_code, close_reason. */
static void handshake_done(co_t *co, int ok, void *ud) {
  lua_State *T = vm_co_thread(co);
  uint64_t num = (uint64_t)(uintptr_t)ud;
  if (!ok) {
    log_lua_error("ws connect handler failed", num, T);
    ws_refuse(num, INTERNAL_ERROR_RES, sizeof INTERNAL_ERROR_RES - 1, 1011, "internal error");
    return;
  }
  size_t tl = 0;
  const char *text = lua_type(T, 1) == LUA_TSTRING ? lua_tolstring(T, 1, &tl) : NULL;
  unsigned code = lua_type(T, 2) == LUA_TNUMBER ? (unsigned)lua_tointeger(T, 2) : 1008;
  const char *reason = lua_type(T, 3) == LUA_TSTRING ? lua_tostring(T, 3) : "connect failed";
  ws_refuse(num, text, tl, code, reason); /* nothing happens when it was accepted */
}

static int hook_handshake(uint64_t num, const char *id, const char *text, size_t len,
                          const char *query, const char *bearer, const char *remote) {
  vm_t *vm = vm_active();
  if (!vm) return -1;
  lua_State *L = vm_state(vm);
  if (!push_ws_fn(L, "_handshake")) return -1;
  lua_pushnumber(L, (lua_Number)num);
  lua_pushstring(L, id);
  lua_pushlstring(L, text, len);
  lua_pushstring(L, query);
  if (bearer)
    lua_pushstring(L, bearer);
  else
    lua_pushnil(L);
  lua_pushstring(L, remote);
  return spawn(vm, 6, handshake_done, num) ? 0 : -1;
}

/* _on_message returns the `res` text (or nothing). */
static void message_done(co_t *co, int ok, void *ud) {
  lua_State *T = vm_co_thread(co);
  uint64_t num = (uint64_t)(uintptr_t)ud;
  if (!ok) {
    log_lua_error("ws message dispatcher failed", num, T);
    return;
  }
  size_t tl = 0;
  if (lua_type(T, 1) == LUA_TSTRING) {
    const char *text = lua_tolstring(T, 1, &tl);
    if (!ws_utf8_valid((const uint8_t *)text, tl)) { /* a text frame must be UTF-8 */
      static const char bad[] = "{\"type\":\"res\",\"id\":null,\"ok\":false,\"error\":{\"code\":"
                                "\"internal_error\",\"message\":\"the response is not valid "
                                "UTF-8\"}}";
      log_field_t f[] = {{"conn", "-", 0}};
      log_write(LOG_WARN, "ws: a response that is not valid UTF-8 was not sent", f, 1);
      text = bad;
      tl = sizeof bad - 1;
    }
    ws_send_text(num, text, tl);
  }
}

static void hook_message(uint64_t num, const char *text, size_t len, uint64_t retry_ms) {
  vm_t *vm = vm_active();
  if (!vm) return;
  lua_State *L = vm_state(vm);
  if (!push_ws_fn(L, "_on_message")) return;
  lua_pushnumber(L, (lua_Number)num);
  lua_pushlstring(L, text, len);
  lua_pushnumber(L, (lua_Number)retry_ms);
  spawn(vm, 3, message_done, num);
}

static void hook_done(co_t *co, int ok, void *ud) {
  (void)ud;
  if (!ok) log_lua_error("ws hook dispatcher failed", 0, vm_co_thread(co));
}

static void hook_disconnect(ws_conn_t *c, unsigned code, const char *reason) {
  vm_t *vm = vm_active();
  if (!vm) return;
  lua_State *L = vm_state(vm);
  if (!push_ws_fn(L, "_on_disconnect")) return;
  push_info(L, c, 1);
  lua_pushinteger(L, code);
  lua_pushstring(L, reason);
  if (!spawn(vm, 3, hook_done, 0)) log_errorf("ws: cannot start on_disconnect");
}

void lib_ws_install_hooks(void) {
  static const ws_hooks_t hooks = {hook_handshake, hook_message, hook_disconnect};
  ws_set_hooks(&hooks);
}
