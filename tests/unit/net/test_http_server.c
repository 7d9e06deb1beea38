/* test_http_server.c - unit test for runtime/net/http_server.c.
 *
 * The uv loop runs in the main thread with two servers: A (short limits, listeners "main" on
 * 127.0.0.1 and "v6" on ::1) and B (max_connections 2, listener "lim"). A client thread drives
 * them with blocking sockets (bounded read timeouts) and signals the loop when it is done; the
 * main thread then closes the servers and checks that everything was released. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "http_server.h"
#include "log.h"
#include "metrics.h"

#include "check.h"
#include "sock_client.h"

/* ---- server side (loop thread) ------------------------------------------------------------ */

typedef struct {
  http_server_t *srv;
  const char *name;
} srv_ctx_t;

static uv_loop_t t_loop;
static srv_ctx_t t_ctx_a = {NULL, "A"}, t_ctx_b = {NULL, "B"};
static int t_aborted_seen;
static int t_done_calls;
static uv_async_t t_async;
static uv_timer_t t_watchdog;

static const char *req_header(const http_request_t *req, const char *name) {
  for (size_t i = 0; i < req->nheaders; i++)
    if (strcmp(req->headers[i].name, name) == 0) return req->headers[i].value;
  return NULL;
}

typedef struct {
  uv_timer_t timer;
  http_request_t *req;
} later_t;

static void on_later_closed(uv_handle_t *h) {
  free(h->data);
}

static void on_later(uv_timer_t *t) {
  later_t *l = t->data;
  char body[256];
  int n = snprintf(body, sizeof body, "later %s", l->req->query);
  if (http_request_aborted(l->req)) t_aborted_seen++;
  static const http_header_t h[] = {{"Content-Type", 12, "text/plain", 10}};
  http_request_respond(l->req, 200, h, 1, body, (size_t)n, "GET /later");
  uv_close((uv_handle_t *)&l->timer, on_later_closed);
}

static void on_request(http_request_t *req, void *ud) {
  srv_ctx_t *ctx = ud;
  static const http_header_t text[] = {{"Content-Type", 12, "text/plain", 10}};
  char body[8192];
  int n;
  if (strcmp(req->path, "/echo") == 0) {
    const char *xt = req_header(req, "x-test");
    char names[1024] = "";
    size_t nl = 0;
    int lower = 1, nul = 1;
    for (size_t i = 0; i < req->nheaders; i++) {
      const http_header_t *h = &req->headers[i];
      if (h->name[h->name_len] != 0 || h->value[h->value_len] != 0) nul = 0;
      for (size_t j = 0; j < h->name_len; j++)
        if (h->name[j] >= 'A' && h->name[j] <= 'Z') lower = 0;
      if (nl + h->name_len + 2 < sizeof names) {
        memcpy(names + nl, h->name, h->name_len);
        nl += h->name_len;
        names[nl++] = ',';
        names[nl] = 0;
      }
    }
    if (req->body[req->body_len] != 0) nul = 0;
    n = snprintf(body, sizeof body,
                 "method=%s\npath=%s\nquery=%s\nbody=%.*s\nx-test=%s\nrid=%s\nremote=%s\n"
                 "listener=%s\nis_head=%d\nnames=%s\nlower=%d\nnul=%d\nsrv=%s\n",
                 req->method, req->path, req->query, (int)req->body_len, req->body,
                 xt ? xt : "(none)", req->request_id, req->remote_addr, req->listener, req->is_head,
                 names, lower, nul, ctx->name);
    http_request_respond(req, 200, text, 1, body, (size_t)n, "GET /echo");
  } else if (strcmp(req->path, "/later") == 0) {
    int ms = 50;
    const char *q = strstr(req->query, "ms=");
    if (q) ms = atoi(q + 3);
    later_t *l = calloc(1, sizeof *l);
    l->req = req;
    uv_timer_init(&t_loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, on_later, (uint64_t)ms, 0);
  } else if (strcmp(req->path, "/stats") == 0) {
    n = snprintf(body, sizeof body, "aborted=%d inflight=%zu conns=%zu", t_aborted_seen,
                 http_server_inflight(ctx->srv), http_server_connection_count(ctx->srv));
    http_request_respond(req, 200, text, 1, body, (size_t)n, "GET /stats");
  } else if (strcmp(req->path, "/close") == 0) {
    static const http_header_t h[] = {{"Content-Type", 12, "text/plain", 10},
                                      {"Connection", 10, "close", 5}};
    http_request_respond(req, 200, h, 2, "bye", 3, "GET /close");
  } else if (strcmp(req->path, "/nocontent") == 0) {
    http_request_respond(req, 204, NULL, 0, "ignored", 7, "GET /nocontent");
  } else if (strcmp(req->path, "/stop") == 0) {
    http_server_stop_accepting(ctx->srv);
    http_request_respond(req, 200, text, 1, "stopping", 8, "GET /stop");
  } else {
    http_request_respond(req, 404, text, 1, "not found", 9, NULL);
  }
}

