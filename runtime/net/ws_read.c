/* ws_read.c - the WebSocket read path: bytes from the socket through wslay's frame parser
 * (frame contexts pooled, so an idle connection holds none), the checks wslay leaves to the
 * caller (masking, reserved bits, opcodes, fragment order), UTF-8 of text messages, control
 * frames, size limits, the per-connection rate limit, and complete messages handed to the
 * hooks. A paused connection (its connect is being answered) stashes what it has read. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "ws_internal.h"

#define RBUF_SIZE 65536
#define CTX_POOL_MAX 64
#define RATE_WINDOW_MS 10000

static uint8_t g_rbuf[RBUF_SIZE]; /* every read goes here first */
static ws_conn_t *g_parsing;      /* the connection fr_recv feeds from */
static wslay_frame_context_ptr g_pool[CTX_POOL_MAX];
static size_t g_npool;

static ssize_t fr_recv(uint8_t *buf, size_t len, int flags, void *ud) {
  (void)flags;
  (void)ud;
  ws_conn_t *c = g_parsing;
  if (!c || !c->in_len) return 0;
  size_t n = len < c->in_len ? len : c->in_len;
  memcpy(buf, c->in, n);
  c->in += n;
  c->in_len -= n;
  c->fed += n;
  return (ssize_t)n;
}

static ssize_t fr_send(const uint8_t *d, size_t l, int f, void *ud) {
  (void)d;
  (void)l;
  (void)f;
  (void)ud;
  return -1; /* never used: server frames are built in ws_frame.c */
}

static int fr_genmask(uint8_t *b, size_t l, void *ud) {
  (void)b;
  (void)l;
  (void)ud;
  return -1;
}

static const struct wslay_frame_callbacks g_fr_cb = {fr_send, fr_recv, fr_genmask};

static wslay_frame_context_ptr ctx_get(void) {
  if (g_npool) return g_pool[--g_npool];
  wslay_frame_context_ptr ctx = NULL;
  if (wslay_frame_context_init(&ctx, &g_fr_cb, NULL) != 0) return NULL;
  return ctx;
}

/* Only for a context at a frame boundary with nothing buffered. */
static void ctx_put(wslay_frame_context_ptr ctx) {
  if (g_npool < CTX_POOL_MAX)
    g_pool[g_npool++] = ctx;
  else
    wslay_frame_context_free(ctx);
}

