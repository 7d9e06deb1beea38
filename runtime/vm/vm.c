/* vm.c - Lua states, coroutine scheduling and state lifetime across reloads (see vm.h). */
#include "vm.h"

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "vm_stack.h"
#include "watchdog.h"

#define VM_THREAD_POOL 64

typedef enum { WAKE_NONE, WAKE_START, WAKE_CANCEL, WAKE_PLAIN } wake_t;

struct co {
  vm_t *vm;
  lua_State *L; /* the coroutine's thread */
  int ref;      /* registry ref keeping the thread alive */
  co_kind_t kind;
  pending_t *pending; /* the wait in progress, if any */
  int waiting;
  int cancelled;            /* told to stop (reload or shutdown) */
  int cancel_notified;      /* it has already been handed "cancelled: ..." once */
  int held;                 /* spawned before its state was activated: waits in vm->held */
  int finished_ok;          /* returned normally: its thread may be reused */
  uint64_t id;              /* unique for the process: a handle Lua can keep (vm_cancel_id) */
  const char *restrict_why; /* vm_co_restrict */
  char cancel_reason[32];
  wake_t wake; /* why it sits in the ready queue */
  int start_nargs;
  co_t *ready_next;
  uint64_t resume_started_ms;     /* when its current resume began (watchdog_now_ms) */
  char *wd_msg;                   /* the watchdog's error, once it interrupted this coroutine */
  char label[WATCHDOG_LABEL_MAX]; /* what it runs, for the watchdog: route, file, ... */
  co_done_fn done;
  void *ud;
  co_t *prev, *next;
};

typedef struct every {
  uv_timer_t timer;
  vm_t *vm;
  uint64_t interval_ms;
  int id;
  int fn_ref;
  int running; /* a tick's coroutine is still running: the next tick is skipped */
  char label[WATCHDOG_LABEL_MAX]; /* "chatgw.every (file:line)", for the watchdog */
  struct every *prev, *next;
} every_t;

struct vm {
  lua_State *L;
  int refs; /* current + live coroutines + timers */
  int retired;
  uint64_t gen; /* 0 until activated: a state that never went live takes no number */
  co_t *cos;
  every_t *everies;
  int next_every_id;
  int active; /* became current: background work may run */
  struct {
    lua_State *L;
    int ref;
  } pool[VM_THREAD_POOL]; /* finished threads kept for reuse (saves a thread per request) */
  int npool;
  /* lua.max_memory_mb: every allocation of the state goes through capped_alloc */
  lua_Alloc base_alloc;
  void *base_ud;
  size_t mem_used, mem_cap; /* bytes; cap 0: none */
  int mem_refused;          /* an allocation was refused: headroom until the next full GC */
  co_t **held;              /* background coroutines spawned before activation */
  size_t nheld, capheld;
  vm_t *all_prev, *all_next; /* every vm not yet closed */
};

static uint64_t g_next_gen = 1; /* the number the next activated state gets */
static size_t g_live_vms = 0;
static vm_t *g_all_vms = NULL;
static co_t *g_current = NULL;
static vm_t *g_active = NULL; /* activated last, not retired */
static uv_loop_t *g_loop;
static co_drop_fn g_drop[CO_KINDS];
static char g_yield_marker;
static co_t *volatile g_wd_target; /* the coroutine the watchdog interrupted, until it ends */

static const char *const KIND_NAMES[CO_KINDS] = {"request", "background", "load", "shutdown",
                                                 "ws",      "start",      "task"};

/* Ready queue: coroutines resumed from the loop on its next iteration. */
static co_t *g_ready_head = NULL, *g_ready_tail = NULL;
static uv_idle_t g_idle;
static int g_idle_ready = 0;

#ifdef CHATGW_SANITIZE
/* malloc-based allocator so AddressSanitizer sees Lua's memory too. */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}
#endif

