/* http_response.c - what every response shares: its head (status line, headers, Date,
 * X-Request-Id, Content-Length, Connection), and the access log line and metrics written
 * when a request is answered. Writing the bytes is http_conn.c's. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_internal.h"
#include "log.h"
#include "strutil.h"

static int is_tchar(unsigned char ch) {
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) return 1;
  return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* The reason phrase: http-parser's table (IANA's registry), plus the two it lacks; an
 * unassigned code gets its class's name (RFC 9110 15: a client goes by the first digit). */
static const char *reason_phrase(int status) {
  if (status == 418) return "I'm a teapot"; /* RFC 9110 15.5.19: reserved, kept by convention */
  if (status == 425) return "Too Early";    /* RFC 8470 */
  const char *s = http_status_str((enum http_status)status);
  if (s && strcmp(s, "<unknown>") != 0) return s;
  static const char *classes[] = {"Informational", "Success", "Redirection", "Client Error",
                                  "Server Error"};
  return status >= 100 && status <= 599 ? classes[status / 100 - 1] : "Unknown";
}

const char *http__error_reason(int status) {
  switch (status) {
  case 400:
    return "bad_request";
  case 408:
    return "request_timeout";
  case 413:
    return "payload_too_large";
  case 431:
    return "request_header_fields_too_large";
  case 503:
    return "service_unavailable";
  default:
    return "internal_error";
  }
}

static const char *date_now(http_server_t *s) {
  static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t t = time(NULL);
  if (t != s->date_sec || !s->date[0]) {
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(s->date, sizeof s->date, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7],
             tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
             tm.tm_sec);
    s->date_sec = t;
  }
  return s->date;
}

/* A logged path never carries a token: in a query string (a path has none from the parser, but
 * whatever reaches this point is checked), the value of every `token`/`access_token` parameter
 * becomes "REDACTED". Returns path itself when there is nothing to hide. */
static const char *redact(const char *path, char *buf, size_t cap) {
  const char *q = strchr(path, '?');
  if (!q || (!strstr(q, "token=") && !strcasestr(q, "token="))) return path;
  size_t o = 0;
  const char *p = path;
  while (*p && o + 1 < cap) {
    buf[o++] = *p;
    if ((*p == '?' || *p == '&' || *p == ';') && p >= q) {
      const char *k = p + 1, *eq = k;
      while (*eq && *eq != '=' && *eq != '&' && *eq != '#')
        eq++;
      size_t kl = (size_t)(eq - k);
      if (*eq == '=' && ((kl == 5 && strncasecmp(k, "token", 5) == 0) ||
                         (kl == 12 && strncasecmp(k, "access_token", 12) == 0))) {
        for (const char *x = k; x <= eq && o + 1 < cap; x++)
          buf[o++] = *x;
        for (const char *r = "REDACTED"; *r && o + 1 < cap; r++)
          buf[o++] = *r;
        p = eq + 1;
        while (*p && *p != '&' && *p != '#' && *p != ';')
          p++;
        continue;
      }
    }
    p++;
  }
  buf[o] = 0;
  return buf;
}

/* v in decimal at out (room for 20 digits), no NUL; returns the length. Per response, so no
 * snprintf. */
static size_t fmt_u64(char *out, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++)
    out[i] = tmp[n - 1 - i];
  return n;
}

