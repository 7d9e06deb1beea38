/* worker.c - a worker's side of the master link (see worker.h). */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

static worker_link_t g_link = {.ctl_fd = -1};

worker_link_t *worker_link(void) {
  return &g_link;
}

int worker_take_listen_fd(const char *name) {
  for (int i = 0; i < g_link.nfds; i++) {
    if (g_link.fds[i].fd >= 0 && strcmp(g_link.fds[i].name, name) == 0) {
      int fd = g_link.fds[i].fd;
      g_link.fds[i].fd = -1;
      return fd;
    }
  }
  return -1;
}

void worker_close_untaken(void) {
  for (int i = 0; i < g_link.nfds; i++) {
    if (g_link.fds[i].fd < 0) continue;
    log_warnf("listener %s is not in the config any more: its socket is closed",
              g_link.fds[i].name);
    close(g_link.fds[i].fd);
    g_link.fds[i].fd = -1;
  }
}

void worker_send_ready(const char *const *names, const int *fds, int n) {
  if (!g_link.active || g_link.ctl_fd < 0) return;
  if (n > WORKER_MAX_FDS) n = WORKER_MAX_FDS;
  /* "ready\0" then each name and its NUL; the descriptors in one SCM_RIGHTS message */
  char payload[8 + WORKER_MAX_FDS * WORKER_NAME_MAX];
  size_t off = 0;
  memcpy(payload, "ready", 6);
  off = 6;
  for (int i = 0; i < n; i++) {
    size_t l = strnlen(names[i], WORKER_NAME_MAX - 1);
    memcpy(payload + off, names[i], l);
    payload[off + l] = 0;
    off += l + 1;
  }
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * WORKER_MAX_FDS)];
  } cm;
  memset(&cm, 0, sizeof cm);
  struct iovec iov = {payload, off};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (n > 0) {
    m.msg_control = cm.buf;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
  }
  ssize_t w;
  do {
    w = sendmsg(g_link.ctl_fd, &m, MSG_NOSIGNAL);
  } while (w < 0 && errno == EINTR);
  if (w < 0) log_warnf("master link: cannot tell the master we are ready: %s", strerror(errno));
}

const char *worker_signal_name(int sig, char *buf) {
  static const struct {
    int sig;
    const char *name;
  } names[] = {{SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"},
               {SIGILL, "SIGILL"},   {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"},
               {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},   {SIGKILL, "SIGKILL"},
               {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
               {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"},
               {SIGXCPU, "SIGXCPU"}, {SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (names[i].sig == sig) return names[i].name;
  snprintf(buf, 16, "SIG%d", sig);
  return buf;
}
