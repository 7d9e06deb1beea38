/* exec.c - subprocesses under concurrency caps (see exec.h). */
#include "exec.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "log.h"
#include "metrics.h"
#include "exec_env.h"
#include "exec_pgids.h"

#define EXEC_EOF_GRACE_MS 250    /* leader gone, pipes still open: SIGKILL the group after */
#define EXEC_FORCE_CLOSE_MS 1000 /* after that SIGKILL, stop waiting for EOF */
#define EXEC_READ_CHUNK 65536

typedef struct pool {
  struct pool *next;
  uint32_t max, inflight, queued;
  char name[EXEC_MODULE_MAX + 1];
} pool_t;

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE } job_state_t;

/* What the job's one timer is doing. */
typedef enum {
  T_NONE,
  T_TIMEOUT, /* running: fires at timeout_ms */
  T_KILL,    /* SIGTERM sent: SIGKILL at the end of the grace */
  T_EOF,     /* leader exited, pipes open: SIGKILL the group */
  T_FORCE,   /* SIGKILL sent after exit: stop waiting for EOF */
  T_DELIVER, /* finished: hand the result over on the next loop turn */
} phase_t;

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

struct exec_job {
  job_state_t state;
  pool_t *pool;
  exec_job_t *prev, *next;   /* every job */
  exec_job_t *qprev, *qnext; /* the wait queue */
  char **argv;
  char *cwd;
  char **env_set;
  char **env_unset;
  char *stdin_data;
  size_t stdin_len;
  int has_stdin;
  size_t max_output;
  uint64_t timeout_ms;
  uint64_t kill_grace_ms;
  exec_done_fn done;
  void *ud;
  uint64_t queued_ns, started_ns, finished_ns;
  double wait_ms;
  uv_process_t proc;
  uv_pipe_t pin, pout, perr;
  uv_timer_t timer;
  uv_write_t wreq;
  int handles; /* libuv handles not yet closed */
  int pid;
  int spawned, exited, in_open, out_open, err_open, proc_inited;
  int timed_out, killing, abandoned, spawn_failed;
  int64_t exit_status;
  int term_signal;
  buf_t out, err;
  int truncated;
  phase_t phase;
  char message[512];
};

static struct {
  uv_loop_t *loop; /* exec_init */
  exec_limits_t lim;
  pool_t *pools;
  exec_job_t *jobs;
  size_t njobs;
  exec_job_t *qhead, *qtail;
  size_t queued;
  uint32_t inflight;
  int stopping, pumping;
  metric_t *m_queue, *m_inflight, *m_wait, *m_total;
  uv_timer_t stats;
  int stats_inited;
  /* since the last stats line */
  int contended;
  uint64_t started_iv;
  double max_wait_iv;
  /* WARN rate limits */
  int queue_warned, wait_warned;
  uint64_t last_queue_warn, last_wait_warn, wait_warns_suppressed;
} g;

static char g_readbuf[EXEC_READ_CHUNK];

/* ---- metrics ---- */

static void metrics_setup(void) {
  if (g.m_queue) return;
  const char *mod[] = {"module"};
  const char *modres[] = {"module", "result"};
  static const double buckets[] = {.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 300};
  g.m_queue =
      metrics_gauge("chatgw_exec_queue_length", "Exec calls waiting for a slot.", mod, 1, NULL);
  g.m_inflight = metrics_gauge("chatgw_exec_inflight", "Exec children running.", mod, 1, NULL);
  g.m_wait = metrics_histogram("chatgw_exec_wait_seconds",
                               "Time exec calls waited for a slot, in seconds.", mod, 1, buckets,
                               sizeof buckets / sizeof buckets[0], NULL);
  g.m_total = metrics_counter("chatgw_exec_total",
                              "Exec calls by result (ok, error, timeout, busy, cancelled).", modres,
                              2, NULL);
}

static void pool_gauges(pool_t *p) {
  const char *l[] = {p->name};
  if (g.m_queue) metrics_set(g.m_queue, l, p->queued);
  if (g.m_inflight) metrics_set(g.m_inflight, l, p->inflight);
}

static void count_result(const char *module, const char *result) {
  const char *l[] = {module, result};
  if (g.m_total) metrics_inc(g.m_total, l, 1);
}

/* ---- pools, queue ---- */

static pool_t *pool_get(const char *name) {
  for (pool_t *p = g.pools; p; p = p->next)
    if (strcmp(p->name, name) == 0) return p;
  pool_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  snprintf(p->name, sizeof p->name, "%s", name);
  p->max = 1;
  p->next = g.pools;
  g.pools = p;
  return p;
}

