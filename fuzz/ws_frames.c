/* ws_frames.c - libFuzzer harness of the WebSocket transport: after a valid upgrade (through the
 * HTTP server and ws_upgrade.c), the client's bytes go through ws_read.c (wslay's frame parser,
 * masking, reserved bits, opcodes, fragments, UTF-8 across frames, control frames, close codes
 * and reasons, size limits, the rate limit, the stash of a paused connection), ws_write.c
 * (answers, pongs, close frames) and ws_conn.c (closing). The protocol's hooks are C here:
 * the connect is accepted (or refused) and each message is echoed.
 *
 * The first byte picks the settings and the form of the rest:
 *   bit 0    structured: the rest is records [b0, length, payload...] that the harness turns
 *            into frames masked with a fixed key (b0 is the frame's first byte, except its
 *            RSV2 bit, 0x20, which asks for an unmasked frame); otherwise the rest is sent as it
 *            is (frames with a zero mask key are their payload in the clear)
 *   bit 1    the connect is accepted on a later loop turn (reading pauses, input is stashed)
 *   bit 2    the connect is refused (a text, then close 1008)
 *   bit 3    max_payload 125: messages past it close 1009
 *   bit 4    a rate limit of 1 message a second, burst 1, closed after 2 refusals
 *   bits 5-7 k: the bytes go in writes of 2^k - 1 bytes (k 0: at once)
 * A message starting with '!' makes the server close the connection (4000). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_net.h"
#include "log.h"
#include "metrics.h"
#include "ws.h"
#include "ws_client.h"

static uv_loop_t *g_loop;
static http_server_t *g_srv;
static uv_timer_t g_accept_timer;
static uint64_t g_accept_num; /* a connect to accept from g_accept_timer */
static int g_defer, g_refuse;

static void accept_now(uint64_t num) {
  static const char *const scopes[] = {"operator.read", "operator.write"};
  static const char hello[] = "{\"type\":\"res\",\"id\":1,\"ok\":true}";
  ws_accept(num, "operator", scopes, 2, "dev", "cli", "1.0", hello, sizeof hello - 1);
}

static void on_accept_timer(uv_timer_t *t) {
  (void)t;
  uint64_t num = g_accept_num;
  g_accept_num = 0;
  accept_now(num);
}

static int on_handshake(uint64_t num, const char *id, const char *text, size_t len,
                        const char *query, const char *bearer, const char *remote) {
  (void)id, (void)query, (void)bearer, (void)remote;
  if (g_refuse) {
    ws_refuse(num, text, len, 1008, "refused");
  } else if (g_defer) {
    g_accept_num = num;
    uv_timer_start(&g_accept_timer, on_accept_timer, 0, 0);
  } else {
    accept_now(num);
  }
  return 0;
}

static void on_message(uint64_t num, const char *text, size_t len, uint64_t retry_ms) {
  (void)retry_ms;
  if (len && text[0] == '!') {
    ws_conn_t *c = ws_find_num(num);
    ws_info_t i;
    if (c) {
      ws_info(c, &i);
      ws_close_id(i.id, 4000, "bye");
    }
    return;
  }
  ws_send_text(num, text, len);
}

static void on_disconnect(ws_conn_t *c, unsigned code, const char *reason) {
  (void)c;
  if (code < 1000 || code > 4999 || !reason) __builtin_trap();
}

static int finished(void *ud) {
  (void)ud;
  return !g_accept_num && ws_connection_count() == 0 && fuzz_http_open_connections(g_srv) == 0;
}

static void on_request(http_request_t *r, void *ud) {
  (void)ud;
  if (!ws_handle_request(r)) http_request_respond(r, 404, NULL, 0, NULL, 0, NULL);
}

#define BUF_MAX (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t *buf;
  if (!g_loop) {
    log_set_level(LOG_ERROR);
    metrics_init();
    g_loop = uv_default_loop();
    ws_init(g_loop);
    static const ws_hooks_t hooks = {on_handshake, on_message, on_disconnect};
    ws_set_hooks(&hooks);
    g_srv = fuzz_http_server(g_loop, on_request, NULL);
    uv_timer_init(g_loop, &g_accept_timer);
    buf = malloc(BUF_MAX);
    if (!buf) abort();
  }
  uint8_t mode = size ? data[0] : 0;
  if (size) data++, size--;
  ws_settings_t s;
  ws_settings_default(&s);
  if (mode & 8) s.max_payload = 125;
  if (mode & 16) {
    s.rate_per_second = 1;
    s.rate_burst = 1;
    s.rate_close_after = 2;
  }
  ws_apply_settings(&s);
  g_defer = (mode & 2) != 0;
  g_refuse = (mode & 4) != 0;
  size_t len = strlen(FUZZ_WS_UPGRADE);
  memcpy(buf, FUZZ_WS_UPGRADE, len);
  if (mode & 1) {
    size_t i = 0;
    while (i + 2 <= size) {
      uint8_t b0 = data[i], n = data[i + 1];
      i += 2;
      if (n > size - i) n = (uint8_t)(size - i);
      /* b0's RSV2 bit (0x20) asks for an unmasked frame; RSV1 and RSV3 stay as given */
      if (fuzz_ws_frame(buf, BUF_MAX, &len, (uint8_t)(b0 & ~0x20), (b0 & 0x20) != 0, data + i, n) !=
          0)
        break;
      i += n;
    }
  } else {
    if (size > BUF_MAX - len) size = BUF_MAX - len;
    memcpy(buf + len, data, size);
    len += size;
  }
  unsigned k = mode >> 5;
  int fd = fuzz_http_connect(g_srv);
  if (fd < 0) abort();
  fuzz_pump(g_loop, fd, buf, len, k ? ((size_t)1 << k) - 1 : 0, finished, NULL);
  return 0;
}
