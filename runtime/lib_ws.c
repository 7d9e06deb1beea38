/* lib_ws.c - chatgw._ws: the C primitives under chatgw.ws (lua/chatgw/ws.lua wraps them).
 *
 * Connection ids are strings ("<boot>-<n>"); the runtime's own calls use the number n. JSON is
 * encoded and decoded on the Lua side: these functions take and give JSON text. Misuse raises
 * an error naming the function; a connection that is gone gives nil, "not_found: ...". */
#include <lauxlib.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <string.h>

#include "lib.h"
#include "ws.h"

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

static const char *opt_str(lua_State *L, int idx, const char *fname, const char *what) {
  if (lua_isnoneornil(L, idx)) return NULL;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: %s must be a string, got %s", fname, what, luaL_typename(L, idx));
  return lua_tostring(L, idx);
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
  f.role = opt_str(L, 3, fn, "role");
  f.scope = opt_str(L, 4, fn, "scope");
  f.include = id_array(L, 5, &f.ninclude, fn, "include");
  f.exclude = id_array(L, 6, &f.nexclude, fn, "exclude");
  lua_pushnumber(L, (lua_Number)ws_broadcast(ev, payload, pl, &f));
  return 1;
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
  ws_push_list(L, opt_str(L, 1, fn, "role"), opt_str(L, 2, fn, "scope"),
               opt_str(L, 3, fn, "device"));
  return 1;
}

static int l_get(lua_State *L) {
  ws_conn_t *c = ws_find(luaL_checkstring(L, 1));
  if (!c) return 0;
  ws_push_info(L, c, 1);
  return 1;
}

static uint64_t check_num(lua_State *L, int idx) {
  double d = luaL_checknumber(L, idx);
  return d > 0 ? (uint64_t)d : 0;
}

static int l_info(lua_State *L) {
  ws_conn_t *c = ws_find_num(check_num(L, 1));
  if (!c) return 0;
  ws_push_info(L, c, 0);
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
  ws_push_presence(L);
  return 1;
}

/* Constant-time token comparison (of digests). */
static int l_token_eq(lua_State *L) {
  size_t al = 0, bl = 0;
  const char *a = lua_tolstring(L, 1, &al);
  const char *b = lua_tolstring(L, 2, &bl);
  if (!a || !b || !al || !bl) {
    lua_pushboolean(L, 0);
    return 1;
  }
  unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)a, al, da);
  SHA256((const unsigned char *)b, bl, db);
  lua_pushboolean(L, CRYPTO_memcmp(da, db, sizeof da) == 0);
  return 1;
}

static int l_count(lua_State *L) {
  lua_pushnumber(L, (lua_Number)ws_connection_count());
  return 1;
}

void lib_ws_register(lua_State *L, int t) {
  static const luaL_Reg fns[] = {{"broadcast", l_broadcast},
                                 {"send", l_send},
                                 {"close", l_close},
                                 {"list", l_list},
                                 {"get", l_get},
                                 {"info", l_info},
                                 {"data_get", l_data_get},
                                 {"data_set", l_data_set},
                                 {"accept", l_accept},
                                 {"presence", l_presence},
                                 {"token_eq", l_token_eq},
                                 {"count", l_count},
                                 {NULL, NULL}};
  lua_newtable(L);
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  lua_setfield(L, t, "_ws");
}
