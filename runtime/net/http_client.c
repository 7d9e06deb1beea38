/* http_client.c - libcurl multi on the libuv loop (see http_client.h).
 *
 * The rules that keep this safe:
 * - curl calls socket_cb/timer_cb/write_cb/header_cb from inside curl_multi_socket_action,
 *   curl_multi_add_handle, curl_easy_pause, ... Those only touch uv handles and buffers and
 *   put the transfer on the "dirty" list.
 * - process() runs after curl has returned (from a uv callback): it reads finished transfers
 *   with curl_multi_info_read, then calls each dirty transfer's notify function, which may run
 *   Lua and call back into this module (start, abort, free, unpause).
 * - A transfer asked for a notify from outside process() (http_xfer_poke, a chunk delivered
 *   by curl_easy_pause) arms a 0 ms "kick" timer so process() runs on the next loop turn. */
#include "http_client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "textbuf.h"

struct http_xfer {
  CURL *easy;
  uv_loop_t *loop;
  char host[256];
  size_t max_body;
  int streaming;
  int started;  /* added to the multi handle once: metrics count it */
  int in_multi; /* currently added */
  int done;
  int paused;    /* the write callback returned CURL_WRITEFUNC_PAUSE */
  int too_large; /* the body (or the headers) went over the cap */
  size_t received;
  long status;
  char *error; /* "code: message" or NULL */
  char *eff_url;
  char errbuf[CURL_ERROR_SIZE];
  textbuf_t body, chunk, headers;
  uint64_t t0;
  double duration_ms;
  http_xfer_notify_fn notify;
  void *notify_ud;
  struct curl_slist *slists[4];
  int nslists;
  curl_mime *mime;
  int dirty;
  http_xfer_t *dirty_prev, *dirty_next;
  http_xfer_t *all_prev, *all_next;
};

typedef struct sock {
  uv_poll_t poll;
  curl_socket_t fd;
  int closing;
  struct sock *prev, *next;
} sock_t;

static CURLM *g_multi;
static uv_loop_t *g_loop;
static uv_timer_t g_timer; /* curl's timeout */
static uv_timer_t g_kick;  /* runs process() on the next loop turn */
static int g_ready;        /* the timers exist */
static int g_shut;         /* http_client_shutdown ran: no new transfers */
static int g_processing;
static size_t g_active;
static sock_t *g_socks;
static http_xfer_t *g_all;
static http_xfer_t *g_dirty_head, *g_dirty_tail;

static metric_t *g_m_requests, *g_m_errors, *g_m_duration, *g_m_active;

/* ---- small helpers ---- */

static void kick_cb(uv_timer_t *t);

static void dirty_remove(http_xfer_t *x) {
  if (!x->dirty) return;
  if (x->dirty_prev)
    x->dirty_prev->dirty_next = x->dirty_next;
  else
    g_dirty_head = x->dirty_next;
  if (x->dirty_next)
    x->dirty_next->dirty_prev = x->dirty_prev;
  else
    g_dirty_tail = x->dirty_prev;
  x->dirty = 0;
  x->dirty_prev = x->dirty_next = NULL;
}

static void mark_dirty(http_xfer_t *x) {
  if (x->dirty) return;
  x->dirty = 1;
  x->dirty_next = NULL;
  x->dirty_prev = g_dirty_tail;
  if (g_dirty_tail)
    g_dirty_tail->dirty_next = x;
  else
    g_dirty_head = x;
  g_dirty_tail = x;
  if (!g_processing && g_ready) uv_timer_start(&g_kick, kick_cb, 0, 0);
}

/* ---- metrics ---- */

