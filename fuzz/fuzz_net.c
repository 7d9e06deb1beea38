/* fuzz_net.c - see fuzz_net.h. The connection is set up as http_server.c's on_connection does,
 * with uv_tcp_open on one end of a socketpair in place of uv_accept. */
#include "fuzz_net.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"

http_server_t *fuzz_http_server(uv_loop_t *loop, http_request_cb cb, void *ud) {
  signal(SIGPIPE, SIG_IGN); /* as the runtime does: a write to a closed peer is an error */
  http_server_t *s = http_server_new(loop, NULL, cb, ud);
  if (!s) abort();
  return s;
}

/* Not linked in the server's list: nothing listens, and the harness never closes it. */
static listener_t *the_listener(http_server_t *s) {
  static listener_t l;
  static char name[] = "main";
  l.srv = s;
  l.name = name;
  l.open = 1;
  return &l;
}

int fuzz_http_connect(http_server_t *s) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  conn_t *c = http__conn_new(s, the_listener(s));
  if (!c) abort();
  s->nactive++;
  snprintf(c->remote, sizeof c->remote, "127.0.0.1");
  c->remote_port = 40000;
  if (uv_tcp_open(&c->tcp, sv[0]) != 0) abort();
  http__conn_start(c, 0);
  return sv[1];
}

size_t fuzz_http_open_connections(http_server_t *s) {
  size_t n = 0;
  for (conn_t *c = s->conns; c; c = c->next)
    n++;
  return n;
}

static void drain(int fd) {
  char buf[65536];
  while (read(fd, buf, sizeof buf) > 0) {
  }
}

void fuzz_pump(uv_loop_t *loop, int fd, const uint8_t *data, size_t n, size_t chunk,
               int (*done)(void *ud), void *ud) {
  size_t off = 0;
  while (off < n) {
    size_t want = n - off;
    if (chunk && want > chunk) want = chunk;
    ssize_t w = send(fd, data + off, want, MSG_NOSIGNAL);
    if (w > 0) off += (size_t)w;
    if (w < 0 && errno != EAGAIN && errno != EINTR) break; /* the server closed: fine */
    drain(fd);
    uv_run(loop, UV_RUN_NOWAIT);
  }
  shutdown(fd, SHUT_WR);
  /* Each turn has something to wait for until the connection is gone (its read of the EOF,
   * a timer): a connection that never closes shows as a libFuzzer timeout. */
  while (!done(ud)) {
    drain(fd);
    uv_run(loop, UV_RUN_ONCE);
  }
  drain(fd);
  close(fd);
}
