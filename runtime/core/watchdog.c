/* watchdog.c - the loop's watchdog thread (see watchdog.h). */
#include "watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define WD_SIGNAL SIGURG

static struct {
  int started;
  pthread_t thread, loop_thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop;
  uv_prepare_t prepare;
  uv_check_t check;
  void (*interrupt)(void);
  void (*on_abort)(void);
  _Atomic uint64_t stall_ms, abort_ms;
  _Atomic uint64_t beat_ms; /* the last loop turn or resume */
  _Atomic int polling;      /* waiting in poll: not stalled however long */
  _Atomic unsigned seq;     /* the record's seqlock: odd while the loop thread writes it */
  _Atomic uint64_t serial;  /* +1 per watchdog_running: which resume the record describes */
  _Atomic uint64_t want;    /* the serial the watchdog wants interrupted (signal handler) */
  /* the record (written by the loop thread under seq) */
  int running;
  char kind[16];
  char label[WATCHDOG_LABEL_MAX];
  uint64_t started_ms;
} g = {.stall_ms = 2000, .abort_ms = 10000};

void watchdog_settings_default(watchdog_settings_t *s) {
  s->stall_ms = 2000;
  s->abort_ms = 10000;
}

uint64_t watchdog_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void beat(void) {
  atomic_store_explicit(&g.beat_ms, watchdog_now_ms(), memory_order_relaxed);
}

/* ---- the record (loop thread) ---- */

static void write_begin(void) {
  atomic_fetch_add_explicit(&g.seq, 1, memory_order_acq_rel);
}

static void write_end(void) {
  atomic_fetch_add_explicit(&g.seq, 1, memory_order_release);
}

static void copy_label(const char *label) {
  size_t n = label ? strlen(label) : 0;
  if (n >= sizeof g.label) n = sizeof g.label - 1;
  if (n) memcpy(g.label, label, n);
  g.label[n] = 0;
}

void watchdog_running(const char *kind, const char *label, uint64_t started_ms) {
  beat();
  if (!g.started) return;
  write_begin();
  g.running = 1;
  snprintf(g.kind, sizeof g.kind, "%s", kind ? kind : "?");
  copy_label(label);
  g.started_ms = started_ms;
  atomic_fetch_add_explicit(&g.serial, 1, memory_order_relaxed);
  write_end();
}

void watchdog_label(const char *label) {
  if (!g.started) return;
  write_begin();
  copy_label(label);
  write_end();
}

void watchdog_idle(void) {
  beat();
  if (!g.started) return;
  write_begin();
  g.running = 0;
  write_end();
}

/* ---- the loop's turns ---- */

static void on_prepare(uv_prepare_t *h) {
  (void)h;
  beat();
  atomic_store_explicit(&g.polling, 1, memory_order_relaxed);
}

static void on_check(uv_check_t *h) {
  (void)h;
  atomic_store_explicit(&g.polling, 0, memory_order_relaxed);
  beat();
}

/* SIGURG, on the loop thread: the resume the watchdog saw stalled is still the one running. */
static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  if (g.running && g.interrupt &&
      atomic_load_explicit(&g.serial, memory_order_relaxed) ==
          atomic_load_explicit(&g.want, memory_order_relaxed))
    g.interrupt();
  errno = saved;
}

/* ---- the thread ---- */

typedef struct {
  int running;
  char kind[16];
  char label[WATCHDOG_LABEL_MAX];
  uint64_t started_ms, serial;
} snapshot_t;

static void snapshot(snapshot_t *s) {
  for (int tries = 0; tries < 100; tries++) {
    unsigned a = atomic_load_explicit(&g.seq, memory_order_acquire);
    if (a & 1) continue;
    s->running = g.running;
    memcpy(s->kind, g.kind, sizeof s->kind);
    memcpy(s->label, g.label, sizeof s->label);
    s->started_ms = g.started_ms;
    s->serial = atomic_load_explicit(&g.serial, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&g.seq, memory_order_relaxed) == a) {
      s->kind[sizeof s->kind - 1] = 0;
      s->label[sizeof s->label - 1] = 0;
      return;
    }
  }
  memset(s, 0, sizeof *s);
}

/* JSON string escaping into out (always terminated). */
static void json_escape(char *out, size_t len, const char *in) {
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)in; *p && o + 7 < len; p++) {
    if (*p == '"' || *p == '\\') {
      out[o++] = '\\';
      out[o++] = (char)*p;
    } else if (*p < 0x20) {
      o += (size_t)snprintf(out + o, len - o, "\\u%04x", *p);
    } else {
      out[o++] = (char)*p;
    }
  }
  out[o] = 0;
}

