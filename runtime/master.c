/* master.c - `chatgw run`'s master process (see master.h and docs/architecture.md).
 *
 * One thread, no Lua, no libuv loop: signals are blocked except inside ppoll(2), whose only
 * descriptor is the current worker's end of the control socketpair. Everything it keeps is
 * static (no heap), and it opens nothing in the data directory: the store, the token file and
 * the channel locks are the worker's. */
#include "master.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"
#include "log.h"
#include "worker.h"

/* Restart delays: the n-th quick death in a row waits BACKOFF_MS[n] (the last one repeats). A
 * worker that ran RESET_AFTER_MS resets the sequence. After MAX_QUICK_DEATHS workers in a row
 * that each died before RESET_AFTER_MS the master gives up and exits with the last status
 * (systemd's Restart= takes over from there). */
static const int BACKOFF_MS[] = {100, 500, 1000, 2000, 5000};
#define BACKOFF_STEPS ((int)(sizeof BACKOFF_MS / sizeof BACKOFF_MS[0]))
#define RESET_AFTER_MS 60000
#define MAX_QUICK_DEATHS 10
#define HARD_STOP_GRACE_MS 1000 /* second signal: SIGKILL a worker still there after this */
#define WATCHDOG_EXIT 70

static volatile sig_atomic_t g_hup, g_chld, g_stops, g_stop_sig;

static void on_signal(int sig) {
  if (sig == SIGHUP)
    g_hup = 1;
  else if (sig == SIGCHLD)
    g_chld = 1;
  else {
    g_stops++;
    g_stop_sig = sig;
  }
}

static struct {
  pid_t self;
  pid_t worker;          /* 0: none running */
  int ctl;               /* the running worker's control socket, -1 when none */
  int ever_ready;        /* a worker said it serves: later deaths restart */
  uint64_t restarts;     /* workers started after the first */
  uint64_t started_ms;   /* the running worker's fork */
  uint64_t restart_at;   /* fork the next worker then (0: none pending) */
  int quick_deaths;      /* workers in a row that died before RESET_AFTER_MS */
  int stops_seen;        /* SIGTERM/SIGINT handled */
  int stop_sig;          /* the first one */
  uint64_t hard_kill_at; /* second signal: SIGKILL the worker at this time (0: not armed) */
  worker_exit_t last;
  int nheld;
  worker_fd_t held[WORKER_MAX_FDS]; /* listening sockets kept for the next worker */
  sigset_t orig_mask;
} M;

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static double wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void close_held(void) {
  for (int i = 0; i < M.nheld; i++)
    if (M.held[i].fd >= 0) close(M.held[i].fd);
  M.nheld = 0;
}

static void log_pid(const char *msg, log_level_t level, pid_t pid, const char *k2, const char *v2,
                    int raw2) {
  char p[24];
  snprintf(p, sizeof p, "%ld", (long)pid);
  log_field_t f[] = {{"worker_pid", p, 1}, {k2, v2, raw2}};
  log_write(level, msg, f, k2 ? 2 : 1);
}

/* ---- the worker ---- */

/* Forks a worker. Returns 0 in the worker (the caller runs rt_run), 1 in the master, -1 when
 * fork failed (retried later). */
static int fork_worker(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    log_errorf("master: socketpair: %s", strerror(errno));
    return -1;
  }
  exec_clear_pgid_table();
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    log_errorf("master: fork: %s", strerror(errno));
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  if (pid == 0) {
    close(sv[0]);
    /* The worker dies with the master (kill -9 of the master): the master is one thread, so
     * the thread that forked lives as long as the master does. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != M.self) _exit(1);
    signal(SIGHUP, SIG_IGN); /* until rt_run's own handler: a reload before boot is moot */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigprocmask(SIG_SETMASK, &M.orig_mask, NULL);
    worker_link_t *w = worker_link();
    w->active = 1;
    w->master_pid = (long)M.self;
    w->ctl_fd = sv[1];
    w->restarts = M.restarts;
    w->last_exit = M.last;
    w->nfds = M.nheld;
    memcpy(w->fds, M.held, sizeof w->fds); /* inherited: the worker's copies now */
    M.nheld = 0;
    return 0;
  }
  close(sv[1]);
  M.ctl = sv[0];
  M.worker = pid;
  M.started_ms = mono_ms();
  M.restart_at = 0;
  char n[24];
  snprintf(n, sizeof n, "%llu", (unsigned long long)M.restarts);
  log_pid("master: worker started", LOG_INFO, pid, "worker_restarts", n, 1);
  return 1;
}

