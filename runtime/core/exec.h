/* exec.h - subprocesses under concurrency caps.
 *
 * A job runs argv (no shell) in its own process group (UV_PROCESS_DETACHED) once a slot is
 * free both in its module's pool and in the global pool; until then it waits in one FIFO
 * queue of bounded length. stdout and stderr are read to EOF (captured up to max_output
 * bytes each, the rest is read and dropped so the child never blocks on a full pipe). On
 * timeout, on abandon (the caller went away) and at shutdown the whole group gets SIGTERM,
 * then SIGKILL after the kill grace. When the leader has exited and a grandchild still holds
 * the pipes, the group gets SIGKILL after a short grace so EOF comes. When a job finishes its
 * group is swept with SIGKILL: nothing a command started outlives the call.
 *
 * The child's environment is the parent's minus secrets (exec_env_is_secret) plus the
 * call's own entries. Caps, queue length and observability thresholds come from the caller
 * (resolved in lua/chatgw/limits.lua) and may change between calls. */
#ifndef CHATGW_EXEC_H
#define CHATGW_EXEC_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "exec_env.h"

typedef struct exec_job exec_job_t;

#define EXEC_MODULE_MAX 48 /* longest module name */

typedef struct {
  uint32_t max_global;      /* children running at once, all modules */
  uint32_t queue_max;       /* calls waiting for a slot; beyond: "busy: ..." */
  uint32_t warn_queue;      /* WARN when this many wait */
  uint64_t warn_wait_ms;    /* WARN when a call waited this long for its slot */
  uint64_t log_interval_ms; /* stats line period while there is contention; WARN rate limit */
  uint64_t kill_grace_ms;   /* SIGTERM -> SIGKILL */
} exec_limits_t;

typedef struct {
  const char *const *argv;      /* NULL-terminated; argv[0] is looked up in PATH */
  const char *cwd;              /* NULL: chatgw's */
  const char *const *env_set;   /* "NAME=value" entries added or replaced; NULL-terminated */
  const char *const *env_unset; /* names removed; NULL-terminated; may be NULL */
  const char *stdin_data;       /* written to the child's stdin, then closed */
  size_t stdin_len;
  int has_stdin;     /* 0: stdin is /dev/null */
  size_t max_output; /* bytes kept per stream */
  uint64_t timeout_ms;
  const char *module;  /* pool name */
  uint32_t module_max; /* the pool's cap */
} exec_request_t;

typedef enum {
  EXEC_RESULT_EXITED,      /* ran; exit_status/term_signal say how it ended */
  EXEC_RESULT_TIMEOUT,     /* killed after timeout_ms */
  EXEC_RESULT_SPAWN_ERROR, /* could not start (ENOENT, EACCES, bad cwd, ...) */
} exec_result_kind_t;

typedef struct {
  exec_result_kind_t kind;
  int64_t exit_status;
  int term_signal;
  const char *out;
  size_t out_len;
  const char *err;
  size_t err_len;
  int truncated;
  const char *message; /* for TIMEOUT and SPAWN_ERROR: "timeout: ...", "spawn: ..." */
  double wait_ms;      /* time spent waiting for a slot */
  double run_ms;
} exec_result_t;

/* Called once from the loop (never from inside exec_submit); r is valid during the call. */
typedef void (*exec_done_fn)(const exec_result_t *r, void *ud);

/* Once, before anything else: the loop every child, pipe and timer runs on. */
void exec_init(uv_loop_t *loop);

/* The defaults docs/config.md gives (for callers that set no limits of their own: tests). */
void exec_limits_default(exec_limits_t *lim);

/* Updates the process-wide limits (the latest caller wins) and starts queued jobs that fit. */
void exec_set_limits(const exec_limits_t *lim);

/* Starts the job now if a slot is free, else queues it. Returns the job, or NULL with err set
 * to "busy: ..." (queue full) or "cancelled: shutdown". done is called exactly once unless the
 * job is abandoned first. */
exec_job_t *exec_submit(const exec_request_t *req, exec_done_fn done, void *ud, char *err,
                        size_t errlen);

/* The caller no longer waits: a queued job is dropped; a running one is killed (group SIGTERM,
 * SIGKILL after the grace), reaped, and frees its slot when it is gone. done is not called. */
void exec_abandon(exec_job_t *job);

/* Process exit: start nothing more; kill every running group (SIGTERM, then SIGKILL after the
 * grace). The loop keeps running until they are reaped and their handles closed. */
void exec_shutdown(void);

/* Immediate exit path (second signal): SIGKILL every running group now. */
void exec_kill_all_now(void);
/* The same from a signal handler, even while the loop is stuck: only kill(2) over a fixed
 * array of the running children's process groups (async-signal-safe). */
void exec_kill_all_signal_safe(void);

/* The pgid table exec_kill_all_signal_safe walks: EXEC_PGID_SLOTS entries, 0 = free. By
 * default a static array; the master (runtime/master.c) points it at a MAP_SHARED mapping
 * before it forks a worker, so that after the worker's death it kills the groups the worker
 * left (exec_kill_all_signal_safe in the master) and clears the table for the next one.
 * NULL: back to the static array. */
#define EXEC_PGID_SLOTS 4096
void exec_set_pgid_table(volatile sig_atomic_t *slots);
void exec_clear_pgid_table(void);

typedef struct {
  size_t inflight, queued, jobs;
} exec_stats_t;
void exec_stats(exec_stats_t *s);

#endif
