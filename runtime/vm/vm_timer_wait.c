/* vm_timer_wait.c - vm_wait_timer: a coroutine waits for a libuv timer (chatgw.sleep,
 * lim:wait), through the scheduler's public calls (vm.h). */
#include <lauxlib.h>
#include <stdlib.h>

#include "vm.h"

typedef struct {
  pending_t base;
  uv_timer_t timer;
} timer_wait_t;

static void timer_wait_closed(uv_handle_t *h) {
  free(h->data);
}

static void timer_wait_fire(uv_timer_t *t) {
  timer_wait_t *op = t->data;
  co_t *co = op->base.co;
  uv_close((uv_handle_t *)&op->timer, timer_wait_closed);
  vm_wait_done(co);
  lua_pushboolean(vm_co_thread(co), 1);
  vm_resume(co, 1);
}

static void timer_wait_cancel(pending_t *p) {
  timer_wait_t *op = (timer_wait_t *)p;
  uv_timer_stop(&op->timer);
  uv_close((uv_handle_t *)&op->timer, timer_wait_closed);
}

int vm_wait_timer(lua_State *L, co_t *co, uint64_t ms) {
  timer_wait_t *op = calloc(1, sizeof *op);
  if (!op) return luaL_error(L, "out of memory");
  op->base.cancel = timer_wait_cancel;
  uv_timer_init(vm_loop(), &op->timer);
  op->timer.data = op;
  uv_update_time(vm_loop()); /* the cached loop time may be stale after Lua work */
  uv_timer_start(&op->timer, timer_wait_fire, ms, 0);
  return vm_wait(L, co, &op->base);
}