/* The worker's control message: "ready\0name\0name\0..." with its listening sockets. */
static void read_ctl(void) {
  while (M.ctl >= 0) {
    char buf[8 + WORKER_MAX_FDS * WORKER_NAME_MAX];
    union {
      struct cmsghdr h;
      char b[CMSG_SPACE(sizeof(int) * WORKER_MAX_FDS)];
    } cm;
    struct iovec iov = {buf, sizeof buf - 1};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cm.b;
    m.msg_controllen = sizeof cm.b;
    ssize_t n = recvmsg(M.ctl, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) { /* the worker is gone (or closed it): its exit status tells the rest */
      close(M.ctl);
      M.ctl = -1;
      return;
    }
    buf[n] = 0;
    int fds[WORKER_MAX_FDS], nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (nfds < WORKER_MAX_FDS)
          fds[nfds++] = fd;
        else
          close(fd);
      }
    }
    if (strcmp(buf, "ready") != 0) {
      for (int i = 0; i < nfds; i++)
        close(fds[i]);
      continue;
    }
    close_held();
    const char *p = buf + 6, *end = buf + n;
    for (int i = 0; i < nfds; i++) {
      if (M.stops_seen || p >= end) { /* stopping: no listener is kept for a next worker */
        close(fds[i]);
        continue;
      }
      size_t l = strnlen(p, WORKER_NAME_MAX - 1);
      memcpy(M.held[M.nheld].name, p, l);
      M.held[M.nheld].name[l] = 0;
      M.held[M.nheld++].fd = fds[i];
      p += strlen(p) + 1;
    }
    M.ever_ready = 1;
  }
}

static int status_code(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 1;
}

/* The worker died (status st). Returns -1 to go on, or the master's exit code. */
static int worker_died(int st) {
  /* Its exec children: every group the worker still listed (they are ours now, as the
   * subreaper, so no pid in the table was reused before this). */
  exec_kill_all_signal_safe();
  exec_clear_pgid_table();
  read_ctl(); /* a ready message it sent just before dying */
  if (M.ctl >= 0) close(M.ctl);
  M.ctl = -1;
  pid_t pid = M.worker;
  M.worker = 0;
  M.hard_kill_at = 0;
  uint64_t ran = mono_ms() - M.started_ms;
  worker_exit_t *e = &M.last;
  memset(e, 0, sizeof *e);
  e->valid = 1;
  e->pid = (long)pid;
  e->at = wall_s();
  e->ran_s = (double)ran / 1000.0;
  char sigbuf[16], val[32];
  const char *key;
  if (WIFSIGNALED(st)) {
    e->signal = WTERMSIG(st);
    snprintf(e->cause, sizeof e->cause, "signal");
    key = "signal";
    snprintf(val, sizeof val, "%s", worker_signal_name(e->signal, sigbuf));
  } else {
    e->code = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    snprintf(e->cause, sizeof e->cause, "%s", e->code == WATCHDOG_EXIT ? "watchdog" : "exit");
    key = "code";
    snprintf(val, sizeof val, "%d", e->code);
  }
  int code = status_code(st);
  if (M.stops_seen) {
    log_pid("master: worker exited: stopping", LOG_INFO, pid, key, val, !e->signal);
    return code;
  }
  if (!M.ever_ready) { /* the first worker did not start: its messages say why */
    log_pid("master: the first worker failed to start: exiting", LOG_ERROR, pid, key, val,
            !e->signal);
    return code ? code : 1;
  }
  if (ran >= RESET_AFTER_MS) M.quick_deaths = 0;
  int step = M.quick_deaths < BACKOFF_STEPS ? M.quick_deaths : BACKOFF_STEPS - 1;
  M.quick_deaths++;
  if (M.quick_deaths > MAX_QUICK_DEATHS) {
    log_pid("master: workers keep dying soon after they start: giving up", LOG_ERROR, pid, key, val,
            !e->signal);
    return code ? code : 1;
  }
  M.restarts++;
  M.restart_at = mono_ms() + (uint64_t)BACKOFF_MS[step];
  char ran_s[32], delay[16], pidv[24];
  snprintf(ran_s, sizeof ran_s, "%.3f", e->ran_s);
  snprintf(delay, sizeof delay, "%d", BACKOFF_MS[step]);
  snprintf(pidv, sizeof pidv, "%ld", (long)pid);
  log_field_t f[] = {{"worker_pid", pidv, 1},
                     {key, val, !e->signal},
                     {"cause", e->cause, 0},
                     {"ran_s", ran_s, 1},
                     {"restart_in_ms", delay, 1}};
  log_write(LOG_ERROR, "master: worker died: starting another", f, 5);
  return -1;
}

/* Reaps the worker first (so that its groups are killed before any orphan of it is reaped and
 * its pid freed), then orphans: exec children of a dead worker that were reparented to us. */
static int reap(void) {
  int st, rc = -1;
  if (M.worker > 0) {
    pid_t p;
    do {
      p = waitpid(M.worker, &st, WNOHANG);
    } while (p < 0 && errno == EINTR);
    if (p == M.worker) rc = worker_died(st);
  }
  for (;;) {
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p < 0 && errno == EINTR) continue;
    if (p <= 0) break;
    if (p == M.worker) rc = worker_died(st); /* it died after the waitpid above */
  }
  return rc;
}