static void free_all(void) {
  while (g.pools) {
    pool_t *p = g.pools;
    g.pools = p->next;
    free(p);
  }
  if (g.stats_inited && !uv_is_closing((uv_handle_t *)&g.stats))
    uv_close((uv_handle_t *)&g.stats, NULL);
  /* The registry is freed at exit by metrics_shutdown(); forget our pointers. */
  g.m_queue = g.m_inflight = g.m_wait = g.m_total = NULL;
}

static void queue_push(exec_job_t *j) {
  j->qnext = NULL;
  j->qprev = g.qtail;
  if (g.qtail)
    g.qtail->qnext = j;
  else
    g.qhead = j;
  g.qtail = j;
  g.queued++;
  j->pool->queued++;
  pool_gauges(j->pool);
}

static void queue_remove(exec_job_t *j) {
  if (j->qprev)
    j->qprev->qnext = j->qnext;
  else
    g.qhead = j->qnext;
  if (j->qnext)
    j->qnext->qprev = j->qprev;
  else
    g.qtail = j->qprev;
  j->qprev = j->qnext = NULL;
  g.queued--;
  j->pool->queued--;
  pool_gauges(j->pool);
}

static int has_room(pool_t *p) {
  return g.inflight < g.lim.max_global && p->inflight < p->max;
}

/* ---- stats line and warnings ---- */

static void stats_tick(uv_timer_t *t);

static void stats_arm(void) {
  if (g.stopping || !g.loop) return;
  if (!g.stats_inited) {
    uv_timer_init(g.loop, &g.stats);
    g.stats_inited = 1;
  }
  if (!uv_is_active((uv_handle_t *)&g.stats))
    uv_timer_start(&g.stats, stats_tick, g.lim.log_interval_ms, g.lim.log_interval_ms);
}

static void stats_tick(uv_timer_t *t) {
  if (g.contended || g.queued) {
    char mods[2048];
    size_t off = 0;
    mods[off++] = '{';
    for (pool_t *p = g.pools; p; p = p->next) {
      if (!p->inflight && !p->queued) continue;
      int w = snprintf(mods + off, sizeof mods - off,
                       "%s\"%s\":{\"inflight\":%u,\"queued\":%u,\"max\":%u}", off > 1 ? "," : "",
                       p->name, p->inflight, p->queued, p->max);
      if (w < 0 || (size_t)w >= sizeof mods - off - 1) break;
      off += (size_t)w;
    }
    mods[off++] = '}';
    mods[off] = 0;
    char inflight[24], queued[24], maxg[24], started[24], maxwait[32];
    snprintf(inflight, sizeof inflight, "%u", g.inflight);
    snprintf(queued, sizeof queued, "%zu", g.queued);
    snprintf(maxg, sizeof maxg, "%u", g.lim.max_global);
    snprintf(started, sizeof started, "%llu", (unsigned long long)g.started_iv);
    snprintf(maxwait, sizeof maxwait, "%.1f", g.max_wait_iv);
    log_field_t f[] = {{"inflight", inflight, 1},   {"queued", queued, 1},
                       {"max_global", maxg, 1},     {"started", started, 1},
                       {"max_wait_ms", maxwait, 1}, {"modules", mods, 1}};
    log_write(LOG_INFO, "exec stats", f, sizeof f / sizeof f[0]);
  }
  g.started_iv = 0;
  g.max_wait_iv = 0;
  g.contended = g.queued > 0;
  if (!g.contended) uv_timer_stop(t);
}

static void warn_queue(pool_t *p) {
  if (g.queued < g.lim.warn_queue) return;
  uint64_t now = uv_now(g.loop);
  if (g.queue_warned && now - g.last_queue_warn < g.lim.log_interval_ms) return;
  g.queue_warned = 1;
  g.last_queue_warn = now;
  char q[24], inf[24], mq[24], mi[24], mm[24], mg[24];
  snprintf(q, sizeof q, "%zu", g.queued);
  snprintf(inf, sizeof inf, "%u", g.inflight);
  snprintf(mq, sizeof mq, "%u", p->queued);
  snprintf(mi, sizeof mi, "%u", p->inflight);
  snprintf(mm, sizeof mm, "%u", p->max);
  snprintf(mg, sizeof mg, "%u", g.lim.max_global);
  log_field_t f[] = {{"module", p->name, 0}, {"queued", q, 1},         {"inflight", inf, 1},
                     {"max_global", mg, 1},  {"module_queued", mq, 1}, {"module_inflight", mi, 1},
                     {"module_max", mm, 1}};
  log_write(LOG_WARN, "exec queue is long: calls are waiting for a slot", f,
            sizeof f / sizeof f[0]);
}

