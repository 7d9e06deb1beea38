/* test_ws.c - unit test for the WebSocket module (runtime/net/ws_*.c), without Lua.
 *
 * The uv loop runs in the main thread: an HTTP server on 127.0.0.1 whose request callback hands
 * every request to ws_handle_request (else 404), and test hooks that stand in for lib_ws.c:
 * handshake accepts with a hello naming the connection id (or refuses, fails, or answers later
 * from a timer, depending on the connect text), message echoes (or answers "limited" when the
 * rate limit refused the message, or sends events / closes on request), disconnect records the
 * id, code and reason. A client thread speaks RFC 6455 over blocking sockets with bounded read
 * timeouts and checks:
 *   - upgrade refusals (404, 426 twice, 400), the 101 with its Sec-WebSocket-Accept, the
 *     connect.challenge, the hello; the raw query string and bearer token the hook sees; a
 *     connect sent in the same write as the upgrade request; a connect answered later (a
 *     message sent meanwhile is held and handled after the hello)
 *   - echo of text, a binary message answered with unsupported_data, 16-bit lengths, a frame
 *     fed one byte at a time, fragments with a ping between them
 *   - protocol errors (1002), invalid UTF-8 (1007, also a character split across fragments
 *     that is valid), size limits (1009, also across small fragments), refused / failed /
 *     binary connects (1008 / 1011 / 1003)
 *   - close handshakes both ways, malformed close frames (1002), a client that vanishes
 *     (1006), the handshake timeout (1008), events with their seq, presence, the inbound rate
 *     limit
 * and at the end that ws_close_all and http_server_close release every handle (uv_loop_close
 * returns 0) and that the module's metrics add up. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
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
#include "ws.h"

#include "check.h"
#include "sock_client.h"

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xa

#define MAX_PAYLOAD 4096
#define HANDSHAKE_TIMEOUT_MS 500
#define RATE_PER_SECOND 5
#define RATE_BURST 2
#define LATER_MS 300 /* a "later" connect is answered after this */

static const char REFUSAL[] = "{\"type\":\"res\",\"ok\":false}";

/* ---- state shared by the hooks (loop thread) and the client thread ------------------------ */

typedef struct {
  char id[64];
  unsigned code;
  char reason[128];
  char role[32];
  char state[16];
} disc_t;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  int handshakes;
  char query[256];
  char bearer[256];
  int has_bearer;
  char text[512];
  char remote[64];
  disc_t disc[128];
  size_t ndisc;
  int later_done, later_rc, later_again_rc;
  int limited;
  unsigned long long last_retry;
} g_sh;

/* ---- server side (loop thread) ------------------------------------------------------------ */

static uv_loop_t t_loop;
static http_server_t *t_srv;
static int t_done_calls;
static uv_async_t t_async;
static uv_timer_t t_watchdog;
static uv_timer_t t_later; /* answers a "later" connect */
static uint64_t t_later_num;
static char t_later_id[64];
static size_t t_count_at_end = (size_t)-1;

static void on_request(http_request_t *req, void *ud) {
  (void)ud;
  if (ws_handle_request(req)) return;
  static const http_header_t text[] = {{"Content-Type", 12, "text/plain", 10}};
  http_request_respond(req, 404, text, 1, "not found", 9, NULL);
}

/* ws_accept with a hello naming the connection; "presence" clients also get operator.read. */
static int accept_conn(uint64_t num, const char *id, int presence) {
  static const char *const scopes[] = {"operator.write", "test.scope"};
  static const char *const scopes_read[] = {"operator.write", "operator.read"};
  char hello[256];
  int n = snprintf(
      hello, sizeof hello,
      "{\"type\":\"res\",\"ok\":true,\"payload\":{\"type\":\"hello-ok\",\"conn\":\"%s\"}}", id);
  return ws_accept(num, "operator", presence ? scopes_read : scopes, 2, "dev-1", NULL, NULL, hello,
                   (size_t)n);
}

static void on_later(uv_timer_t *t) {
  (void)t;
  int rc = accept_conn(t_later_num, t_later_id, 0);
  int again = accept_conn(t_later_num, t_later_id, 0); /* no longer waiting: -1 */
  pthread_mutex_lock(&g_mu);
  g_sh.later_rc = rc;
  g_sh.later_again_rc = again;
  g_sh.later_done = 1;
  pthread_mutex_unlock(&g_mu);
}

static int has(const char *p, size_t n, const char *s) {
  return memmem(p, n, s, strlen(s)) != NULL;
}

static int hook_handshake(uint64_t num, const char *id, const char *text, size_t len,
                          const char *query, const char *bearer, const char *remote) {
  pthread_mutex_lock(&g_mu);
  g_sh.handshakes++;
  snprintf(g_sh.query, sizeof g_sh.query, "%s", query ? query : "(null)");
  snprintf(g_sh.bearer, sizeof g_sh.bearer, "%s", bearer ? bearer : "");
  g_sh.has_bearer = bearer != NULL;
  snprintf(g_sh.text, sizeof g_sh.text, "%.*s", (int)len, text);
  snprintf(g_sh.remote, sizeof g_sh.remote, "%s", remote ? remote : "(null)");
  pthread_mutex_unlock(&g_mu);
  if (has(text, len, "refuse")) {
    ws_refuse(num, REFUSAL, sizeof REFUSAL - 1, 1008, "refused");
    return 0;
  }
  if (has(text, len, "fail")) return -1;
  if (has(text, len, "later")) {
    t_later_num = num;
    snprintf(t_later_id, sizeof t_later_id, "%s", id);
    uv_timer_start(&t_later, on_later, LATER_MS, 0);
    return 0;
  }
  return accept_conn(num, id, has(text, len, "presence")) == 0 ? 0 : -1;
}

