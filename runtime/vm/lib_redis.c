/* lib_redis.c - the Redis client (net/redis.c) for the runtime's own Lua layer (not a public
 * API; lua/chatgw/cluster.lua builds on it, docs/cluster.md):
 *
 *   chatgw._redis.configure(url, connect_timeout_ms, command_timeout_ms)
 *        -> true | nil, "message" (a bad URL) | false, "changed" (a reload gave another URL)
 *   chatgw._redis.command(arg, ...)  -- yields until the reply
 *        -> value | nil, "down: ..." | "timeout: ..." | "lost: ..." | "reply: <Redis error>"
 *        Redis values: strings and statuses are strings, integers numbers, nil false, arrays
 *        tables (an error inside an array is {err = "..."}).
 *   chatgw._redis.subscribe(channel)           -- on the subscriber connection (its own)
 *   chatgw._redis.next_message() -> channel, data | nil, "cancelled: ..."  (yields)
 *   chatgw._redis.status() -> { configured, url, up, sub_up, commands, errors, ... }
 *   chatgw._node_default() -> "<hostname>-<pid>"      chatgw._log_node(id)
 *
 * The clients are process-wide: they live across reloads, and rt.c closes them at exit
 * (redis_close_all). Results are delivered on the next loop turn (vm_resume_later): no Lua
 * runs inside hiredis' callbacks. */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib.h"
#include "lib_opts.h"
#include "log.h"
#include "redis.h"
#include "vm.h"

#define MAX_ARGS 64
#define MAX_QUEUED 10000
#define MAX_DEPTH 8

static struct {
  int configured;
  redis_url_t url;
  char url_text[1024];
  redis_client_t *cmd, *sub;
  uint64_t connect_timeout_ms, command_timeout_ms;
  uv_loop_t *loop;
} g;

/* ---- commands ---- */

typedef struct {
  pending_t base;
  redis_cmd_t *cmd;
} cwait_t;

