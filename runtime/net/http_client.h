/* http_client.h - outbound HTTP: libcurl's multi interface driven by the runtime's libuv loop.
 *
 * One process-wide multi handle (so connections, DNS answers and HTTP/2 sessions are shared
 * and kept alive across requests) whose sockets are watched with uv_poll and whose timeout is
 * a uv_timer: no extra thread, no polling. A transfer (http_xfer_t) wraps one easy handle.
 *
 * Nothing here runs Lua. Owners learn about progress through a notify callback that is only
 * ever called from the loop after curl has returned (never from inside a curl callback), so it
 * may resume coroutines and call any http_xfer_* function, including starting new transfers.
 *
 * Body handling: buffered (the whole body is kept, up to max_body) or streaming (bytes are
 * handed over in chunks; while the owner has not taken the previous chunk and more than
 * HTTP_XFER_STREAM_HIGH_WATER bytes wait, the transfer is paused with CURL_WRITEFUNC_PAUSE and
 * resumed from the loop once the chunk is taken). max_body is enforced in the write callback
 * on decoded bytes, so chunked and compressed bodies are capped too. */
#ifndef CHATGW_HTTP_CLIENT_H
#define CHATGW_HTTP_CLIENT_H

#include "curl_lazy.h"
#include <stddef.h>
#include <uv.h>

typedef struct http_xfer http_xfer_t;
typedef void (*http_xfer_notify_fn)(http_xfer_t *x, void *ud);

#define HTTP_XFER_STREAM_HIGH_WATER (64 * 1024)
#define HTTP_XFER_MAX_HEADER_BYTES (256 * 1024)

/* Process-wide libcurl setup/teardown (curl_global_init/cleanup): once, around the loop. */
void http_client_global_init(void);
void http_client_global_cleanup(void);
/* Aborts what is left, closes the multi handle and its uv handles (at exit, before
 * uv_loop_close). Safe to call when nothing was ever started, and more than once. */
void http_client_shutdown(void);

/* A new transfer with its easy handle set up with the runtime's defaults (NOSIGNAL, http/https
 * only, decoded bodies, TLS verification, callbacks). Set the request with curl_easy_setopt on
 * http_xfer_easy() (never CURLOPT_WRITE*, HEADER*, PRIVATE, ERRORBUFFER). NULL on OOM. */
http_xfer_t *http_xfer_new(uv_loop_t *loop);
CURL *http_xfer_easy(http_xfer_t *x);
/* host: the metric label (copied). */
void http_xfer_set_host(http_xfer_t *x, const char *host);
const char *http_xfer_host(const http_xfer_t *x);
/* 0 = no cap. */
void http_xfer_set_max_body(http_xfer_t *x, size_t max_body);
void http_xfer_set_streaming(http_xfer_t *x, int streaming);
void http_xfer_set_notify(http_xfer_t *x, http_xfer_notify_fn fn, void *ud);
/* Objects the easy handle points at, freed with the transfer. */
void http_xfer_own_slist(http_xfer_t *x, struct curl_slist *list);
void http_xfer_own_mime(http_xfer_t *x, curl_mime *mime);

/* Adds the transfer to the multi handle. 0, or -1 with err set. */
int http_xfer_start(http_xfer_t *x, char *err, size_t errlen);

/* Finished (result available): 1. */
int http_xfer_done(const http_xfer_t *x);
/* Streaming: bytes received and not taken yet. */
size_t http_xfer_chunk_len(const http_xfer_t *x);
/* Streaming: the waiting bytes (valid until http_xfer_chunk_taken). */
const char *http_xfer_chunk(const http_xfer_t *x);
/* Streaming: the owner took the chunk; unpauses the transfer if it was paused. */
void http_xfer_chunk_taken(http_xfer_t *x);
/* Ask for a notify call from the loop soon (e.g. an event is ready while nobody was waiting). */
void http_xfer_poke(http_xfer_t *x);

/* After done: NULL when the transfer succeeded (a response of any status), else the error as
 * "code: message" with code one of timeout, connect, dns, tls, too_large, cancelled, io. */
const char *http_xfer_error(const http_xfer_t *x);
/* The response status: final after done; while streaming, that of the response whose body is
 * arriving (0 before its headers). */
long http_xfer_status(const http_xfer_t *x);
/* The buffered body (empty when streaming). */
const char *http_xfer_body(const http_xfer_t *x, size_t *len);
/* Final response headers as "name\0value\0" pairs, names lower-case. */
const char *http_xfer_headers(const http_xfer_t *x, size_t *len);
const char *http_xfer_effective_url(const http_xfer_t *x);
double http_xfer_duration_ms(const http_xfer_t *x);

/* Stops a running transfer (no more notify calls); done with "cancelled: <reason>". */
void http_xfer_abort(http_xfer_t *x, const char *reason);
/* Aborts if needed and frees everything. */
void http_xfer_free(http_xfer_t *x);

#endif