static void on_server_done(void *ud) {
  (void)ud;
  t_done_calls++;
}

static void on_async(uv_async_t *a) {
  uv_close((uv_handle_t *)a, NULL);
  uv_close((uv_handle_t *)&t_watchdog, NULL);
  check(http_server_inflight(t_ctx_a.srv) == 0, "server A: no request in flight at the end");
  http_server_close(t_ctx_a.srv, on_server_done, NULL);
  http_server_close(t_ctx_b.srv, on_server_done, NULL);
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  printf("FAIL - watchdog: test did not finish within 14 s\n");
  fflush(stdout);
  _exit(1);
}

/* ---- client side (client thread) --------------------------------------------------------- */

static int t_port_a, t_port_a6, t_port_b;

typedef struct {
  int status;
  char head[8192];
  char body[16384];
  size_t body_len;
  long clen; /* -1 when absent */
} resp_t;

static cli_t *cli(int port) {
  return cli_open(AF_INET, port, 3000);
}

static int cli_sends(cli_t *c, const char *s) {
  return cli_send(c, s, strlen(s));
}

static const char *hdr(const resp_t *r, const char *name, char *out, size_t outlen) {
  size_t nl = strlen(name);
  const char *p = strstr(r->head, "\r\n");
  while (p && p[2]) {
    p += 2;
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ')
        v++;
      const char *e = strstr(v, "\r\n");
      size_t vl = e ? (size_t)(e - v) : strlen(v);
      if (vl >= outlen) vl = outlen - 1;
      memcpy(out, v, vl);
      out[vl] = 0;
      return out;
    }
    p = strstr(p, "\r\n");
  }
  return NULL;
}

/* Reads one response. no_body: response to HEAD. Returns 0 or -1. */
static int read_resp(cli_t *c, resp_t *r, int no_body) {
  memset(r, 0, sizeof *r);
  r->clen = -1;
  unsigned char *e;
  while (!(e = memmem(c->buf, c->len, "\r\n\r\n", 4)))
    if (cli_fill(c) <= 0) return -1;
  size_t hl = (size_t)(e - c->buf) + 4;
  if (hl >= sizeof r->head) return -1;
  memcpy(r->head, c->buf, hl);
  r->head[hl] = 0;
  memmove(c->buf, c->buf + hl, c->len - hl);
  c->len -= hl;
  if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return -1;
  char v[64];
  if (hdr(r, "content-length", v, sizeof v)) r->clen = atol(v);
  size_t need = 0;
  if (!no_body && r->status >= 200 && r->status != 204 && r->status != 304 && r->clen > 0)
    need = (size_t)r->clen;
  if (need >= sizeof r->body) return -1;
  while (c->len < need)
    if (cli_fill(c) <= 0) return -1;
  memcpy(r->body, c->buf, need);
  r->body[need] = 0;
  r->body_len = need;
  memmove(c->buf, c->buf + need, c->len - need);
  c->len -= need;
  return 0;
}