static void metrics_setup(void) {
  const char *hs[] = {"host", "status"};
  const char *hc[] = {"host", "code"};
  const char *h[] = {"host"};
  g_m_requests = metrics_counter("chatgw_http_client_requests_total",
                                 "Outbound HTTP requests by host and status (error: transport "
                                 "failure).",
                                 hs, 2, NULL);
  g_m_errors =
      metrics_counter("chatgw_http_client_errors_total",
                      "Outbound HTTP transport failures by host and error code.", hc, 2, NULL);
  g_m_duration = metrics_histogram("chatgw_http_client_request_duration_seconds",
                                   "Outbound HTTP request duration (start to last byte).", h, 1,
                                   NULL, 0, NULL);
  g_m_active = metrics_gauge("chatgw_http_client_active", "Outbound HTTP transfers in progress.",
                             NULL, 0, NULL);
}

static void count_finished(http_xfer_t *x, const char *code) {
  const char *host = x->host[0] ? x->host : "-";
  char status[16];
  if (code) {
    snprintf(status, sizeof status, "error");
    const char *lc[] = {host, code};
    if (g_m_errors) metrics_inc(g_m_errors, lc, 1);
  } else {
    snprintf(status, sizeof status, "%ld", x->status);
  }
  const char *ls[] = {host, status};
  if (g_m_requests) metrics_inc(g_m_requests, ls, 1);
  const char *lh[] = {host};
  if (g_m_duration) metrics_observe(g_m_duration, lh, x->duration_ms / 1000.0);
}

/* ---- errors ---- */

static const char *error_code(CURLcode rc) {
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
    return "timeout";
  case CURLE_COULDNT_CONNECT:
    return "connect";
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return "dns";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_USE_SSL_FAILED:
    return "tls";
  case CURLE_FILESIZE_EXCEEDED:
    return "too_large";
  default:
    return "io";
  }
}

static void set_error(http_xfer_t *x, const char *code, const char *msg) {
  free(x->error);
  size_t n = strlen(code) + strlen(msg) + 3;
  x->error = malloc(n);
  if (x->error) snprintf(x->error, n, "%s: %s", code, msg);
}

/* ---- finishing ---- */

/* Takes x out of the multi handle if it is in it (and out of the active count). */
static void leave_multi(http_xfer_t *x) {
  if (!x->in_multi) return;
  curl_multi_remove_handle(g_multi, x->easy);
  x->in_multi = 0;
  g_active--;
  if (g_m_active) metrics_set(g_m_active, NULL, (double)g_active);
}

static void finish(http_xfer_t *x, CURLcode rc) {
  leave_multi(x);
  x->done = 1;
  x->duration_ms = (double)(uv_hrtime() - x->t0) / 1e6;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
  char *u = NULL;
  if (curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &u) == CURLE_OK && u)
    x->eff_url = strdup(u);
  const char *code = NULL;
  if (rc != CURLE_OK) {
    char msg[CURL_ERROR_SIZE + 64];
    if (x->too_large) {
      code = "too_large";
      snprintf(msg, sizeof msg, "response larger than max_body (%zu bytes)", x->max_body);
    } else {
      code = error_code(rc);
      /* Whether the server may have the request matters to callers that must not repeat a
       * send (a chat message): say so when not one request was issued. */
      long sent = 0;
      curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &sent);
      snprintf(msg, sizeof msg, "%s%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc),
               sent == 0 ? " (request not sent)" : "");
    }
    set_error(x, code, msg);
  }
  count_finished(x, code);
  mark_dirty(x);
}