static void push_reply(lua_State *T, const redisReply *r, int depth) {
  switch (r->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(T, r->str, r->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushnumber(T, (lua_Number)r->integer);
    break;
  case REDIS_REPLY_ARRAY:
    if (depth >= MAX_DEPTH) {
      lua_pushboolean(T, 0);
      break;
    }
    lua_checkstack(T, 4);
    lua_createtable(T, (int)r->elements, 0);
    for (size_t i = 0; i < r->elements; i++) {
      push_reply(T, r->element[i], depth + 1);
      lua_rawseti(T, -2, (int)i + 1);
    }
    break;
  case REDIS_REPLY_ERROR:
    lua_createtable(T, 0, 1);
    lua_pushlstring(T, r->str, r->len);
    lua_setfield(T, -2, "err");
    break;
  default: /* NIL */
    lua_pushboolean(T, 0);
  }
}

static void on_cmd_reply(void *ud, const redisReply *r, const char *err) {
  cwait_t *w = ud;
  co_t *co = w->base.co;
  free(w);
  lua_State *T = vm_co_thread(co);
  lua_checkstack(T, 4);
  int n;
  if (err) {
    lua_pushnil(T);
    lua_pushstring(T, err);
    n = 2;
  } else if (r->type == REDIS_REPLY_ERROR) {
    lua_pushnil(T);
    lua_pushfstring(T, "reply: %s", r->str ? r->str : "error");
    n = 2;
  } else {
    push_reply(T, r, 0);
    n = 1;
  }
  vm_wait_done(co);
  vm_resume_later(co, n);
}

static void cmd_cancel(pending_t *p) {
  cwait_t *w = (cwait_t *)p;
  redis_cmd_cancel(w->cmd);
  free(w);
}

static int l_command(lua_State *L) {
  const char *fn = "chatgw._redis.command";
  int argc = lua_gettop(L);
  if (argc < 1 || argc > MAX_ARGS)
    return luaL_error(L, "%s: give 1..%d arguments (the command and its arguments)", fn, MAX_ARGS);
  const char *argv[MAX_ARGS];
  size_t lens[MAX_ARGS];
  for (int i = 1; i <= argc; i++) {
    int t = lua_type(L, i);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      return luaL_error(L, "%s: argument %d must be a string or a number, got %s", fn, i,
                        lua_typename(L, t));
    if (t == LUA_TNUMBER) { /* integers without ".0", others as Lua writes them */
      lua_Number v = lua_tonumber(L, i);
      char buf[64];
      if (v > -9e15 && v < 9e15 && v == (lua_Number)(long long)v)
        snprintf(buf, sizeof buf, "%lld", (long long)v);
      else
        snprintf(buf, sizeof buf, "%.17g", (double)v);
      lua_pushstring(L, buf);
      lua_replace(L, i);
    }
    argv[i - 1] = lua_tolstring(L, i, &lens[i - 1]);
  }
  co_t *co = vm_check_yieldable(L, fn);
  if (!g.configured || !g.cmd) {
    lua_pushnil(L);
    lua_pushliteral(L, "down: no cluster.redis_url is configured");
    return 2;
  }
  cwait_t *w = calloc(1, sizeof *w);
  if (!w) return luaL_error(L, "%s: out of memory", fn);
  w->base.cancel = cmd_cancel;
  w->cmd = redis_command(g.cmd, argc, argv, lens, g.command_timeout_ms, on_cmd_reply, w);
  if (!w->cmd) {
    free(w);
    return luaL_error(L, "%s: out of memory", fn);
  }
  return vm_wait(L, co, &w->base);
}

/* ---- the subscriber's messages ---- */

typedef struct msg {
  struct msg *next;
  size_t cl, dl;
  char *channel, *data;
} msg_t;

static struct {
  msg_t *head, *tail;
  size_t n;
  uint64_t dropped;
  pending_t *waiter; /* the one coroutine waiting in next_message */
} q;

static void msg_free(msg_t *m) {
  free(m->channel);
  free(m->data);
  free(m);
}

static int deliver(lua_State *T) {
  msg_t *m = q.head;
  if (!m) return 0;
  q.head = m->next;
  if (!q.head) q.tail = NULL;
  q.n--;
  lua_checkstack(T, 3);
  lua_pushlstring(T, m->channel, m->cl);
  lua_pushlstring(T, m->data, m->dl);
  msg_free(m);
  return 2;
}

static void on_sub_message(void *ud, const char *ch, size_t cl, const char *data, size_t dl) {
  (void)ud;
  if (q.n >= MAX_QUEUED) { /* nobody reads: drop the oldest */
    msg_t *old = q.head;
    q.head = old->next;
    if (!q.head) q.tail = NULL;
    q.n--;
    q.dropped++;
    msg_free(old);
  }
  msg_t *m = calloc(1, sizeof *m);
  if (!m || !(m->channel = malloc(cl + 1)) || !(m->data = malloc(dl + 1))) {
    if (m) msg_free(m);
    q.dropped++;
    return;
  }
  memcpy(m->channel, ch, cl);
  memcpy(m->data, data, dl);
  m->channel[cl] = m->data[dl] = 0;
  m->cl = cl;
  m->dl = dl;
  if (q.tail)
    q.tail->next = m;
  else
    q.head = m;
  q.tail = m;
  q.n++;
  if (q.waiter) {
    pending_t *p = q.waiter;
    q.waiter = NULL;
    co_t *co = p->co;
    free(p);
    int n = deliver(vm_co_thread(co));
    vm_wait_done(co);
    vm_resume_later(co, n);
  }
}

static void msg_cancel(pending_t *p) {
  if (q.waiter == p) q.waiter = NULL;
  free(p);
}

static int l_subscribe(lua_State *L) {
  const char *fn = "chatgw._redis.subscribe";
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L, "%s: channel must be a string, got %s", fn, luaL_typename(L, 1));
  if (!g.configured) return luaL_error(L, "%s: no cluster.redis_url is configured", fn);
  if (!g.sub) {
    redis_opts_t o = {"sub", g.connect_timeout_ms};
    g.sub = redis_client_new(g.loop, &g.url, &o);
    if (!g.sub) return luaL_error(L, "%s: out of memory", fn);
  }
  if (redis_subscribe(g.sub, lua_tostring(L, 1), on_sub_message, NULL) != 0)
    return luaL_error(L, "%s: bad channel name (1..200 bytes)", fn);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_next_message(lua_State *L) {
  const char *fn = "chatgw._redis.next_message";
  co_t *co = vm_check_yieldable(L, fn);
  if (q.waiter) return luaL_error(L, "%s: another coroutine is waiting for messages", fn);
  if (q.head) return deliver(L);
  pending_t *p = calloc(1, sizeof *p);
  if (!p) return luaL_error(L, "%s: out of memory", fn);
  p->cancel = msg_cancel;
  q.waiter = p;
  return vm_wait(L, co, p);
}

/* ---- configuration and status ---- */

static int l_configure(lua_State *L) {
  const char *fn = "chatgw._redis.configure";
  const lib_host_t *host = lua_touserdata(L, lua_upvalueindex(1));
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L, "%s: url must be a string, got %s", fn, luaL_typename(L, 1));
  const char *url = lua_tostring(L, 1);
  double ct = luaL_optnumber(L, 2, 2000), mt = luaL_optnumber(L, 3, 2000);
  if (!(ct >= 1 && ct <= 3600000) || !(mt >= 1 && mt <= 3600000))
    return luaL_error(L, "%s: timeouts must be 1..3600000 ms", fn);
  redis_url_t u;
  char err[512];
  if (redis_url_parse(url, &u, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  if (g.configured) {
    g.command_timeout_ms = (uint64_t)mt;
    if (strcmp(g.url_text, url) != 0) {
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "changed");
      return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
  }
  if (host->check_only) { /* `chatgw check`: the URL is valid; nothing connects */
    lua_pushboolean(L, 1);
    return 1;
  }
  if (strlen(url) >= sizeof g.url_text) {
    lua_pushnil(L);
    lua_pushliteral(L, "the Redis URL is too long");
    return 2;
  }
  g.configured = 1;
  g.url = u;
  snprintf(g.url_text, sizeof g.url_text, "%s", url);
  g.loop = host->loop;
  g.connect_timeout_ms = (uint64_t)ct;
  g.command_timeout_ms = (uint64_t)mt;
  redis_opts_t o = {"cmd", g.connect_timeout_ms};
  g.cmd = redis_client_new(g.loop, &g.url, &o);
  if (!g.cmd) return luaL_error(L, "%s: out of memory", fn);
  lua_pushboolean(L, 1);
  return 1;
}

static void set_client(lua_State *L, const char *k, redis_client_t *c) {
  if (!c) return;
  redis_stats_t s;
  redis_client_stats(c, &s);
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, s.up);
  lua_setfield(L, -2, "up");
  lib_set_num(L, "commands", (double)s.commands);
  lib_set_num(L, "errors", (double)s.errors);
  lib_set_num(L, "timeouts", (double)s.timeouts);
  lib_set_num(L, "reconnects", (double)s.reconnects);
  lib_set_num(L, "messages", (double)s.messages);
  if (!s.up) {
    lib_set_str(L, "last_error", s.last_error);
    lib_set_num(L, "down_ms", (double)(uv_now(g.loop) - s.down_since_ms));
  }
  lua_setfield(L, -2, k);
}

static int l_status(lua_State *L) {
  lua_createtable(L, 0, 6);
  lua_pushboolean(L, g.configured);
  lua_setfield(L, -2, "configured");
  if (g.configured) {
    char shown[700];
    redis_url_redacted(&g.url, shown, sizeof shown);
    lib_set_str(L, "url", shown);
    lua_pushboolean(L, redis_client_up(g.cmd));
    lua_setfield(L, -2, "up");
    set_client(L, "cmd", g.cmd);
    set_client(L, "sub", g.sub);
    lib_set_num(L, "queued", (double)q.n);
    lib_set_num(L, "dropped", (double)q.dropped);
  }
  return 1;
}

static int l_node_default(lua_State *L) {
  char h[256] = "";
  if (gethostname(h, sizeof h - 1) != 0 || !h[0]) snprintf(h, sizeof h, "node");
  h[sizeof h - 1] = 0;
  lua_pushfstring(L, "%s-%d", h, (int)getpid());
  return 1;
}

static int l_log_node(lua_State *L) {
  const char *id = luaL_optstring(L, 1, NULL);
  log_set_node(id);
  return 0;
}

void lib_redis_register(lua_State *L, int t, lib_host_t *host) {
  if (t < 0) t = lua_gettop(L) + t + 1;
  lua_createtable(L, 0, 6);
  lua_pushlightuserdata(L, host);
  lua_pushcclosure(L, l_configure, 1);
  lua_setfield(L, -2, "configure");
  lua_pushcfunction(L, l_command);
  lua_setfield(L, -2, "command");
  lua_pushcfunction(L, l_subscribe);
  lua_setfield(L, -2, "subscribe");
  lua_pushcfunction(L, l_next_message);
  lua_setfield(L, -2, "next_message");
  lua_pushcfunction(L, l_status);
  lua_setfield(L, -2, "status");
  lua_setfield(L, t, "_redis");
  lua_pushcfunction(L, l_node_default);
  lua_setfield(L, t, "_node_default");
  lua_pushcfunction(L, l_log_node);
  lua_setfield(L, t, "_log_node");
}

void lib_redis_shutdown(void) {
  redis_close_all();
  while (q.head) {
    msg_t *m = q.head;
    q.head = m->next;
    msg_free(m);
  }
  q.tail = NULL;
  q.n = 0;
  memset(&g, 0, sizeof g);
}