static void warn_wait(exec_job_t *j) {
  if (j->wait_ms < (double)g.lim.warn_wait_ms) return;
  uint64_t now = uv_now(g.loop);
  if (g.wait_warned && now - g.last_wait_warn < g.lim.log_interval_ms) {
    g.wait_warns_suppressed++;
    return;
  }
  g.wait_warned = 1;
  g.last_wait_warn = now;
  char w[32], q[24], s[24];
  snprintf(w, sizeof w, "%.1f", j->wait_ms);
  snprintf(q, sizeof q, "%zu", g.queued);
  snprintf(s, sizeof s, "%llu", (unsigned long long)g.wait_warns_suppressed);
  g.wait_warns_suppressed = 0;
  log_field_t f[] = {
      {"module", j->pool->name, 0}, {"wait_ms", w, 1}, {"queued", q, 1}, {"suppressed", s, 1}};
  log_write(LOG_WARN, "exec call waited long for a slot", f, sizeof f / sizeof f[0]);
}

/* ---- job lifetime ---- */

static void free_strv(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++)
    free(*p);
  free(v);
}

static char **dup_strv(const char *const *v) {
  size_t n = 0;
  if (v)
    while (v[n])
      n++;
  char **out = calloc(n + 1, sizeof *out);
  if (!out) return NULL;
  for (size_t i = 0; i < n; i++) {
    out[i] = strdup(v[i]);
    if (!out[i]) {
      free_strv(out);
      return NULL;
    }
  }
  return out;
}

static void job_free(exec_job_t *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    g.jobs = j->next;
  if (j->next) j->next->prev = j->prev;
  g.njobs--;
  free_strv(j->argv);
  free_strv(j->env_set);
  free_strv(j->env_unset);
  free(j->cwd);
  free(j->stdin_data);
  free(j->out.data);
  free(j->err.data);
  free(j);
  if (g.stopping && g.njobs == 0) free_all();
}

/* The timer closes last, after the result was handed over. */
static void maybe_free(exec_job_t *j) {
  if (j->handles == 0 && j->state == JOB_DONE) job_free(j);
}

static void close_cb(uv_handle_t *h) {
  exec_job_t *j = h->data;
  j->handles--;
  maybe_free(j);
}

static void close_handle(exec_job_t *j, uv_handle_t *h) {
  h->data = j;
  if (!uv_is_closing(h)) uv_close(h, close_cb);
}

/* Closes one of the child's pipes unless *open says it is closed already. */
static void close_pipe(exec_job_t *j, int *open, uv_pipe_t *p) {
  if (!*open) return;
  *open = 0;
  close_handle(j, (uv_handle_t *)p);
}

static void timer_cb(uv_timer_t *t);

static void arm(exec_job_t *j, phase_t phase, uint64_t ms) {
  j->phase = phase;
  uv_timer_stop(&j->timer);
  uv_timer_start(&j->timer, timer_cb, ms, 0);
}

static void group_kill(exec_job_t *j, int sig) {
  if (j->spawned && j->pid > 0) kill(-j->pid, sig);
}

/* SIGTERM to the group now, SIGKILL after the grace. */
static void begin_kill(exec_job_t *j) {
  if (j->state != JOB_RUNNING || !j->spawned || j->killing) return;
  j->killing = 1;
  if (j->kill_grace_ms == 0) {
    group_kill(j, SIGKILL);
    if (j->exited)
      arm(j, T_FORCE, EXEC_FORCE_CLOSE_MS);
    else {
      j->phase = T_NONE;
      uv_timer_stop(&j->timer);
    }
    return;
  }
  group_kill(j, SIGTERM);
  arm(j, T_KILL, j->kill_grace_ms);
}

static void pump(void);