static void process(void) {
  if (g_processing) return;
  g_processing = 1;
  CURLMsg *m;
  int left;
  while (g_multi && (m = curl_multi_info_read(g_multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    CURLcode rc = m->data.result;
    http_xfer_t *x = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    if (x && !x->done) finish(x, rc);
  }
  /* Notify in order; a notify may add, remove or free any transfer (including itself). */
  while (g_dirty_head) {
    http_xfer_t *x = g_dirty_head;
    dirty_remove(x);
    if (x->notify) x->notify(x, x->notify_ud);
  }
  g_processing = 0;
}

/* ---- uv glue ---- */

static void kick_cb(uv_timer_t *t) {
  (void)t;
  process();
}

static void timeout_cb(uv_timer_t *t) {
  (void)t;
  int running;
  if (g_multi) curl_multi_socket_action(g_multi, CURL_SOCKET_TIMEOUT, 0, &running);
  process();
}

static int curl_timer_cb(CURLM *m, long timeout_ms, void *userp) {
  (void)m;
  (void)userp;
  if (timeout_ms < 0)
    uv_timer_stop(&g_timer);
  else
    uv_timer_start(&g_timer, timeout_cb, (uint64_t)timeout_ms, 0);
  return 0;
}

static void sock_close_cb(uv_handle_t *h) {
  free(h->data);
}

static void sock_close(sock_t *k) {
  if (k->closing) return;
  k->closing = 1;
  if (k->prev)
    k->prev->next = k->next;
  else
    g_socks = k->next;
  if (k->next) k->next->prev = k->prev;
  uv_poll_stop(&k->poll);
  uv_close((uv_handle_t *)&k->poll, sock_close_cb);
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  sock_t *k = p->data;
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  int running;
  if (g_multi) curl_multi_socket_action(g_multi, k->fd, flags, &running);
  process();
}

static int curl_socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)e;
  (void)userp;
  sock_t *k = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (k) sock_close(k);
    return 0;
  }
  if (!k || k->closing) {
    k = calloc(1, sizeof *k);
    if (!k) return -1;
    if (uv_poll_init_socket(g_loop, &k->poll, s) != 0) {
      log_errorf("http client: cannot watch socket %d", (int)s);
      free(k);
      return -1;
    }
    k->poll.data = k;
    k->fd = s;
    k->next = g_socks;
    if (g_socks) g_socks->prev = k;
    g_socks = k;
    curl_multi_assign(g_multi, s, k);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  uv_poll_start(&k->poll, ev, poll_cb);
  return 0;
}

/* The timers exist from the first transfer on (a transfer that failed to start still needs
 * the kick to deliver its error); the multi handle from the first start. */
static void timers_init(uv_loop_t *loop) {
  if (g_ready || g_shut) return;
  g_loop = loop;
  uv_timer_init(loop, &g_timer);
  uv_timer_init(loop, &g_kick);
  g_ready = 1;
  metrics_setup();
}