void http__record(http_server_t *s, const char *method, const char *route, const char *path,
                  int status, uint64_t start_ns, const char *rid, const char *remote,
                  const char *listener, int aborted) {
  uint64_t now = uv_hrtime();
  double secs = now > start_ns ? (double)(now - start_ns) / 1e9 : 0.0;
  char st[24];
  st[fmt_u64(st, status > 0 ? (uint64_t)status : 0)] = 0;
  const char *r = route && *route ? route : "-";
  if (log_enabled(LOG_INFO)) {
    char dur[32], safe[2048];
    snprintf(dur, sizeof dur, "%.3f", secs * 1000.0);
    if (path) path = redact(path, safe, sizeof safe);
    log_field_t f[9] = {
        {"method", method ? method : "-", 0},
        {"route", r, 0},
        {"path", path ? path : "-", 0},
        {"status", st, 1},
        {"duration_ms", dur, 1},
        {"request_id", rid ? rid : "-", 0},
        {"remote", remote ? remote : "-", 0},
        {"listener", listener ? listener : "-", 0},
        {"aborted", "true", 1},
    };
    log_write(LOG_INFO, "request", f, aborted ? 9 : 8);
  }
  const char *lv[2] = {r, st};
  if (s->m_requests) metrics_inc(s->m_requests, lv, 1);
  if (s->m_duration) metrics_observe(s->m_duration, lv, secs);
}

int http__response_head(textbuf_t *b, http_server_t *s, int status, const http_header_t *hs,
                        size_t nh, size_t blen, int *keep, const char *rid, int http10) {
  for (size_t i = 0; i < nh; i++) {
    const char *n = hs[i].name, *v = hs[i].value;
    if (!n || !v) continue;
    size_t nl = hs[i].name_len ? hs[i].name_len : strlen(n);
    size_t vl = hs[i].value_len ? hs[i].value_len : strlen(v);
    if (str_eq_ci(n, nl, "connection") && vl >= 5) {
      for (size_t j = 0; j + 5 <= vl; j++)
        if (strncasecmp(v + j, "close", 5) == 0) *keep = 0;
    }
  }
  char num[24];
  textbuf_add(b, "HTTP/1.1 ", 9);
  textbuf_add(b, num, fmt_u64(num, status > 0 ? (uint64_t)status : 0));
  textbuf_add(b, " ", 1);
  textbuf_str(b, reason_phrase(status));
  textbuf_add(b, "\r\n", 2);
  int have_date = 0, have_rid = 0;
  for (size_t i = 0; i < nh; i++) {
    const char *n = hs[i].name, *v = hs[i].value;
    if (!n || !v) continue;
    size_t nl = hs[i].name_len ? hs[i].name_len : strlen(n);
    size_t vl = hs[i].value_len ? hs[i].value_len : strlen(v);
    int ok = nl > 0;
    for (size_t j = 0; ok && j < nl; j++)
      ok = is_tchar((unsigned char)n[j]);
    for (size_t j = 0; ok && j < vl; j++)
      ok = v[j] != '\r' && v[j] != '\n' && v[j] != 0;
    if (!ok) {
      log_warnf("http: dropping invalid response header %.*s", (int)(nl > 64 ? 64 : nl), n);
      continue;
    }
    if (str_eq_ci(n, nl, "content-length") || str_eq_ci(n, nl, "transfer-encoding") ||
        str_eq_ci(n, nl, "connection"))
      continue;
    if (str_eq_ci(n, nl, "date")) have_date = 1;
    if (str_eq_ci(n, nl, "x-request-id")) have_rid = 1;
    textbuf_add(b, n, nl);
    textbuf_add(b, ": ", 2);
    textbuf_add(b, v, vl);
    textbuf_add(b, "\r\n", 2);
  }
  if (!have_date) {
    textbuf_str(b, "Date: ");
    textbuf_str(b, date_now(s));
    textbuf_add(b, "\r\n", 2);
  }
  if (!have_rid && rid) {
    textbuf_str(b, "X-Request-Id: ");
    textbuf_str(b, rid);
    textbuf_add(b, "\r\n", 2);
  }
  int no_body = status < 200 || status == 204 || status == 304;
  if (!no_body) {
    textbuf_add(b, "Content-Length: ", 16);
    textbuf_add(b, num, fmt_u64(num, blen));
    textbuf_add(b, "\r\n", 2);
  }
  if (!*keep)
    textbuf_str(b, "Connection: close\r\n");
  else if (http10)
    textbuf_str(b, "Connection: keep-alive\r\n");
  textbuf_add(b, "\r\n", 2);
  return no_body;
}
