/* ws_internal.h - what the files of the WebSocket module share (ws__ prefix): the connection
 * struct and the module state. Public surface: ws.h.
 *
 *   ws_conn.c     connections: the table by number, per-address counts, closing, the sweep
 *                 (handshake/heartbeat/close timeouts), accept/refuse, conn.data, settings,
 *                 stop and final close
 *   ws_read.c     the read path: frames (wslay's frame parser), fragments, UTF-8, control
 *                 frames, size limits, the inbound rate limit, handing messages to the hooks
 *   ws_write.c    the write path: per-connection queues flushed at the end of the loop turn,
 *                 slow consumers, broadcast and sends, presence batches
 *   ws_upgrade.c  the HTTP upgrade: checks, per-address caps, the 101 and the challenge
 *
 * On a TLS listener (wss) the connection keeps the HTTP connection's TLS session (c->tls):
 * ws_read.c decrypts each read before parsing, ws__flush encrypts the queue into one write.
 *
 * Connection states:
 *   WC_HANDSHAKE   upgraded, challenge sent, waiting for the first message (connect)
 *   WC_CONNECTING  the connect message is with the hooks; reading is paused until answered
 *   WC_OPEN        connected: method calls, events, broadcasts, pings
 *   WC_CLOSING     a close frame was sent (or answered); waiting for the peer / the last write /
 *                  close_timeout_ms, then the socket is closed
 *   WC_CLOSED      uv_close called; freed in the close callback
 *
 * Memory per idle connection is kept small: the wslay frame context (4 KiB of input buffer)
 * and the message buffer exist only while a frame or message is incomplete (contexts are
 * pooled), reads go through one shared buffer, timers are per module (one sweep), and output
 * lives in the queue only until the loop turn ends. */
#ifndef CHATGW_WS_INTERNAL_H
#define CHATGW_WS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "limiter.h"
#include "metrics.h"
#include "tls.h"
#include "ws.h"
#include "ws_frame.h"

#define ID_MAX 32

enum { WC_HANDSHAKE, WC_CONNECTING, WC_OPEN, WC_CLOSING, WC_CLOSED };

typedef struct ws_shared {
  unsigned refs;
  size_t len;
  char data[];
} ws_shared_t;

typedef struct ws_out {
  struct ws_out *next;
  ws_shared_t *sh; /* sent after data, or NULL */
  size_t len;
  uint8_t data[];
} ws_out_t;

typedef struct {
  uv_write_t req;
  ws_out_t *items;
} ws_wr_t;

typedef struct ws_kv {
  struct ws_kv *next;
  size_t klen, vlen;
  char *val; /* JSON text */
  char key[];
} ws_kv_t;

typedef struct ip_entry {
  struct ip_entry *next;
  size_t n;
  char ip[64];
} ip_entry_t;

struct ws_conn {
  uv_tcp_t tcp;
  tls_conn_t *tls; /* wss: the session taken over from the HTTP connection (NULL: plain) */
  uint64_t num;
  char id[ID_MAX];
  int state;
  unsigned connected : 1; /* the connect handshake succeeded */
  unsigned reading : 1;
  unsigned paused : 1;  /* reading stopped until Lua answers the connect */
  unsigned in_work : 1; /* linked in the work list */
  unsigned resume : 1;  /* work: parse the stash and start reading again */
  unsigned close_after_flush : 1;
  unsigned close_received : 1;
  unsigned frame_active : 1;
  unsigned msg_active : 1;
  unsigned msg_direct : 1;
  unsigned disc_set : 1;
  unsigned peer_gone : 1; /* EOF or a socket error: no lingering close */
  unsigned lingering : 1; /* closed, write side shut down, input dropped (ws__linger_start) */
  uint8_t frame_op;
  uint8_t msg_op;
  uint16_t disc_code;
  char *disc_reason;
  uint64_t opened_ms, last_seen_ms, last_ping_ms, close_deadline_ms;
  double connected_at;
  uint64_t seq;
  uint64_t bstamp; /* last broadcast that reached it (dedupes include lists) */
  char *role;
  char **scopes; /* one block: pointers then strings */
  size_t nscopes;
  char *device, *client_id, *client_version;
  char *pre_query;  /* the upgrade's raw query string, until the connect is answered */
  char *pre_bearer; /* the upgrade's Authorization bearer token, likewise (NULL: none) */
  char remote[64];
  int remote_port;
  ip_entry_t *ip;
  /* output */
  ws_out_t *qhead, *qtail;
  ws_out_t *pong; /* the one pong still in the queue: a newer ping replaces its payload */
  uint16_t pings; /* pings in the current 10 s window (WC_HANDSHAKE/CONNECTING: in all) */
  uint64_t pings_since_ms;
  uv_shutdown_t *shut; /* lingering: the SHUT_WR request */
  size_t linger_bytes; /* lingering: input dropped so far */
  size_t queued;
  unsigned writes;
  /* input */
  wslay_frame_context_ptr fctx;
  const uint8_t *in;
  size_t in_len;
  uint64_t fed, used; /* bytes given to / accounted from the frame context */
  uint64_t frame_left;
  uint8_t *stash;
  size_t stash_len;
  uint8_t *msg;
  size_t msg_len, msg_cap;
  uint32_t utf8;
  uint8_t ctrl[WS_MAX_CONTROL];
  size_t ctrl_len;
  /* rate limit */
  token_bucket_t bucket;
  unsigned rejects;
  uint64_t rejects_since_ms;
  /* per-connection data */
  ws_kv_t *data;
  size_t data_bytes;
  /* lists */
  ws_conn_t *prev, *next; /* ws__g.conns: every connection not yet closed */
  ws_conn_t *hnext;       /* hash chain by num */
  ws_conn_t *work_next;
};

