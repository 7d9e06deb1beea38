/* ws_client.h - what the WebSocket harnesses send before their input and how they frame it. */
#ifndef CHATGW_FUZZ_WS_CLIENT_H
#define CHATGW_FUZZ_WS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/* A valid upgrade request for ws.path /ws, with the harnesses' API token as its bearer. */
extern const char FUZZ_WS_UPGRADE[];

/* Appends to buf (capacity cap, length *len) one client frame: first byte b0 (FIN, RSV, opcode)
 * as given, masked with a fixed key unless unmasked, payload p[0..n) in the clear. Returns 0,
 * or -1 when it does not fit. */
int fuzz_ws_frame(uint8_t *buf, size_t cap, size_t *len, uint8_t b0, int unmasked, const uint8_t *p,
                  size_t n);

#endif
