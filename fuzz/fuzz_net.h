/* fuzz_net.h - the HTTP server of the network harnesses, fed through a socketpair instead of a
 * TCP socket: each input is one connection that the server adopts as if it had accepted it, so
 * the bytes take the real path (libuv reads, http_conn.c's parse loop, http_parse.c's
 * callbacks and limits, responses, linger, close) without ports or TIME_WAIT. */
#ifndef CHATGW_FUZZ_NET_H
#define CHATGW_FUZZ_NET_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http_server.h"

/* A server on loop whose requests go to cb; its connections arrive on a listener named
 * "main" (the WebSocket path is only served there). */
http_server_t *fuzz_http_server(uv_loop_t *loop, http_request_cb cb, void *ud);
/* A new connection of s from 127.0.0.1: returns the client's end (non-blocking), or -1. */
int fuzz_http_connect(http_server_t *s);
size_t fuzz_http_open_connections(http_server_t *s);

/* Sends data to the server in writes of at most chunk bytes (0: all at once) with a loop turn
 * between them, half-closes the client's end, then runs the loop (discarding what the server
 * writes) until done(ud) is true. Closes fd. */
void fuzz_pump(uv_loop_t *loop, int fd, const uint8_t *data, size_t n, size_t chunk,
               int (*done)(void *ud), void *ud);

#endif
