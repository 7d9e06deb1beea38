/* ws_message.c - libFuzzer harness of the WebSocket message layer: the protocol in Lua
 * (lua/chatgw/ws.lua: the connect request, tokens, roles and scopes, then `req` messages,
 * method dispatch, presence.list, the builtin chat methods, `res` answers) reached the way a
 * client reaches it: an upgrade through the HTTP server, text frames through ws_read.c, and
 * lib_ws.c's hooks running _handshake/_on_message/_on_disconnect in CO_WS coroutines of the
 * runtime's state (fuzz_lua.h).
 *
 * The input is texts separated by 0xff bytes (never in UTF-8): the first is the connect
 * request, each later one a message; each goes as one masked text frame. The upgrade carries
 * the runtime's token as its bearer, so a connect of the right shape is accepted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_lua.h"
#include "fuzz_net.h"
#include "ws.h"
#include "ws_client.h"

static uv_loop_t *g_loop;
static http_server_t *g_srv;

static int finished(void *ud) {
  (void)ud;
  return ws_connection_count() == 0 && fuzz_http_open_connections(g_srv) == 0;
}

static void on_request(http_request_t *r, void *ud) {
  (void)ud;
  if (!ws_handle_request(r)) http_request_respond(r, 404, NULL, 0, NULL, 0, NULL);
}

#define BUF_MAX (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t *buf;
  if (!g_loop) {
    fuzz_lua_state();
    g_loop = fuzz_runtime_init();
    ws_settings_t s;
    ws_settings_default(&s);
    ws_apply_settings(&s);
    g_srv = fuzz_http_server(g_loop, on_request, NULL);
    buf = malloc(BUF_MAX);
    if (!buf) abort();
  }
  size_t len = strlen(FUZZ_WS_UPGRADE);
  memcpy(buf, FUZZ_WS_UPGRADE, len);
  size_t at = 0;
  for (;;) {
    const uint8_t *sep = size > at ? memchr(data + at, 0xff, size - at) : NULL;
    size_t stop = sep ? (size_t)(sep - data) : size;
    if (fuzz_ws_frame(buf, BUF_MAX, &len, 0x81, 0, data + at, stop - at) != 0 || !sep) break;
    at = stop + 1;
  }
  int fd = fuzz_http_connect(g_srv);
  if (fd < 0) abort();
  fuzz_pump(g_loop, fd, buf, len, 0, finished, NULL);
  /* what the disconnect hook left to run (a deferred coroutine) */
  uv_run(g_loop, UV_RUN_NOWAIT);
  return 0;
}
