/* lib_fs.c - the few file-system questions Lua cannot ask portably:
 *
 *   chatgw.fs.realpath(path) -> the absolute path with symlinks, "." and ".." resolved
 *                               | nil, "not_found: ..." | nil, "io: ..."
 *   chatgw.fs.stat(path)     -> { type = "file"|"dir"|"other", size, mtime } (mtime in seconds,
 *                               with its fraction) | nil, "not_found: ..." | nil, "io: ..."
 *
 * Both are quick system calls on the loop thread (no waiting on the network): for small
 * checks (the notify API's image directories, a registry file's modification time). */

#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib.h"

static const char *check_path(lua_State *L, const char *fn) {
  if (lua_type(L, 1) != LUA_TSTRING)
    luaL_error(L, "%s: path must be a string, got %s", fn, luaL_typename(L, 1));
  size_t n;
  const char *p = lua_tolstring(L, 1, &n);
  if (n == 0 || n >= PATH_MAX) luaL_error(L, "%s: path must be 1..%d bytes", fn, PATH_MAX - 1);
  if (memchr(p, '\0', n)) luaL_error(L, "%s: path contains a NUL byte", fn);
  return p;
}

static int push_errno(lua_State *L, const char *p, int e) {
  lua_pushnil(L);
  if (e == ENOENT || e == ENOTDIR)
    lua_pushfstring(L, "not_found: %s: %s", p, strerror(e));
  else
    lua_pushfstring(L, "io: %s: %s", p, strerror(e));
  return 2;
}

static int l_realpath(lua_State *L) {
  const char *p = check_path(L, "chatgw.fs.realpath");
  char buf[PATH_MAX];
  if (!realpath(p, buf)) return push_errno(L, p, errno);
  lua_pushstring(L, buf);
  return 1;
}

static int l_stat(lua_State *L) {
  const char *p = check_path(L, "chatgw.fs.stat");
  struct stat st;
  if (stat(p, &st) != 0) return push_errno(L, p, errno);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir" : "other");
  lua_setfield(L, -2, "type");
  lua_pushnumber(L, (lua_Number)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
  lua_setfield(L, -2, "mtime");
  return 1;
}

/* chatgw.fs.mkdir(path[, mode]) -> true | nil, "exists: ..." | nil, "io: ..." (mode default
 * 0700, under the umask). */
static int l_mkdir(lua_State *L) {
  const char *p = check_path(L, "chatgw.fs.mkdir");
  lua_Integer mode = 0700;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TNUMBER)
      return luaL_error(L, "chatgw.fs.mkdir: mode must be a number, got %s", luaL_typename(L, 2));
    mode = lua_tointeger(L, 2);
    if (mode < 0 || mode > 07777) return luaL_error(L, "chatgw.fs.mkdir: mode must be 0..07777");
  }
  if (mkdir(p, (mode_t)mode) != 0) {
    int e = errno;
    if (e == EEXIST) {
      lua_pushnil(L);
      lua_pushfstring(L, "exists: %s", p);
      return 2;
    }
    return push_errno(L, p, e);
  }
  lua_pushboolean(L, 1);
  return 1;
}

void lib_fs_register(lua_State *L, int t) {
  if (t < 0 && t > LUA_REGISTRYINDEX) t = lua_gettop(L) + t + 1;
  lua_newtable(L);
  lua_pushcfunction(L, l_realpath);
  lua_setfield(L, -2, "realpath");
  lua_pushcfunction(L, l_stat);
  lua_setfield(L, -2, "stat");
  lua_pushcfunction(L, l_mkdir);
  lua_setfield(L, -2, "mkdir");
  lua_setfield(L, t, "fs");
}