static void finish(exec_job_t *j) {
  j->state = JOB_DONE;
  j->finished_ns = uv_hrtime();
  uv_timer_stop(&j->timer);
  /* Sweep: whatever the command left in its group goes with it. */
  group_kill(j, SIGKILL);
  if (j->spawned && j->pid > 0) exec__pgid_remove(j->pid);
  close_pipe(j, &j->in_open, &j->pin);
  close_pipe(j, &j->out_open, &j->pout);
  close_pipe(j, &j->err_open, &j->perr);
  if (j->proc_inited) close_handle(j, (uv_handle_t *)&j->proc);
  j->pool->inflight--;
  g.inflight--;
  pool_gauges(j->pool);
  const char *result = j->abandoned                                   ? "cancelled"
                       : j->timed_out                                 ? "timeout"
                       : j->spawn_failed                              ? "error"
                       : (j->exit_status == 0 && j->term_signal == 0) ? "ok"
                                                                      : "error";
  count_result(j->pool->name, result);
  arm(j, T_DELIVER, 0);
  pump();
}

static void check_complete(exec_job_t *j) {
  if (j->state == JOB_RUNNING && j->exited && !j->out_open && !j->err_open) finish(j);
}

static void deliver(exec_job_t *j) {
  exec_done_fn done = j->done;
  j->done = NULL;
  if (!done || j->abandoned) return;
  exec_result_t r;
  memset(&r, 0, sizeof r);
  r.wait_ms = j->wait_ms;
  r.run_ms = j->started_ns ? (double)(j->finished_ns - j->started_ns) / 1e6 : 0;
  r.out = j->out.data ? j->out.data : "";
  r.out_len = j->out.len;
  r.err = j->err.data ? j->err.data : "";
  r.err_len = j->err.len;
  r.truncated = j->truncated;
  if (j->spawn_failed) {
    r.kind = EXEC_RESULT_SPAWN_ERROR;
    r.message = j->message;
  } else if (j->timed_out) {
    r.kind = EXEC_RESULT_TIMEOUT;
    snprintf(j->message, sizeof j->message,
             "timeout: %s did not finish within %llu ms (its process group was killed)", j->argv[0],
             (unsigned long long)j->timeout_ms);
    r.message = j->message;
  } else {
    r.kind = EXEC_RESULT_EXITED;
    r.exit_status = j->exit_status;
    r.term_signal = j->term_signal;
  }
  done(&r, j->ud);
}

static void timer_cb(uv_timer_t *t) {
  exec_job_t *j = t->data;
  phase_t phase = j->phase;
  j->phase = T_NONE;
  switch (phase) {
  case T_TIMEOUT:
    j->timed_out = 1;
    begin_kill(j);
    break;
  case T_KILL:
    group_kill(j, SIGKILL);
    if (j->exited) arm(j, T_FORCE, EXEC_FORCE_CLOSE_MS);
    break;
  case T_EOF:
    group_kill(j, SIGKILL);
    arm(j, T_FORCE, EXEC_FORCE_CLOSE_MS);
    break;
  case T_FORCE:
    /* Something outside the group (it called setsid) still holds the pipes: stop waiting. */
    close_pipe(j, &j->out_open, &j->pout);
    close_pipe(j, &j->err_open, &j->perr);
    check_complete(j);
    break;
  case T_DELIVER:
    deliver(j);
    close_handle(j, (uv_handle_t *)&j->timer);
    break;
  case T_NONE:
    break;
  }
}

/* ---- I/O ---- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  /* libuv reads one stream at a time and hands the bytes over before the next alloc. */
  buf->base = g_readbuf;
  buf->len = sizeof g_readbuf;
}