/* 1 if the server closed the connection (EOF or reset) with no further bytes. */
static int closed_by_server(cli_t *c) {
  if (c->len) return 0;
  char b[256];
  ssize_t n = recv(c->fd, b, sizeof b, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

static int is_hex32(const char *s) {
  if (strlen(s) != 32) return 0;
  for (int i = 0; i < 32; i++)
    if (!strchr("0123456789abcdef", s[i])) return 0;
  return 1;
}

static resp_t t_r; /* client thread only */

static int get(cli_t *c, const char *path, const char *extra) {
  char req[1024];
  snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n", path, extra ? extra : "");
  if (cli_sends(c, req)) return -1;
  return read_resp(c, &t_r, 0);
}

static void test_simple_get(void) {
  cli_t *c = cli(t_port_a);
  char v[256];
  int ok = c && get(c, "/echo?a=1&b=2", "X-Test: hello\r\n") == 0;
  check(ok && t_r.status == 200, "simple GET: status 200 (got %d)", t_r.status);
  check(ok && strstr(t_r.body, "method=GET\npath=/echo\nquery=a=1&b=2\n") != NULL,
        "simple GET: method, path and query split");
  check(ok && strstr(t_r.body, "x-test=hello\n") && strstr(t_r.body, "names=host,x-test,\n") &&
            strstr(t_r.body, "lower=1\n") && strstr(t_r.body, "nul=1\n"),
        "simple GET: header names lower-cased, values and body NUL-terminated");
  check(ok && t_r.clen == (long)t_r.body_len && t_r.clen > 0, "simple GET: Content-Length right");
  check(ok && hdr(&t_r, "date", v, sizeof v) && strlen(v) == 29 && strstr(v, " GMT"),
        "simple GET: Date header (%s)", ok && hdr(&t_r, "date", v, sizeof v) ? v : "-");
  check(ok && hdr(&t_r, "content-type", v, sizeof v) && strcmp(v, "text/plain") == 0,
        "simple GET: consumer header passed through");
  check(ok && strstr(t_r.body, "remote=127.0.0.1\n") && strstr(t_r.body, "listener=main\n"),
        "simple GET: remote_addr and listener");
  check(ok && hdr(&t_r, "x-request-id", v, sizeof v) && is_hex32(v) && strstr(t_r.body, v),
        "request id generated (32 hex) when absent");
  ok = c && get(c, "/echo", "X-Request-Id: abc-123.x:y_Z\r\n") == 0;
  check(ok && hdr(&t_r, "x-request-id", v, sizeof v) && strcmp(v, "abc-123.x:y_Z") == 0 &&
            strstr(t_r.body, "rid=abc-123.x:y_Z\n"),
        "request id echoed when given");
  ok = c && get(c, "/echo", "X-Request-Id: bad id!\r\n") == 0;
  check(ok && hdr(&t_r, "x-request-id", v, sizeof v) && is_hex32(v),
        "request id generated when the given one is invalid");
  ok = c &&
       cli_sends(c, "GET http://example.com/echo?x=1 HTTP/1.1\r\nHost: t\r\n"
                    "X-Empty:\r\nX-Test: \r\n\r\n") == 0 &&
       read_resp(c, &t_r, 0) == 0;
  check(ok && strstr(t_r.body, "path=/echo\nquery=x=1\n") &&
            strstr(t_r.body, "names=host,x-empty,x-test,\n") && strstr(t_r.body, "x-test=\n") &&
            strstr(t_r.body, "nul=1\n"),
        "absolute-form URL split; empty header values");
  ok = c && get(c, "/nope", NULL) == 0;
  check(ok && t_r.status == 404 && strcmp(t_r.body, "not found") == 0, "unknown path: 404");
  cli_close(c);
}

static void test_keepalive(void) {
  cli_t *c = cli(t_port_a);
  int good = c != NULL;
  for (int i = 0; i < 3 && good; i++) {
    char path[32];
    snprintf(path, sizeof path, "/echo?i=%d", i);
    char want[32];
    snprintf(want, sizeof want, "query=i=%d\n", i);
    good = get(c, path, NULL) == 0 && t_r.status == 200 && strstr(t_r.body, want) &&
           !strstr(t_r.head, "Connection: close");
  }
  check(good, "keep-alive: 3 requests on one connection");
  cli_close(c);
}

static void test_pipelining(void) {
  cli_t *c = cli(t_port_a);
  const char *reqs = "GET /echo?n=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                     "GET /later?n=2 HTTP/1.1\r\nHost: t\r\n\r\n"
                     "POST /echo?n=3 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc";
  int ok = c && cli_sends(c, reqs) == 0;
  resp_t *r = &t_r;
  int a = ok && read_resp(c, r, 0) == 0 && r->status == 200 && strstr(r->body, "query=n=1\n");
  int b = ok && read_resp(c, r, 0) == 0 && r->status == 200 && strcmp(r->body, "later n=2") == 0;
  int d = ok && read_resp(c, r, 0) == 0 && r->status == 200 && strstr(r->body, "query=n=3\n") &&
          strstr(r->body, "body=abc\n");
  check(a && b && d, "pipelining: 3 requests in one write answered in order (deferred middle)");
  cli_close(c);
}

static void test_chunked(void) {
  cli_t *c = cli(t_port_a);
  const char *req = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
  int ok = c && cli_sends(c, req) == 0 && read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 200 && strstr(t_r.body, "method=POST\n") &&
            strstr(t_r.body, "body=hello world\n"),
        "chunked request body de-chunked");
  ok = ok && get(c, "/echo?after=chunked", NULL) == 0;
  check(ok && strstr(t_r.body, "query=after=chunked\n"), "keep-alive after a chunked body");
  cli_close(c);
}

static void test_head(void) {
  cli_t *c = cli(t_port_a);
  int ok = c && cli_sends(c, "HEAD /echo HTTP/1.1\r\nHost: t\r\n\r\n") == 0 &&
           read_resp(c, &t_r, 1) == 0;
  check(ok && t_r.status == 200 && t_r.clen > 0, "HEAD: 200 with Content-Length %ld", t_r.clen);
  struct pollfd pfd = {c ? c->fd : -1, POLLIN, 0};
  check(ok && c->len == 0 && poll(&pfd, 1, 150) == 0, "HEAD: no body bytes");
  ok = ok && get(c, "/echo?after=head", NULL) == 0;
  check(ok && t_r.status == 200 && strstr(t_r.body, "is_head=0\n"), "HEAD: next request fine");
  cli_close(c);
}

static void test_expect(void) {
  cli_t *c = cli(t_port_a);
  int ok = c &&
           cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                        "Expect: 100-continue\r\n\r\n") == 0 &&
           read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 100, "Expect: 100-continue answered with 100 (got %d)", t_r.status);
  ok = ok && cli_sends(c, "hello") == 0 && read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 200 && strstr(t_r.body, "body=hello\n"),
        "Expect: body read after 100, then 200");
  cli_close(c);

  c = cli(t_port_a);
  ok = c &&
       cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n"
                    "Expect: 100-continue\r\n\r\n") == 0 &&
       read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 413 && closed_by_server(c),
        "Expect with a too large body: 413 without 100, then closed");
  cli_close(c);
}

