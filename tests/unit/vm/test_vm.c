/* test_vm.c - runtime/vm/vm.c without the runtime: states and coroutines on a real loop.
 *
 * Covers: a failing open callback; reference counts across a reload (a retired state stays open
 * while a request-like coroutine runs on it, its background coroutine is cancelled with
 * "cancelled: reload", and it closes when the last coroutine ends); vm_active(); the cancel
 * hook of a pending operation (called once; the wait returns nil, "cancelled: ..."; the next
 * wait raises); work spawned before activation (held, dropped unrun when the state is retired
 * first); every-timers stopped by retirement; vm_destroy cancelling pending operations and
 * handing unfinished coroutines to their kind's drop hook; and the error for a wait inside a
 * callback LuaJIT cannot yield across. The loop must close with no handle left. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log.h"
#include "vm.h"

#include "check.h"

static uv_loop_t g_loop;

/* ---- primitives the test states get ---- */

/* wait(ms): the runtime's timer wait. */
static int l_wait(lua_State *L) {
  co_t *co = vm_check_yieldable(L, "wait");
  return vm_wait_timer(L, co, (uint64_t)luaL_checknumber(L, 1));
}

/* hold(): a wait that only ends when the test completes it or cancels it. */
typedef struct {
  pending_t base;
} hold_t;

static int g_cancels;
static hold_t *g_hold;

static void hold_cancel(pending_t *p) {
  g_cancels++;
  if (g_hold == (hold_t *)p) g_hold = NULL;
  free(p);
}

static int l_hold(lua_State *L) {
  co_t *co = vm_check_yieldable(L, "hold");
  hold_t *h = calloc(1, sizeof *h);
  h->base.cancel = hold_cancel;
  g_hold = h;
  return vm_wait(L, co, &h->base);
}

static void hold_complete(const char *value) {
  hold_t *h = g_hold;
  co_t *co = h->base.co;
  g_hold = NULL;
  free(h);
  vm_wait_done(co);
  lua_pushstring(vm_co_thread(co), value);
  vm_resume(co, 1);
}

static int g_open_fail;

static int test_open(lua_State *L, vm_t *vm, void *ud, char *err, size_t errlen) {
  (void)vm;
  (void)ud;
  if (g_open_fail) {
    snprintf(err, errlen, "open refused");
    return -1;
  }
  lua_register(L, "wait", l_wait);
  lua_register(L, "hold", l_hold);
  return 0;
}

static const vm_options_t OPTS = {NULL, test_open, NULL};

static vm_t *new_vm(void) {
  char err[256];
  vm_t *vm = vm_new(&OPTS, err, sizeof err);
  if (!vm) printf("FAIL vm_new: %s\n", err);
  return vm;
}

/* ---- coroutines and what they ended with ---- */

typedef struct {
  int ended; /* 1 returned, 2 raised */
  char result[256];
} outcome_t;

static void on_done(co_t *co, int ok, void *ud) {
  outcome_t *o = ud;
  lua_State *T = vm_co_thread(co);
  o->ended = ok ? 1 : 2;
  luaL_Buffer b;
  luaL_buffinit(T, &b);
  int n = lua_gettop(T);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, ' ');
    lua_getglobal(T, "tostring");
    lua_pushvalue(T, i);
    lua_call(T, 1, 1);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  snprintf(o->result, sizeof o->result, "%s", lua_tostring(T, -1));
}