/* The state's allocator: LuaJIT's own (or vm_alloc), counting bytes and refusing to grow past
 * the cap; the allocation then raises "not enough memory" in the coroutine that asked. Once one
 * was refused, an eighth of the cap more (at least 1 MB) is allowed so that the runtime can still
 * answer that request's 500, until the coroutine ends and a full GC runs (vm_resume). */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  vm_t *vm = ud;
  if (nsize > osize && vm->mem_cap) {
    size_t room = vm->mem_cap;
    if (vm->mem_refused) room += vm->mem_cap / 8 > (1u << 20) ? vm->mem_cap / 8 : (1u << 20);
    if (vm->mem_used + (nsize - osize) > room) {
      vm->mem_refused = 1;
      return NULL;
    }
  }
  void *p = vm->base_alloc(vm->base_ud, ptr, osize, nsize);
  if (p || nsize == 0) vm->mem_used = vm->mem_used - osize + nsize;
  return p;
}

void vm_set_memory_cap(vm_t *vm, size_t bytes) {
  vm->mem_cap = bytes;
}

size_t vm_memory_used(vm_t *vm) {
  return vm->mem_used;
}

/* Lua's package.path: the runtime's own layer first, then Debian's shared Lua directories. */
static void set_package_path(lua_State *L, const char *dir) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  const char *old = lua_tostring(L, -1);
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, old ? old : "");
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

void *vm_yield_marker(void) {
  return &g_yield_marker;
}

void vm_set_drop(co_kind_t kind, co_drop_fn fn) {
  if ((unsigned)kind < CO_KINDS) g_drop[kind] = fn;
}

