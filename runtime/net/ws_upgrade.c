/* ws_upgrade.c - the HTTP upgrade to a WebSocket on the main listener's ws.path: method,
 * Upgrade/version/key checks, allowed origins, shutdown and the total and per-address caps
 * (each refusal a JSON answer and a counted reason), then the socket is taken over from the
 * HTTP server, the 101 and the connect.challenge event are queued and reading starts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "log.h"
#include "strutil.h"
#include "textbuf.h"
#include "ws_internal.h"

static const char *req_header(const http_request_t *req, const char *name) {
  for (size_t i = 0; i < req->nheaders; i++)
    if (str_eq_ci(req->headers[i].name, req->headers[i].name_len, name))
      return req->headers[i].value;
  return NULL;
}

static void respond(http_request_t *req, int status, const char *code, const http_header_t *extra,
                    size_t nextra, const char *reason_label) {
  http_header_t hs[4];
  size_t n = 0;
  hs[n++] = (http_header_t){"Content-Type", 12, "application/json", 16};
  for (size_t i = 0; i < nextra && n < 4; i++)
    hs[n++] = extra[i];
  char body[128];
  int bl = snprintf(body, sizeof body, "{\"ok\":false,\"error\":\"%s\"}", code);
  char route[WS_PATH_MAX + 8];
  snprintf(route, sizeof route, "GET %s", ws__g.set.path);
  if (reason_label && ws__g.m_rejected) {
    const char *lv[1] = {reason_label};
    metrics_inc(ws__g.m_rejected, lv, 1);
  }
  http_request_respond(req, status, hs, n, body, (size_t)bl, route);
}

static int origin_allowed(const char *origin) {
  for (const char *o = ws__g.set.origins; *o; o += strlen(o) + 1)
    if (strcmp(o, "*") == 0 || strcasecmp(o, origin) == 0) return 1;
  return 0;
}

static void queue_handshake(ws_conn_t *c, const char *accept, const char *rid) {
  textbuf_t b = {0};
  textbuf_str(&b,
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: ");
  textbuf_str(&b, accept);
  textbuf_str(&b, "\r\nX-Request-Id: ");
  textbuf_str(&b, rid);
  textbuf_str(&b, "\r\n\r\n");
  if (b.oom) {
    free(b.p);
    return;
  }
  ws_out_t *o = ws__out_new(b.len);
  if (o) {
    memcpy(o->data, b.p, b.len);
    ws__queue(c, o, 1);
  }
  free(b.p);
  unsigned char r[16];
  if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) != 0) { /* getrandom(2): no OpenSSL here */
    uint64_t t[2] = {uv_hrtime(), (uint64_t)(uintptr_t)c};
    memcpy(r, t, sizeof r);
  }
  char nonce[33];
  for (size_t i = 0; i < sizeof r; i++)
    snprintf(nonce + 2 * i, 3, "%02x", r[i]);
  char ev[160];
  int n = snprintf(ev, sizeof ev,
                   "{\"type\":\"event\",\"event\":\"connect.challenge\",\"payload\":{\"nonce\":"
                   "\"%s\",\"ts\":%.0f}}",
                   nonce, clock_wall_s() * 1000.0);
  ws__frame(c, WS_OP_TEXT, ev, (size_t)n, 1);
}

int ws_handle_request(http_request_t *req) {
  if (!ws__g.ready || !ws__g.set.enabled || strcmp(req->listener, "main") != 0 ||
      strcmp(req->path, ws__g.set.path) != 0)
    return 0;
  if (strcmp(req->method, "GET") != 0) {
    http_header_t allow = {"Allow", 5, "GET", 3};
    respond(req, 405, "method_not_allowed", &allow, 1, NULL);
    return 1;
  }
  static const http_header_t upgrade_hdrs[] = {{"Upgrade", 7, "websocket", 9},
                                               {"Sec-WebSocket-Version", 21, "13", 2}};
  const char *up = req_header(req, "upgrade");
  if (!req->upgrade || !up || !str_list_has(up, "websocket")) {
    respond(req, 426, "upgrade_required", upgrade_hdrs, 2, "not_websocket");
    return 1;
  }
  const char *ver = req_header(req, "sec-websocket-version");
  if (!ver || strcmp(ver, "13") != 0) {
    respond(req, 426, "unsupported_websocket_version", upgrade_hdrs, 2, "version");
    return 1;
  }
  const char *key = req_header(req, "sec-websocket-key");
  char accept[29];
  if (!key || ws_accept_key(key, strlen(key), accept) != 0) {
    respond(req, 400, "bad_websocket_key", NULL, 0, "bad_key");
    return 1;
  }
  const char *origin = req_header(req, "origin");
  if (origin && !origin_allowed(origin)) {
    log_field_t f[] = {{"origin", origin, 0}, {"remote", req->remote_addr, 0}};
    log_write(LOG_WARN, "ws upgrade refused: origin not allowed", f, 2);
    respond(req, 403, "origin_not_allowed", NULL, 0, "origin");
    return 1;
  }
  static const http_header_t retry[] = {{"Retry-After", 11, "1", 1}};
  if (ws__g.stopping) {
    respond(req, 503, "shutting_down", retry, 1, "stopping");
    return 1;
  }
  ip_entry_t *ip = ws__ip_get(req->remote_addr, 0);
  if (ws__g.nconns >= ws__g.set.max_connections || (ip && ip->n >= ws__g.set.max_per_ip)) {
    respond(req, 503, "too_many_connections", retry, 1,
            ws__g.nconns >= ws__g.set.max_connections ? "max_connections" : "max_per_ip");
    return 1;
  }
  ws_conn_t *c = calloc(1, sizeof *c);
  ip = ws__ip_get(req->remote_addr, 1);
  if (!c || !ip) {
    free(c);
    respond(req, 503, "service_unavailable", retry, 1, "memory");
    return 1;
  }
  uv_tcp_init(ws__g.loop, &c->tcp);
  c->tcp.data = c;
  /* The token may come as ?token= (browsers cannot set headers) or as a bearer header; the
   * handshake hook decodes the query and checks it. */
  const char *auth = req_header(req, "authorization");
  const char *bt = NULL;
  size_t btl = 0;
  char *query = strdup(req->query);
  char *bearer = auth && str_bearer(auth, strlen(auth), &bt, &btl) ? strndup(bt, btl) : NULL;
  snprintf(c->remote, sizeof c->remote, "%s", req->remote_addr);
  c->remote_port = req->remote_port;
  char rid[130];
  snprintf(rid, sizeof rid, "%s", req->request_id);
  char route[WS_PATH_MAX + 8];
  snprintf(route, sizeof route, "GET %s", ws__g.set.path);
  char *rest = NULL;
  size_t rest_len = 0;
  if (http_request_upgrade(req, &c->tcp, &rest, &rest_len, &c->tls, route) != 0) {
    free(query);
    free(bearer);
    uv_close((uv_handle_t *)&c->tcp, ws__on_closed);
    if (!ip->n) {
      ip->n = 1;
      ws__ip_release(ip);
    }
    respond(req, 503, "service_unavailable", retry, 1, "takeover");
    return 1;
  }
  c->pre_query = query;
  c->pre_bearer = bearer;
  c->ip = ip;
  ip->n++;
  ws__register(c);
  queue_handshake(c, accept, rid);
  if (rest_len)
    ws__parse(c, (const uint8_t *)rest, rest_len);
  else
    ws__read_start(c);
  free(rest);
  return 1;
}