/* ---- signals ---- */

static void install(int sig) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigfillset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(sig, &sa, NULL);
}

/* Returns -1 to go on, or the exit code. */
static int handle_signals(void) {
  if (g_hup) {
    g_hup = 0;
    if (M.worker > 0 && !M.stops_seen)
      kill(M.worker, SIGHUP); /* the worker reloads; no new worker */
    else if (!M.stops_seen)
      log_infof("master: SIGHUP while no worker runs: the next worker loads the files as they "
                "are");
  }
  int stops = g_stops;
  while (M.stops_seen < stops) {
    int sig = g_stop_sig;
    M.stops_seen++;
    if (M.stops_seen == 1) {
      M.stop_sig = sig;
      close_held(); /* the port closes with the worker's listeners: new connections refused */
      M.restart_at = 0;
      log_field_t f[] = {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM", 0}};
      log_write(LOG_INFO, "master: stopping: the worker drains", f, 1);
      if (M.worker <= 0) return 0; /* between workers: nothing to drain */
      kill(M.worker, sig);
    } else {
      /* the worker's second-signal path: kill its exec groups and _exit(1) */
      if (M.worker > 0) kill(M.worker, sig);
      if (!M.hard_kill_at) M.hard_kill_at = mono_ms() + HARD_STOP_GRACE_MS;
    }
  }
  return -1;
}

/* ---- entry ---- */

int master_run(const rt_options_t *o) {
  memset(&M, 0, sizeof M);
  M.self = getpid();
  M.ctl = -1;
  signal(SIGPIPE, SIG_IGN);
  log_init();
  const char *lvl = getenv("CHAT_GATEWAY_LOG_LEVEL");
  log_level_t level;
  if (lvl && log_level_parse(lvl, &level) == 0) log_set_level(level);
  /* Orphans (exec children of a dead worker, whatever they forked) come to us, not to init:
   * their pids stay ours until we reap them, and their groups can be killed. */
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  size_t table = EXEC_PGID_SLOTS * sizeof(sig_atomic_t);
  void *mem = mmap(NULL, table, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    log_warnf("master: mmap: %s: a dead worker's exec children are not killed by the master",
              strerror(errno));
  } else {
    exec_set_pgid_table(mem); /* shared with every worker */
  }
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGHUP);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGCHLD);
  sigprocmask(SIG_BLOCK, &block, &M.orig_mask);
  install(SIGHUP);
  install(SIGTERM);
  install(SIGINT);
  install(SIGCHLD);
  sigset_t wait_mask = M.orig_mask;
  sigdelset(&wait_mask, SIGHUP);
  sigdelset(&wait_mask, SIGTERM);
  sigdelset(&wait_mask, SIGINT);
  sigdelset(&wait_mask, SIGCHLD);
  log_field_t f[] = {{"master_pid", NULL, 1}};
  char self[24];
  snprintf(self, sizeof self, "%ld", (long)M.self);
  f[0].value = self;
  log_write(LOG_INFO, "master: started", f, 1);

  int rc = -1;
  M.restart_at = mono_ms(); /* the first worker: now */
  for (;;) {
    read_ctl();
    g_chld = 0;
    rc = reap();
    if (rc >= 0) break;
    rc = handle_signals();
    if (rc >= 0) break;
    uint64_t now = mono_ms();
    if (M.worker > 0 && M.hard_kill_at && now >= M.hard_kill_at) {
      log_warnf("master: the worker is still there after the second signal: SIGKILL");
      kill(M.worker, SIGKILL);
      M.hard_kill_at = 0;
    }
    if (M.worker <= 0 && M.restart_at && now >= M.restart_at && !M.stops_seen) {
      int r = fork_worker();
      if (r == 0) return rt_run(o); /* the worker (the mapping stays: its exec table) */
      if (r < 0) M.restart_at = now + 1000;
      continue;
    }
    uint64_t wake = 0;
    if (M.worker <= 0 && M.restart_at) wake = M.restart_at;
    if (M.hard_kill_at && (!wake || M.hard_kill_at < wake)) wake = M.hard_kill_at;
    struct timespec ts, *tsp = NULL;
    if (wake) {
      uint64_t d = wake > now ? wake - now : 0;
      ts.tv_sec = (time_t)(d / 1000);
      ts.tv_nsec = (long)(d % 1000) * 1000000L;
      tsp = &ts;
    }
    struct pollfd p = {M.ctl, POLLIN, 0};
    ppoll(&p, M.ctl >= 0 ? 1 : 0, tsp, &wait_mask);
  }
  close_held();
  if (M.ctl >= 0) close(M.ctl);
  exec_set_pgid_table(NULL);
  if (mem != MAP_FAILED) munmap(mem, table);
  log_flush();
  return rc;
}
