/* vm.h - Lua states, the coroutines that run in them, and their lifetime across reloads.
 *
 * Every request, WebSocket message, timer tick and spawned task runs in its own coroutine
 * (co_t). A C primitive that waits (sleep, outbound HTTP, exec, ...) registers a pending
 * operation on the running coroutine and yields; when the operation completes, it pushes its
 * results and calls vm_resume(). Each live coroutine and each runtime handle holds a reference
 * on its vm; a retired vm (replaced by a reload) is closed once its last reference is gone.
 *
 * This module knows nothing of HTTP, WebSockets or the bindings: what fills a new state is
 * the caller's (vm_options_t.open), and what to do with a coroutine dropped at exit is the
 * caller's too (vm_set_drop). */
#ifndef CHATGW_VM_H
#define CHATGW_VM_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct vm vm_t;
typedef struct co co_t;
typedef struct pending pending_t;

typedef enum {
  CO_REQUEST,    /* an HTTP request; finishes on its own state even after a reload */
  CO_BACKGROUND, /* spawn/every; cancelled when its state is retired */
  CO_LOAD,       /* loading config and handlers */
  CO_SHUTDOWN,   /* on_shutdown hooks */
  CO_WS,         /* a WebSocket connect, method call or hook: like a request, it finishes on
                    its own state after a reload */
  CO_START,      /* a loaded state's start (migrations, channels) before it becomes current */
  CO_TASK,       /* runtime work that must finish even after a reload (an outbox delivery):
                    like a request, it is not cancelled when its state is retired */
  CO_KINDS
} co_kind_t;

/* A wait in progress. cancel() stops the underlying operation and frees it (possibly later,
 * from a close callback); after cancel the coroutine is no longer waiting on it. */
struct pending {
  co_t *co;
  void (*cancel)(pending_t *p);
  int restricted_ok; /* may be waited on by a restricted coroutine (see vm_co_restrict) */
};

/* Called when a coroutine ends. ok: 1 finished, 0 raised (message with traceback is at the
 * top of co's stack). Results are on the coroutine's stack (lua_gettop(vm_co_thread(co))). */
typedef void (*co_done_fn)(co_t *co, int ok, void *ud);
/* Called for a coroutine that never ended because its state was destroyed (process exit), in
 * place of its done function; ud is the one given to vm_spawn. */
typedef void (*co_drop_fn)(void *ud);

typedef struct {
  const char *lua_dir; /* first on package.path: lua_dir/?.lua, lua_dir/?/init.lua */
  /* Fills a new state (bindings, the runtime's Lua layer). 0, or -1 with err set. */
  int (*open)(lua_State *L, vm_t *vm, void *ud, char *err, size_t errlen);
  void *ud;
} vm_options_t;

/* Process-wide setup/teardown of the scheduler: the loop every state's timers and deferred
 * resumes run on (kept until vm_sched_close). */
void vm_sched_init(uv_loop_t *loop);
/* The loop given to vm_sched_init. */
uv_loop_t *vm_loop(void);
void vm_sched_close(void);
/* What vm_destroy does with a coroutine of this kind still running (default: nothing). */
void vm_set_drop(co_kind_t kind, co_drop_fn fn);

vm_t *vm_new(const vm_options_t *opts, char *err, size_t errlen);
/* lua.max_memory_mb: past this many bytes an allocation of the state raises "not enough memory"
 * in the coroutine that asked (0: no cap). */
void vm_set_memory_cap(vm_t *vm, size_t bytes);
size_t vm_memory_used(vm_t *vm);
lua_State *vm_state(vm_t *vm);
uint64_t vm_generation(vm_t *vm);
int vm_is_retired(vm_t *vm);
/* Make vm the one that runs background work: tasks spawned and timers started while it was
 * loading (not yet current) start now. A state never activated (failed reload, `chatgw
 * check`) never runs them. */
void vm_activate(vm_t *vm);
int vm_is_active(vm_t *vm);
/* The state activated last and not retired since: the current one, or NULL. */
vm_t *vm_active(void);
void vm_ref(vm_t *vm);
void vm_unref(vm_t *vm);
/* Retire: cancel background coroutines and timers ("cancelled: reload"), drop the current
 * reference. Requests in flight finish here. The state closes when the last ref goes. */
void vm_retire(vm_t *vm, const char *reason);
/* At process exit: cancel everything, hand coroutines still running to their kind's drop
 * function, close the state. */
void vm_destroy(vm_t *vm);
size_t vm_live_count(void); /* states not yet closed (current + retired) */
/* vm_destroy every state still open (process exit). */
void vm_destroy_all(void);

