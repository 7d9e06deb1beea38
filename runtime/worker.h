/* worker.h - what a worker knows of its master (runtime/master.c), and what it tells it.
 *
 * The master forks the worker without exec, so it hands things down as plain memory: the
 * record below (filled by the master in the child, before rt_run), the listening descriptors
 * it holds (inherited by the fork, marked close-on-exec), and one end of a SOCK_SEQPACKET
 * socketpair. The worker takes its listeners' descriptors by name (worker_take_listen_fd),
 * and once it is ready sends the master its whole set of listening descriptors (SCM_RIGHTS),
 * which the master keeps for the next worker. Without a master (`--no-master`,
 * CHATGW_NO_MASTER=1, chatgw check/test) worker_link()->active is 0 and nothing is sent. */
#ifndef CHATGW_WORKER_H
#define CHATGW_WORKER_H

#include <stdint.h>

#define WORKER_MAX_FDS 8 /* SETTINGS_MAX_LISTENERS */
#define WORKER_NAME_MAX 64

typedef struct {
  char name[WORKER_NAME_MAX];
  int fd; /* -1 once taken or closed */
} worker_fd_t;

/* How the previous worker ended. */
typedef struct {
  int valid;
  long pid;
  int code;       /* exit status, when signal is 0 */
  int signal;     /* the signal that killed it, or 0 */
  char cause[16]; /* "watchdog" (status 70), "signal", "exit" */
  double at;      /* wall clock seconds */
  double ran_s;   /* how long it ran */
} worker_exit_t;

typedef struct {
  int active; /* this process is a worker under a master */
  long master_pid;
  int ctl_fd;              /* our end of the socketpair, -1 when none */
  uint64_t restarts;       /* workers the master started before this one, after the first */
  worker_exit_t last_exit; /* the one before this worker */
  int nfds;
  worker_fd_t fds[WORKER_MAX_FDS];
} worker_link_t;

/* The process-wide record; the master fills it in the child. */
worker_link_t *worker_link(void);

/* The inherited listening descriptor named name, or -1: the caller owns it from then on. */
int worker_take_listen_fd(const char *name);
/* Closes the inherited descriptors nobody took (listeners removed from the config). */
void worker_close_untaken(void);
/* Tells the master the worker is serving, with its listening descriptors (names[i], fds[i]):
 * the master keeps duplicates of them for the next worker. No-op without a master. */
void worker_send_ready(const char *const *names, const int *fds, int n);

/* "SIGKILL" for 9 ..., "SIG<n>" for the others (buf holds at least 16 bytes). */
const char *worker_signal_name(int sig, char *buf);

#endif
