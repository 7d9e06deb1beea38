/* sock_client.h - the client side of the socket unit tests (tests/unit/net/test_*.c): a
 * blocking TCP client on loopback with bounded send/receive timeouts, run from a client
 * thread while the loop under test runs in the main thread. One include per test. */
#ifndef CHATGW_TEST_SOCK_CLIENT_H
#define CHATGW_TEST_SOCK_CLIENT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static inline double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static inline void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

typedef struct {
  int fd;
  unsigned char buf[65536]; /* what was received and not consumed: buf[0..len) */
  size_t len;
} cli_t;

/* Connects to 127.0.0.1 (or ::1 for AF_INET6) port; every send and receive gives up after
 * timeout_ms. NULL when the connection is refused. */
static inline cli_t *cli_open(int family, int port, int timeout_ms) {
  cli_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->fd = socket(family, SOCK_STREAM, 0);
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r;
  if (family == AF_INET6) {
    struct sockaddr_in6 a = {0};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, "::1", &a.sin6_addr);
    r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
  } else {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
  }
  if (r != 0) {
    close(c->fd);
    free(c);
    return NULL;
  }
  return c;
}

static inline void cli_close(cli_t *c) {
  if (!c) return;
  close(c->fd);
  free(c);
}

static inline int cli_send(cli_t *c, const void *p, size_t n) {
  const char *s = p;
  size_t off = 0;
  while (off < n) {
    ssize_t w = send(c->fd, s + off, n - off, MSG_NOSIGNAL);
    if (w <= 0) return -1;
    off += (size_t)w;
  }
  return 0;
}

/* Receives more: 1 got bytes, 0 EOF, -1 error, timeout or a full buffer. */
static inline int cli_fill(cli_t *c) {
  if (c->len == sizeof c->buf) return -1;
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
  if (n > 0) c->len += (size_t)n;
  return n > 0 ? 1 : (int)n;
}

/* Until at least n bytes are buffered: 0, or -1. */
static inline int cli_need(cli_t *c, size_t n) {
  if (n > sizeof c->buf) return -1;
  while (c->len < n)
    if (cli_fill(c) <= 0) return -1;
  return 0;
}

/* Drops the first n buffered bytes. */
static inline void cli_consume(cli_t *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

#endif