static void hook_message(uint64_t num, const char *text, size_t len, uint64_t retry_ms) {
  if (retry_ms > 0) {
    char b[64];
    int n = snprintf(b, sizeof b, "limited retry_ms=%llu", (unsigned long long)retry_ms);
    pthread_mutex_lock(&g_mu);
    g_sh.limited++;
    g_sh.last_retry = (unsigned long long)retry_ms;
    pthread_mutex_unlock(&g_mu);
    ws_send_text(num, b, (size_t)n);
    return;
  }
  ws_conn_t *c = ws_find_num(num);
  ws_info_t info;
  if (c) ws_info(c, &info);
  if (c && len == 8 && memcmp(text, "close-me", 8) == 0) {
    ws_close_id(info.id, 4000, "by server");
    return;
  }
  if (c && len == 8 && memcmp(text, "event-me", 8) == 0) {
    ws_send_event(info.id, "test.ev", "{\"n\":1}", 7);
    ws_send_event(info.id, "test.ev", "{\"n\":2}", 7);
    return;
  }
  ws_send_text(num, text, len);
}

static void hook_disconnect(ws_conn_t *c, unsigned code, const char *reason) {
  ws_info_t info;
  ws_info(c, &info);
  pthread_mutex_lock(&g_mu);
  if (g_sh.ndisc < sizeof g_sh.disc / sizeof g_sh.disc[0]) {
    disc_t *d = &g_sh.disc[g_sh.ndisc++];
    snprintf(d->id, sizeof d->id, "%s", info.id);
    d->code = code;
    snprintf(d->reason, sizeof d->reason, "%s", reason ? reason : "(null)");
    snprintf(d->role, sizeof d->role, "%s", info.role ? info.role : "(null)");
    snprintf(d->state, sizeof d->state, "%s", info.state ? info.state : "(null)");
  }
  pthread_mutex_unlock(&g_mu);
}

static void on_server_done(void *ud) {
  (void)ud;
  t_done_calls++;
}

static void on_async(uv_async_t *a) {
  uv_close((uv_handle_t *)a, NULL);
  uv_close((uv_handle_t *)&t_watchdog, NULL);
  uv_close((uv_handle_t *)&t_later, NULL);
  t_count_at_end = ws_connection_count();
  ws_close_all();
  http_server_close(t_srv, on_server_done, NULL);
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  printf("FAIL - watchdog: test did not finish within 14 s\n");
  fflush(stdout);
  _exit(1);
}

/* ---- client side (client thread) --------------------------------------------------------- */

static int t_port;
static int t_upgrades; /* 101s seen by the client */

typedef struct {
  int fin, rsv, op;
  size_t hlen; /* header length: 2, 4 or 10 */
  size_t len;
  uint8_t data[16384];
} frame_t;

static frame_t t_f; /* client thread only */

static cli_t *ws_cli(void) {
  return cli_open(AF_INET, t_port, 2000);
}

