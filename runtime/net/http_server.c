/* http_server.c - the HTTP/1.1 server (see http_server.h): listeners, accepting connections,
 * graceful stop, close and free. A connection's life is http_conn.c's (http_internal.h tells
 * how the files divide the work). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http_internal.h"
#include "log.h"
#include "siphash.h"

#define LISTEN_BACKLOG 511

/* ---- accept -------------------------------------------------------------------------------- */

conn_t *http__conn_new(http_server_t *s, listener_t *l) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->srv = s;
  c->lis = l;
  c->accepted_ns = uv_hrtime();
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  s->handles += 2;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (s->m_open) metrics_inc(s->m_open, NULL, 1);
  if (s->m_total) metrics_inc(s->m_total, NULL, 1);
  return c;
}

static void on_connection(uv_stream_t *ls, int status) {
  listener_t *l = ls->data;
  http_server_t *s = l->srv;
  if (status < 0) {
    log_warnf("http: accept on %s: %s", l->name, uv_strerror(status));
    return;
  }
  conn_t *c = http__conn_new(s, l);
  if (!c) {
    log_errorf("http: out of memory accepting a connection on %s", l->name);
    return;
  }
  int over = s->nactive >= s->lim.max_connections;
  if (over)
    c->rejected = 1;
  else
    s->nactive++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    http__conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (l->tls && !(c->tls = tls_conn_new(l->tls))) {
    log_errorf("http: out of memory starting TLS on %s", l->name);
    http__conn_close(c);
    return;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  snprintf(c->remote, sizeof c->remote, "-");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      uv_ip4_name(a, c->remote, sizeof c->remote);
      c->remote_port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      uv_ip6_name(a, c->remote, sizeof c->remote);
      c->remote_port = ntohs(a->sin6_port);
      if (strncmp(c->remote, "::ffff:", 7) == 0 && strchr(c->remote + 7, '.'))
        memmove(c->remote, c->remote + 7, strlen(c->remote + 7) + 1);
    }
  }
  http__conn_start(c, over);
}

/* ---- server ------------------------------------------------------------------------------- */

void http_limits_default(http_limits_t *l) {
  l->max_header_bytes = 16384;
  l->max_body_bytes = 1048576;
  l->header_timeout_ms = 10000;
  l->body_timeout_ms = 30000;
  l->idle_timeout_ms = 60000;
  l->max_connections = 1024;
  l->max_per_ip = 256;
  l->max_unsent_bytes = 262144;
  l->max_buffered_body_bytes = 67108864;
}

http_server_t *http_server_new(uv_loop_t *loop, const http_limits_t *limits, http_request_cb cb,
                               void *ud) {
  http_server_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->loop = loop;
  s->cb = cb;
  s->ud = ud;
  if (limits)
    s->lim = *limits;
  else
    http_limits_default(&s->lim);
  http__raise_parser_limit(s->lim.max_header_bytes);
  siphash_process_key(s->ip_key);
  uv_timer_init(loop, &s->anchor);
  s->anchor.data = s;
  s->handles = 1;
  static const char *const l_rs[] = {"route", "status"};
  static const char *const l_r[] = {"route"};
  const char *err = NULL;
  s->m_requests = metrics_counter("chatgw_http_requests_total",
                                  "HTTP responses by route and status", l_rs, 2, &err);
  if (!s->m_requests) log_warnf("http: metric chatgw_http_requests_total: %s", err ? err : "?");
  err = NULL;
  s->m_duration = metrics_histogram("chatgw_http_request_duration_seconds",
                                    "HTTP request duration by route", l_r, 1, NULL, 0, &err);
  if (!s->m_duration)
    log_warnf("http: metric chatgw_http_request_duration_seconds: %s", err ? err : "?");
  err = NULL;
  s->m_open = metrics_gauge("chatgw_http_connections_open", "Open HTTP connections", NULL, 0, &err);
  if (!s->m_open) log_warnf("http: metric chatgw_http_connections_open: %s", err ? err : "?");
  err = NULL;
  s->m_total =
      metrics_counter("chatgw_http_connections_total", "Accepted HTTP connections", NULL, 0, &err);
  if (!s->m_total) log_warnf("http: metric chatgw_http_connections_total: %s", err ? err : "?");
  return s;
}