static int engine_init(uv_loop_t *loop) {
  if (g_multi) return 0;
  if (g_shut) return -1;
  timers_init(loop);
  http_client_global_init();
  g_multi = curl_multi_init();
  if (!g_multi) return -1;
  curl_multi_setopt(g_multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
  curl_multi_setopt(g_multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
  /* libcurl keeps 4x the transfers running at the moment by default: after a burst it closes
   * connections the next burst opens again (measured: 1 in 6 model calls of bench/tasks). */
  curl_multi_setopt(g_multi, CURLMOPT_MAXCONNECTS, 512L);
  return 0;
}

/* ---- process-wide ---- */

/* libcurl (and the OpenSSL it starts) is initialised at the first outbound request, not at
 * boot: a gateway that never calls out keeps that memory. Single-threaded, so this is safe. */
static int g_curl_global;

void http_client_global_init(void) {
  const char *err;
  if (g_curl_global || curl_lazy_load(&err) != 0) return;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  g_curl_global = 1;
}

void http_client_global_cleanup(void) {
  if (g_curl_global) curl_global_cleanup();
  g_curl_global = 0;
}

void http_client_shutdown(void) {
  g_shut = 1;
  for (http_xfer_t *x = g_all; x; x = x->all_next)
    http_xfer_abort(x, "shutting down");
  while (g_dirty_head)
    dirty_remove(g_dirty_head);
  /* Stop watching sockets first: the multi cleanup below closes them. */
  while (g_socks)
    sock_close(g_socks);
  if (g_multi) curl_multi_cleanup(g_multi);
  g_multi = NULL;
  while (g_socks)
    sock_close(g_socks);
  if (!g_ready) return;
  uv_timer_stop(&g_timer);
  uv_timer_stop(&g_kick);
  uv_close((uv_handle_t *)&g_timer, NULL);
  uv_close((uv_handle_t *)&g_kick, NULL);
  g_ready = 0;
}

/* ---- curl callbacks (no curl_multi_*, no Lua) ---- */

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud) {
  http_xfer_t *x = ud;
  size_t n = size * nmemb;
  if (x->max_body && x->received + n > x->max_body) {
    x->too_large = 1;
    return 0; /* CURLE_WRITE_ERROR */
  }
  if (x->streaming) {
    if (x->chunk.len > 0 && x->chunk.len + n > HTTP_XFER_STREAM_HIGH_WATER) {
      /* The owner has not taken the last chunk: keep this one in curl and wait. */
      x->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    if (textbuf_add(&x->chunk, p, n) != 0) return 0;
    x->received += n;
    mark_dirty(x);
    return n;
  }
  if (textbuf_add(&x->body, p, n) != 0) return 0;
  x->received += n;
  return n;
}

static size_t header_cb(char *p, size_t size, size_t nitems, void *ud) {
  http_xfer_t *x = ud;
  size_t n = size * nitems;
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    x->headers.len = 0; /* a new response (redirect, 100 Continue): keep only the last */
    return n;
  }
  if (x->headers.len + n > HTTP_XFER_MAX_HEADER_BYTES) {
    x->too_large = 1;
    return 0;
  }
  const char *colon = memchr(p, ':', n);
  if (!colon || colon == p) return n; /* blank line or junk */
  size_t nl = (size_t)(colon - p);
  const char *v = colon + 1, *end = p + n;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
    end--;
  char name[256];
  if (nl >= sizeof name) return n;
  for (size_t i = 0; i < nl; i++)
    name[i] = (char)tolower((unsigned char)p[i]);
  name[nl] = 0;
  if (textbuf_add(&x->headers, name, nl + 1) != 0) return 0;
  char zero = 0;
  if (textbuf_add(&x->headers, v, (size_t)(end - v)) != 0 ||
      textbuf_add(&x->headers, &zero, 1) != 0)
    return 0;
  return n;
}

/* ---- transfers ---- */

http_xfer_t *http_xfer_new(uv_loop_t *loop) {
  http_xfer_t *x = calloc(1, sizeof *x);
  if (!x) return NULL;
  http_client_global_init();
  if (!curl_lazy_loaded()) {
    free(x);
    return NULL;
  }
  x->easy = curl_easy_init();
  if (!x->easy) {
    free(x);
    return NULL;
  }
  x->loop = loop;
  timers_init(loop);
  CURL *e = x->easy;
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "chatgw/" CHATGW_VERSION);
  x->all_next = g_all;
  if (g_all) g_all->all_prev = x;
  g_all = x;
  return x;
}

CURL *http_xfer_easy(http_xfer_t *x) {
  return x->easy;
}

void http_xfer_set_host(http_xfer_t *x, const char *host) {
  snprintf(x->host, sizeof x->host, "%s", host ? host : "");
}

const char *http_xfer_host(const http_xfer_t *x) {
  return x->host[0] ? x->host : "-";
}

void http_xfer_set_max_body(http_xfer_t *x, size_t max_body) {
  x->max_body = max_body;
}

void http_xfer_set_streaming(http_xfer_t *x, int streaming) {
  x->streaming = streaming;
}

void http_xfer_set_notify(http_xfer_t *x, http_xfer_notify_fn fn, void *ud) {
  x->notify = fn;
  x->notify_ud = ud;
}

void http_xfer_own_slist(http_xfer_t *x, struct curl_slist *list) {
  if (!list) return;
  if (x->nslists < (int)(sizeof x->slists / sizeof x->slists[0]))
    x->slists[x->nslists++] = list;
  else
    curl_slist_free_all(list); /* never happens: callers own at most a few */
}

