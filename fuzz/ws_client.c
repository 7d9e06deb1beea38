/* ws_client.c - see ws_client.h. */
#include "ws_client.h"

#include <string.h>

#include "fuzz_lua.h"

const char FUZZ_WS_UPGRADE[] = "GET /ws?v=1 HTTP/1.1\r\n"
                               "Host: fuzz\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Version: 13\r\n"
                               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                               "Authorization: Bearer " FUZZ_TOKEN "\r\n"
                               "\r\n";

int fuzz_ws_frame(uint8_t *buf, size_t cap, size_t *len, uint8_t b0, int unmasked, const uint8_t *p,
                  size_t n) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t head = 2 + (n > 125 ? (n > 0xffff ? 8 : 2) : 0) + (unmasked ? 0 : 4);
  if (*len + head + n > cap) return -1;
  uint8_t *o = buf + *len;
  *o++ = b0;
  uint8_t m = unmasked ? 0 : 0x80;
  if (n <= 125) {
    *o++ = m | (uint8_t)n;
  } else if (n <= 0xffff) {
    *o++ = m | 126;
    *o++ = (uint8_t)(n >> 8);
    *o++ = (uint8_t)n;
  } else {
    *o++ = m | 127;
    for (int i = 7; i >= 0; i--)
      *o++ = (uint8_t)((uint64_t)n >> (8 * i));
  }
  if (!unmasked) {
    memcpy(o, key, 4);
    o += 4;
  }
  for (size_t i = 0; i < n; i++)
    o[i] = unmasked ? p[i] : p[i] ^ key[i % 4];
  *len += head + n;
  return 0;
}
