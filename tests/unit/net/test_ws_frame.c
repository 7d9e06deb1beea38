/* test_ws_frame.c - unit test for runtime/net/ws_frame.c: server frame headers (checked against
 * wslay's own frame parser), the handshake accept key (RFC 6455's example), close payloads and
 * codes, and the incremental UTF-8 validator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "ws_frame.h"

#include "check.h"

/* ---- wslay parses what ws_frame_header builds ---- */

typedef struct {
  const uint8_t *p;
  size_t len, off;
} src_t;

static ssize_t rd(uint8_t *buf, size_t len, int flags, void *ud) {
  (void)flags;
  src_t *s = ud;
  size_t n = s->len - s->off < len ? s->len - s->off : len;
  memcpy(buf, s->p + s->off, n);
  s->off += n;
  return n ? (ssize_t)n : -1;
}

static ssize_t wr(const uint8_t *d, size_t l, int f, void *ud) {
  (void)d;
  (void)f;
  (void)ud;
  return (ssize_t)l;
}

static int gm(uint8_t *b, size_t l, void *ud) {
  (void)ud;
  memset(b, 0, l);
  return 0;
}

static void test_header_roundtrip(uint64_t len, size_t want_hlen) {
  uint8_t *frame = malloc(WS_MAX_HEADER + len);
  size_t h = ws_frame_header(frame, WS_OP_TEXT, len);
  check(h == want_hlen, "header length for a %llu byte payload is %zu (got %zu)",
        (unsigned long long)len, want_hlen, h);
  for (uint64_t i = 0; i < len; i++)
    frame[h + i] = (uint8_t)('a' + i % 26);
  src_t s = {frame, h + len, 0};
  struct wslay_frame_callbacks cb = {wr, rd, gm};
  wslay_frame_context_ptr ctx;
  wslay_frame_context_init(&ctx, &cb, &s);
  uint64_t got = 0;
  int fin = 0, op = -1, mask = -1, ok = 1;
  for (;;) {
    struct wslay_frame_iocb io;
    memset(&io, 0, sizeof io);
    ssize_t r = wslay_frame_recv(ctx, &io);
    if (r < 0) break;
    fin = io.fin;
    op = io.opcode;
    mask = io.mask;
    for (size_t i = 0; i < io.data_length; i++)
      if (io.data[i] != (uint8_t)('a' + (got + i) % 26)) ok = 0;
    got += io.data_length;
    if (io.payload_length != len) ok = 0;
    if (got == len) break;
  }
  wslay_frame_context_free(ctx);
  check(ok && got == len && fin == 1 && op == WS_OP_TEXT && mask == 0,
        "wslay reads back a %llu byte text frame (fin=%d op=%d mask=%d)", (unsigned long long)len,
        fin, op, mask);
  free(frame);
}

static void test_headers(void) {
  test_header_roundtrip(0, 2);
  test_header_roundtrip(125, 2);
  test_header_roundtrip(126, 4);
  test_header_roundtrip(65535, 4);
  test_header_roundtrip(65536, 10);
  test_header_roundtrip(300000, 10);
  uint8_t h[WS_MAX_HEADER];
  size_t n = ws_frame_header(h, WS_OP_CLOSE, (uint64_t)1 << 40);
  check(n == 10 && h[0] == 0x88 && h[1] == 127 && h[2] == 0 && h[3] == 0 && h[4] == 1 &&
            h[5] == 0 && h[9] == 0,
        "64-bit length is big-endian, close opcode with FIN");
  n = ws_frame_header(h, WS_OP_PONG, 3);
  check(n == 2 && h[0] == 0x8a && h[1] == 3, "pong header");
  check(ws_client_header_len(125, 1) == 6 && ws_client_header_len(126, 1) == 8 &&
            ws_client_header_len(65536, 1) == 14 && ws_client_header_len(0, 0) == 2,
        "client header lengths (mask key included)");
}