static void write_line(const char *level, const char *msg, const snapshot_t *s, uint64_t ms_a,
                       const char *key_a, uint64_t ms_b, const char *key_b) {
  char ts[40], label[WATCHDOG_LABEL_MAX * 6 + 1], line[2048];
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + 19, sizeof ts - 19, ".%03ldZ", (long)(tv.tv_usec / 1000));
  json_escape(label, sizeof label, s && s->running ? s->label : "");
  int n = snprintf(line, sizeof line,
                   "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\",\"kind\":\"%s\","
                   "\"running\":\"%s\",\"%s\":%llu,\"%s\":%llu,\"pid\":%d}\n",
                   ts, level, msg, s && s->running ? s->kind : "none", label, key_a,
                   (unsigned long long)ms_a, key_b, (unsigned long long)ms_b, (int)getpid());
  if (n <= 0) return;
  if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
  ssize_t w = write(STDERR_FILENO, line, (size_t)n);
  (void)w;
}

static void *thread_main(void *arg) {
  (void)arg;
  int fired = 0, fired_running = 0; /* the stall we signalled: which resume, since when */
  uint64_t fired_serial = 0, fired_since = 0, fired_at = 0;
  pthread_mutex_lock(&g.mu);
  while (!g.stop) {
    uint64_t stall = atomic_load(&g.stall_ms), abort_ms = atomic_load(&g.abort_ms);
    uint64_t period = stall / 5;
    if (period < 10) period = 10;
    if (period > 250) period = 250;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(period % 1000) * 1000000L;
    until.tv_sec += (time_t)(period / 1000) + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&g.cv, &g.mu, &until);
    if (g.stop) break;
    uint64_t now = watchdog_now_ms(), last = atomic_load(&g.beat_ms);
    int polling = atomic_load(&g.polling);
    snapshot_t s;
    snapshot(&s);
    /* Stalled: one resume running for stall_ms, or (outside Lua) no loop turn for stall_ms.
     * I/O callbacks run inside the poll phase, so `polling` only tells an idle loop apart when
     * no coroutine runs. */
    uint64_t since = s.running ? s.started_ms : last;
    int stalled = (s.running || !polling) && now >= since && now - since >= stall;
    if (fired && (!stalled || s.serial != fired_serial || s.running != fired_running)) {
      write_line("info", "watchdog: the loop runs again", NULL, now - fired_since, "stalled_ms",
                 stall, "stall_ms");
      fired = 0;
    }
    if (!stalled) continue;
    uint64_t ran = now - since;
    if (!fired) {
      fired = 1;
      fired_serial = s.serial;
      fired_running = s.running;
      fired_since = since;
      fired_at = now;
      write_line("error",
                 s.running ? "watchdog: a coroutine ran too long without yielding: interrupting it"
                           : "watchdog: the loop is stuck outside Lua",
                 &s, ran, "ran_ms", stall, "stall_ms");
      atomic_store(&g.want, s.serial);
      pthread_kill(g.loop_thread, WD_SIGNAL);
    } else if (now - fired_at >= stall) {
      fired_at = now; /* again once per stall_ms: in case the first arrived between resumes */
      pthread_kill(g.loop_thread, WD_SIGNAL);
    }
    if (abort_ms && ran >= abort_ms) {
      write_line("error", "watchdog: no hook reached the running code: aborting the process", &s,
                 ran, "ran_ms", abort_ms, "abort_ms");
      if (g.on_abort) g.on_abort();
    }
  }
  pthread_mutex_unlock(&g.mu);
  return NULL;
}

int watchdog_start(uv_loop_t *loop, void (*interrupt)(void), void (*on_abort)(void)) {
  if (g.started) return 0;
  g.interrupt = interrupt;
  g.on_abort = on_abort;
  g.loop_thread = pthread_self();
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(WD_SIGNAL, &sa, NULL) != 0) return -1;
  pthread_mutex_init(&g.mu, NULL);
  pthread_cond_init(&g.cv, NULL);
  g.stop = 0;
  beat();
  /* The thread takes no signal: process signals go to the loop thread (or another). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&g.thread, NULL, thread_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) return -1;
  uv_prepare_init(loop, &g.prepare);
  uv_prepare_start(&g.prepare, on_prepare);
  uv_unref((uv_handle_t *)&g.prepare);
  uv_check_init(loop, &g.check);
  uv_check_start(&g.check, on_check);
  uv_unref((uv_handle_t *)&g.check);
  g.started = 1;
  return 0;
}

void watchdog_configure(const watchdog_settings_t *s) {
  atomic_store(&g.stall_ms, s->stall_ms ? s->stall_ms : 1);
  atomic_store(&g.abort_ms, s->abort_ms);
}

void watchdog_stop(void) {
  if (!g.started) return;
  pthread_mutex_lock(&g.mu);
  g.stop = 1;
  pthread_cond_signal(&g.cv);
  pthread_mutex_unlock(&g.mu);
  pthread_join(g.thread, NULL);
  uv_close((uv_handle_t *)&g.prepare, NULL);
  uv_close((uv_handle_t *)&g.check, NULL);
  g.started = 0;
}