void http_server_set_headers_cb(http_server_t *s, http_headers_cb cb) {
  s->hcb = cb;
}

void http_server_set_limits(http_server_t *s, const http_limits_t *limits) {
  s->lim = *limits;
  http__raise_parser_limit(s->lim.max_header_bytes);
}

static listener_t *find_listener(const http_server_t *s, const char *name) {
  for (listener_t *l = s->listeners; l; l = l->next)
    if (l->open && strcmp(l->name, name) == 0) return l;
  return NULL;
}

static void on_listener_closed(uv_handle_t *h) {
  listener_t *l = h->data;
  http_server_t *s = l->srv;
  s->handles--;
  if (!l->linked) {
    free(l->name);
    free(l);
  }
  http__server_maybe_done(s);
}

/* A listening handle is up: its bound port, then append it (keeps configuration order). */
static void listener_link(http_server_t *s, listener_t *l, int port) {
  struct sockaddr_storage bound;
  int bl = sizeof bound;
  l->port = port;
  if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&bound, &bl) == 0)
    l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
  l->open = 1;
  l->linked = 1;
  listener_t **pp = &s->listeners;
  while (*pp)
    pp = &(*pp)->next;
  *pp = l;
}

/* A listener named name with its handle initialised (not bound, not linked), or NULL without
 * memory: what binding a port and adopting an inherited socket share. */
static listener_t *listener_new(http_server_t *s, const char *name) {
  listener_t *l = calloc(1, sizeof *l);
  char *lname = strdup(name);
  if (!l || !lname) {
    free(l);
    free(lname);
    return NULL;
  }
  l->srv = s;
  l->name = lname;
  uv_tcp_init(s->loop, &l->tcp);
  l->tcp.data = l;
  s->handles++;
  return l;
}

int http_server_listen(http_server_t *s, const char *name, const char *host, int port, char *err,
                       size_t errlen) {
  char hostbuf[256];
  if (!name || !*name) name = "main";
  if (!host || !*host || strcmp(host, "*") == 0) host = "0.0.0.0";
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof hostbuf) {
    memcpy(hostbuf, host + 1, hl - 2);
    hostbuf[hl - 2] = 0;
  } else {
    snprintf(hostbuf, sizeof hostbuf, "%s", host);
  }
  int v6 = strchr(hostbuf, ':') != NULL;
  char where[300];
  snprintf(where, sizeof where, v6 ? "[%s]:%d" : "%s:%d", hostbuf, port);
  if (s->closing || s->stopping) {
    snprintf(err, errlen, "listen %s %s: server is stopping", name, where);
    return -1;
  }
  if (find_listener(s, name)) {
    snprintf(err, errlen, "listen %s %s: a listener with this name exists", name, where);
    return -1;
  }
  if (port < 0 || port > 65535) {
    snprintf(err, errlen, "listen %s %s: invalid port", name, where);
    return -1;
  }
  struct sockaddr_storage ss;
  int r = v6 ? uv_ip6_addr(hostbuf, port, (struct sockaddr_in6 *)&ss)
             : uv_ip4_addr(hostbuf, port, (struct sockaddr_in *)&ss);
  if (r != 0) {
    snprintf(err, errlen, "listen %s %s: invalid address (an IP literal or localhost expected)",
             name, where);
    return -1;
  }
  listener_t *l = listener_new(s, name);
  if (!l) {
    snprintf(err, errlen, "listen %s %s: out of memory", name, where);
    return -1;
  }
  r = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
  if (r != 0) {
    snprintf(err, errlen, "listen %s %s: %s", name, where, uv_strerror(r));
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed); /* frees l (not linked) */
    return -1;
  }
  listener_link(s, l, port);
  return 0;
}

int http_server_listen_fd(http_server_t *s, const char *name, int fd, char *err, size_t errlen) {
  if (!name || !*name) name = "main";
  if (s->closing || s->stopping || find_listener(s, name)) {
    snprintf(err, errlen, "listen %s fd %d: %s", name, fd,
             find_listener(s, name) ? "a listener with this name exists" : "server is stopping");
    close(fd);
    return -1;
  }
  listener_t *l = listener_new(s, name);
  if (!l) {
    close(fd);
    snprintf(err, errlen, "listen %s fd %d: out of memory", name, fd);
    return -1;
  }
  int r = uv_tcp_open(&l->tcp, (uv_os_sock_t)fd);
  if (r != 0) close(fd); /* else the handle owns it */
  if (r == 0) r = uv_listen((uv_stream_t *)&l->tcp, LISTEN_BACKLOG, on_connection);
  if (r != 0) {
    snprintf(err, errlen, "listen %s fd %d: %s", name, fd, uv_strerror(r));
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed); /* frees l (not linked) */
    return -1;
  }
  listener_link(s, l, 0);
  return 0;
}