/* ---- module state ---- */

typedef struct {
  ws_settings_t set;
  ws_hooks_t hooks;
  uv_loop_t *loop;
  int ready; /* handles initialised (ws_init) */
  int stopping, final;
  uv_timer_t sweep, pres_timer;
  uv_prepare_t prep;
  uv_check_t check;
  uint64_t sweep_every;
  ws_conn_t *conns;     /* every connection not yet closed */
  ws_conn_t *lingering; /* closed connections draining their input (prev/next links) */
  uv_timer_t linger_timer;
  size_t nconns;
  ws_conn_t *work; /* connections with output to flush or input to resume this turn */
  ws_conn_t **tab; /* by num */
  size_t tabcap, tabn;
  ip_entry_t *ips[256];
  uint64_t ip_key[2]; /* SipHash key of the address table */
  uint64_t next_num;
  char boot[9]; /* random prefix of connection ids */
  uint64_t state_version;
  /* presence changes not yet sent */
  char *pres;
  size_t pres_len, pres_cap, pres_n;
  metric_t *m_active, *m_total, *m_recv, *m_sent, *m_slow, *m_bdur, *m_pulse, *m_rejected,
      *m_limited, *m_closes;
} ws__state_t;

extern ws__state_t ws__g;

static inline uint64_t ws__loop_ms(void) {
  return uv_now(ws__g.loop);
}

/* ---- ws_conn.c ---- */
ws_conn_t *ws__tab_get(uint64_t num);
ws_conn_t *ws__conn_any(uint64_t num); /* not yet closed */
void ws__register(ws_conn_t *c);       /* a new upgraded connection: number, id, lists */
ip_entry_t *ws__ip_get(const char *ip, int create);
void ws__ip_release(ip_entry_t *e);
void ws__set_disc(ws_conn_t *c, unsigned code, const char *reason);
void ws__hard_close(ws_conn_t *c, unsigned code, const char *reason);
void ws__start_close(ws_conn_t *c, unsigned code, const char *reason);
void ws__fail_close(ws_conn_t *c, unsigned code, const char *reason);
/* Error `res` without a request id (code NULL: none), then close. */
void ws__fail(ws_conn_t *c, const char *code, const char *message, unsigned close_code,
              const char *reason);
void ws__on_closed(uv_handle_t *h);
void ws__sweep_ensure(void);

/* ---- ws_read.c ---- */
void ws__parse(ws_conn_t *c, const uint8_t *p, size_t n);
void ws__read_start(ws_conn_t *c);
void ws__pause(ws_conn_t *c);
void ws__resume(ws_conn_t *c);
void ws__read_cleanup(void); /* frees the frame context pool */
/* After the bookkeeping of a close: shut the write side down, read and drop the input until EOF,
 * lingering_timeout_ms or WS_LINGER_MAX_BYTES, then uv_close. 0, or -1 (close now instead). */
int ws__linger_start(ws_conn_t *c);
void ws__linger_end(ws_conn_t *c);
void ws__linger_sweep(uv_timer_t *t); /* ws_conn.c: ends the lingering past their deadline */
#define WS_LINGER_MAX_BYTES (16u << 20)
#define WS_PINGS_BEFORE_CONNECT 5 /* more before `connect` answered: close 1008 */
#define WS_PINGS_PER_WINDOW 100   /* answered per 10 s; beyond: not answered, then close */

/* ---- ws_write.c ---- */
void ws__work_link(ws_conn_t *c);
void ws__run_work(void);
size_t ws__unsent(const ws_conn_t *c);
void ws__outs_free(ws_out_t *o);
ws_out_t *ws__out_new(size_t len);
int ws__queue(ws_conn_t *c, ws_out_t *o, int exempt);
int ws__frame(ws_conn_t *c, unsigned op, const void *p, size_t n, int exempt);
void ws__flush(ws_conn_t *c);
/* wss: writes the ciphertext the session has ready (after a read that produced some). */
void ws__tls_send(ws_conn_t *c);
void ws__presence_add(ws_conn_t *c, const char *status);
void ws__presence_flush(void);
void ws__write_cleanup(void); /* frees the shared iovec array and pending presence */

#endif
