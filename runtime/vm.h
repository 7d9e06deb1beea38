/* vm.h - Lua states, the coroutines that run in them, and their lifetime across reloads.
 *
 * Every request, timer tick and spawned task runs in its own coroutine (co_t). A C primitive
 * that waits (sleep, and later HTTP, exec, ...) registers a pending operation on the running
 * coroutine and yields; when the operation completes, it pushes its results and calls
 * vm_resume(). Each live coroutine and each runtime handle holds a reference on its vm; a
 * retired vm (replaced by a reload) is closed once its last reference is gone. */
#ifndef CHATGW_VM_H
#define CHATGW_VM_H

#include <lua.h>
#include <stdint.h>

#include "http_server.h"

typedef struct vm vm_t;
typedef struct co co_t;
typedef struct pending pending_t;

typedef enum {
  CO_REQUEST,    /* an HTTP request; finishes on its own state even after a reload */
  CO_BACKGROUND, /* spawn/every; cancelled when its state is retired */
  CO_LOAD,       /* loading config and handlers */
  CO_SHUTDOWN,   /* on_shutdown hooks */
  CO_WS,         /* a WebSocket connect, method call or hook: like a request, it finishes on
                    its own state after a reload; ud is the caller's (see ws.c) */
} co_kind_t;

/* A wait in progress. cancel() stops the underlying operation and frees it (possibly later,
 * from a close callback); after cancel the coroutine is no longer waiting on it. */
struct pending {
  co_t *co;
  void (*cancel)(pending_t *p);
};

/* Called when a coroutine ends. ok: 1 finished, 0 raised (message with traceback is at the
 * top of co's stack). Results are on the coroutine's stack (lua_gettop(vm_co_thread(co))). */
typedef void (*co_done_fn)(co_t *co, int ok, void *ud);

vm_t *vm_new(char *err, size_t errlen);
lua_State *vm_state(vm_t *vm);
uint64_t vm_generation(vm_t *vm);
int vm_is_retired(vm_t *vm);
/* Make vm the one that runs background work: tasks spawned and timers started while it was
 * loading (not yet current) start now. A state never activated (failed reload, `chatgw
 * check`) never runs them. */
void vm_activate(vm_t *vm);
int vm_is_active(vm_t *vm);
void vm_ref(vm_t *vm);
void vm_unref(vm_t *vm);
/* Retire: cancel background coroutines and timers ("cancelled: reload"), drop the current
 * reference. Requests in flight finish here. The state closes when the last ref goes. */
void vm_retire(vm_t *vm, const char *reason);
/* At process exit: cancel everything, answer unanswered requests with 503, close the state. */
void vm_destroy(vm_t *vm);
size_t vm_live_count(void);
/* vm_destroy every state still open (process exit). */
void vm_destroy_all(void); /* vms not yet closed (current + retired) */

/* Start a coroutine running the function at the top of vm's main stack with nargs arguments
 * below... precisely: push function then nargs args on vm_state(vm), then call. The
 * coroutine is resumed at once (from the loop, never from inside another resume). */
co_t *vm_spawn(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud);
/* Like vm_spawn, but the first resume happens on the next loop iteration (for CO_BACKGROUND
 * on a state not yet activated: at activation). Safe to call from inside a coroutine. */
co_t *vm_spawn_deferred(vm_t *vm, co_kind_t kind, int nargs, co_done_fn done, void *ud);
lua_State *vm_co_thread(co_t *co);
vm_t *vm_co_vm(co_t *co);
void *vm_co_userdata(co_t *co);

/* The coroutine being resumed right now, or NULL (e.g. while a module is required). */
co_t *vm_current(void);
/* For primitives: the coroutine L runs in, raising a Lua error naming fname if there is none
 * or if the state was retired and this coroutine was already told so. */
co_t *vm_check_yieldable(lua_State *L, const char *fname);
/* Mark co waiting on p and yield from L (L may be a user coroutine inside co: the yield then
 * passes through the wrapped coroutine.resume up to the runtime). Use as
 * `return vm_wait(L, co, p);` from a lua_CFunction. */
int vm_wait(lua_State *L, co_t *co, pending_t *p);
/* The operation co waited on completed: co is no longer waiting. Push results on
 * vm_co_thread(co) and call vm_resume(co, nresults). */
void vm_wait_done(co_t *co);
void vm_resume(co_t *co, int nargs);
/* Cancel co's wait (if any) and resume it with nil, "cancelled: <reason>" on the next loop
 * iteration. */
void vm_cancel(co_t *co, const char *reason);
/* A coroutine's id: unique for the life of the process, so Lua can hold it as a handle. */
uint64_t vm_co_id(co_t *co);
/* vm_cancel the coroutine with that id if it is still one of vm's; returns 1 if found. (Used to
 * stop supervised loops at shutdown.) */
int vm_cancel_id(vm_t *vm, uint64_t id, const char *reason);

/* Timers owned by a state (chatgw.every): stopped when the state is retired. */
int vm_every_start(lua_State *L, vm_t *vm, uint64_t interval_ms, int fn_index);
int vm_every_cancel(vm_t *vm, int id);

/* Answer an HTTP request on vm (runs the Lua dispatcher in a request coroutine). */
void vm_dispatch_request(vm_t *vm, http_request_t *req);

/* Process-wide setup/teardown of the scheduler (idle handle for deferred resumes). */
void vm_sched_init(uv_loop_t *loop);
void vm_sched_close(void);

#endif
