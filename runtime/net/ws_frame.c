/* ws_frame.c - server frame headers, accept key, close payloads, UTF-8 (see ws_frame.h). */
#include "ws_frame.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], unsigned opcode, uint64_t len) {
  out[0] = (uint8_t)(0x80u | (opcode & 0x0fu));
  if (len < 126) {
    out[1] = (uint8_t)len;
    return 2;
  }
  if (len < 65536) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++)
    out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

size_t ws_client_header_len(uint64_t len, int masked) {
  size_t n = len < 126 ? 2 : len < 65536 ? 4 : 10;
  return n + (masked ? 4 : 0);
}

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int ws_accept_key(const char *key, size_t key_len, char out[29]) {
  out[0] = 0;
  if (key_len != 24 || key[22] != '=' || key[23] != '=') return -1;
  unsigned char raw[24];
  int n = EVP_DecodeBlock(raw, (const unsigned char *)key, 24);
  if (n != 18) return -1; /* 24 chars -> 18 bytes including the 2 padding bytes */
  unsigned char buf[24 + sizeof GUID - 1];
  memcpy(buf, key, 24);
  memcpy(buf + 24, GUID, sizeof GUID - 1);
  unsigned char dig[SHA_DIGEST_LENGTH];
  SHA1(buf, sizeof buf, dig);
  EVP_EncodeBlock((unsigned char *)out, dig, SHA_DIGEST_LENGTH); /* 28 chars + NUL */
  return 0;
}

int ws_close_code_valid(unsigned code) {
  if (code >= 1000 && code <= 1003) return 1;
  if (code >= 1007 && code <= 1011) return 1;
  return code >= 3000 && code <= 4999;
}

size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL], unsigned code, const char *reason) {
  if (!code) return 0;
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > WS_MAX_CONTROL - 2) {
    rl = WS_MAX_CONTROL - 2;
    while (rl > 0 && ((unsigned char)reason[rl] & 0xc0u) == 0x80u)
      rl--; /* do not cut a UTF-8 sequence */
  }
  if (rl) memcpy(out + 2, reason, rl);
  return 2 + rl;
}

/* state: 0 = between characters; else (remaining << 16) | (lo << 8) | hi, the number of
 * continuation bytes still expected and the range allowed for the next one. */
#define ST(rem, lo, hi) (((uint32_t)(rem) << 16) | ((uint32_t)(lo) << 8) | (uint32_t)(hi))

uint32_t ws_utf8_step(uint32_t state, const uint8_t *p, size_t n) {
  if (state == WS_UTF8_BAD) return state;
  size_t i = 0;
  while (i < n) {
    if (state == 0) {
      /* ASCII fast path, 8 bytes at a time */
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      if (i >= n) break;
      uint8_t b = p[i++];
      if (b < 0x80) continue;
      if (b >= 0xc2 && b <= 0xdf)
        state = ST(1, 0x80, 0xbf);
      else if (b == 0xe0)
        state = ST(2, 0xa0, 0xbf);
      else if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef)
        state = ST(2, 0x80, 0xbf);
      else if (b == 0xed)
        state = ST(2, 0x80, 0x9f); /* no surrogates */
      else if (b == 0xf0)
        state = ST(3, 0x90, 0xbf);
      else if (b >= 0xf1 && b <= 0xf3)
        state = ST(3, 0x80, 0xbf);
      else if (b == 0xf4)
        state = ST(3, 0x80, 0x8f); /* <= U+10FFFF */
      else
        return WS_UTF8_BAD;
    } else {
      uint8_t b = p[i++];
      uint32_t rem = state >> 16, lo = (state >> 8) & 0xff, hi = state & 0xff;
      if (b < lo || b > hi) return WS_UTF8_BAD;
      state = rem > 1 ? ST(rem - 1, 0x80, 0xbf) : 0;
    }
  }
  return state;
}

int ws_utf8_valid(const uint8_t *p, size_t n) {
  return ws_utf8_step(0, p, n) == 0;
}