static void test_errors(void) {
  char v[64];
  /* 413 from Content-Length, body never sent */
  cli_t *c = cli(t_port_a);
  int ok = c &&
           cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n") == 0 &&
           read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 413 &&
            strcmp(t_r.body, "{\"ok\":false,\"error\":\"payload_too_large\"}") == 0 &&
            hdr(&t_r, "content-type", v, sizeof v) && strcmp(v, "application/json") == 0 &&
            hdr(&t_r, "connection", v, sizeof v) && strcmp(v, "close") == 0,
        "413 from Content-Length before the body, JSON body");
  check(ok && hdr(&t_r, "x-request-id", v, sizeof v) && is_hex32(v), "413 carries X-Request-Id");
  check(ok && closed_by_server(c), "413: connection closed");
  cli_close(c);

  /* chunked body growing past the cap */
  c = cli(t_port_a);
  char big[4096];
  int n = snprintf(big, sizeof big,
                   "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 3; i++) {
    n += snprintf(big + n, sizeof big - (size_t)n, "200\r\n");
    memset(big + n, 'x', 512);
    n += 512;
    n += snprintf(big + n, sizeof big - (size_t)n, "\r\n");
  }
  n += snprintf(big + n, sizeof big - (size_t)n, "0\r\n\r\n");
  ok = c && cli_send(c, big, (size_t)n) == 0 && read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 413 && closed_by_server(c), "chunked body past the cap: 413 + close");
  cli_close(c);

  /* 431: one huge header */
  c = cli(t_port_a);
  char *req = malloc(8192);
  n = snprintf(req, 8192, "GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: ");
  memset(req + n, 'a', 5000);
  n += 5000;
  n += snprintf(req + n, 8192 - (size_t)n, "\r\n\r\n");
  ok = c && cli_send(c, req, (size_t)n) == 0 && read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 431 &&
            strstr(t_r.body, "\"error\":\"request_header_fields_too_large\"") &&
            closed_by_server(c),
        "431 for huge headers, then closed");
  cli_close(c);
  /* 431: too many headers */
  c = cli(t_port_a);
  n = snprintf(req, 8192, "GET /echo HTTP/1.1\r\nHost: t\r\n");
  for (int i = 0; i < 120; i++)
    n += snprintf(req + n, 8192 - (size_t)n, "X-%d: v\r\n", i);
  n += snprintf(req + n, 8192 - (size_t)n, "\r\n");
  ok = c && cli_send(c, req, (size_t)n) == 0 && read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 431, "431 for more than 100 headers (got %d)", t_r.status);
  cli_close(c);
  free(req);

  /* 400: garbage */
  c = cli(t_port_a);
  ok = c && cli_sends(c, "\x01\x02 this is not http\r\n\r\n") == 0 && read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 400 &&
            strcmp(t_r.body, "{\"ok\":false,\"error\":\"bad_request\"}") == 0,
        "400 with JSON body for garbage");
  check(ok && closed_by_server(c), "400: connection closed");
  cli_close(c);
  /* 400: broken header line after a good request on the same connection */
  c = cli(t_port_a);
  ok = c && get(c, "/echo", NULL) == 0 &&
       cli_sends(c, "GET /echo HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n") == 0 &&
       read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 400 && closed_by_server(c), "400 for a malformed header line + close");
  cli_close(c);
}