void http_xfer_own_mime(http_xfer_t *x, curl_mime *mime) {
  if (x->mime) curl_mime_free(x->mime);
  x->mime = mime;
}

int http_xfer_start(http_xfer_t *x, char *err, size_t errlen) {
  if (x->started || x->done) {
    snprintf(err, errlen, "io: transfer already used");
    return -1;
  }
  CURLMcode mc = CURLM_OK;
  if (engine_init(x->loop) != 0) {
    snprintf(err, errlen, "%s",
             g_shut ? "cancelled: shutting down" : "io: cannot create the curl multi handle");
  } else {
    x->t0 = uv_hrtime();
    mc = curl_multi_add_handle(g_multi, x->easy);
    if (mc == CURLM_OK) {
      x->started = 1;
      x->in_multi = 1;
      g_active++;
      if (g_m_active) metrics_set(g_m_active, NULL, (double)g_active);
      return 0;
    }
    snprintf(err, errlen, "io: %s", curl_multi_strerror(mc));
  }
  x->done = 1;
  free(x->error);
  x->error = strdup(err);
  return -1;
}

int http_xfer_done(const http_xfer_t *x) {
  return x->done;
}

size_t http_xfer_chunk_len(const http_xfer_t *x) {
  return x->chunk.len;
}

const char *http_xfer_chunk(const http_xfer_t *x) {
  return x->chunk.p ? x->chunk.p : "";
}

void http_xfer_chunk_taken(http_xfer_t *x) {
  x->chunk.len = 0;
  if (x->chunk.cap > 4 * HTTP_XFER_STREAM_HIGH_WATER) textbuf_free(&x->chunk);
  if (x->paused && x->in_multi && !x->done) {
    x->paused = 0;
    /* May call write_cb right here with the bytes curl kept (which marks us dirty). */
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
  }
}

void http_xfer_poke(http_xfer_t *x) {
  mark_dirty(x);
}

const char *http_xfer_error(const http_xfer_t *x) {
  if (!x->done) return NULL;
  return x->error ? x->error : NULL;
}

long http_xfer_status(const http_xfer_t *x) {
  if (x->done) return x->status;
  long st = 0; /* streaming: the status of the response being received (its headers are in) */
  if (x->easy) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
  return st;
}

const char *http_xfer_body(const http_xfer_t *x, size_t *len) {
  *len = x->body.len;
  return x->body.p ? x->body.p : "";
}

const char *http_xfer_headers(const http_xfer_t *x, size_t *len) {
  *len = x->headers.len;
  return x->headers.p ? x->headers.p : "";
}

const char *http_xfer_effective_url(const http_xfer_t *x) {
  return x->eff_url ? x->eff_url : "";
}

double http_xfer_duration_ms(const http_xfer_t *x) {
  return x->duration_ms;
}

void http_xfer_abort(http_xfer_t *x, const char *reason) {
  dirty_remove(x);
  if (x->done) return;
  leave_multi(x);
  x->done = 1;
  set_error(x, "cancelled", reason ? reason : "aborted");
  if (x->started) {
    x->duration_ms = (double)(uv_hrtime() - x->t0) / 1e6;
    count_finished(x, "cancelled");
  }
}

void http_xfer_free(http_xfer_t *x) {
  if (!x) return;
  http_xfer_abort(x, "closed");
  dirty_remove(x);
  if (x->all_prev)
    x->all_prev->all_next = x->all_next;
  else
    g_all = x->all_next;
  if (x->all_next) x->all_next->all_prev = x->all_prev;
  curl_easy_cleanup(x->easy);
  if (x->mime) curl_mime_free(x->mime);
  for (int i = 0; i < x->nslists; i++)
    curl_slist_free_all(x->slists[i]);
  textbuf_free(&x->body);
  textbuf_free(&x->chunk);
  textbuf_free(&x->headers);
  free(x->error);
  free(x->eff_url);
  free(x);
}
