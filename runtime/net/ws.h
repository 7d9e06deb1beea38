/* ws.h - WebSocket connections of the main listener (see docs/websocket.md).
 *
 * The HTTP server hands over the socket of an upgrade request on `ws.path`; from then on this
 * module owns the connection: it parses client frames with wslay's frame parser (masking
 * required, fragmentation, UTF-8, control frames, size limits), builds server frames itself,
 * queues output per connection (one vectored write per connection and loop turn; a broadcast
 * encodes its payload once and shares it), drops slow consumers, pings, rate-limits inbound
 * messages, batches presence changes and closes everything on shutdown. Connections live in C
 * and survive reloads.
 *
 * Protocol meaning is not here: the connect handshake, method calls and the disconnect hook go
 * to the hooks the layer above installs (ws_set_hooks; lib_ws.c runs them in Lua). The module's
 * files and their shared state are described in ws_internal.h. */
#ifndef CHATGW_WS_H
#define CHATGW_WS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http_server.h"

#define WS_PATH_MAX 256
#define WS_ORIGINS_MAX 4096
#define WS_HANDSHAKE_MAX_BYTES 65536 /* the first (connect) message */

/* Settings from the `ws:` config section (lua/chatgw/ws.lua declares the schema with its
 * defaults and ranges; settings.c copies the validated values in). */
typedef struct {
  int enabled;
  char path[WS_PATH_MAX];
  char origins[WS_ORIGINS_MAX]; /* allowed Origin values, each NUL-terminated, then "" */
  size_t max_payload;           /* largest client message; beyond: close 1009 */
  size_t max_buffered_bytes;    /* unsent bytes per connection; beyond: close 1008 */
  uint64_t ping_interval_ms;
  uint64_t pong_timeout_ms;
  uint64_t handshake_timeout_ms;
  uint64_t close_timeout_ms;     /* a closing connection is closed hard after this */
  uint64_t lingering_timeout_ms; /* after the close: SHUT_WR, input dropped this long, close */
  size_t max_connections;
  size_t max_per_ip;
  double rate_per_second; /* inbound messages, token bucket */
  double rate_burst;
  unsigned rate_close_after; /* rejected messages within 10 s before close 1008 */
  size_t presence_batch_size;
  uint64_t presence_flush_interval_ms;
  size_t data_max_bytes; /* per-connection data table */
} ws_settings_t;

/* The schema's defaults, for callers without a config (the unit tests). */
void ws_settings_default(ws_settings_t *s);

typedef struct ws_conn ws_conn_t;

/* What a connection looks like from outside; the strings belong to the connection and are valid
 * until it is freed (for the disconnect hook: during the call). */
typedef struct {
  const char *id; /* "<boot>-<num>" */
  uint64_t num;
  const char *role; /* NULL until connected */
  const char *const *scopes;
  size_t nscopes;
  const char *device, *client_id, *client_version; /* NULL when not given */
  const char *remote;
  int remote_port;
  int connected;       /* the connect handshake succeeded */
  double connected_at; /* wall-clock seconds */
  double last_seen;    /* wall-clock seconds of the last frame from the client */
  size_t buffered;     /* unsent bytes */
  uint64_t seq;        /* events sent */
  const char *state;   /* "connecting", "open", "closing", "closed" */
} ws_info_t;

/* How the layer above gives the protocol its meaning. Each hook is called from the loop, never
 * from inside another hook, and may call back into this module. */
typedef struct {
  /* The first message (the connect request) of connection num. The connection reads nothing
   * more until ws_accept or ws_refuse answers it (now or later). query: the upgrade request's
   * raw query string ("" when none); bearer: the token of its Authorization header, or NULL.
   * Return -1 when it cannot be handled: the connection is failed with internal_error. */
  int (*handshake)(uint64_t num, const char *id, const char *text, size_t len, const char *query,
                   const char *bearer, const char *remote);
  /* A text message after the connect. retry_ms: 0, or the per-connection rate limit refused it
   * and it may be retried after that long (the hook answers with an error). */
  void (*message)(uint64_t num, const char *text, size_t len, uint64_t retry_ms);
  /* A connected client is gone (connection closed, any reason). */
  void (*disconnect)(ws_conn_t *c, unsigned code, const char *reason);
} ws_hooks_t;

/* Once, before anything else: the loop everything runs on. Starts no handle yet. */
void ws_init(uv_loop_t *loop);
void ws_set_hooks(const ws_hooks_t *hooks);
/* Applies settings (boot and each reload). */
void ws_apply_settings(const ws_settings_t *s);
const ws_settings_t *ws_settings(void);

/* For each HTTP request before the Lua router: returns 1 if the request was for the WebSocket
 * path of the main listener and was taken (upgraded, or answered: 400/403/405/426/503). */
int ws_handle_request(http_request_t *req);

/* SIGTERM: refuse new upgrades, send every connected client the `shutdown` event and close
 * every connection with 1001. */
void ws_stop(void);
size_t ws_connection_count(void); /* connections not yet closed */
/* Process exit: close every connection now and the module's own handles; no more hooks. */
void ws_close_all(void);

/* ---- the connect handshake (answers to hooks.handshake) ---- */

/* Accepted: records role, scopes, device and client, queues hello (the `res` text), marks the
 * connection open, counts presence and reads on. 0, or -1 when the connection is gone or not
 * waiting for its connect. */
int ws_accept(uint64_t num, const char *role, const char *const *scopes, size_t nscopes,
              const char *device, const char *client_id, const char *client_version,
              const char *hello, size_t hello_len);
/* Refused: queues text (when not NULL), then closes with code and reason. Nothing happens when
 * the connection is gone or no longer waiting for its connect. */
void ws_refuse(uint64_t num, const char *text, size_t len, unsigned code, const char *reason);

/* ---- sending, looking up ---- */

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
void ws_info(const ws_conn_t *c, ws_info_t *out);
int ws_has_scope(const ws_conn_t *c, const char *scope);
/* Calls fn for every open connection (WebSocket state open), newest first. */
void ws_each_open(void (*fn)(ws_conn_t *c, void *ud), void *ud);

/* Per-connection data, values stored as JSON text. get: NULL if absent. set: json NULL deletes;
 * returns 0, -1 gone, -2 over data_max_bytes. each: every key of c. */
const char *ws_data_get(uint64_t num, const char *key, size_t *len);
int ws_data_set(uint64_t num, const char *key, const char *json, size_t json_len);
void ws_data_each(const ws_conn_t *c,
                  void (*fn)(const char *key, const char *json, size_t len, void *ud), void *ud);

#endif
