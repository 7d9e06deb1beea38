/* log.c - structured logging to stderr (see log.h). */
#include "log.h"

#include "textbuf.h"

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

static char g_node[128];

void log_set_node(const char *id) {
  snprintf(g_node, sizeof g_node, "%s", id ? id : "");
}

void log_write(log_level_t level, const char *msg, const log_field_t *fields, size_t nfields) {
  if (!log_enabled(level)) return;
  char stack[2048]; /* most lines fit; an enormous one moves to the heap */
  textbuf_t l;
  textbuf_init_on(&l, stack, sizeof stack);
  const char *ts = format_ts();
  if (g_json) {
    textbuf_str(&l, "{\"ts\":\"");
    textbuf_str(&l, ts);
    textbuf_str(&l, "\",\"level\":\"");
    textbuf_str(&l, log_level_name(level));
    textbuf_str(&l, "\",\"msg\":");
    textbuf_json_str(&l, msg ? msg : "");
    if (g_node[0]) {
      textbuf_str(&l, ",\"node\":");
      textbuf_json_str(&l, g_node);
    }
    for (size_t i = 0; i < nfields; i++) {
      if (!fields[i].key || !fields[i].value) continue;
      textbuf_add(&l, ",", 1);
      textbuf_json_str(&l, fields[i].key);
      textbuf_add(&l, ":", 1);
      if (fields[i].is_raw)
        textbuf_str(&l, fields[i].value);
      else
        textbuf_json_str(&l, fields[i].value);
    }
    textbuf_str(&l, "}\n");
  } else {
    static const char *const UPPER[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    textbuf_str(&l, ts);
    textbuf_add(&l, " ", 1);
    textbuf_str(&l, UPPER[(unsigned)level <= LOG_ERROR ? level : LOG_INFO]);
    textbuf_add(&l, " ", 1);
    textbuf_str(&l, msg ? msg : "");
    if (g_node[0]) {
      textbuf_str(&l, " node=");
      textbuf_str(&l, g_node);
    }
    for (size_t j = 0; j < nfields; j++) {
      if (!fields[j].key || !fields[j].value) continue;
      int quote = !fields[j].is_raw && strchr(fields[j].value, ' ');
      textbuf_add(&l, " ", 1);
      textbuf_str(&l, fields[j].key);
      textbuf_str(&l, quote ? "=\"" : "=");
      textbuf_str(&l, fields[j].value);
      if (quote) textbuf_add(&l, "\"", 1);
    }
    textbuf_add(&l, "\n", 1);
  }
  emit(level, l.p, l.len); /* after an allocation failure: what fitted, cut short */
  textbuf_free(&l);
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
