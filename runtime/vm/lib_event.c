/* lib_event.c - named wake-ups for the runtime's Lua layer (not a public API):
 *
 *   chatgw._wait(name, timeout_ms) -> true (notified) | false (timed out) | nil, "cancelled: ..."
 *   chatgw._notify(name)           -> how many waiters were woken
 *
 * A coroutine waits for something another one will do (an outbox sender for new rows, a reply
 * handle for its status to change) without polling. Waiters are process-wide by name, so a
 * notify from one state wakes waiters of another; woken coroutines resume on the next loop turn
 * (never inside the notifier's resume). */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lib.h"
#include "siphash.h"
#include "vm.h"

#define BUCKETS 256
#define NAME_MAX_LEN 200

typedef struct waiter {
  pending_t base;
  uv_timer_t timer;
  struct waiter *prev, *next;
  size_t bucket;
  int linked;
  size_t len;
  char name[];
} waiter_t;

static waiter_t *g_buckets[BUCKETS];
static uint64_t g_key[2];
static int g_have_key;

static size_t bucket_of(const char *name, size_t len) {
  if (!g_have_key) {
    siphash_process_key(g_key);
    g_have_key = 1;
  }
  return (size_t)(siphash13(name, len, g_key) % BUCKETS);
}

static void unlink_waiter(waiter_t *w) {
  if (!w->linked) return;
  if (w->prev)
    w->prev->next = w->next;
  else
    g_buckets[w->bucket] = w->next;
  if (w->next) w->next->prev = w->prev;
  w->linked = 0;
}

static void on_closed(uv_handle_t *h) {
  free(h->data);
}

static void finish(waiter_t *w, int notified) {
  co_t *co = w->base.co;
  unlink_waiter(w);
  uv_timer_stop(&w->timer);
  uv_close((uv_handle_t *)&w->timer, on_closed);
  vm_wait_done(co);
  lua_pushboolean(vm_co_thread(co), notified);
  if (notified)
    vm_resume_later(co, 1); /* notify runs inside a coroutine */
  else
    vm_resume(co, 1); /* a timer callback: resuming here is fine */
}

static void on_timeout(uv_timer_t *t) {
  finish(t->data, 0);
}

static void wait_cancel(pending_t *p) {
  waiter_t *w = (waiter_t *)p;
  unlink_waiter(w);
  uv_timer_stop(&w->timer);
  uv_close((uv_handle_t *)&w->timer, on_closed);
}

static const char *check_name(lua_State *L, const char *fn, size_t *len) {
  if (lua_type(L, 1) != LUA_TSTRING)
    luaL_error(L, "%s: name must be a string, got %s", fn, luaL_typename(L, 1));
  const char *name = lua_tolstring(L, 1, len);
  if (*len == 0 || *len > NAME_MAX_LEN)
    luaL_error(L, "%s: name must be 1..%d bytes", fn, NAME_MAX_LEN);
  return name;
}

static int l_wait(lua_State *L) {
  const lib_host_t *host = lua_touserdata(L, lua_upvalueindex(1));
  size_t len;
  const char *name = check_name(L, "chatgw._wait", &len);
  double ms = luaL_checknumber(L, 2);
  if (!(ms >= 0) || ms > 1e12) return luaL_error(L, "chatgw._wait: timeout_ms must be >= 0");
  co_t *co = vm_check_yieldable(L, "chatgw._wait");
  waiter_t *w = calloc(1, sizeof *w + len + 1);
  if (!w) return luaL_error(L, "chatgw._wait: out of memory");
  memcpy(w->name, name, len);
  w->len = len;
  w->base.cancel = wait_cancel;
  w->base.restricted_ok = 0;
  uv_timer_init(host->loop, &w->timer);
  w->timer.data = w;
  w->bucket = bucket_of(name, len);
  w->next = g_buckets[w->bucket];
  if (w->next) w->next->prev = w;
  g_buckets[w->bucket] = w;
  w->linked = 1;
  uv_update_time(host->loop);
  uv_timer_start(&w->timer, on_timeout, (uint64_t)ms, 0);
  return vm_wait(L, co, &w->base);
}

static int l_notify(lua_State *L) {
  size_t len;
  const char *name = check_name(L, "chatgw._notify", &len);
  size_t b = bucket_of(name, len);
  int n = 0;
  waiter_t *w = g_buckets[b];
  while (w) {
    waiter_t *next = w->next;
    if (w->len == len && memcmp(w->name, name, len) == 0) {
      finish(w, 1);
      n++;
    }
    w = next;
  }
  lua_pushinteger(L, n);
  return 1;
}

void lib_event_register(lua_State *L, int t, lib_host_t *host) {
  if (t < 0 && t > LUA_REGISTRYINDEX) t = lua_gettop(L) + t + 1;
  lua_pushlightuserdata(L, host);
  lua_pushcclosure(L, l_wait, 1);
  lua_setfield(L, t, "_wait");
  lua_pushcfunction(L, l_notify);
  lua_setfield(L, t, "_notify");
}