/* Start a coroutine: push the function, then nargs arguments, on vm_state(vm), then call. The
 * coroutine is resumed at once (from the loop, never from inside another resume); it may have
 * ended (and be freed) when this returns, so use the result only as a success flag. */
co_t *vm_spawn(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud);
/* Like vm_spawn, with the label the watchdog names when this coroutine stalls the loop. */
co_t *vm_spawn_labeled(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud,
                       const char *label);
/* What co runs, for the watchdog's ERROR and error ("GET /spin (handlers/w.lua)", "loading
 * (handlers/a.lua)", "chatgw.every (handlers/t.lua:3)"); copied. */
void vm_co_set_label(co_t *co, const char *label);
/* vm_spawn_labeled with the label a + mid + b (a request: "METHOD /path"). */
co_t *vm_spawn_labeled3(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud,
                        const char *a, const char *mid, const char *b);
/* The label a + mid + b (b NULL: a alone), cut to the label's size. */
void vm_co_set_label3(co_t *co, const char *a, const char *mid, const char *b);
const char *vm_co_label(co_t *co); /* the label, or the kind's name */
/* The interrupt to give watchdog_start (core/watchdog.h): in its SIGURG handler it arms a
 * count hook on the running coroutine's state that raises "<file>:<line>: watchdog: <label>
 * ran for N ms without yielding" in that coroutine, again and again until it ends. */
typedef void (*vm_interrupt_fn)(void);
vm_interrupt_fn vm_watchdog_interrupt(void);
/* Like vm_spawn, but the first resume happens on the next loop iteration (for CO_BACKGROUND
 * on a state not yet activated: at activation). Safe to call from inside a coroutine. */
co_t *vm_spawn_deferred(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud);
lua_State *vm_co_thread(co_t *co);
vm_t *vm_co_vm(co_t *co);
co_kind_t vm_co_kind(co_t *co);
/* While why is set, co may only wait on operations marked restricted_ok; any other wait raises
 * "<why>" (a database transaction must not wait on the network). NULL lifts it. */
void vm_co_restrict(co_t *co, const char *why);
const char *vm_co_restricted(co_t *co);

/* The coroutine being resumed right now, or NULL (e.g. while a module is required). */
co_t *vm_current(void);
/* For primitives: the coroutine L runs in, raising a Lua error naming fname if there is none
 * or if the state was retired and this coroutine was already told so. */
co_t *vm_check_yieldable(lua_State *L, const char *fname);
/* Mark co waiting on p and yield from L (L may be a user coroutine inside co: the yield then
 * passes through the wrapped coroutine.resume up to the runtime). Use as
 * `return vm_wait(L, co, p);` from a lua_CFunction. */
int vm_wait(lua_State *L, co_t *co, pending_t *p);
/* A timer wait: resumes co with `true` after ms (counted from now, not from the loop's cached
 * time), or with nil, "cancelled: ..." if it is cancelled first. `return vm_wait_timer(...)`. */
int vm_wait_timer(lua_State *L, co_t *co, uint64_t ms);
/* The operation co waited on completed: co is no longer waiting. Push results on
 * vm_co_thread(co) and call vm_resume(co, nresults). */
void vm_wait_done(co_t *co);
void vm_resume(co_t *co, int nargs);
/* Like vm_resume, but on the next loop iteration: for completions that happen inside another
 * coroutine (a resume never nests). The nargs values stay on co's stack until then. */
void vm_resume_later(co_t *co, int nargs);
/* Cancel co's wait (if any) and resume it with nil, "cancelled: <reason>" on the next loop
 * iteration. */
void vm_cancel(co_t *co, const char *reason);
/* A coroutine's id: unique for the life of the process, so Lua can hold it as a handle. */
uint64_t vm_co_id(co_t *co);
/* vm_cancel the coroutine with that id if it is still one of vm's; returns 1 if found. (Used to
 * stop supervised loops at shutdown.) */
int vm_cancel_id(vm_t *vm, uint64_t id, const char *reason);
/* The value a runtime wait yields from inside a user coroutine (lua/chatgw/sandbox.lua's
 * coroutine.resume passes it up; see vm_wait). */
void *vm_yield_marker(void);

/* Timers owned by a state (chatgw.every): stopped when the state is retired. */
int vm_every_start(lua_State *L, vm_t *vm, uint64_t interval_ms, int fn_index);
int vm_every_cancel(vm_t *vm, int id);

#endif