static void test_slowloris(void) {
  cli_t *c = cli(t_port_a);
  const char *req =
      "GET /echo HTTP/1.1\r\nHost: t\r\nX-A: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n";
  double t0 = now_ms(), got = -1;
  int ok = 0;
  for (size_t i = 0; c && i < strlen(req); i++) {
    if (send(c->fd, req + i, 1, MSG_NOSIGNAL) != 1) break;
    struct pollfd pfd = {c->fd, POLLIN, 0};
    if (poll(&pfd, 1, 100) > 0) {
      got = now_ms() - t0;
      ok = read_resp(c, &t_r, 0) == 0;
      break;
    }
  }
  check(ok && t_r.status == 408 && strstr(t_r.body, "\"error\":\"request_timeout\""),
        "slowloris: 408 request_timeout (status %d)", t_r.status);
  check(got >= 250 && got <= 700, "slowloris cut off at the header timeout (%.0f ms)", got);
  check(ok && closed_by_server(c), "slowloris: connection closed after 408");
  cli_close(c);

  /* body timeout */
  c = cli(t_port_a);
  t0 = now_ms();
  ok = c && cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab") == 0 &&
       read_resp(c, &t_r, 0) == 0;
  got = now_ms() - t0;
  check(ok && t_r.status == 408 && got >= 400 && got <= 1200 && closed_by_server(c),
        "body timeout: 408 after %.0f ms, closed", got);
  cli_close(c);
}

static void test_idle(void) {
  cli_t *c = cli(t_port_a);
  int ok = c && get(c, "/echo", NULL) == 0 && t_r.status == 200;
  double t0 = now_ms();
  int closed = ok && closed_by_server(c);
  double dt = now_ms() - t0;
  check(closed && dt >= 300 && dt <= 1500, "idle keep-alive connection closed after %.0f ms", dt);
  cli_close(c);
}

