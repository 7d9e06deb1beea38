/* log.c - structured logging to stderr (see log.h). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

static log_level_t g_level = LOG_INFO;
static int g_json = 1;

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};

void log_init(void) {
  g_json = !isatty(STDERR_FILENO);
}

void log_set_json(int json) {
  g_json = json;
}

void log_set_level(log_level_t level) {
  g_level = level;
}

log_level_t log_get_level(void) {
  return g_level;
}

int log_enabled(log_level_t level) {
  return level >= g_level;
}

const char *log_level_name(log_level_t level) {
  return (unsigned)level <= LOG_ERROR ? LEVEL_NAMES[level] : "info";
}

int log_level_parse(const char *name, log_level_t *out) {
  for (int i = 0; i <= LOG_ERROR; i++) {
    if (strcasecmp(name, LEVEL_NAMES[i]) == 0) {
      *out = (log_level_t)i;
      return 0;
    }
  }
  if (strcasecmp(name, "warning") == 0) {
    *out = LOG_WARN;
    return 0;
  }
  return -1;
}

/* A line being built: on the stack when it fits, on the heap when it does not. */
typedef struct {
  char *p;
  size_t len, cap;
  int heap;
  char stack[2048];
} line_t;

static void line_put(line_t *l, const char *s, size_t n) {
  if (l->len + n > l->cap) {
    size_t cap = l->cap * 2;
    while (cap < l->len + n)
      cap *= 2;
    char *np = l->heap ? realloc(l->p, cap) : malloc(cap);
    if (!np) return; /* drop the rest of an enormous line rather than fail */
    if (!l->heap) memcpy(np, l->p, l->len);
    l->p = np;
    l->cap = cap;
    l->heap = 1;
  }
  memcpy(l->p + l->len, s, n);
  l->len += n;
}

static void line_puts(line_t *l, const char *s) {
  line_put(l, s, strlen(s));
}

/* Appends s as the body of a JSON string (without quotes). */
static void json_escape(line_t *l, const char *s) {
  const char *run = s;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    const char *esc = NULL;
    char u[8];
    switch (*p) {
    case '"':
      esc = "\\\"";
      break;
    case '\\':
      esc = "\\\\";
      break;
    case '\n':
      esc = "\\n";
      break;
    case '\r':
      esc = "\\r";
      break;
    case '\t':
      esc = "\\t";
      break;
    default:
      if (*p < 0x20) {
        snprintf(u, sizeof u, "\\u%04x", *p);
        esc = u;
      }
    }
    if (esc) {
      line_put(l, run, (size_t)((const char *)p - run));
      line_puts(l, esc);
      run = (const char *)p + 1;
    }
  }
  line_puts(l, run);
}

/* The timestamp, formatted once per millisecond at most. */
static const char *format_ts(void) {
  static char buf[40];
  static long last_sec = -1, last_ms = -1;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  long ms = (long)(tv.tv_usec / 1000);
  if (tv.tv_sec != last_sec) {
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    last_sec = tv.tv_sec;
    last_ms = -1;
  }
  if (ms != last_ms) {
    snprintf(buf + 19, sizeof buf - 19, ".%03ldZ", ms);
    last_ms = ms;
  }
  return buf;
}

/* Buffered output: lines collect here and are written once per loop turn (log_flush),
 * so a busy server makes one write for many access lines. Errors are written at once. */
static char g_out[64 * 1024];
static size_t g_out_len;
static int g_buffered;

static void write_all(const char *p, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(STDERR_FILENO, p + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
}

void log_flush(void) {
  if (g_out_len) write_all(g_out, g_out_len);
  g_out_len = 0;
}

void log_set_buffered(int on) {
  if (!on) log_flush();
  g_buffered = on;
}

static void emit(log_level_t level, const char *p, size_t len) {
  if (!g_buffered || level >= LOG_ERROR || len > sizeof g_out) {
    log_flush();
    write_all(p, len);
    return;
  }
  if (g_out_len + len > sizeof g_out) log_flush();
  memcpy(g_out + g_out_len, p, len);
  g_out_len += len;
}

void log_write(log_level_t level, const char *msg, const log_field_t *fields, size_t nfields) {
  if (!log_enabled(level)) return;
  line_t l;
  l.p = l.stack;
  l.len = 0;
  l.cap = sizeof l.stack;
  l.heap = 0;
  const char *ts = format_ts();
  if (g_json) {
    line_puts(&l, "{\"ts\":\"");
    line_puts(&l, ts);
    line_puts(&l, "\",\"level\":\"");
    line_puts(&l, log_level_name(level));
    line_puts(&l, "\",\"msg\":\"");
    json_escape(&l, msg ? msg : "");
    line_put(&l, "\"", 1);
    for (size_t i = 0; i < nfields; i++) {
      if (!fields[i].key || !fields[i].value) continue;
      line_puts(&l, ",\"");
      json_escape(&l, fields[i].key);
      line_puts(&l, "\":");
      if (fields[i].is_raw) {
        line_puts(&l, fields[i].value);
      } else {
        line_put(&l, "\"", 1);
        json_escape(&l, fields[i].value);
        line_put(&l, "\"", 1);
      }
    }
    line_puts(&l, "}\n");
  } else {
    static const char *const UPPER[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    line_puts(&l, ts);
    line_put(&l, " ", 1);
    line_puts(&l, UPPER[(unsigned)level <= LOG_ERROR ? level : LOG_INFO]);
    line_put(&l, " ", 1);
    line_puts(&l, msg ? msg : "");
    for (size_t j = 0; j < nfields; j++) {
      if (!fields[j].key || !fields[j].value) continue;
      int quote = !fields[j].is_raw && strchr(fields[j].value, ' ');
      line_put(&l, " ", 1);
      line_puts(&l, fields[j].key);
      line_puts(&l, quote ? "=\"" : "=");
      line_puts(&l, fields[j].value);
      if (quote) line_put(&l, "\"", 1);
    }
    line_put(&l, "\n", 1);
  }
  emit(level, l.p, l.len);
  if (l.heap) free(l.p);
}

void log_msgf(log_level_t level, const char *fmt, ...) {
  if (!log_enabled(level)) return;
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  log_write(level, buf, NULL, 0);
}