/* 1 if the server closed the connection (EOF or reset) with no further bytes. */
static int closed_by_server(cli_t *c) {
  if (c->len) return 0;
  char b[256];
  ssize_t n = recv(c->fd, b, sizeof b, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* A client frame: masked (unless F_UNMASKED), with RSV1 when F_RSV1. Returns its length. */
enum { F_RSV1 = 1, F_UNMASKED = 2 };

static size_t build_frame(uint8_t *out, size_t cap, int fin, unsigned op, const void *payload,
                          size_t n, unsigned flags) {
  static unsigned ctr; /* client thread only: a different mask key per frame */
  const uint8_t *p = payload;
  if (cap < n + 14) return 0;
  size_t h = 0;
  out[h++] = (uint8_t)((fin ? 0x80 : 0) | ((flags & F_RSV1) ? 0x40 : 0) | (op & 0x0f));
  uint8_t m = (flags & F_UNMASKED) ? 0 : 0x80;
  if (n < 126) {
    out[h++] = (uint8_t)(m | n);
  } else if (n <= 0xffff) {
    out[h++] = m | 126;
    out[h++] = (uint8_t)(n >> 8);
    out[h++] = (uint8_t)n;
  } else {
    out[h++] = m | 127;
    for (int i = 7; i >= 0; i--)
      out[h++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  if (flags & F_UNMASKED) {
    if (n) memcpy(out + h, p, n);
    return h + n;
  }
  ctr++;
  uint8_t key[4] = {0x37, 0xfa, (uint8_t)(0x21 + ctr), (uint8_t)(0x3d ^ ctr)};
  memcpy(out + h, key, 4);
  h += 4;
  for (size_t i = 0; i < n; i++)
    out[h + i] = p[i] ^ key[i & 3];
  return h + n;
}

static int send_frame(cli_t *c, int fin, unsigned op, const void *p, size_t n, unsigned flags) {
  size_t cap = n + 14;
  uint8_t *b = malloc(cap);
  if (!b) return -1;
  size_t l = build_frame(b, cap, fin, op, p, n, flags);
  int r = l ? cli_send(c, b, l) : -1;
  free(b);
  return r;
}

static int send_text(cli_t *c, const char *s) {
  return send_frame(c, 1, OP_TEXT, s, strlen(s), 0);
}

/* Reads one server frame into f (payload NUL-terminated). 0, or -1 (timeout, EOF, malformed,
 * masked, too big). */
static int read_frame(cli_t *c, frame_t *f) {
  memset(f, 0, offsetof(frame_t, data));
  f->data[0] = 0;
  if (cli_need(c, 2)) return -1;
  uint8_t b0 = c->buf[0], b1 = c->buf[1];
  f->fin = b0 >> 7;
  f->rsv = (b0 >> 4) & 7;
  f->op = b0 & 0x0f;
  if (b1 & 0x80) return -1; /* server frames are never masked */
  uint64_t len = b1 & 0x7f;
  size_t h = 2;
  if (len == 126) {
    if (cli_need(c, 4)) return -1;
    len = ((uint64_t)c->buf[2] << 8) | c->buf[3];
    h = 4;
  } else if (len == 127) {
    if (cli_need(c, 10)) return -1;
    len = 0;
    for (int i = 2; i < 10; i++)
      len = (len << 8) | c->buf[i];
    h = 10;
  }
  if (len >= sizeof f->data) return -1;
  if (cli_need(c, h + (size_t)len)) return -1;
  f->hlen = h;
  f->len = (size_t)len;
  memcpy(f->data, c->buf + h, f->len);
  f->data[f->len] = 0;
  cli_consume(c, h + f->len);
  return 0;
}

/* The close code of a close frame (1005 when it has none). */
static unsigned close_code(const frame_t *f) {
  if (f->len < 2) return 1005;
  return ((unsigned)f->data[0] << 8) | f->data[1];
}

/* Reads frames until a close frame (at most 8): its code, or -1. The text payloads before it
 * are appended to texts ('|'-separated) when texts is not NULL. */
static int read_until_close(cli_t *c, char *texts, size_t cap) {
  if (texts && cap) texts[0] = 0;
  for (int i = 0; i < 8; i++) {
    if (read_frame(c, &t_f) != 0) return -1;
    if (t_f.op == OP_CLOSE) return (int)close_code(&t_f);
    if (texts && t_f.op == OP_TEXT) {
      size_t l = strlen(texts);
      snprintf(texts + l, cap - l, "%s%s", l ? "|" : "", (const char *)t_f.data);
    }
  }
  return -1;
}

/* Sends n raw bytes and reads the response head into head (NUL-terminated). Returns the
 * status, or -1. The bytes after the head stay in c->buf. */
static int http_req(cli_t *c, const void *raw, size_t n, char *head, size_t headcap) {
  head[0] = 0;
  if (!c || cli_send(c, raw, n)) return -1;
  unsigned char *e = NULL;
  for (int i = 0; i < 64 && !(e = memmem(c->buf, c->len, "\r\n\r\n", 4)); i++)
    if (cli_fill(c) <= 0) return -1;
  if (!e) return -1;
  size_t hl = (size_t)(e - c->buf) + 4;
  if (hl >= headcap) return -1;
  memcpy(head, c->buf, hl);
  head[hl] = 0;
  cli_consume(c, hl);
  int status = 0;
  if (sscanf(head, "HTTP/1.1 %d", &status) != 1) return -1;
  return status;
}

/* Sends the upgrade request (target e.g. "/ws?x=1", extra header lines, then tail bytes in the
 * same write) and reads the response head into head. Returns the status, or -1. */
static int upgrade_req(cli_t *c, const char *target, const char *extra, const void *tail,
                       size_t tail_len, char *head, size_t headcap) {
  char req[2048];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s\r\n",
                   target, extra ? extra : "");
  if (n < 0 || (size_t)n + tail_len > sizeof req) return -1;
  if (tail_len) memcpy(req + n, tail, tail_len);
  int status = http_req(c, req, (size_t)n + tail_len, head, headcap);
  if (status == 101) t_upgrades++;
  return status;
}

static int accept_ok(const char *head) {
  return strcasestr(head, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL;
}

/* The connection id from a hello text. */
static int hello_id(const char *text, char *id, size_t idlen) {
  const char *p = strstr(text, "\"conn\":\"");
  if (!p) return -1;
  p += 8;
  const char *e = strchr(p, '"');
  if (!e || (size_t)(e - p) >= idlen) return -1;
  memcpy(id, p, (size_t)(e - p));
  id[e - p] = 0;
  return 0;
}

/* Upgrade, challenge, connect, hello: an open connection (its id in id), or NULL. */
static cli_t *ws_open(const char *connect, char *id, size_t idlen) {
  cli_t *c = ws_cli();
  char head[4096];
  if (!c || upgrade_req(c, "/ws", NULL, NULL, 0, head, sizeof head) != 101 ||
      read_frame(c, &t_f) != 0 || t_f.op != OP_TEXT ||
      !strstr((const char *)t_f.data, "connect.challenge") ||
      send_text(c, connect ? connect : "{\"type\":\"req\",\"method\":\"connect\"}") != 0 ||
      read_frame(c, &t_f) != 0 || t_f.op != OP_TEXT ||
      hello_id((const char *)t_f.data, id, idlen) != 0) {
    cli_close(c);
    return NULL;
  }
  return c;
}

/* Waits (bounded) for the disconnect hook to have recorded connection id: 1 and *out, or 0. */
static int disc_wait(const char *id, disc_t *out, int ms) {
  for (int waited = 0; waited <= ms; waited += 10) {
    int found = 0;
    pthread_mutex_lock(&g_mu);
    for (size_t i = 0; i < g_sh.ndisc; i++)
      if (strcmp(g_sh.disc[i].id, id) == 0) {
        *out = g_sh.disc[i];
        found = 1;
      }
    pthread_mutex_unlock(&g_mu);
    if (found) return 1;
    sleep_ms(10);
  }
  return 0;
}

static int disc_count(const char *id) {
  int n = 0;
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < g_sh.ndisc; i++)
    if (strcmp(g_sh.disc[i].id, id) == 0) n++;
  pthread_mutex_unlock(&g_mu);
  return n;
}

/* ---- the cases ---- */

static void test_upgrade_refusals(void) {
  char head[4096];
  cli_t *c = ws_cli();
  int st = upgrade_req(c, "/other", NULL, NULL, 0, head, sizeof head);
  check(st == 404, "upgrade on another path: not taken, the request callback answers 404 (%d)", st);
  cli_close(c);

  static const char plain[] = "GET /ws HTTP/1.1\r\nHost: t\r\n\r\n";
  c = ws_cli();
  st = http_req(c, plain, sizeof plain - 1, head, sizeof head);
  check(st == 426 && strcasestr(head, "\r\nUpgrade: websocket\r\n"),
        "GET /ws without Upgrade: 426 with Upgrade: websocket (%d)", st);
  cli_close(c);

  static const char v8[] = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
  c = ws_cli();
  st = http_req(c, v8, sizeof v8 - 1, head, sizeof head);
  check(st == 426 && strcasestr(head, "\r\nSec-WebSocket-Version: 13\r\n"),
        "Sec-WebSocket-Version 8: 426 naming version 13 (%d)", st);
  cli_close(c);

  static const char badkey[] = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Key: short\r\n\r\n";
  c = ws_cli();
  st = http_req(c, badkey, sizeof badkey - 1, head, sizeof head);
  check(st == 400, "bad Sec-WebSocket-Key: 400 (%d)", st);
  cli_close(c);
}

static void test_connect(void) {
  char head[4096], id[64] = "";
  cli_t *c = ws_cli();
  int st = c ? upgrade_req(c, "/ws?token=a%20b&x=1", "Authorization: Bearer tok-123.xyz\r\n", NULL,
                           0, head, sizeof head)
             : -1;
  check(st == 101, "upgrade: 101 Switching Protocols (%d)", st);
  check(st == 101 && accept_ok(head), "upgrade: Sec-WebSocket-Accept is RFC 6455's example");
  int ok = st == 101 && read_frame(c, &t_f) == 0;
  check(ok && t_f.op == OP_TEXT && t_f.fin && t_f.rsv == 0 &&
            strstr((const char *)t_f.data, "\"event\":\"connect.challenge\"") &&
            strstr((const char *)t_f.data, "\"nonce\":\""),
        "first server frame: a final unmasked text event connect.challenge with a nonce");
  const char *connect = "{\"type\":\"req\",\"method\":\"connect\",\"id\":\"c1\"}";
  ok = ok && send_text(c, connect) == 0 && read_frame(c, &t_f) == 0;
  check(ok && t_f.op == OP_TEXT && strstr((const char *)t_f.data, "\"hello-ok\"") &&
            hello_id((const char *)t_f.data, id, sizeof id) == 0,
        "connect answered with the hello from ws_accept (conn %s)", id);
  pthread_mutex_lock(&g_mu);
  check(strcmp(g_sh.query, "token=a%20b&x=1") == 0,
        "handshake hook: raw undecoded query string (%s)", g_sh.query);
  check(g_sh.has_bearer && strcmp(g_sh.bearer, "tok-123.xyz") == 0,
        "handshake hook: bearer token from the Authorization header (%s)", g_sh.bearer);
  check(strcmp(g_sh.text, connect) == 0, "handshake hook: the connect text as sent");
  check(strcmp(g_sh.remote, "127.0.0.1") == 0, "handshake hook: remote 127.0.0.1 (%s)",
        g_sh.remote);
  pthread_mutex_unlock(&g_mu);
  ok = ok && send_text(c, "after hello") == 0 && read_frame(c, &t_f) == 0;
  check(ok && t_f.op == OP_TEXT && strcmp((const char *)t_f.data, "after hello") == 0,
        "open connection: a message reaches the message hook and is echoed");
  cli_close(c);

  /* no query, no bearer */
  c = ws_open(NULL, id, sizeof id);
  pthread_mutex_lock(&g_mu);
  check(c && strcmp(g_sh.query, "") == 0 && !g_sh.has_bearer,
        "handshake hook without them: query \"\" and bearer NULL (%s)", g_sh.query);
  pthread_mutex_unlock(&g_mu);
  cli_close(c);

  /* the connect frame in the same write as the upgrade request */
  c = ws_cli();
  uint8_t fr[256];
  const char *pc = "{\"type\":\"req\",\"method\":\"connect\",\"id\":\"piggyback\"}";
  size_t fl = build_frame(fr, sizeof fr, 1, OP_TEXT, pc, strlen(pc), 0);
  st = c ? upgrade_req(c, "/ws", NULL, fr, fl, head, sizeof head) : -1;
  ok = st == 101 && read_frame(c, &t_f) == 0 &&
       strstr((const char *)t_f.data, "connect.challenge") && read_frame(c, &t_f) == 0;
  check(ok && strstr((const char *)t_f.data, "\"hello-ok\""),
        "connect sent right behind the upgrade request (same write): challenge, then hello");
  pthread_mutex_lock(&g_mu);
  check(strcmp(g_sh.text, pc) == 0, "piggybacked connect reached the hook intact");
  pthread_mutex_unlock(&g_mu);
  cli_close(c);
}

/* The hook answers a "later" connect from a timer (LATER_MS). A message the client sends while
 * the connect is pending must wait: it is handled after the hello. Also when it came in the
 * same write (TCP segment) as the connect: wslay's frame context has already read it in before
 * the connection paused, and the resume must parse what the context holds without waiting for
 * more bytes from the socket. */
static void test_deferred_accept(void) {
  char head[4096];
  cli_t *c = ws_cli();
  int ok = c && upgrade_req(c, "/ws", NULL, NULL, 0, head, sizeof head) == 101 &&
           read_frame(c, &t_f) == 0;
  const char *later = "{\"type\":\"req\",\"method\":\"connect\",\"later\":true}";
  double t0 = now_ms();
  ok = ok && send_text(c, later) == 0;
  sleep_ms(LATER_MS / 3); /* the server has read the connect and paused */
  ok = ok && send_text(c, "sent while pending") == 0 && read_frame(c, &t_f) == 0;
  double dt = now_ms() - t0;
  check(ok && strstr((const char *)t_f.data, "\"hello-ok\"") && dt >= LATER_MS - 20,
        "connect answered later (timer, %d ms): hello after %.0f ms", LATER_MS, dt);
  ok = ok && read_frame(c, &t_f) == 0;
  check(ok && strcmp((const char *)t_f.data, "sent while pending") == 0,
        "a message sent while the connect was pending is handled after the hello");
  pthread_mutex_lock(&g_mu);
  check(g_sh.later_done && g_sh.later_rc == 0 && g_sh.later_again_rc == -1,
        "ws_accept: 0 when waiting, -1 once already accepted (%d, %d)", g_sh.later_rc,
        g_sh.later_again_rc);
  pthread_mutex_unlock(&g_mu);
  cli_close(c);

  /* connect + two messages in one write, the connect answered later */
  c = ws_cli();
  ok = c && upgrade_req(c, "/ws", NULL, NULL, 0, head, sizeof head) == 101 &&
       read_frame(c, &t_f) == 0;
  uint8_t seg[512];
  size_t n = build_frame(seg, sizeof seg, 1, OP_TEXT, later, strlen(later), 0);
  n += build_frame(seg + n, sizeof seg - n, 1, OP_TEXT, "same segment 1", 14, 0);
  n += build_frame(seg + n, sizeof seg - n, 1, OP_TEXT, "same segment 2", 14, 0);
  ok = ok && cli_send(c, seg, n) == 0 && read_frame(c, &t_f) == 0 &&
       strstr((const char *)t_f.data, "\"hello-ok\"") != NULL;
  check(ok, "connect in one segment with two messages: hello");
  ok = ok && read_frame(c, &t_f) == 0 && strcmp((const char *)t_f.data, "same segment 1") == 0;
  ok = ok && read_frame(c, &t_f) == 0 && strcmp((const char *)t_f.data, "same segment 2") == 0;
  check(ok, "the messages read ahead with the connect are handled after the hello, in order");
  cli_close(c);
}

static void test_echo(void) {
  char id[64];
  cli_t *c = ws_open(NULL, id, sizeof id);
  int ok = c && send_text(c, "{\"type\":\"req\",\"id\":\"1\",\"method\":\"ping\"}") == 0 &&
           read_frame(c, &t_f) == 0;
  check(ok && t_f.op == OP_TEXT && t_f.fin &&
            strcmp((const char *)t_f.data, "{\"type\":\"req\",\"id\":\"1\",\"method\":\"ping\"}") ==
                0,
        "text message echoed");
  ok = c && send_frame(c, 1, OP_BINARY, "\x01\x02\x03", 3, 0) == 0 && read_frame(c, &t_f) == 0;
  check(ok && t_f.op == OP_TEXT && strstr((const char *)t_f.data, "\"unsupported_data\""),
        "binary message: text reply with unsupported_data");
  ok = c && send_text(c, "still open") == 0 && read_frame(c, &t_f) == 0;
  check(ok && strcmp((const char *)t_f.data, "still open") == 0,
        "connection stays open after a binary message");
  cli_close(c);

  c = ws_open(NULL, id, sizeof id);
  char big[4001];
  for (int i = 0; i < 4000; i++)
    big[i] = (char)('a' + i % 26);
  big[4000] = 0;
  ok = c && send_text(c, big) == 0 && read_frame(c, &t_f) == 0;
  check(ok && t_f.len == 4000 && t_f.hlen == 4 && memcmp(t_f.data, big, 4000) == 0,
        "4000-byte message (16-bit lengths both ways) echoed intact (len %zu, header %zu)", t_f.len,
        t_f.hlen);
  uint8_t fr[64];
  size_t fl = build_frame(fr, sizeof fr, 1, OP_TEXT, "one byte at a time", 18, 0);
  ok = c != NULL;
  for (size_t i = 0; ok && i < fl; i++) {
    ok = cli_send(c, fr + i, 1) == 0;
    sleep_ms(2);
  }
  ok = ok && read_frame(c, &t_f) == 0;
  check(ok && strcmp((const char *)t_f.data, "one byte at a time") == 0,
        "a frame that arrives one byte at a time is echoed");
  cli_close(c);
}

static void test_fragments(void) {
  char id[64];
  cli_t *c = ws_open(NULL, id, sizeof id);
  int ok = c && send_frame(c, 0, OP_TEXT, "hel", 3, 0) == 0 &&
           send_frame(c, 1, OP_PING, "p1", 2, 0) == 0 &&
           send_frame(c, 0, OP_CONT, "lo ", 3, 0) == 0 &&
           send_frame(c, 1, OP_CONT, "world", 5, 0) == 0;
  int r1 = ok ? read_frame(c, &t_f) : -1;
  check(r1 == 0 && t_f.op == OP_PONG && t_f.len == 2 && memcmp(t_f.data, "p1", 2) == 0,
        "ping between fragments answered with a pong carrying its payload (op %d)", t_f.op);
  int r2 = r1 == 0 ? read_frame(c, &t_f) : -1;
  check(r2 == 0 && t_f.op == OP_TEXT && t_f.fin &&
            strcmp((const char *)t_f.data, "hello world") == 0,
        "fragmented message echoed as one message (%s)", r2 == 0 ? (char *)t_f.data : "-");
  /* the same fragments in one write */
  uint8_t buf[256];
  size_t n = build_frame(buf, sizeof buf, 0, OP_TEXT, "a", 1, 0);
  n += build_frame(buf + n, sizeof buf - n, 0, OP_CONT, "", 0, 0);
  n += build_frame(buf + n, sizeof buf - n, 1, OP_CONT, "bc", 2, 0);
  ok = c && cli_send(c, buf, n) == 0 && read_frame(c, &t_f) == 0;
  check(ok && strcmp((const char *)t_f.data, "abc") == 0,
        "fragments in one write, one of them empty: echoed as \"abc\"");
  cli_close(c);
}

/* Sends bytes on a fresh open connection and expects a close frame with code want; then the
 * server closes the socket and the disconnect hook sees the code. */
static void expect_close_after(const uint8_t *bytes, size_t n, unsigned want, const char *what) {
  char id[64] = "";
  cli_t *c = ws_open(NULL, id, sizeof id);
  int ok = c && cli_send(c, bytes, n) == 0;
  int code = ok ? read_until_close(c, NULL, 0) : -1;
  check(code == (int)want, "%s: close %u (got %d)", what, want, code);
  check(code >= 0 && closed_by_server(c), "%s: then the server closes the socket", what);
  disc_t d;
  int got = c && disc_wait(id, &d, 1000);
  check(got && d.code == want, "%s: disconnect hook got %u (%u)", what, want, got ? d.code : 0);
  cli_close(c);
}

static void test_protocol_errors(void) {
  uint8_t buf[256];
  size_t n = build_frame(buf, sizeof buf, 1, OP_CONT, "x", 1, 0);
  expect_close_after(buf, n, 1002, "continuation frame without a message");

  n = build_frame(buf, sizeof buf, 0, OP_TEXT, "ab", 2, 0);
  n += build_frame(buf + n, sizeof buf - n, 1, OP_TEXT, "cd", 2, 0);
  expect_close_after(buf, n, 1002, "new TEXT frame inside a fragmented message");

  n = build_frame(buf, sizeof buf, 1, OP_TEXT, "unmasked", 8, F_UNMASKED);
  expect_close_after(buf, n, 1002, "unmasked client frame");

  n = build_frame(buf, sizeof buf, 1, OP_TEXT, "rsv", 3, F_RSV1);
  expect_close_after(buf, n, 1002, "RSV1 set without an extension");

  n = build_frame(buf, sizeof buf, 1, 0x3, "op", 2, 0);
  expect_close_after(buf, n, 1002, "reserved opcode 0x3");

  n = build_frame(buf, sizeof buf, 0, OP_PING, "", 0, 0);
  expect_close_after(buf, n, 1002, "fragmented ping");
}

static void test_utf8(void) {
  uint8_t buf[256];
  size_t n = build_frame(buf, sizeof buf, 1, OP_TEXT, "\xc3\x28", 2, 0);
  expect_close_after(buf, n, 1007, "invalid UTF-8 (C3 28)");

  n = build_frame(buf, sizeof buf, 0, OP_TEXT, "ab\xe2\x82", 4, 0); /* U+20AC cut short */
  n += build_frame(buf + n, sizeof buf - n, 1, OP_CONT, "", 0, 0);
  expect_close_after(buf, n, 1007, "UTF-8 sequence cut short at the end of the message");

  char id[64];
  cli_t *c = ws_open(NULL, id, sizeof id);
  int ok = c && send_frame(c, 0, OP_TEXT, "caf\xc3", 4, 0) == 0 &&
           send_frame(c, 1, OP_CONT, "\xa9!", 2, 0) == 0 && read_frame(c, &t_f) == 0;
  check(ok && t_f.op == OP_TEXT && strcmp((const char *)t_f.data, "caf\xc3\xa9!") == 0,
        "\"caf\\xc3\" + \"\\xa9!\": a character split across fragments is valid, echoed intact");
  cli_close(c);
}

static void test_limits(void) {
  /* one frame over max_payload */
  size_t big = MAX_PAYLOAD + 100;
  uint8_t *buf = malloc(big + 64);
  char *pl = malloc(big);
  memset(pl, 'x', big);
  size_t n = build_frame(buf, big + 64, 1, OP_TEXT, pl, big, 0);
  expect_close_after(buf, n, 1009, "one frame over max_payload");

  /* small fragments that add up to more than max_payload */
  uint8_t *fr = malloc(8 * 1100);
  n = 0;
  for (int i = 0; i < 5; i++)
    n += build_frame(fr + n, 8 * 1100 - n, i == 4, i ? OP_CONT : OP_TEXT, pl, 1000, 0);
  expect_close_after(fr, n, 1009, "5 fragments of 1000 bytes (max_payload 4096)");

  /* exactly max_payload in fragments is fine */
  char id[64];
  cli_t *c = ws_open(NULL, id, sizeof id);
  n = 0;
  for (int i = 0; i < 4; i++)
    n += build_frame(fr + n, 8 * 1100 - n, i == 3, i ? OP_CONT : OP_TEXT, pl, 1024, 0);
  int ok = c && cli_send(c, fr, n) == 0 && read_frame(c, &t_f) == 0;
  check(ok && t_f.len == MAX_PAYLOAD, "4 fragments of 1024 bytes (= max_payload): echoed (%zu)",
        t_f.len);
  cli_close(c);
  free(fr);
  free(pl);
  free(buf);

  /* connects the hook does not accept */
  char head[4096], texts[1024];
  struct {
    const char *connect;
    int binary;
    unsigned code;
    const char *text;
    const char *what;
  } cases[] = {
      {"{\"method\":\"connect\",\"refuse\":1}", 0, 1008, REFUSAL, "connect refused by the hook"},
      {"{\"method\":\"connect\",\"fail\":1}", 0, 1011, "\"internal_error\"",
       "handshake hook returns -1"},
      {"\x01\x02", 1, 1003, "\"invalid_request\"", "binary connect"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    c = ws_cli();
    ok = c && upgrade_req(c, "/ws", NULL, NULL, 0, head, sizeof head) == 101 &&
         read_frame(c, &t_f) == 0 &&
         send_frame(c, 1, cases[i].binary ? OP_BINARY : OP_TEXT, cases[i].connect,
                    strlen(cases[i].connect), 0) == 0;
    int code = ok ? read_until_close(c, texts, sizeof texts) : -1;
    check(code == (int)cases[i].code && strstr(texts, cases[i].text),
          "%s: text %s then close %u (got %d, texts %s)", cases[i].what, cases[i].text,
          cases[i].code, code, texts);
    check(code >= 0 && closed_by_server(c), "%s: then the socket is closed", cases[i].what);
    cli_close(c);
  }
}

static void test_close(void) {
  /* the client closes */
  char id[64] = "";
  cli_t *c = ws_open(NULL, id, sizeof id);
  uint8_t pl[5] = {0x03, 0xe8, 'b', 'y', 'e'};
  int ok = c && send_frame(c, 1, OP_CLOSE, pl, sizeof pl, 0) == 0 && read_frame(c, &t_f) == 0;
  check(ok && t_f.op == OP_CLOSE && close_code(&t_f) == 1000,
        "client close 1000 \"bye\": server answers close 1000 (%u)", ok ? close_code(&t_f) : 0);
  check(ok && closed_by_server(c), "client close: then the server closes the socket");
  disc_t d;
  int got = c && disc_wait(id, &d, 1000);
  check(got && d.code == 1000 && strcmp(d.reason, "bye") == 0,
        "client close: disconnect hook got 1000 \"bye\" (%u \"%s\")", got ? d.code : 0,
        got ? d.reason : "");
  check(got && strcmp(d.role, "operator") == 0 && strcmp(d.state, "closed") == 0,
        "disconnect hook: ws_info has role operator, state closed (%s, %s)", got ? d.role : "",
        got ? d.state : "");
  cli_close(c);

  /* a close frame without a status */
  c = ws_open(NULL, id, sizeof id);
  ok = c && send_frame(c, 1, OP_CLOSE, "", 0, 0) == 0 && read_frame(c, &t_f) == 0;
  check(ok && t_f.op == OP_CLOSE && t_f.len == 0,
        "client close without a status: answered with an empty close (len %zu)", t_f.len);
  got = c && disc_wait(id, &d, 1000);
  check(got && d.code == 1005, "client close without a status: disconnect hook got 1005 (%u)",
        got ? d.code : 0);
  cli_close(c);

  /* malformed close frames */
  uint8_t buf[64];
  uint8_t bad[2] = {0x03, 0xed}; /* 1005 may not be sent by a peer */
  size_t n = build_frame(buf, sizeof buf, 1, OP_CLOSE, bad, 2, 0);
  expect_close_after(buf, n, 1002, "close frame with code 1005");
  n = build_frame(buf, sizeof buf, 1, OP_CLOSE, "\x03", 1, 0);
  expect_close_after(buf, n, 1002, "close frame with a 1-byte payload");
}

static void test_close_server_and_vanish(void) {
  /* the server closes (ws_close_id), the client answers */
  char id[64] = "";
  cli_t *c = ws_open(NULL, id, sizeof id);
  int ok = c && send_text(c, "close-me") == 0 && read_frame(c, &t_f) == 0;
  check(ok && t_f.op == OP_CLOSE && close_code(&t_f) == 4000 && t_f.len == 2 + 9 &&
            memcmp(t_f.data + 2, "by server", 9) == 0,
        "ws_close_id(4000, \"by server\"): close frame with code and reason");
  ok = ok && send_text(c, "ignored after the server's close") == 0;
  uint8_t pl[2] = {0x0f, 0xa0};
  ok = ok && send_frame(c, 1, OP_CLOSE, pl, 2, 0) == 0;
  check(ok && closed_by_server(c),
        "server close: data after it is ignored, the client's close answer ends the connection");
  disc_t d;
  int got = c && disc_wait(id, &d, 1000);
  check(got && d.code == 4000, "server close: disconnect hook got 4000 (%u)", got ? d.code : 0);
  cli_close(c);

  /* A frame that fails its checks while the server's close is out: the connection is closed at
   * once, and the frame's payload is not read on (fuzz/ws_frames: a control frame with RSV1 set,
   * its payload in a later packet, was copied past the control buffer, after an earlier ping had
   * left its length there). */
  c = ws_open(NULL, id, sizeof id);
  uint8_t ping[100];
  memset(ping, 'p', sizeof ping);
  ok = c && send_frame(c, 1, OP_PING, ping, sizeof ping, 0) == 0 && read_frame(c, &t_f) == 0 &&
       t_f.op == OP_PONG && send_text(c, "close-me") == 0 && read_frame(c, &t_f) == 0 &&
       t_f.op == OP_CLOSE;
  uint8_t bad[128];
  size_t bn = build_frame(bad, sizeof bad, 1, OP_PING, ping, sizeof ping, F_RSV1);
  ok = ok && cli_send(c, bad, 20) == 0;
  for (size_t at = 20; ok && at < bn; at += 30) { /* the server may be gone: sends may fail */
    sleep_ms(30);
    (void)cli_send(c, bad + at, bn - at < 30 ? bn - at : 30);
  }
  check(ok && closed_by_server(c), "server close, then a frame with RSV1: the socket is closed");
  got = c && disc_wait(id, &d, 1000);
  check(got && d.code == 4000, "... and the disconnect hook got the server's 4000 (%u)",
        got ? d.code : 0);
  cli_close(c);

  /* the client vanishes */
  c = ws_open(NULL, id, sizeof id);
  int opened = c != NULL;
  cli_close(c);
  got = opened && disc_wait(id, &d, 1000);
  check(got && d.code == 1006, "client gone without a close frame: disconnect hook got 1006 (%u)",
        got ? d.code : 0);
  check(opened && disc_count(id) == 1, "disconnect hook called once per connection");
}

static void test_events(void) {
  char id[64];
  cli_t *c = ws_open(NULL, id, sizeof id);
  int ok = c && send_text(c, "event-me") == 0 && read_frame(c, &t_f) == 0;
  check(ok &&
            strcmp((const char *)t_f.data,
                   "{\"type\":\"event\",\"seq\":1,\"event\":\"test.ev\",\"payload\":{\"n\":1}}") ==
                0,
        "ws_send_event: event frame with seq 1 (%s)", ok ? (char *)t_f.data : "-");
  ok = ok && read_frame(c, &t_f) == 0;
  check(ok && strstr((const char *)t_f.data, "\"seq\":2,") &&
            strstr((const char *)t_f.data, "{\"n\":2}"),
        "ws_send_event: the next event has seq 2");
  cli_close(c);

  /* presence goes to operator.read connections */
  c = ws_open("{\"method\":\"connect\",\"presence\":1}", id, sizeof id);
  ok = c && read_frame(c, &t_f) == 0;
  char want[96];
  snprintf(want, sizeof want, "{\"connId\":\"%s\"", id);
  const char *d = (const char *)t_f.data;
  check(ok && strstr(d, "\"event\":\"presence\"") && strstr(d, want) &&
            strstr(d, "\"status\":\"online\"") && strstr(d, "\"deviceId\":\"dev-1\""),
        "presence: an operator.read client gets the batch with itself online (%.200s)",
        ok ? d : "-");
  cli_close(c);
}

static void test_handshake_timeout(void) {
  char head[4096], texts[1024];
  cli_t *c = ws_cli();
  double t0 = now_ms();
  int ok = c && upgrade_req(c, "/ws", NULL, NULL, 0, head, sizeof head) == 101 &&
           read_frame(c, &t_f) == 0;
  int code = ok ? read_until_close(c, texts, sizeof texts) : -1;
  double dt = now_ms() - t0;
  check(code == 1008 && strstr(texts, "\"handshake_timeout\""),
        "no connect: handshake_timeout error then close 1008 (got %d, %s)", code, texts);
  check(code >= 0 && dt >= HANDSHAKE_TIMEOUT_MS - 50 && dt <= HANDSHAKE_TIMEOUT_MS + 1500,
        "handshake timeout after %.0f ms (handshake_timeout_ms %d)", dt, HANDSHAKE_TIMEOUT_MS);
  check(code >= 0 && closed_by_server(c), "handshake timeout: the socket is closed");
  cli_close(c);
}

static void test_rate_limit(void) {
  char id[64];
  cli_t *c = ws_open(NULL, id, sizeof id);
  uint8_t buf[128];
  size_t n = build_frame(buf, sizeof buf, 1, OP_TEXT, "m1", 2, 0);
  n += build_frame(buf + n, sizeof buf - n, 1, OP_TEXT, "m2", 2, 0);
  n += build_frame(buf + n, sizeof buf - n, 1, OP_TEXT, "m3", 2, 0);
  char got[3][64] = {"", "", ""};
  int ok = c && cli_send(c, buf, n) == 0;
  for (int i = 0; ok && i < 3; i++) {
    ok = read_frame(c, &t_f) == 0;
    if (ok) snprintf(got[i], sizeof got[i], "%.63s", (const char *)t_f.data);
  }
  check(ok && strcmp(got[0], "m1") == 0 && strcmp(got[1], "m2") == 0,
        "rate limit (burst %d): the first two quick messages are echoed", RATE_BURST);
  unsigned long long retry = 0;
  check(ok && sscanf(got[2], "limited retry_ms=%llu", &retry) == 1 && retry >= 1 &&
            retry <= 1000 / RATE_PER_SECOND,
        "rate limit: the third reaches the hook with retry_ms > 0 (%s)", got[2]);
  sleep_ms((int)(1000 / RATE_PER_SECOND) + 50);
  ok = ok && send_text(c, "m4") == 0 && read_frame(c, &t_f) == 0;
  check(ok && strcmp((const char *)t_f.data, "m4") == 0,
        "rate limit: after the retry time a message is accepted again (%s)",
        ok ? (char *)t_f.data : "-");
  cli_close(c);
}

static void *client_main(void *arg) {
  (void)arg;
  test_upgrade_refusals();
  test_connect();
  test_deferred_accept();
  test_echo();
  test_fragments();
  test_protocol_errors();
  test_utf8();
  test_limits();
  test_close();
  test_close_server_and_vanish();
  test_events();
  test_handshake_timeout();
  test_rate_limit();
  sleep_ms(300); /* every connection above is closed by now */
  uv_async_send(&t_async);
  return NULL;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_init();
  metrics_init();
  uv_loop_init(&t_loop);

  http_limits_t lim;
  http_limits_default(&lim);
  t_srv = http_server_new(&t_loop, &lim, on_request, NULL);
  char err[256] = "";
  int r = t_srv ? http_server_listen(t_srv, "main", "127.0.0.1", 0, err, sizeof err) : -1;
  t_port = t_srv ? http_server_port(t_srv, "main") : -1;
  check(r == 0 && t_port > 0, "listen main on 127.0.0.1:0 -> port %d %s", t_port, err);
  if (r != 0 || t_port <= 0) return check_report();

  ws_init(&t_loop);
  ws_hooks_t hooks = {hook_handshake, hook_message, hook_disconnect};
  ws_set_hooks(&hooks);
  ws_settings_t s;
  ws_settings_default(&s);
  s.max_payload = MAX_PAYLOAD;
  s.close_timeout_ms = 200;
  s.handshake_timeout_ms = HANDSHAKE_TIMEOUT_MS;
  s.rate_per_second = RATE_PER_SECOND;
  s.rate_burst = RATE_BURST;
  s.presence_flush_interval_ms = 50;
  ws_apply_settings(&s);
  check(ws_settings()->max_payload == MAX_PAYLOAD && strcmp(ws_settings()->path, "/ws") == 0,
        "settings applied (max_payload %zu, path %s)", ws_settings()->max_payload,
        ws_settings()->path);

  uv_async_init(&t_loop, &t_async, on_async);
  uv_timer_init(&t_loop, &t_watchdog);
  uv_timer_start(&t_watchdog, on_watchdog, 14000, 0);
  uv_timer_init(&t_loop, &t_later);

  pthread_t th;
  pthread_create(&th, NULL, client_main, NULL);
  uv_run(&t_loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);

  check(t_count_at_end == 0, "ws_connection_count() is 0 once every client is gone (%zu)",
        t_count_at_end);
  check(t_done_calls == 1, "http_server_close: done called once (%d)", t_done_calls);
  metric_t *active = metrics_find("chatgw_websocket_connections_active");
  check(active && metrics_value(active, NULL) == 0,
        "gauge chatgw_websocket_connections_active back to 0");
  metric_t *total = metrics_find("chatgw_websocket_connections_total");
  check(total && metrics_value(total, NULL) == t_upgrades,
        "chatgw_websocket_connections_total counts every upgrade (%d)", t_upgrades);
  metric_t *closes = metrics_find("chatgw_websocket_closes_total");
  const char *c1002[] = {"1002"}, *c1007[] = {"1007"}, *c1009[] = {"1009"};
  check(closes && metrics_value(closes, c1002) == 8 && metrics_value(closes, c1007) == 2 &&
            metrics_value(closes, c1009) == 2,
        "chatgw_websocket_closes_total by code (1002: %.0f, 1007: %.0f, 1009: %.0f)",
        closes ? metrics_value(closes, c1002) : -1, closes ? metrics_value(closes, c1007) : -1,
        closes ? metrics_value(closes, c1009) : -1);
  metric_t *limited = metrics_find("chatgw_websocket_rate_limited_total");
  check(limited && metrics_value(limited, NULL) == 1, "chatgw_websocket_rate_limited_total is 1");
  http_server_free(t_srv);
  int lc = uv_loop_close(&t_loop);
  check(lc == 0, "uv_loop_close returns 0 (%d)", lc);
  metrics_shutdown();
  return check_report();
}