int http_server_listener_fd(http_server_t *s, const char *name) {
  listener_t *l = name ? find_listener(s, name) : NULL;
  uv_os_fd_t fd;
  if (!l || uv_fileno((uv_handle_t *)&l->tcp, &fd) != 0) return -1;
  return (int)fd;
}

int http_server_port(http_server_t *s, const char *name) {
  listener_t *l = name ? find_listener(s, name) : NULL;
  return l ? l->port : -1;
}

int http_server_has_listener(http_server_t *s, const char *name) {
  return name && find_listener(s, name) != NULL;
}

/* ---- TLS ---------------------------------------------------------------------------------- */

int http_server_set_tls(http_server_t *s, const char *name, const char *cert, const char *key,
                        char *err, size_t errlen) {
  listener_t *l = name ? find_listener(s, name) : NULL;
  char why[1024];
  if (!l) {
    snprintf(err, errlen, "listener %s: tls: no such listener", name ? name : "?");
    return -1;
  }
  if (l->tls) {
    if (tls_ctx_reload(l->tls, why, sizeof why) == 0) return 0;
  } else {
    l->tls = tls_ctx_new(l->name, cert, key, why, sizeof why);
    if (l->tls) return 0;
  }
  snprintf(err, errlen, "listener %s: tls: %s", l->name, why);
  return -1;
}

void http_server_tls_reload(http_server_t *s) {
  char why[1024];
  for (listener_t *l = s->listeners; l; l = l->next)
    if (l->open && l->tls) tls_ctx_reload(l->tls, why, sizeof why); /* logs either way */
}

int http_server_tls_info(http_server_t *s, int i, const char **name, tls_info_t *out) {
  for (listener_t *l = s->listeners; l; l = l->next) {
    if (!l->tls || !l->linked) continue;
    if (i-- == 0) {
      *name = l->name;
      tls_ctx_info(l->tls, out);
      return 0;
    }
  }
  return -1;
}

void http_server_stop_accepting(http_server_t *s) {
  s->stopping = 1;
  for (listener_t *l = s->listeners; l; l = l->next) {
    if (!l->open) continue;
    l->open = 0;
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
  }
  for (conn_t *c = s->conns; c; c = c->next) {
    if (c->closing || c->state != S_IDLE || c->resume) continue;
    if (c->writes) {
      c->state = S_FLUSH;
      http__conn_arm(c);
    } else {
      http__conn_close(c);
    }
  }
}

size_t http_server_connection_count(const http_server_t *s) {
  return s->nconns;
}

size_t http_server_inflight(const http_server_t *s) {
  return s->inflight;
}

static void on_anchor_closed(uv_handle_t *h) {
  http_server_t *s = h->data;
  s->handles--;
  http__server_maybe_done(s);
}

void http_server_close(http_server_t *s, void (*done)(void *ud), void *ud) {
  if (s->closing) {
    log_warnf("http: server closed twice");
    return;
  }
  s->closing = 1;
  s->stopping = 1;
  s->done = done;
  s->done_ud = ud;
  for (listener_t *l = s->listeners; l; l = l->next) {
    if (!l->open) continue;
    l->open = 0;
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
  }
  for (conn_t *c = s->conns; c; c = c->next)
    http__conn_close(c);
  uv_close((uv_handle_t *)&s->anchor, on_anchor_closed);
}

void http_server_free(http_server_t *s) {
  if (!s) return;
  if (!s->closed || s->inflight > 0 || s->in_done) {
    if (!s->closing) {
      log_errorf("http: http_server_free before http_server_close; closing first");
      http_server_close(s, NULL, NULL);
    }
    s->free_requested = 1; /* freed once closed and every request is answered */
    return;
  }
  http__server_free_now(s);
}
