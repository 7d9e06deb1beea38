/* ws_frame.h - the WebSocket (RFC 6455) pieces the runtime builds itself.
 *
 * Client frames are parsed with wslay's frame parser (see ws.c); server frames are built here:
 * unmasked, FIN set, a 2..10 byte header in front of a payload that the caller may share
 * between many connections (a broadcast encodes its payload once). Also: the handshake's
 * Sec-WebSocket-Accept value, close-frame payloads and codes, and an incremental UTF-8
 * validator for text messages that arrive in pieces. */
#ifndef CHATGW_WS_FRAME_H
#define CHATGW_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xa

#define WS_MAX_HEADER 10 /* server frames: 2 + 8 length bytes, no mask */
#define WS_MAX_CONTROL 125

/* Writes the header of a final, unmasked frame with this opcode and payload length into out;
 * returns its length (2, 4 or 10). */
size_t ws_frame_header(uint8_t out[WS_MAX_HEADER], unsigned opcode, uint64_t payload_len);

/* Length of a client frame's header (minimal length encoding, as wslay enforces). */
size_t ws_client_header_len(uint64_t payload_len, int masked);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)), 28 chars + NUL.
 * Returns 0, or -1 when the key is not the base64 form of 16 bytes (24 characters). */
int ws_accept_key(const char *key, size_t key_len, char out[29]);

/* Close payload: 2-byte code + reason, the reason cut to fit 125 bytes on a UTF-8 boundary.
 * Returns the payload length (0 when code is 0: a close frame without a status). */
size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL], unsigned code, const char *reason);

/* 1 if a peer may send this code in a close frame (1000-1003, 1007-1011, 3000-4999). */
int ws_close_code_valid(unsigned code);

/* Incremental UTF-8 validation. Start with state 0; feed the pieces of a message in order;
 * WS_UTF8_BAD means invalid (overlong forms, surrogates and code points above U+10FFFF are
 * invalid too). The message is valid when the final state is 0 (no sequence cut short). */
#define WS_UTF8_BAD 0xffffffffu
uint32_t ws_utf8_step(uint32_t state, const uint8_t *p, size_t n);
int ws_utf8_valid(const uint8_t *p, size_t n);

#endif