static void test_http10(void) {
  char v[64];
  cli_t *c = cli(t_port_a);
  int ok = c && cli_sends(c, "GET /echo HTTP/1.0\r\n\r\n") == 0 && read_resp(c, &t_r, 0) == 0;
  check(ok && t_r.status == 200 && hdr(&t_r, "connection", v, sizeof v) &&
            strcmp(v, "close") == 0 && closed_by_server(c),
        "HTTP/1.0 without keep-alive: Connection: close and closed");
  cli_close(c);
  c = cli(t_port_a);
  ok = c && cli_sends(c, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0 &&
       read_resp(c, &t_r, 0) == 0;
  int ka = ok && hdr(&t_r, "connection", v, sizeof v) && strcasecmp(v, "keep-alive") == 0;
  ok = ok && cli_sends(c, "GET /echo?second HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0 &&
       read_resp(c, &t_r, 0) == 0;
  check(ka && ok && strstr(t_r.body, "query=second\n"), "HTTP/1.0 with keep-alive stays open");
  cli_close(c);
  c = cli(t_port_a);
  ok = c && get(c, "/echo", "Connection: close\r\n") == 0;
  check(ok && hdr(&t_r, "connection", v, sizeof v) && strcmp(v, "close") == 0 &&
            closed_by_server(c),
        "HTTP/1.1 Connection: close honoured");
  cli_close(c);
  c = cli(t_port_a);
  ok = c && get(c, "/close", NULL) == 0;
  check(ok && strcmp(t_r.body, "bye") == 0 && hdr(&t_r, "connection", v, sizeof v) &&
            strcmp(v, "close") == 0 && closed_by_server(c),
        "consumer Connection: close honoured");
  cli_close(c);
  c = cli(t_port_a);
  ok = c && get(c, "/nocontent", NULL) == 0;
  check(ok && t_r.status == 204 && t_r.clen == -1 && c->len == 0,
        "204: no Content-Length, no body");
  ok = ok && get(c, "/echo?after=204", NULL) == 0;
  check(ok && strstr(t_r.body, "query=after=204\n"), "204: keep-alive continues");
  cli_close(c);
}

static void test_ipv6(void) {
  if (t_port_a6 <= 0) {
    check(1, "IPv6: skipped (no ::1)");
    return;
  }
  cli_t *c = cli_open(AF_INET6, t_port_a6, 3000);
  int ok = c && get(c, "/echo", NULL) == 0;
  check(ok && strstr(t_r.body, "remote=::1\n") && strstr(t_r.body, "listener=v6\n"),
        "IPv6 listener: remote ::1, listener v6");
  cli_close(c);
}

static void test_abort(void) {
  cli_t *c = cli(t_port_a);
  int ok = c && cli_sends(c, "GET /later?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n") == 0;
  sleep_ms(50);
  cli_close(c); /* gone before the deferred response */
  sleep_ms(400);
  c = cli(t_port_a);
  ok = ok && c && get(c, "/stats", NULL) == 0;
  check(ok && strstr(t_r.body, "aborted=1 ") && strstr(t_r.body, "inflight=1 "),
        "client gone before a deferred response: request reported aborted (%s)", t_r.body);
  sleep_ms(100);
  ok = ok && get(c, "/stats", NULL) == 0;
  check(ok && strstr(t_r.body, "conns=1"), "connection count back to 1 (%s)", t_r.body);
  cli_close(c);
}

static void test_max_connections(void) {
  char v[64];
  cli_t *b1 = cli(t_port_b), *b2 = cli(t_port_b);
  int ok = b1 && b2 && get(b1, "/echo", NULL) == 0 && get(b2, "/echo", NULL) == 0;
  check(ok && strstr(t_r.body, "srv=B\n"), "max_connections: two connections served");
  cli_t *b3 = cli(t_port_b);
  ok = b3 && cli_sends(b3, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n") == 0 &&
       read_resp(b3, &t_r, 0) == 0;
  check(ok && t_r.status == 503 &&
            strcmp(t_r.body, "{\"ok\":false,\"error\":\"service_unavailable\"}") == 0 &&
            hdr(&t_r, "connection", v, sizeof v) && strcmp(v, "close") == 0 && closed_by_server(b3),
        "max_connections: third connection gets 503 and is closed");
  cli_close(b3);
  cli_close(b2);
  sleep_ms(100);
  cli_t *b4 = cli(t_port_b);
  ok = b4 && get(b4, "/echo", NULL) == 0;
  check(ok && t_r.status == 200, "max_connections: a slot frees when a connection closes");
  cli_close(b4);
  sleep_ms(100);

  /* graceful stop: the idle b1 is closed, the busy one answered with Connection: close */
  cli_t *b5 = cli(t_port_b);
  ok = b5 && get(b5, "/stop", NULL) == 0;
  check(ok && t_r.status == 200 && hdr(&t_r, "connection", v, sizeof v) &&
            strcmp(v, "close") == 0 && closed_by_server(b5),
        "stop_accepting: in-flight response carries Connection: close, then closed");
  check(closed_by_server(b1), "stop_accepting: idle keep-alive connection closed");
  cli_close(b5);
  cli_close(b1);
  cli_t *b6 = cli(t_port_b);
  check(b6 == NULL, "stop_accepting: listener closed (connect refused)");
  cli_close(b6);
}

static void *client_main(void *arg) {
  (void)arg;
  test_simple_get();
  test_keepalive();
  test_pipelining();
  test_chunked();
  test_head();
  test_expect();
  test_errors();
  test_slowloris();
  test_idle();
  test_http10();
  test_ipv6();
  test_abort();
  test_max_connections();
  uv_async_send(&t_async);
  return NULL;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_init();
  metrics_init();
  uv_loop_init(&t_loop);

  http_limits_t la;
  http_limits_default(&la);
  la.max_header_bytes = 4096;
  la.max_body_bytes = 1024;
  la.header_timeout_ms = 300;
  la.body_timeout_ms = 600;
  la.idle_timeout_ms = 400;
  la.max_connections = 64;
  http_limits_t lb;
  http_limits_default(&lb);
  lb.max_connections = 2;

  t_ctx_a.srv = http_server_new(&t_loop, &la, on_request, &t_ctx_a);
  t_ctx_b.srv = http_server_new(&t_loop, &lb, on_request, &t_ctx_b);
  check(t_ctx_a.srv && t_ctx_b.srv, "servers created (metrics registered twice is fine)");
  char err[256] = "";
  int r = http_server_listen(t_ctx_a.srv, "main", "127.0.0.1", 0, err, sizeof err);
  t_port_a = http_server_port(t_ctx_a.srv, "main");
  check(r == 0 && t_port_a > 0, "listen main on 127.0.0.1:0 -> port %d %s", t_port_a, err);
  r = http_server_listen(t_ctx_a.srv, "v6", "::1", 0, err, sizeof err);
  t_port_a6 = r == 0 ? http_server_port(t_ctx_a.srv, "v6") : -1;
  check(r == 0 || strstr(err, "v6") != NULL, "listen v6 on ::1 (%s)", r == 0 ? "ok" : err);
  r = http_server_listen(t_ctx_b.srv, "lim", "localhost", 0, err, sizeof err);
  t_port_b = http_server_port(t_ctx_b.srv, "lim");
  check(r == 0 && t_port_b > 0, "listen lim on localhost:0 -> port %d", t_port_b);
  check(http_server_has_listener(t_ctx_a.srv, "main") &&
            !http_server_has_listener(t_ctx_a.srv, "x") && http_server_port(t_ctx_a.srv, "x") == -1,
        "has_listener / port for unknown names");
  r = http_server_listen(t_ctx_b.srv, "dup", "127.0.0.1", t_port_a, err, sizeof err);
  char want[128];
  snprintf(want, sizeof want, "listen dup 127.0.0.1:%d: address already in use", t_port_a);
  check(r == -1 && strcmp(err, want) == 0, "bind error message: %s", err);
  r = http_server_listen(t_ctx_a.srv, "main", "127.0.0.1", 0, err, sizeof err);
  check(r == -1 && strstr(err, "listen main"), "duplicate listener name refused: %s", err);
  r = http_server_listen(t_ctx_a.srv, "bad", "not-an-ip", 0, err, sizeof err);
  check(r == -1 && strstr(err, "listen bad not-an-ip:0"), "bad host refused: %s", err);

  uv_async_init(&t_loop, &t_async, on_async);
  uv_timer_init(&t_loop, &t_watchdog);
  uv_timer_start(&t_watchdog, on_watchdog, 14000, 0);

  pthread_t th;
  pthread_create(&th, NULL, client_main, NULL);
  uv_run(&t_loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);

  check(t_done_calls == 2, "close: done called once per server (%d)", t_done_calls);
  check(http_server_connection_count(t_ctx_a.srv) == 0 &&
            http_server_connection_count(t_ctx_b.srv) == 0,
        "close: no connections left");
  metric_t *open = metrics_find("chatgw_http_connections_open");
  check(open && metrics_value(open, NULL) == 0, "gauge chatgw_http_connections_open back to 0");
  metric_t *req = metrics_find("chatgw_http_requests_total");
  const char *l200[] = {"GET /echo", "200"}, *l400[] = {"-", "400"}, *l408[] = {"-", "408"},
             *l503[] = {"-", "503"};
  check(req && metrics_value(req, l200) >= 10 && metrics_value(req, l400) >= 2 &&
            metrics_value(req, l408) >= 2 && metrics_value(req, l503) >= 1,
        "chatgw_http_requests_total counted by route and status");
  metric_t *total = metrics_find("chatgw_http_connections_total");
  check(total && metrics_value(total, NULL) >= 20, "chatgw_http_connections_total counted");
  http_server_free(t_ctx_a.srv);
  http_server_free(t_ctx_b.srv);
  int lc = uv_loop_close(&t_loop);
  check(lc == 0, "uv_loop_close returns 0 (%d)", lc);
  metrics_shutdown();
  return check_report();
}
