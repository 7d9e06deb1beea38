/* http_request.c - libFuzzer harness of the HTTP request path: the bytes of one client
 * connection (pipelined requests, chunked bodies, anything) through libuv, http_conn.c's parse
 * loop, http-parser with http_parse.c's callbacks (request building, header and body limits,
 * request ids), responses (http_response.c's header checks) and the connection's close.
 *
 * The first byte picks how the connection is served; the rest is what the client sends:
 *   bit 0  small limits (512 header bytes, 64 body bytes): 431 and 413 on short inputs
 *   bit 1  answer on a later loop turn (the request waits in S_BUSY; the EOF may abort it)
 *   bit 2  take upgrade requests over (http_request_upgrade) instead of answering them
 *   bit 3  send the bytes in writes of 1 + 64 * (byte >> 4) bytes, a loop turn between them
 * The answer echoes a request header back as a response header, so the server's checks of the
 * consumer's headers see client bytes too. Requests are checked against http_server.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_net.h"
#include "log.h"
#include "metrics.h"

static uv_loop_t *g_loop;
static http_server_t *g_srv;
static http_request_t *g_pending; /* answered by g_timer (bit 1) */
static uv_timer_t g_timer;
static int g_async, g_take_upgrades, g_upgraded_open;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) __builtin_trap();                                                                 \
  } while (0)

/* What http_server.h promises about a request. */
static void check_request(const http_request_t *r) {
  CHECK(r->method && r->method[0]);
  CHECK(r->path && r->path[0]);
  CHECK(r->query);
  (void)strlen(r->path);
  (void)strlen(r->query);
  CHECK(r->body && r->body[r->body_len] == 0);
  size_t idl = strlen(r->request_id);
  CHECK(idl >= 1 && idl <= 128);
  for (size_t i = 0; i < r->nheaders; i++) {
    const http_header_t *h = &r->headers[i];
    CHECK(h->name[h->name_len] == 0 && h->value[h->value_len] == 0);
    for (size_t j = 0; j < h->name_len; j++)
      CHECK(!(h->name[j] >= 'A' && h->name[j] <= 'Z'));
  }
}

static void answer(http_request_t *r) {
  static const int statuses[] = {200, 201, 204, 304, 404, 500, 101, 99, 1000};
  int st = statuses[r->body_len % (sizeof statuses / sizeof statuses[0])];
  http_header_t hs[2] = {{"Content-Type", 12, "text/plain", 10}};
  size_t nh = 1;
  if (r->nheaders) {
    const http_header_t *h = &r->headers[r->nheaders - 1];
    hs[nh++] = (http_header_t){h->name, h->name_len, h->value, h->value_len};
  }
  http_request_respond(r, st, hs, nh, r->path, strlen(r->path), "fuzz");
}

static void on_up_closed(uv_handle_t *h) {
  free(h);
  g_upgraded_open--;
}

static int take_upgrade(http_request_t *r) {
  uv_tcp_t *t = malloc(sizeof *t);
  if (!t) abort();
  uv_tcp_init(g_loop, t);
  char *rest = NULL;
  size_t rest_len = 0;
  g_upgraded_open++;
  tls_conn_t *tls = NULL; /* a plain listener: no TLS session comes back */
  if (http_request_upgrade(r, t, &rest, &rest_len, &tls, "GET /up") != 0) {
    uv_close((uv_handle_t *)t, on_up_closed);
    return 0;
  }
  CHECK(rest_len == 0 || rest != NULL);
  CHECK(tls == NULL);
  free(rest);
  uv_close((uv_handle_t *)t, on_up_closed);
  return 1;
}

static void on_timer(uv_timer_t *t) {
  (void)t;
  http_request_t *r = g_pending;
  g_pending = NULL;
  if (r) answer(r);
}

static void on_request(http_request_t *r, void *ud) {
  (void)ud;
  check_request(r);
  if (g_take_upgrades && r->upgrade && take_upgrade(r)) return;
  if (g_async) {
    CHECK(!g_pending); /* one request per connection in flight */
    g_pending = r;
    uv_timer_start(&g_timer, on_timer, 0, 0);
    return;
  }
  answer(r);
}

static int finished(void *ud) {
  (void)ud;
  return !g_pending && !g_upgraded_open && fuzz_http_open_connections(g_srv) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!g_loop) {
    log_set_level(LOG_ERROR);
    metrics_init();
    g_loop = uv_default_loop();
    g_srv = fuzz_http_server(g_loop, on_request, NULL);
    uv_timer_init(g_loop, &g_timer);
  }
  uint8_t mode = size ? data[0] : 0;
  if (size) data++, size--;
  http_limits_t lim;
  http_limits_default(&lim);
  if (mode & 1) {
    lim.max_header_bytes = 512;
    lim.max_body_bytes = 64;
  }
  http_server_set_limits(g_srv, &lim);
  g_async = (mode & 2) != 0;
  g_take_upgrades = (mode & 4) != 0;
  size_t chunk = (mode & 8) ? 1 + 64 * (size_t)(mode >> 4) : 0;
  int fd = fuzz_http_connect(g_srv);
  if (fd < 0) abort();
  fuzz_pump(g_loop, fd, data, size, chunk, finished, NULL);
  return 0;
}