vm_t *vm_new(const vm_options_t *opts, char *err, size_t errlen) {
  vm_t *vm = calloc(1, sizeof *vm);
  if (!vm) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
#ifdef CHATGW_SANITIZE
  vm->L = lua_newstate(vm_alloc, NULL);
#else
  vm->L = luaL_newstate();
#endif
  if (!vm->L) {
    free(vm);
    snprintf(err, errlen, "cannot create Lua state");
    return NULL;
  }
  vm->base_alloc = lua_getallocf(vm->L, &vm->base_ud);
  vm->mem_used =
      (size_t)lua_gc(vm->L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(vm->L, LUA_GCCOUNTB, 0);
  lua_setallocf(vm->L, capped_alloc, vm);
  vm->refs = 1;
  g_live_vms++;
  vm->all_next = g_all_vms;
  if (g_all_vms) g_all_vms->all_prev = vm;
  g_all_vms = vm;
  lua_State *L = vm->L;
  luaL_openlibs(L);
  /* Loading (run, reload, check) runs with the JIT off: the watchdog's hook reaches any loop a
   * file gets stuck in. vm_activate turns it on for the live state. */
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_getglobal(L, "require");
  lua_setfield(L, LUA_REGISTRYINDEX, "chatgw.require");
  if (opts->lua_dir) set_package_path(L, opts->lua_dir);
  if (opts->open && opts->open(L, vm, opts->ud, err, errlen) != 0) {
    vm_unref(vm);
    return NULL;
  }
  lua_settop(L, 0);
  return vm;
}

lua_State *vm_state(vm_t *vm) {
  return vm->L;
}

/* 1 at boot, +1 per state that went live; a state still loading reads the number it will get. */
uint64_t vm_generation(vm_t *vm) {
  return vm->gen ? vm->gen : g_next_gen;
}

int vm_is_retired(vm_t *vm) {
  return vm->retired;
}

size_t vm_live_count(void) {
  return g_live_vms;
}

void vm_ref(vm_t *vm) {
  vm->refs++;
}

void vm_unref(vm_t *vm) {
  if (--vm->refs > 0) return;
  log_debugf("closing Lua state generation %llu", (unsigned long long)vm->gen);
  lua_close(vm->L);
  free(vm->held);
  g_live_vms--;
  if (vm->all_prev)
    vm->all_prev->all_next = vm->all_next;
  else
    g_all_vms = vm->all_next;
  if (vm->all_next) vm->all_next->all_prev = vm->all_prev;
  free(vm);
}

void vm_destroy_all(void) {
  /* vm_destroy may free a vm: work from a snapshot of the list. */
  size_t n = 0;
  for (vm_t *v = g_all_vms; v; v = v->all_next)
    n++;
  if (!n) return;
  vm_t **all = calloc(n, sizeof *all);
  if (!all) return;
  n = 0;
  for (vm_t *v = g_all_vms; v; v = v->all_next)
    all[n++] = v;
  for (size_t i = 0; i < n; i++)
    vm_destroy(all[i]);
  free(all);
}

/* ---- ready queue ---- */

static void on_idle(uv_idle_t *h);

static void ready_push(co_t *co, wake_t why) {
  if (co->wake != WAKE_NONE) return; /* already queued */
  co->wake = why;
  co->ready_next = NULL;
  if (g_ready_tail)
    g_ready_tail->ready_next = co;
  else
    g_ready_head = co;
  g_ready_tail = co;
  if (g_idle_ready && !uv_is_active((uv_handle_t *)&g_idle)) uv_idle_start(&g_idle, on_idle);
}

static void ready_remove(co_t *co) {
  co_t **pp = &g_ready_head, *prev = NULL;
  while (*pp && *pp != co) {
    prev = *pp;
    pp = &(*pp)->ready_next;
  }
  if (!*pp) return;
  *pp = co->ready_next;
  if (g_ready_tail == co) g_ready_tail = prev;
  co->wake = WAKE_NONE;
}

static void on_idle(uv_idle_t *h) {
  /* Resume as many as are queued now; what gets queued meanwhile waits for the next turn,
   * so a coroutine that keeps yielding cannot starve the loop. */
  size_t n = 0;
  for (co_t *c = g_ready_head; c; c = c->ready_next)
    n++;
  while (n-- > 0 && g_ready_head) {
    co_t *co = g_ready_head;
    g_ready_head = co->ready_next;
    if (!g_ready_head) g_ready_tail = NULL;
    wake_t why = co->wake;
    co->wake = WAKE_NONE;
    if (why == WAKE_START) {
      vm_resume(co, co->start_nargs);
    } else if (why == WAKE_CANCEL) {
      co->cancel_notified = 1;
      lua_pushnil(co->L);
      lua_pushfstring(co->L, "cancelled: %s", co->cancel_reason);
      vm_resume(co, 2);
    } else {
      vm_resume(co, 0);
    }
  }
  if (!g_ready_head) uv_idle_stop(h);
}

void vm_sched_init(uv_loop_t *loop) {
  g_loop = loop;
  uv_idle_init(loop, &g_idle);
  g_idle_ready = 1;
}

uv_loop_t *vm_loop(void) {
  return g_loop;
}

void vm_sched_close(void) {
  if (g_idle_ready) uv_close((uv_handle_t *)&g_idle, NULL);
  g_idle_ready = 0;
}

/* ---- coroutines ---- */

static co_t *co_create(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud) {
  lua_State *L = vm->L;
  co_t *co = calloc(1, sizeof *co);
  if (!co) {
    lua_pop(L, nargs + 1);
    return NULL;
  }
  if (vm->npool > 0) { /* a thread whose last run ended normally: reuse it */
    vm->npool--;
    co->L = vm->pool[vm->npool].L;
    co->ref = vm->pool[vm->npool].ref;
  } else {
    co->L = lua_newthread(L);
    co->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_xmove(L, co->L, nargs + 1);
  static uint64_t next_id = 1;
  co->id = next_id++;
  co->vm = vm;
  co->kind = kind;
  co->done = done;
  co->ud = ud;
  co->start_nargs = nargs;
  co->next = vm->cos;
  if (vm->cos) vm->cos->prev = co;
  vm->cos = co;
  vm_ref(vm);
  return co;
}

static void co_free(co_t *co) {
  vm_t *vm = co->vm;
  if (co == g_wd_target) { /* it ended: the hook that kept raising in it goes */
    g_wd_target = NULL;
    lua_sethook(co->L, NULL, 0, 0);
  }
  free(co->wd_msg);
  if (co->pending) { /* ended with a wait registered whose yield never happened */
    pending_t *p = co->pending;
    co->pending = NULL;
    co->waiting = 0;
    p->cancel(p);
  }
  if (co->wake != WAKE_NONE) ready_remove(co);
  if (co->prev)
    co->prev->next = co->next;
  else
    vm->cos = co->next;
  if (co->next) co->next->prev = co->prev;
  lua_settop(co->L, 0);
  if (co->finished_ok && vm->npool < VM_THREAD_POOL && !vm->retired) {
    /* LuaJIT runs a new function on a thread whose previous run returned normally. */
    vm->pool[vm->npool].L = co->L;
    vm->pool[vm->npool].ref = co->ref;
    vm->npool++;
  } else {
    luaL_unref(vm->L, LUA_REGISTRYINDEX, co->ref);
  }
  free(co);
  vm_unref(vm);
}

co_t *vm_spawn(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud) {
  return vm_spawn_labeled(vm, kind, nargs, done, ud, NULL);
}

co_t *vm_spawn_labeled(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud,
                       const char *label) {
  co_t *co = co_create(vm, kind, nargs, done, ud);
  if (!co) return NULL;
  if (label) vm_co_set_label(co, label);
  vm_resume(co, nargs);
  return co;
}

co_t *vm_spawn_labeled3(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud,
                        const char *a, const char *mid, const char *b) {
  co_t *co = co_create(vm, kind, nargs, done, ud);
  if (!co) return NULL;
  vm_co_set_label3(co, a, mid, b);
  vm_resume(co, nargs);
  return co;
}

void vm_co_set_label(co_t *co, const char *label) {
  vm_co_set_label3(co, label, NULL, NULL);
}

/* The label a, or a + mid + b (b not NULL), cut to fit: once per request, so no snprintf. */
void vm_co_set_label3(co_t *co, const char *a, const char *mid, const char *b) {
  const char *parts[3] = {a ? a : "", b ? (mid ? mid : "") : "", b ? b : ""};
  size_t n = 0, cap = sizeof co->label - 1;
  for (int i = 0; i < 3; i++) {
    size_t l = strlen(parts[i]);
    if (l > cap - n) l = cap - n;
    memcpy(co->label + n, parts[i], l);
    n += l;
  }
  co->label[n] = 0;
  if (co == g_current) watchdog_label(co->label);
}

const char *vm_co_label(co_t *co) {
  return co->label[0] ? co->label : KIND_NAMES[co->kind];
}

/* ---- the watchdog's interrupt (core/watchdog.c sees the stall; this runs on the loop) ---- */

/* The count hook: raises in the coroutine the watchdog interrupted, every 1000 instructions it
 * runs, then at every instruction, until it ends (co_free clears the hook), so a pcall around
 * the loop cannot keep it. The message is made once, where the hook first fired, and raised the
 * same each time. */
static void wd_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  co_t *co = g_current, *target = g_wd_target;
  if (!co) return; /* Lua outside any coroutine (a module's require at state creation) */
  if (!target || target->vm != co->vm) {
    lua_sethook(L, NULL, 0, 0); /* left over: nothing to interrupt in this state */
    return;
  }
  if (co != target) return; /* another coroutine of its state, while the target waits */
  if (!co->wd_msg) {
    char where[300] = "";
    lua_Debug d;
    if (lua_getstack(L, 0, &d) && lua_getinfo(L, "Sl", &d) && d.currentline > 0)
      snprintf(where, sizeof where, "%s:%d: ", d.short_src, d.currentline);
    uint64_t now = watchdog_now_ms();
    size_t len = strlen(where) + strlen(co->label) + 96;
    co->wd_msg = malloc(len);
    if (!co->wd_msg) {
      lua_pushliteral(L, "watchdog: ran too long without yielding");
      lua_error(L);
    }
    snprintf(co->wd_msg, len, "%swatchdog: %s ran for %llu ms without yielding", where,
             vm_co_label(co),
             (unsigned long long)(now > co->resume_started_ms ? now - co->resume_started_ms : 0));
  }
  /* From now on at every instruction: a pcall that caught it returns into code that raises
   * again at once, so the error climbs out of every pcall to the coroutine's end (the same
   * instruction count each time would keep landing inside the same inner loop). */
  lua_sethook(L, wd_hook, LUA_MASKCOUNT, 1);
  lua_pushstring(L, co->wd_msg);
  lua_error(L);
}

/* In a SIGURG handler on the loop thread (core/watchdog.c): lua_sethook may be called
 * asynchronously (LuaJIT's own interpreter does so on SIGINT). The hook runs at the next
 * instruction the interpreter executes; a JIT-compiled loop never reaches it. */
static void wd_interrupt(void) {
  co_t *co = g_current;
  if (!co) return;
  g_wd_target = co;
  lua_sethook(co->L, wd_hook, LUA_MASKCOUNT, 1000);
}

vm_interrupt_fn vm_watchdog_interrupt(void) {
  return wd_interrupt;
}

co_t *vm_spawn_deferred(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud) {
  co_t *co = co_create(vm, kind, nargs, done, ud);
  if (!co) return NULL;
  if (vm->active || kind != CO_BACKGROUND) {
    ready_push(co, WAKE_START);
    return co;
  }
  /* Not current yet (still loading, or `chatgw check`): start it on activation. */
  if (vm->nheld == vm->capheld) {
    size_t cap = vm->capheld ? vm->capheld * 2 : 8;
    co_t **h = realloc(vm->held, cap * sizeof *h);
    if (!h) {
      co_free(co);
      return NULL;
    }
    vm->held = h;
    vm->capheld = cap;
  }
  co->held = 1;
  vm->held[vm->nheld++] = co;
  return co;
}

static void every_tick(uv_timer_t *t);

void vm_activate(vm_t *vm) {
  if (vm->active || vm->retired) return;
  vm->active = 1;
  vm->gen = g_next_gen++;
  luaJIT_setmode(vm->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
  g_active = vm;
  for (size_t i = 0; i < vm->nheld; i++) {
    vm->held[i]->held = 0;
    ready_push(vm->held[i], WAKE_START);
  }
  vm->nheld = 0;
  for (every_t *e = vm->everies; e; e = e->next)
    uv_timer_start(&e->timer, every_tick, e->interval_ms, e->interval_ms);
}

int vm_is_active(vm_t *vm) {
  return vm->active;
}

vm_t *vm_active(void) {
  return g_active;
}

/* Coroutines that never started are dropped without running. */
static void drop_held(vm_t *vm) {
  while (vm->nheld > 0) {
    co_t *co = vm->held[--vm->nheld];
    co->held = 0;
    co_free(co);
  }
}

lua_State *vm_co_thread(co_t *co) {
  return co->L;
}

vm_t *vm_co_vm(co_t *co) {
  return co->vm;
}

co_kind_t vm_co_kind(co_t *co) {
  return co->kind;
}

void vm_co_restrict(co_t *co, const char *why) {
  co->restrict_why = why;
}

const char *vm_co_restricted(co_t *co) {
  return co->restrict_why;
}

co_t *vm_current(void) {
  return g_current;
}

co_t *vm_check_yieldable(lua_State *L, const char *fname) {
  co_t *co = g_current;
  if (!co || (!lua_isyieldable(L) && vm__inside_require(L))) {
    luaL_error(L,
               "%s: can only wait inside a handler, task or timer (not while a module loads "
               "with require)",
               fname);
    return NULL;
  }
  if (co->cancelled && co->cancel_notified)
    luaL_error(L, "%s: cancelled: %s (this task was stopped; return from it)", fname,
               co->cancel_reason);
  return co;
}

int vm_wait(lua_State *L, co_t *co, pending_t *p) {
  if (co->pending) {
    /* A previous wait never yielded (its yield raised and the error was caught): drop it. */
    pending_t *old = co->pending;
    co->pending = NULL;
    co->waiting = 0;
    old->cancel(old);
  }
  if (co->restrict_why && !p->restricted_ok) {
    p->cancel(p);
    return luaL_error(L, "%s", co->restrict_why);
  }
  if (!lua_isyieldable(L) || (L != co->L && !lua_isyieldable(co->L))) {
    p->cancel(p);
    return luaL_error(L, "cannot wait here: attempt to yield across C-call boundary (inside a "
                         "table.sort comparator, string.gsub callback, metamethod or iterator); "
                         "move the wait out of the callback");
  }
  if (co->cancelled) {
    /* Stopped before it could wait: answer at once, and raise on the next attempt. */
    p->cancel(p);
    co->cancel_notified = 1;
    lua_pushnil(L);
    lua_pushfstring(L, "cancelled: %s", co->cancel_reason);
    return 2;
  }
  p->co = co;
  co->pending = p;
  co->waiting = 1;
  if (L == co->L) return lua_yield(L, 0);
  /* Inside a user coroutine: the wrapped coroutine.resume sees this marker and yields the
   * runtime coroutine too (see lua/chatgw/sandbox.lua). */
  lua_pushlightuserdata(L, &g_yield_marker);
  return lua_yield(L, 1);
}

void vm_wait_done(co_t *co) {
  co->pending = NULL;
  co->waiting = 0;
}

void vm_resume_later(co_t *co, int nargs) {
  co->start_nargs = nargs; /* the values are on co's stack; resumed like a start */
  ready_push(co, WAKE_START);
}

void vm_cancel(co_t *co, const char *reason) {
  if (co->cancelled) return;
  co->cancelled = 1;
  snprintf(co->cancel_reason, sizeof co->cancel_reason, "%s", reason);
  if (co->waiting) {
    pending_t *p = co->pending;
    co->pending = NULL;
    co->waiting = 0;
    if (p) p->cancel(p);
    ready_push(co, WAKE_CANCEL);
  }
}

uint64_t vm_co_id(co_t *co) {
  return co->id;
}

int vm_cancel_id(vm_t *vm, uint64_t id, const char *reason) {
  for (co_t *c = vm->cos; c; c = c->next) {
    if (c->id == id) {
      vm_cancel(c, reason);
      return 1;
    }
  }
  return 0;
}

void vm_resume(co_t *co, int nargs) {
  co_t *saved = g_current;
  g_current = co;
  co->resume_started_ms = watchdog_now_ms();
  watchdog_running(KIND_NAMES[co->kind], co->label[0] ? co->label : NULL, co->resume_started_ms);
  int status = lua_resume(co->L, nargs);
  g_current = saved;
  if (saved)
    watchdog_running(KIND_NAMES[saved->kind], saved->label[0] ? saved->label : NULL,
                     saved->resume_started_ms);
  else
    watchdog_idle();
  if (status == LUA_YIELD) {
    lua_settop(co->L, 0); /* drop yielded values (the user-coroutine marker) */
    /* A plain coroutine.yield() in the handler itself: give the loop a turn, then go on. */
    if (!co->waiting) ready_push(co, WAKE_PLAIN);
    return;
  }
  int ok = (status == 0);
  co->finished_ok = ok;
  if (co->vm->mem_refused) { /* what the refused coroutine built is garbage now */
    lua_gc(co->vm->L, LUA_GCCOLLECT, 0);
    co->vm->mem_refused = 0;
  }
  if (!ok) {
    const char *msg = lua_tostring(co->L, -1);
    if (!msg) msg = vm__error_text(co->vm->L, co->L);
    luaL_traceback(co->vm->L, co->L, msg ? msg : "(error object is not a string)", 0);
    lua_xmove(co->vm->L, co->L, 1);
  }
  if (co->done) co->done(co, ok, co->ud);
  co_free(co);
}

/* ---- chatgw.every timers ---- */

static void every_close_cb(uv_handle_t *h) {
  every_t *e = h->data;
  vm_t *vm = e->vm;
  luaL_unref(vm->L, LUA_REGISTRYINDEX, e->fn_ref);
  free(e);
  vm_unref(vm);
}

static void every_unlink_close(every_t *e) {
  vm_t *vm = e->vm;
  if (e->prev)
    e->prev->next = e->next;
  else
    vm->everies = e->next;
  if (e->next) e->next->prev = e->prev;
  uv_timer_stop(&e->timer);
  uv_close((uv_handle_t *)&e->timer, every_close_cb);
}

static every_t *every_find(vm_t *vm, int id) {
  for (every_t *e = vm->everies; e; e = e->next)
    if (e->id == id) return e;
  return NULL;
}

static void every_tick_done(co_t *co, int ok, void *ud) {
  every_t *e = every_find(co->vm, (int)(intptr_t)ud);
  if (e) e->running = 0;
  if (!ok) {
    log_field_t f[] = {{"error", lua_tostring(co->L, -1), 0}};
    log_write(LOG_ERROR, "chatgw.every: callback failed", f, 1);
  }
}

static void every_tick(uv_timer_t *t) {
  every_t *e = t->data;
  if (e->running) {
    log_debugf("chatgw.every: tick skipped, the previous one is still running");
    return;
  }
  e->running = 1;
  lua_rawgeti(e->vm->L, LUA_REGISTRYINDEX, e->fn_ref);
  vm_spawn_labeled(e->vm, CO_BACKGROUND, 0, every_tick_done, (void *)(intptr_t)e->id, e->label);
}

int vm_every_start(lua_State *L, vm_t *vm, uint64_t interval_ms, int fn_index) {
  every_t *e = calloc(1, sizeof *e);
  if (!e) return luaL_error(L, "chatgw.every: out of memory");
  e->vm = vm;
  e->id = ++vm->next_every_id;
  lua_pushvalue(L, fn_index);
  lua_Debug ar;
  if (lua_getinfo(L, ">S", &ar))
    snprintf(e->label, sizeof e->label, "chatgw.every (%s:%d)", ar.short_src, ar.linedefined);
  lua_pushvalue(L, fn_index);
  e->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(g_loop, &e->timer);
  e->timer.data = e;
  e->interval_ms = interval_ms;
  uv_update_time(g_loop);
  if (vm->active) uv_timer_start(&e->timer, every_tick, interval_ms, interval_ms);
  e->next = vm->everies;
  if (vm->everies) vm->everies->prev = e;
  vm->everies = e;
  vm_ref(vm);
  return e->id;
}

int vm_every_cancel(vm_t *vm, int id) {
  every_t *e = every_find(vm, id);
  if (!e) return 0;
  every_unlink_close(e);
  return 1;
}

/* ---- lifetime ---- */

void vm_retire(vm_t *vm, const char *reason) {
  if (vm->retired) return;
  vm->retired = 1;
  if (g_active == vm) g_active = NULL;
  while (vm->everies)
    every_unlink_close(vm->everies);
  drop_held(vm);
  for (co_t *co = vm->cos; co; co = co->next)
    if (co->kind == CO_BACKGROUND) vm_cancel(co, reason);
  vm_unref(vm);
}

void vm_destroy(vm_t *vm) {
  vm_ref(vm); /* keep it alive while we tear its coroutines down */
  if (g_active == vm) g_active = NULL;
  if (!vm->retired) {
    vm->retired = 1;
    vm_unref(vm);
  }
  while (vm->everies)
    every_unlink_close(vm->everies);
  drop_held(vm);
  while (vm->cos) {
    co_t *co = vm->cos;
    if (co->pending) {
      pending_t *p = co->pending;
      co->pending = NULL;
      p->cancel(p);
    }
    if (g_drop[co->kind]) g_drop[co->kind](co->ud);
    co_free(co);
  }
  vm_unref(vm);
}