void ws__pause(ws_conn_t *c) {
  c->paused = 1;
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

void ws__resume(ws_conn_t *c) {
  if (!c->paused) return;
  c->paused = 0;
  if (g_parsing == c) return; /* the parse loop goes on */
  c->resume = 1;
  ws__work_link(c);
}

/* One message from the connection's bucket: 1, or 0 with *retry_ms until one is there. */
static int rate_take(ws_conn_t *c, uint64_t *retry_ms) {
  double retry = 0;
  if (token_bucket_take(&c->bucket, ws__g.set.rate_per_second, ws__g.set.rate_burst, 1,
                        (double)ws__loop_ms(), &retry))
    return 1;
  *retry_ms = (uint64_t)ceil(retry);
  if (*retry_ms < 1) *retry_ms = 1;
  return 0;
}

/* A protocol error in what the client sent. A connection already closing (our close frame is
 * out, the peer's answer awaited) is closed now: ws__fail would do nothing, and the frame that
 * failed its checks must not be read on (fuzz/ws_frames found a control frame's payload then
 * copied past ctrl[]). */
static void read_fail(ws_conn_t *c, const char *code, const char *message, unsigned close_code,
                      const char *reason) {
  if (c->state == WC_CLOSING) {
    ws__hard_close(c, close_code, reason);
    return;
  }
  ws__fail(c, code, message, close_code, reason);
}

static void conn_message(ws_conn_t *c, const uint8_t *p, size_t n, unsigned op) {
  if (ws__g.m_recv) metrics_inc(ws__g.m_recv, NULL, 1);
  if (c->state == WC_HANDSHAKE) {
    if (op != WS_OP_TEXT) {
      ws__fail(c, "invalid_request", "the first message must be a connect request (JSON text)",
               1003, "binary messages are not supported");
      return;
    }
    c->state = WC_CONNECTING;
    ws__pause(c);
    if (!ws__g.hooks.handshake ||
        ws__g.hooks.handshake(c->num, c->id, (const char *)p, n, c->pre_query ? c->pre_query : "",
                              c->pre_bearer, c->remote) != 0)
      ws__fail(c, "internal_error", "internal error", 1011, "internal error");
    return;
  }
  if (c->state != WC_OPEN) return; /* after our close frame: ignored */
  if (op != WS_OP_TEXT) {
    static const char e[] = "{\"type\":\"res\",\"id\":null,\"ok\":false,\"error\":{\"code\":"
                            "\"unsupported_data\",\"message\":\"binary messages are not "
                            "supported\"}}";
    ws__frame(c, WS_OP_TEXT, e, sizeof e - 1, 0);
    return;
  }
  uint64_t retry = 0;
  int allowed = rate_take(c, &retry);
  if (!allowed) {
    if (ws__g.m_limited) metrics_inc(ws__g.m_limited, NULL, 1);
    uint64_t now = ws__loop_ms();
    if (now - c->rejects_since_ms > RATE_WINDOW_MS) {
      c->rejects_since_ms = now;
      c->rejects = 0;
    }
    if (++c->rejects > ws__g.set.rate_close_after) {
      log_field_t f[] = {{"conn", c->id, 0}, {"remote", c->remote, 0}};
      log_write(LOG_WARN, "ws rate limit: closing an abusive connection", f, 2);
      ws__start_close(c, 1008, "rate limit exceeded");
      return;
    }
  }
  if (ws__g.hooks.message) ws__g.hooks.message(c->num, (const char *)p, n, allowed ? 0 : retry);
}

/* A ping: at most one pong waits in the queue (RFC 6455 5.5.3 allows answering only the latest
 * ping, so a newer one replaces its payload); pongs count in the unsent bytes; before `connect`
 * only a few pings are taken, after it WS_PINGS_PER_WINDOW per 10 s are answered and twice that
 * closes the connection. */
static void conn_ping(ws_conn_t *c) {
  if (c->state > WC_OPEN) return;
  uint64_t now = ws__loop_ms();
  if (c->state < WC_OPEN) {
    if (++c->pings > WS_PINGS_BEFORE_CONNECT) {
      ws__fail(c, NULL, NULL, 1008, "too many pings before connect");
      return;
    }
  } else {
    if (now - c->pings_since_ms > RATE_WINDOW_MS) {
      c->pings_since_ms = now;
      c->pings = 0;
    }
    if (c->pings < UINT16_MAX) c->pings++;
    if (c->pings > 2 * WS_PINGS_PER_WINDOW) {
      log_field_t f[] = {{"conn", c->id, 0}, {"remote", c->remote, 0}};
      log_write(LOG_WARN, "ws ping flood: closing the connection", f, 2);
      ws__fail(c, NULL, NULL, 1008, "ping flood");
      return;
    }
    if (c->pings > WS_PINGS_PER_WINDOW) return; /* not answered */
  }
  if (c->pong) { /* not yet written: answer this ping instead */
    size_t h = ws_frame_header(c->pong->data, WS_OP_PONG, c->ctrl_len);
    memcpy(c->pong->data + h, c->ctrl, c->ctrl_len);
    c->pong->len = h + c->ctrl_len;
    return;
  }
  ws_out_t *o = ws__out_new(WS_MAX_HEADER + WS_MAX_CONTROL);
  if (!o) return;
  size_t h = ws_frame_header(o->data, WS_OP_PONG, c->ctrl_len);
  memcpy(o->data + h, c->ctrl, c->ctrl_len);
  o->len = h + c->ctrl_len;
  c->pong = o;
  ws__queue(c, o, 2); /* counted: over max_buffered_bytes it drops the connection */
}

static void conn_control(ws_conn_t *c, unsigned op) {
  if (op == WS_OP_PING) {
    conn_ping(c);
    return;
  }
  if (op == WS_OP_PONG) {
    if (ws__g.m_pulse) metrics_inc(ws__g.m_pulse, NULL, 1);
    return;
  }
  /* close */
  unsigned code = 1005;
  char reason[WS_MAX_CONTROL];
  reason[0] = 0;
  if (c->ctrl_len == 1) {
    read_fail(c, NULL, NULL, 1002, "bad close frame");
    return;
  }
  if (c->ctrl_len >= 2) {
    code = ((unsigned)c->ctrl[0] << 8) | c->ctrl[1];
    if (!ws_close_code_valid(code)) {
      read_fail(c, NULL, NULL, 1002, "invalid close code");
      return;
    }
    if (!ws_utf8_valid(c->ctrl + 2, c->ctrl_len - 2)) {
      read_fail(c, NULL, NULL, 1007, "invalid UTF-8 in close reason");
      return;
    }
    memcpy(reason, c->ctrl + 2, c->ctrl_len - 2);
    reason[c->ctrl_len - 2] = 0;
  }
  c->close_received = 1;
  if (c->state == WC_CLOSING) { /* the answer to our close */
    ws__hard_close(c, code, reason);
    return;
  }
  /* The peer closes: answer with the same code, then close once it is written. */
  ws__set_disc(c, code, reason);
  c->state = WC_CLOSING;
  uint8_t pl[WS_MAX_CONTROL];
  size_t n = ws_close_payload(pl, code == 1005 ? 0 : code, NULL);
  ws__frame(c, WS_OP_CLOSE, pl, n, 1);
  c->close_after_flush = 1;
  c->close_deadline_ms = ws__loop_ms() + ws__g.set.close_timeout_ms;
  ws__pause(c);
}

/* First chunk of a frame: checks that wslay leaves to the caller. 0 ok, -1 failed (closed). */
static int frame_begin(ws_conn_t *c, const struct wslay_frame_iocb *io) {
  c->frame_active = 1;
  c->frame_op = io->opcode;
  c->frame_left = io->payload_length;
  c->used += ws_client_header_len(io->payload_length, io->mask);
  if (io->rsv) {
    read_fail(c, NULL, NULL, 1002, "reserved bits set (no extension was negotiated)");
    return -1;
  }
  if (!io->mask) {
    read_fail(c, NULL, NULL, 1002, "client frames must be masked");
    return -1;
  }
  unsigned op = io->opcode;
  if (op >= WS_OP_CLOSE) {
    if (op > WS_OP_PONG) {
      read_fail(c, NULL, NULL, 1002, "unknown opcode");
      return -1;
    }
    c->ctrl_len = 0; /* wslay checked: <= 125 bytes, not fragmented */
    return 0;
  }
  if (op != WS_OP_CONT && op != WS_OP_TEXT && op != WS_OP_BINARY) {
    read_fail(c, NULL, NULL, 1002, "unknown opcode");
    return -1;
  }
  if (op == WS_OP_CONT && !c->msg_active) {
    read_fail(c, NULL, NULL, 1002, "continuation frame without a message");
    return -1;
  }
  if (op != WS_OP_CONT && c->msg_active) {
    read_fail(c, NULL, NULL, 1002, "new message inside a fragmented one");
    return -1;
  }
  if (op != WS_OP_CONT) {
    c->msg_active = 1;
    c->msg_op = (uint8_t)op;
    c->msg_len = 0;
    c->utf8 = 0;
    c->msg_direct = 0;
  }
  size_t limit = c->state <= WC_CONNECTING && WS_HANDSHAKE_MAX_BYTES < ws__g.set.max_payload
                     ? WS_HANDSHAKE_MAX_BYTES
                     : ws__g.set.max_payload;
  if (io->payload_length > limit || c->msg_len + io->payload_length > limit) {
    if (c->state <= WC_CONNECTING)
      read_fail(c, "too_large", "the connect message is too large", 1009, "message too big");
    else
      read_fail(c, NULL, NULL, 1009, "message too big");
    return -1;
  }
  return 0;
}

static int msg_append(ws_conn_t *c, const uint8_t *p, size_t n) {
  if (c->msg_len + n > c->msg_cap) {
    size_t nc = c->msg_cap ? c->msg_cap : 1024;
    while (nc < c->msg_len + n)
      nc *= 2;
    uint8_t *nm = realloc(c->msg, nc);
    if (!nm) return -1;
    c->msg = nm;
    c->msg_cap = nc;
  }
  memcpy(c->msg + c->msg_len, p, n);
  c->msg_len += n;
  return 0;
}

/* One chunk of the current frame. */
static void frame_chunk(ws_conn_t *c, const struct wslay_frame_iocb *io) {
  size_t n = io->data_length;
  c->used += n;
  c->frame_left -= n;
  int done = c->frame_left == 0;
  unsigned op = c->frame_op;
  if (op >= WS_OP_CLOSE) {
    memcpy(c->ctrl + c->ctrl_len, io->data, n);
    c->ctrl_len += n;
    if (done) {
      c->frame_active = 0;
      conn_control(c, op);
    }
    return;
  }
  if (c->msg_op == WS_OP_TEXT) {
    c->utf8 = ws_utf8_step(c->utf8, io->data, n);
    if (c->utf8 == WS_UTF8_BAD) {
      read_fail(c, NULL, NULL, 1007, "invalid UTF-8 in a text message");
      return;
    }
  }
  if (done) c->frame_active = 0;
  int final = done && io->fin;
  if (final && c->msg_len == 0 && n == io->payload_length) {
    /* The whole message is in this chunk: no copy. */
    c->msg_active = 0;
    if (c->msg_op == WS_OP_TEXT && c->utf8 != 0) {
      read_fail(c, NULL, NULL, 1007, "invalid UTF-8 in a text message");
      return;
    }
    conn_message(c, io->data, n, c->msg_op);
    return;
  }
  if (n && msg_append(c, io->data, n) != 0) {
    read_fail(c, NULL, NULL, 1011, "out of memory");
    return;
  }
  if (final) {
    c->msg_active = 0;
    if (c->msg_op == WS_OP_TEXT && c->utf8 != 0) {
      read_fail(c, NULL, NULL, 1007, "invalid UTF-8 in a text message");
      return;
    }
    conn_message(c, c->msg, c->msg_len, c->msg_op);
    free(c->msg); /* an idle connection keeps no message buffer */
    c->msg = NULL;
    c->msg_len = c->msg_cap = 0;
  }
}

/* Parses p[0..n) (and whatever the frame context holds). Stops when the connection pauses
 * (the rest is stashed) or fails. */
void ws__parse(ws_conn_t *c, const uint8_t *p, size_t n) {
  ws_conn_t *saved = g_parsing;
  g_parsing = c;
  c->in = p;
  c->in_len = n;
  c->last_seen_ms = ws__loop_ms();
  while (c->state != WC_CLOSED && !c->paused && !c->close_after_flush) {
    if (c->close_received) {
      c->in_len = 0; /* nothing after a close frame */
      break;
    }
    if (!c->fctx) {
      if (!c->in_len) break;
      c->fctx = ctx_get();
      c->fed = c->used = 0;
      if (!c->fctx) {
        ws__hard_close(c, 1011, "out of memory");
        break;
      }
    }
    struct wslay_frame_iocb io;
    memset(&io, 0, sizeof io);
    ssize_t r = wslay_frame_recv(c->fctx, &io);
    if (r == WSLAY_ERR_WANT_READ) {
      if (!c->frame_active && c->fed == c->used) { /* at a frame boundary, nothing buffered */
        ctx_put(c->fctx);
        c->fctx = NULL;
      }
      if (!c->in_len) break;
      continue;
    }
    if (r < 0) {
      wslay_frame_context_free(c->fctx);
      c->fctx = NULL;
      read_fail(c, NULL, NULL, 1002, "protocol error");
      break;
    }
    if (!c->frame_active && frame_begin(c, &io) != 0) break;
    frame_chunk(c, &io);
  }
  if (c->state != WC_CLOSED && c->in_len) {
    if (c->paused && !c->close_received && !c->close_after_flush) {
      uint8_t *s = malloc(c->stash_len + c->in_len);
      if (s) {
        if (c->stash_len) memcpy(s, c->stash, c->stash_len);
        memcpy(s + c->stash_len, c->in, c->in_len);
      }
      free(c->stash);
      c->stash = s;
      c->stash_len = s ? c->stash_len + c->in_len : 0;
    }
  }
  c->in = NULL;
  c->in_len = 0;
  g_parsing = saved;
  if (c->state != WC_CLOSED && !c->paused && !c->reading) ws__read_start(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  (void)h;
  (void)suggested;
  *out = uv_buf_init((char *)g_rbuf, sizeof g_rbuf);
}

/* Bytes of the WebSocket stream (plaintext): parsed, or kept while paused. */
static void on_bytes(ws_conn_t *c, const uint8_t *p, size_t n) {
  if (c->paused) { /* cannot happen (reading is stopped), but keep the bytes */
    uint8_t *s = realloc(c->stash, c->stash_len + n);
    if (!s) {
      ws__hard_close(c, 1011, "out of memory");
      return;
    }
    memcpy(s + c->stash_len, p, n);
    c->stash = s;
    c->stash_len += n;
    return;
  }
  ws__parse(c, p, n);
}

static void on_eof(ws_conn_t *c, ssize_t nread);

/* wss: the read's ciphertext into the session, all its plaintext parsed. */
static void on_read_tls(ws_conn_t *c, const uv_buf_t *buf, size_t nread) {
  static uint8_t plain[16384]; /* one TLS record at most per call */
  int r = tls_conn_feed(c->tls, buf->base, nread);
  while (r == 0 && c->state != WC_CLOSED && !c->close_after_flush && !c->close_received) {
    r = tls_conn_read(c->tls, (char *)plain, sizeof plain);
    if (r > 0) {
      on_bytes(c, plain, (size_t)r);
      r = 0;
    } else if (r == TLS_AGAIN) {
      break;
    }
  }
  ws__tls_send(c); /* anything the session owes the peer (a key update) */
  if (c->state == WC_CLOSED) return;
  if (r == TLS_FAIL) c->peer_gone = 1;
  if (r == TLS_FAIL) ws__hard_close(c, 1006, "tls error");
  if (r == TLS_CLOSED) on_eof(c, UV_EOF);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  ws_conn_t *c = st->data;
  if (c->lingering) { /* dropped; EOF, an error or too much ends it */
    if (nread < 0 || (c->linger_bytes += (size_t)(nread > 0 ? nread : 0)) > WS_LINGER_MAX_BYTES)
      ws__linger_end(c);
    return;
  }
  if (c->state == WC_CLOSED) return;
  if (nread > 0) {
    if (c->close_after_flush || c->close_received) return; /* ignored until the socket closes */
    if (c->tls)
      on_read_tls(c, buf, (size_t)nread);
    else
      on_bytes(c, (const uint8_t *)buf->base, (size_t)nread);
    return;
  }
  if (nread == 0) return;
  on_eof(c, nread);
}

static void on_eof(ws_conn_t *c, ssize_t nread) {
  c->peer_gone = 1;
  if (c->close_received && c->state == WC_CLOSING)
    ws__hard_close(c, c->disc_code, c->disc_reason);
  else
    ws__hard_close(c, 1006,
                   nread == UV_EOF ? "connection closed without a close frame"
                                   : uv_strerror((int)nread));
}

void ws__read_start(ws_conn_t *c) {
  if (c->reading || c->paused || c->state == WC_CLOSED || c->close_received) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = 1;
}

static void on_linger_shutdown(uv_shutdown_t *req, int status) {
  ws_conn_t *c = req->handle->data;
  if (status < 0 && c->lingering) ws__linger_end(c);
}

int ws__linger_start(ws_conn_t *c) {
  if (c->peer_gone || ws__g.final || !ws__g.ready || !ws__g.set.lingering_timeout_ms) return -1;
  c->shut = malloc(sizeof *c->shut);
  if (!c->shut) return -1;
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  if (uv_shutdown(c->shut, (uv_stream_t *)&c->tcp, on_linger_shutdown) != 0) {
    free(c->shut);
    c->shut = NULL;
    return -1;
  }
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) return -1;
  c->lingering = 1;
  c->linger_bytes = 0;
  c->close_deadline_ms = ws__loop_ms() + ws__g.set.lingering_timeout_ms;
  c->prev = NULL;
  c->next = ws__g.lingering;
  if (ws__g.lingering) ws__g.lingering->prev = c;
  ws__g.lingering = c;
  if (!uv_is_active((uv_handle_t *)&ws__g.linger_timer))
    uv_timer_start(&ws__g.linger_timer, ws__linger_sweep, 250, 250);
  return 0;
}

void ws__linger_end(ws_conn_t *c) {
  if (!c->lingering) return;
  c->lingering = 0;
  if (c->prev)
    c->prev->next = c->next;
  else
    ws__g.lingering = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_close((uv_handle_t *)&c->tcp, ws__on_closed);
  if (!ws__g.lingering && ws__g.ready) uv_timer_stop(&ws__g.linger_timer);
}

void ws__read_cleanup(void) {
  while (g_npool)
    wslay_frame_context_free(g_pool[--g_npool]);
}