static void buf_append(exec_job_t *j, buf_t *b, const char *p, size_t n) {
  if (b->len >= j->max_output) {
    if (n) j->truncated = 1;
    return;
  }
  size_t room = j->max_output - b->len;
  if (n > room) {
    n = room;
    j->truncated = 1;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
      cap *= 2;
    if (cap > j->max_output) cap = j->max_output;
    char *d = realloc(b->data, cap);
    if (!d) {
      j->truncated = 1;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  exec_job_t *j = s->data;
  int is_out = (s == (uv_stream_t *)&j->pout);
  if (nread > 0) {
    buf_append(j, is_out ? &j->out : &j->err, buf->base, (size_t)nread);
    return;
  }
  if (nread == 0) return;
  /* EOF or error: this stream is done. */
  if (is_out)
    close_pipe(j, &j->out_open, &j->pout);
  else
    close_pipe(j, &j->err_open, &j->perr);
  check_complete(j);
}

static void write_cb(uv_write_t *w, int status) {
  (void)status; /* EPIPE when the child does not read its stdin: not an error of the call */
  exec_job_t *j = w->data;
  close_pipe(j, &j->in_open, &j->pin);
}

static void exit_cb(uv_process_t *p, int64_t exit_status, int term_signal) {
  exec_job_t *j = p->data;
  j->exited = 1;
  j->exit_status = exit_status;
  j->term_signal = term_signal;
  if (j->out_open || j->err_open) {
    if (j->phase == T_TIMEOUT)
      arm(j, T_EOF, EXEC_EOF_GRACE_MS); /* a grandchild holds the pipes */
    else if (j->phase == T_NONE)
      arm(j, T_FORCE, EXEC_FORCE_CLOSE_MS); /* SIGKILL already sent */
    /* T_KILL: SIGKILL comes at the end of the grace, then T_FORCE */
  }
  check_complete(j);
}

/* ---- start ---- */

static void start_job(exec_job_t *j) {
  uv_loop_t *loop = g.loop;
  j->state = JOB_RUNNING;
  j->pool->inflight++;
  g.inflight++;
  pool_gauges(j->pool);
  j->started_ns = uv_hrtime();
  j->wait_ms = (double)(j->started_ns - j->queued_ns) / 1e6;
  const char *l[] = {j->pool->name};
  if (g.m_wait) metrics_observe(g.m_wait, l, j->wait_ms / 1000.0);
  g.started_iv++;
  if (j->wait_ms > g.max_wait_iv) g.max_wait_iv = j->wait_ms;
  warn_wait(j);

  uv_timer_init(loop, &j->timer);
  j->timer.data = j;
  j->handles++;
  uv_pipe_init(loop, &j->pout, 0);
  uv_pipe_init(loop, &j->perr, 0);
  j->pout.data = j->perr.data = j;
  j->handles += 2;
  j->out_open = j->err_open = 1;
  if (j->has_stdin) {
    uv_pipe_init(loop, &j->pin, 0);
    j->pin.data = j;
    j->handles++;
    j->in_open = 1;
  }
  uv_stdio_container_t stdio[3];
  if (j->has_stdin) {
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&j->pin;
  } else {
    stdio[0].flags = UV_IGNORE; /* /dev/null */
  }
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&j->pout;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&j->perr;

  char **env = exec_env_build(j->env_set, j->env_unset);
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.exit_cb = exit_cb;
  o.file = j->argv[0];
  o.args = j->argv;
  o.env = env;
  o.cwd = j->cwd;
  o.flags = UV_PROCESS_DETACHED; /* setsid: its own process group, killed as -pid */
  o.stdio_count = 3;
  o.stdio = stdio;
  int rc = UV_ENOMEM;
  if (env) {
    rc = uv_spawn(loop, &j->proc, &o);
    j->proc.data = j;
    j->proc_inited = 1; /* uv_spawn initialised the handle, even when it failed */
    j->handles++;
  }
  free(env);
  if (rc != 0) {
    j->spawn_failed = 1;
    snprintf(j->message, sizeof j->message, "spawn: %s%s%s: %s", j->argv[0], j->cwd ? " in " : "",
             j->cwd ? j->cwd : "", uv_strerror(rc));
    j->exited = 1;
    finish(j);
    return;
  }
  j->spawned = 1;
  j->pid = j->proc.pid;
  exec__pgid_add(j->pid);
  uv_read_start((uv_stream_t *)&j->pout, alloc_cb, read_cb);
  uv_read_start((uv_stream_t *)&j->perr, alloc_cb, read_cb);
  if (j->has_stdin) {
    if (j->stdin_len == 0) {
      close_pipe(j, &j->in_open, &j->pin);
    } else {
      uv_buf_t b = uv_buf_init(j->stdin_data, (unsigned)j->stdin_len);
      j->wreq.data = j;
      if (uv_write(&j->wreq, (uv_stream_t *)&j->pin, &b, 1, write_cb) != 0) {
        close_pipe(j, &j->in_open, &j->pin);
      }
    }
  }
  arm(j, T_TIMEOUT, j->timeout_ms);
}

static void pump(void) {
  if (g.pumping || g.stopping) return;
  g.pumping = 1;
  for (exec_job_t *j = g.qhead; j && g.inflight < g.lim.max_global;) {
    exec_job_t *next = j->qnext;
    if (has_room(j->pool)) {
      queue_remove(j);
      start_job(j);
    }
    j = next;
  }
  g.pumping = 0;
}

/* ---- public ---- */

void exec_init(uv_loop_t *loop) {
  g.loop = loop;
}

void exec_limits_default(exec_limits_t *lim) {
  /* For the unit tests: the runtime passes the values lua/chatgw/limits.lua resolved (whose
   * defaults are the same) with every call. */
  *lim = (exec_limits_t){.max_global = 8,
                         .queue_max = 1000,
                         .warn_queue = 10,
                         .warn_wait_ms = 5000,
                         .log_interval_ms = 10000,
                         .kill_grace_ms = 2000};
}

void exec_set_limits(const exec_limits_t *lim) {
  uint32_t old = g.lim.max_global;
  g.lim = *lim;
  if (g.lim.max_global < 1) g.lim.max_global = 1;
  if (g.lim.log_interval_ms < 1) g.lim.log_interval_ms = 1;
  if (g.lim.max_global > old) pump();
}

exec_job_t *exec_submit(const exec_request_t *req, exec_done_fn done, void *ud, char *err,
                        size_t errlen) {
  if (g.stopping || !g.loop) {
    snprintf(err, errlen, "cancelled: shutdown");
    return NULL;
  }
  metrics_setup();
  pool_t *p = pool_get(req->module);
  if (!p) {
    snprintf(err, errlen, "busy: out of memory");
    return NULL;
  }
  uint32_t oldmax = p->max;
  p->max = req->module_max ? req->module_max : 1;
  if (p->max > oldmax) pump();
  int now = has_room(p) && !g.pumping;
  if (!now && g.queued >= g.lim.queue_max) {
    snprintf(err, errlen,
             "busy: exec queue is full (%zu waiting; module %s: %u running, cap %u; global %u "
             "running, cap %u)",
             g.queued, p->name, p->inflight, p->max, g.inflight, g.lim.max_global);
    count_result(p->name, "busy");
    return NULL;
  }
  exec_job_t *j = calloc(1, sizeof *j);
  if (!j) {
    snprintf(err, errlen, "busy: out of memory");
    return NULL;
  }
  j->pool = p;
  j->argv = dup_strv(req->argv);
  j->env_set = dup_strv(req->env_set);
  j->env_unset = dup_strv(req->env_unset);
  j->cwd = req->cwd ? strdup(req->cwd) : NULL;
  if (req->has_stdin && req->stdin_len) {
    j->stdin_data = malloc(req->stdin_len);
    if (j->stdin_data) memcpy(j->stdin_data, req->stdin_data, req->stdin_len);
  }
  if (!j->argv || !j->argv[0] || !j->env_set || !j->env_unset || (req->cwd && !j->cwd) ||
      (req->has_stdin && req->stdin_len && !j->stdin_data)) {
    free_strv(j->argv);
    free_strv(j->env_set);
    free_strv(j->env_unset);
    free(j->cwd);
    free(j->stdin_data);
    free(j);
    snprintf(err, errlen, "busy: out of memory");
    return NULL;
  }
  j->stdin_len = req->stdin_len;
  j->has_stdin = req->has_stdin;
  j->max_output = req->max_output;
  j->timeout_ms = req->timeout_ms ? req->timeout_ms : 1;
  j->kill_grace_ms = g.lim.kill_grace_ms;
  j->done = done;
  j->ud = ud;
  j->queued_ns = uv_hrtime();
  j->state = JOB_QUEUED;
  j->next = g.jobs;
  if (g.jobs) g.jobs->prev = j;
  g.jobs = j;
  g.njobs++;
  if (now) {
    start_job(j);
  } else {
    queue_push(j);
    g.contended = 1;
    warn_queue(p);
    stats_arm();
  }
  return j;
}

void exec_abandon(exec_job_t *j) {
  j->done = NULL;
  j->abandoned = 1;
  switch (j->state) {
  case JOB_QUEUED:
    queue_remove(j);
    count_result(j->pool->name, "cancelled");
    j->state = JOB_DONE;
    job_free(j);
    break;
  case JOB_RUNNING:
    begin_kill(j);
    break;
  case JOB_DONE:
    break;
  }
}

void exec_shutdown(void) {
  if (g.stopping) return;
  g.stopping = 1;
  if (g.stats_inited && !uv_is_closing((uv_handle_t *)&g.stats)) {
    uv_timer_stop(&g.stats);
    uv_close((uv_handle_t *)&g.stats, NULL);
  }
  for (exec_job_t *j = g.jobs; j; j = j->next)
    begin_kill(j);
  if (g.njobs == 0) free_all();
}

void exec_kill_all_now(void) {
  for (exec_job_t *j = g.jobs; j; j = j->next)
    if (j->state == JOB_RUNNING) group_kill(j, SIGKILL);
}

void exec_stats(exec_stats_t *s) {
  s->inflight = g.inflight;
  s->queued = g.queued;
  s->jobs = g.njobs;
}
