/* ws.h - WebSocket connections of the main listener (see docs/websocket.md).
 *
 * The HTTP server hands over the socket of an upgrade request on `ws.path`; from then on this
 * module owns the connection: it parses client frames with wslay's frame parser (masking
 * required, fragmentation, UTF-8, control frames, size limits), builds server frames itself,
 * queues output per connection (one vectored write per connection and loop turn; a broadcast
 * encodes its payload once and shares it), drops slow consumers, pings, rate-limits inbound
 * messages, batches presence changes and closes everything on shutdown. Connections live in C
 * and survive reloads; protocol meaning (the connect handshake, method calls, hooks) is run in
 * the current Lua state by lua/chatgw/ws.lua through lib_ws.c. */
#ifndef CHATGW_WS_H
#define CHATGW_WS_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "http_server.h"

#define WS_PATH_MAX 256
#define WS_ORIGINS_MAX 4096
#define WS_HANDSHAKE_MAX_BYTES 65536 /* the first (connect) message */

/* Settings from the `ws:` config section (lua/chatgw/ws.lua declares the schema). */
typedef struct {
  int enabled;
  char path[WS_PATH_MAX];
  char origins[WS_ORIGINS_MAX]; /* allowed Origin values, each NUL-terminated, then "" */
  size_t max_payload;           /* largest client message; beyond: close 1009 */
  size_t max_buffered_bytes;    /* unsent bytes per connection; beyond: close 1008 */
  uint64_t ping_interval_ms;
  uint64_t pong_timeout_ms;
  uint64_t handshake_timeout_ms;
  uint64_t close_timeout_ms; /* a closing connection is closed hard after this */
  size_t max_connections;
  size_t max_per_ip;
  double rate_per_second; /* inbound messages, token bucket */
  double rate_burst;
  unsigned rate_close_after; /* rejected messages within 10 s before close 1008 */
  size_t presence_batch_size;
  uint64_t presence_flush_interval_ms;
  size_t data_max_bytes; /* per-connection data table */
} ws_settings_t;

void ws_settings_default(ws_settings_t *s);
/* Reads cfg.ws of the config table at cfg_idx (missing keys keep their defaults). */
void ws_settings_read(lua_State *L, int cfg_idx, ws_settings_t *s);
/* Applies settings (boot and each reload); the first call sets the module up on g_rt.loop. */
void ws_apply_settings(const ws_settings_t *s);

/* For each HTTP request before the Lua router: returns 1 if the request was for the WebSocket
 * path of the main listener and was taken (upgraded, or answered: 400/403/405/426/503). */
int ws_handle_request(http_request_t *req);

/* SIGTERM: refuse new upgrades, send every connected client the `shutdown` event and close
 * every connection with 1001. */
void ws_stop(void);
size_t ws_connection_count(void); /* connections not yet closed */
/* Process exit: close every connection now and the module's own handles; no more hooks. */
void ws_close_all(void);

/* ---- for lib_ws.c (the Lua bindings) ---- */

typedef struct ws_conn ws_conn_t;

/* Filters of a broadcast; include/exclude are connection ids (NULL: no filter). */
typedef struct {
  const char *role;
  const char *scope;
  const char *const *include;
  size_t ninclude;
  const char *const *exclude;
  size_t nexclude;
} ws_filter_t;

/* event: 1..128 chars of [A-Za-z0-9._:/-] (the caller checks); payload_json: valid JSON. */
size_t ws_broadcast(const char *event, const char *payload_json, size_t payload_len,
                    const ws_filter_t *f);
/* 0 sent; -1 no such open connection; -2 dropped as a slow consumer. */
int ws_send_event(const char *conn_id, const char *event, const char *payload_json,
                  size_t payload_len);
/* Queues a text message (e.g. a `res`) as is; 0 or -1 (gone) / -2 (slow consumer). */
int ws_send_text(uint64_t num, const char *text, size_t len);
int ws_close_id(const char *conn_id, unsigned code, const char *reason); /* 0, or -1 gone */

ws_conn_t *ws_find(const char *conn_id); /* an open (not closing) connection, or NULL */
ws_conn_t *ws_find_num(uint64_t num);    /* same, by number */
void ws_push_info(lua_State *L, ws_conn_t *c, int with_data); /* a table describing c */
/* Pushes an array of info tables of connected clients matching role/scope/device (NULL: any). */
void ws_push_list(lua_State *L, const char *role, const char *scope, const char *device);
void ws_push_presence(lua_State *L); /* presence snapshot keyed by device id */

/* The connect handshake succeeded (called by lua/chatgw/ws.lua): records role, scopes, device
 * and client, queues hello (the `res` text), marks the connection open, counts presence.
 * Returns 0, or -1 when the connection is gone or not waiting for its connect. */
int ws_accept(uint64_t num, const char *role, const char *const *scopes, size_t nscopes,
              const char *device, const char *client_id, const char *client_version,
              const char *hello, size_t hello_len);

/* Per-connection data, values stored as JSON text. get: NULL if absent. set: json NULL deletes;
 * returns 0, -1 gone, -2 over data_max_bytes. */
const char *ws_data_get(uint64_t num, const char *key, size_t *len);
int ws_data_set(uint64_t num, const char *key, const char *json, size_t json_len);

const ws_settings_t *ws_settings(void);

#endif