static void test_accept_key(void) {
  char out[29];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  check(ws_accept_key(key, strlen(key), out) == 0 &&
            strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0,
        "RFC 6455 example accept value (%s)", out);
  check(ws_accept_key("short", 5, out) == -1, "a short key is refused");
  check(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=x", 24, out) == -1,
        "a key without padding is refused");
  check(ws_accept_key("!!!!!!!!!!!!!!!!!!!!!!==", 24, out) == -1,
        "a key that is not base64 is refused");
  check(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", 25, out) == -1, "a 25-byte key is refused");
}

static void test_close(void) {
  uint8_t p[WS_MAX_CONTROL];
  size_t n = ws_close_payload(p, 1001, "bye");
  check(n == 5 && p[0] == 0x03 && p[1] == 0xe9 && memcmp(p + 2, "bye", 3) == 0, "close 1001 bye");
  check(ws_close_payload(p, 0, "x") == 0, "code 0: no payload");
  char longr[200];
  memset(longr, 'a', sizeof longr);
  longr[199] = 0;
  check(ws_close_payload(p, 1000, longr) == 125, "a long reason is cut to 125 bytes");
  /* 122 ASCII bytes then a 3-byte character: the character does not fit and is dropped whole */
  char r2[200];
  memset(r2, 'b', 122);
  memcpy(r2 + 122, "\xe2\x82\xac", 4);
  n = ws_close_payload(p, 1000, r2);
  check(n == 124 && ws_utf8_valid(p + 2, n - 2), "the cut keeps UTF-8 whole (%zu)", n);
  check(ws_close_code_valid(1000) && ws_close_code_valid(1003) && ws_close_code_valid(1007) &&
            ws_close_code_valid(1011) && ws_close_code_valid(3000) && ws_close_code_valid(4999),
        "valid close codes");
  check(!ws_close_code_valid(999) && !ws_close_code_valid(1004) && !ws_close_code_valid(1005) &&
            !ws_close_code_valid(1006) && !ws_close_code_valid(1012) &&
            !ws_close_code_valid(1015) && !ws_close_code_valid(2999) && !ws_close_code_valid(5000),
        "reserved and out-of-range close codes");
}

static int valid(const char *s) {
  return ws_utf8_valid((const uint8_t *)s, strlen(s));
}

static void test_utf8(void) {
  check(valid("") && valid("hello, world: plain ASCII longer than eight bytes"), "ASCII");
  check(
      valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf \xee\x80\x80 \xf4\x8f\xbf\xbf"),
      "2, 3 and 4 byte characters, U+D7FF, U+E000, U+10FFFF");
  check(!valid("\xc0\x80") && !valid("\xc1\xbf"), "overlong 2-byte forms");
  check(!valid("\xe0\x80\x80") && !valid("\xe0\x9f\xbf"), "overlong 3-byte forms");
  check(!valid("\xf0\x80\x80\x80") && !valid("\xf0\x8f\xbf\xbf"), "overlong 4-byte forms");
  check(!valid("\xed\xa0\x80") && !valid("\xed\xbf\xbf"), "surrogates");
  check(!valid("\xf4\x90\x80\x80") && !valid("\xf5\x80\x80\x80"), "above U+10FFFF");
  check(!valid("\xf8\x88\x80\x80\x80") && !valid("\xff") && !valid("\x80"), "invalid bytes");
  check(!valid("abc\xe2\x82") && !valid("\xc3"), "a sequence cut short at the end");
  check(!valid("\xe2\x28\xa1"), "a bad continuation byte");
  /* split across pieces */
  const uint8_t euro[] = {0xe2, 0x82, 0xac};
  uint32_t st = ws_utf8_step(0, euro, 1);
  check(st != 0 && st != WS_UTF8_BAD, "first byte of a split character: pending");
  st = ws_utf8_step(st, euro + 1, 1);
  st = ws_utf8_step(st, euro + 2, 1);
  check(st == 0, "split character completes across three pieces");
  const uint8_t bad[] = {0xed, 0xa0};
  st = ws_utf8_step(0, bad, 1);
  check(ws_utf8_step(st, bad + 1, 1) == WS_UTF8_BAD, "a surrogate split across pieces is caught");
  check(ws_utf8_step(WS_UTF8_BAD, (const uint8_t *)"a", 1) == WS_UTF8_BAD, "bad stays bad");
  /* every 2-byte character, in pieces of 1 */
  int all = 1;
  for (unsigned cp = 0x80; cp < 0x800; cp++) {
    uint8_t b[2] = {(uint8_t)(0xc0 | (cp >> 6)), (uint8_t)(0x80 | (cp & 0x3f))};
    uint32_t s2 = ws_utf8_step(ws_utf8_step(0, b, 1), b + 1, 1);
    if (s2 != 0) all = 0;
  }
  check(all, "every 2-byte character, one byte at a time");
}

int main(void) {
  test_headers();
  test_accept_key();
  test_close();
  test_utf8();
  return check_report();
}
