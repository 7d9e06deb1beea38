/* redis.h - an asynchronous Redis client on the libuv loop (hiredis 0.14, docs/cluster.md).
 *
 * A client is one connection to one server, kept up by itself: it resolves the host with
 * uv_getaddrinfo (hiredis' redisAsyncConnect would block the loop on a name), connects to the
 * numeric address under a connect timeout, sends AUTH (the URL's password) and SELECT (its db)
 * and a PING before it calls itself up, and after any failure reconnects with a backoff (100 ms
 * doubling to 5 s, with jitter). The event hooks are those of hiredis' adapters/libuv.h, with
 * the poll errors that adapter ignores handled (the connection is dropped).
 *
 * Every command has a deadline: when one passes, the command fails with "timeout" and the
 * connection is dropped (hiredis 0.14 has no timeouts, and a late reply would answer the wrong
 * command), so the commands behind it fail with "lost". A command given while the client is
 * not up fails at once ("down: ..."): callers never queue behind an outage.
 *
 * A subscriber client (redis_subscribe) is a connection of its own: its channels are
 * subscribed again after every reconnect.
 *
 * The password never leaves this module: logs, errors and redis_url_redacted() show the URL
 * without it. */
#ifndef CHATGW_REDIS_H
#define CHATGW_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct {
  int is_unix;
  char host[256];
  int port;
  char path[512];
  char user[128];
  char pass[256];
  int db;
} redis_url_t;

/* redis://[[user]:pass@]host[:port][/db] or unix://path[?db=N]; 0, or -1 with err set (never
 * naming the password). rediss:// is refused: hiredis 0.14 has no TLS. */
int redis_url_parse(const char *url, redis_url_t *out, char *err, size_t errlen);
/* The URL as it may be shown: scheme, host, port and db; any user and password replaced by
 * three stars before the host. */
void redis_url_redacted(const redis_url_t *u, char *out, size_t outlen);

typedef struct redis_client redis_client_t;
typedef struct redis_cmd redis_cmd_t;

/* r is the reply (NULL when err is set: "timeout: ...", "lost: ...", "down: ...",
 * "closed"). Called from the loop, never from inside redis_command. */
typedef void (*redis_reply_fn)(void *ud, const redisReply *r, const char *err);
typedef void (*redis_message_fn)(void *ud, const char *channel, size_t cl, const char *data,
                                 size_t dl);

typedef struct {
  const char *name;            /* in log lines: "cmd", "sub" */
  uint64_t connect_timeout_ms; /* resolve + connect + AUTH/SELECT/PING */
} redis_opts_t;

typedef struct {
  uint64_t commands, errors, timeouts, messages;
  uint64_t reconnects; /* connections made again after one was up */
  int up;
  uint64_t down_since_ms; /* uv_now when it went down (0 while up) */
  char last_error[256];
} redis_stats_t;

/* Starts connecting at once. NULL when out of memory. */
redis_client_t *redis_client_new(uv_loop_t *loop, const redis_url_t *u, const redis_opts_t *o);
int redis_client_up(const redis_client_t *c);
void redis_client_stats(const redis_client_t *c, redis_stats_t *out);

/* Sends a command; cb is called exactly once (unless redis_cmd_cancel), always from a later
 * loop callback. NULL only when out of memory (cb not called). */
redis_cmd_t *redis_command(redis_client_t *c, int argc, const char **argv, const size_t *lens,
                           uint64_t timeout_ms, redis_reply_fn cb, void *ud);
/* cb will not be called for this command. */
void redis_cmd_cancel(redis_cmd_t *cmd);

/* Makes c a subscriber (it takes no other commands): channel is subscribed now (when up) and
 * after every reconnect; every message on it goes to fn. 0, or -1 (bad name, out of memory,
 * a command client). */
int redis_subscribe(redis_client_t *c, const char *channel, redis_message_fn fn, void *ud);

/* Closes every client (process exit): pending commands get "closed", handles are closed. */
void redis_close_all(void);

#endif