static co_t *run(vm_t *vm, co_kind_t kind, const char *code, outcome_t *o, int deferred) {
  lua_State *L = vm_state(vm);
  if (luaL_loadstring(L, code) != 0) {
    printf("FAIL compile: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return NULL;
  }
  return deferred ? vm_spawn_deferred(vm, kind, 0, on_done, o) : vm_spawn(vm, kind, 0, on_done, o);
}

/* Runs the loop until cond holds or 3 s pass. */
#define RUN_UNTIL(cond)                                                                            \
  do {                                                                                             \
    uint64_t until_ = uv_now(&g_loop) + 3000;                                                      \
    while (!(cond) && uv_now(&g_loop) < until_) {                                                  \
      uv_run(&g_loop, UV_RUN_ONCE);                                                                \
      uv_update_time(&g_loop);                                                                     \
    }                                                                                              \
  } while (0)

static void test_open_failure(void) {
  size_t before = vm_live_count();
  g_open_fail = 1;
  char err[256] = "";
  vm_t *vm = vm_new(&OPTS, err, sizeof err);
  g_open_fail = 0;
  check(vm == NULL && strcmp(err, "open refused") == 0, "a failing open: no state, its error (%s)",
        err);
  check(vm_live_count() == before, "a failing open leaves no state behind");
}

static void test_reload(void) {
  vm_t *a = new_vm();
  vm_activate(a);
  check(vm_active() == a, "the activated state is the active one");
  outcome_t req = {0}, bg = {0};
  run(a, CO_REQUEST, "local ok = wait(40) return 'request', ok", &req, 0);
  run(a, CO_BACKGROUND, "local ok, err = wait(100000) return ok, err", &bg, 1);
  uv_run(&g_loop, UV_RUN_NOWAIT); /* the deferred start: both coroutines now wait */
  size_t live = vm_live_count();
  vm_t *b = new_vm();
  vm_retire(a, "reload");
  vm_activate(b);
  check(vm_active() == b, "after the reload the new state is the active one");
  check(vm_live_count() == live + 1, "the retired state stays open while coroutines run on it");
  RUN_UNTIL(bg.ended);
  check(bg.ended == 1 && strcmp(bg.result, "nil cancelled: reload") == 0,
        "its background coroutine got nil, \"cancelled: reload\" (%s)", bg.result);
  check(!req.ended, "the request-like coroutine is still running on the retired state");
  RUN_UNTIL(req.ended);
  check(req.ended == 1 && strcmp(req.result, "request true") == 0,
        "the request finished on its own state (%s)", req.result);
  check(vm_live_count() == live, "the retired state closed with its last coroutine (%zu)",
        vm_live_count());
  vm_retire(b, "test");
  check(vm_active() == NULL, "no active state once it is retired");
}

static void test_cancel_hook(void) {
  vm_t *vm = new_vm();
  vm_activate(vm);
  outcome_t o = {0};
  g_cancels = 0;
  co_t *co = run(vm, CO_BACKGROUND,
                 "local a, b = hold()\n"
                 "local ok, e = pcall(wait, 1)\n"
                 "return a, b, ok, (tostring(e):match('cancelled: %w+'))",
                 &o, 0);
  check(co != NULL && g_hold != NULL, "the coroutine waits on its pending operation");
  vm_cancel(co, "test");
  check(g_cancels == 1 && g_hold == NULL, "cancel called the operation's cancel hook once");
  vm_cancel(co, "again");
  check(g_cancels == 1, "a second cancel does not call it again");
  RUN_UNTIL(o.ended);
  check(o.ended == 1 && strcmp(o.result, "nil cancelled: test false cancelled: test") == 0,
        "the wait returned nil, \"cancelled: test\" and the next wait raised (%s)", o.result);

  outcome_t done = {0};
  run(vm, CO_BACKGROUND, "return hold()", &done, 0);
  hold_complete("value");
  check(done.ended == 1 && strcmp(done.result, "value") == 0 && g_cancels == 1,
        "a completed operation resumes its coroutine with its results (%s)", done.result);
  vm_retire(vm, "test");
}

static void test_held_until_activation(void) {
  size_t live = vm_live_count();
  vm_t *vm = new_vm();
  outcome_t o = {0};
  run(vm, CO_BACKGROUND, "return 'ran'", &o, 1);
  uv_run(&g_loop, UV_RUN_NOWAIT);
  check(!o.ended, "background work spawned while a state loads does not run");
  vm_retire(vm, "never activated");
  uv_run(&g_loop, UV_RUN_NOWAIT);
  check(!o.ended && vm_live_count() == live, "retired before activation: dropped unrun, closed");

  vm = new_vm();
  outcome_t p = {0};
  run(vm, CO_BACKGROUND, "return 'ran'", &p, 1);
  vm_activate(vm);
  RUN_UNTIL(p.ended);
  check(p.ended == 1 && strcmp(p.result, "ran") == 0, "held work starts at activation");
  vm_retire(vm, "test");
}

static int g_ticks;

static int l_tick(lua_State *L) {
  (void)L;
  g_ticks++;
  return 0;
}

static void test_every_stops_on_retire(void) {
  vm_t *vm = new_vm();
  vm_activate(vm);
  lua_State *L = vm_state(vm);
  lua_pushcfunction(L, l_tick);
  vm_every_start(L, vm, 5, lua_gettop(L));
  lua_pop(L, 1);
  g_ticks = 0;
  RUN_UNTIL(g_ticks >= 3);
  check(g_ticks >= 3, "chatgw.every-style timer ticks (%d)", g_ticks);
  size_t live = vm_live_count();
  vm_retire(vm, "reload");
  int at_retire = g_ticks;
  uint64_t until = uv_now(&g_loop) + 40;
  while (uv_now(&g_loop) < until) {
    uv_run(&g_loop, UV_RUN_NOWAIT);
    uv_sleep(5);
    uv_update_time(&g_loop);
  }
  check(g_ticks == at_retire, "no tick after the state was retired (%d -> %d)", at_retire, g_ticks);
  check(vm_live_count() == live - 1, "the timer's reference went with it: the state closed");
}

static int g_drops;
static void *g_drop_ud;

static void on_drop(void *ud) {
  g_drops++;
  g_drop_ud = ud;
}

static void test_destroy(void) {
  vm_set_drop(CO_REQUEST, on_drop);
  vm_t *vm = new_vm();
  vm_activate(vm);
  outcome_t o = {0};
  g_cancels = 0;
  lua_State *L = vm_state(vm);
  luaL_loadstring(L, "return hold()");
  vm_spawn(vm, CO_REQUEST, 0, on_done, &o); /* ud for the drop hook: &o */
  outcome_t bg = {0};
  run(vm, CO_BACKGROUND, "return wait(100000)", &bg, 0);
  vm_destroy(vm);
  check(g_cancels == 1, "destroy cancelled the pending operation");
  check(g_drops == 1 && g_drop_ud == &o, "the unfinished request went to its kind's drop hook");
  check(!o.ended && !bg.ended, "destroyed coroutines do not run their done callbacks");
  vm_set_drop(CO_REQUEST, NULL);
}

static void test_no_wait_across_c(void) {
  vm_t *vm = new_vm();
  vm_activate(vm);
  outcome_t o = {0};
  run(vm, CO_BACKGROUND,
      "local ok, e = pcall(table.sort, {3, 2, 1}, function(a, b) wait(1) return a < b end)\n"
      "return ok, e",
      &o, 0);
  RUN_UNTIL(o.ended);
  check(o.ended == 1 && strstr(o.result, "false") == o.result &&
            strstr(o.result, "attempt to yield across C-call boundary") != NULL,
        "a wait inside table.sort's comparator raises a clear error (%s)", o.result);
  vm_retire(vm, "test");
}

int main(void) {
  log_init();
  log_set_level(LOG_ERROR);
  uv_loop_init(&g_loop);
  vm_sched_init(&g_loop);

  test_open_failure();
  test_reload();
  test_cancel_hook();
  test_held_until_activation();
  test_every_stops_on_retire();
  test_destroy();
  test_no_wait_across_c();

  vm_destroy_all();
  check(vm_live_count() == 0, "every state closed");
  vm_sched_close();
  uv_run(&g_loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&g_loop);
  check(rc == 0, "the loop closes with no handle left (%d)", rc);
  return check_report();
}
