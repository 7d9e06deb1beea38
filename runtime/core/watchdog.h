/* watchdog.h - a thread that sees the loop stall, and never touches a lua_State.
 *
 * The loop thread keeps two cheap records up to date: a heartbeat (the monotonic time of the
 * last loop turn or coroutine resume, and whether the loop is waiting in poll) and "what is
 * running" (the coroutine kind, a label such as the route and the handler file, since when).
 * The watchdog thread reads both a few times per stall_ms. When the loop has neither polled
 * nor resumed anything for stall_ms, it logs an ERROR naming what runs and sends SIGURG to the
 * loop thread; that signal runs the interrupt callback (watchdog_start) on the loop thread,
 * in signal context, which arms a Lua hook (vm.c). When the loop is still stuck abort_ms
 * after the last beat (a JIT-compiled loop no hook reaches), it calls on_abort, on its own
 * thread: that must be async-signal-safe and end the process.
 *
 * Its lines go to stderr with write(2) in the log's JSON format, never through log.c (which
 * belongs to the loop thread). */
#ifndef CHATGW_WATCHDOG_H
#define CHATGW_WATCHDOG_H

#include <stdint.h>
#include <uv.h>

typedef struct {
  uint64_t stall_ms; /* no loop turn for this long: ERROR and interrupt the running coroutine */
  uint64_t abort_ms; /* still no loop turn this long after the last: on_abort */
} watchdog_settings_t;

#define WATCHDOG_LABEL_MAX 192

/* The schema's defaults (lua/chatgw/config.lua), for unit tests and for the time before the
 * config is read. */
void watchdog_settings_default(watchdog_settings_t *s);

/* From the loop thread: starts the thread and the loop's prepare/check handles. interrupt
 * runs in a SIGURG handler on this (the loop) thread when the running coroutine stalled. 0 or
 * -1. */
int watchdog_start(uv_loop_t *loop, void (*interrupt)(void), void (*on_abort)(void));
void watchdog_configure(const watchdog_settings_t *s);
/* Stops the thread and closes the handles (before uv_loop_close). */
void watchdog_stop(void);

/* The loop thread, around each coroutine resume: kind ("request", ...), label (copied; may be
 * NULL), the monotonic ms it started (watchdog_now_ms()). */
void watchdog_running(const char *kind, const char *label, uint64_t started_ms);
void watchdog_label(const char *label); /* the running coroutine's label changed */
void watchdog_idle(void);
uint64_t watchdog_now_ms(void);

#endif
