/* log.c - structured logging to stderr (see log.h). */
#include "log.h"

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

/* Appends s as a JSON string body (without quotes) to f. */
static void json_escape(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"':
      fputs("\\\"", f);
      break;
    case '\\':
      fputs("\\\\", f);
      break;
    case '\n':
      fputs("\\n", f);
      break;
    case '\r':
      fputs("\\r", f);
      break;
    case '\t':
      fputs("\\t", f);
      break;
    default:
      if (*p < 0x20)
        fprintf(f, "\\u%04x", *p);
      else
        fputc(*p, f);
    }
  }
}

static void format_ts(char *buf, size_t len) {
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, len - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

void log_write(log_level_t level, const char *msg, const log_field_t *fields, size_t nfields) {
  if (!log_enabled(level)) return;
  char ts[40];
  format_ts(ts, sizeof ts);
  /* Build the line in memory and write it with one call so lines never interleave. */
  char *line = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&line, &len);
  if (!f) return;
  if (g_json) {
    fprintf(f, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, log_level_name(level));
    json_escape(f, msg ? msg : "");
    fputc('"', f);
    for (size_t i = 0; i < nfields; i++) {
      if (!fields[i].key || !fields[i].value) continue;
      fputs(",\"", f);
      json_escape(f, fields[i].key);
      fputs("\":", f);
      if (fields[i].is_raw) {
        fputs(fields[i].value, f);
      } else {
        fputc('"', f);
        json_escape(f, fields[i].value);
        fputc('"', f);
      }
    }
    fputs("}\n", f);
  } else {
    char upper[8];
    const char *n = log_level_name(level);
    size_t i = 0;
    for (; n[i] && i < sizeof upper - 1; i++)
      upper[i] = (char)(n[i] - 32);
    upper[i] = 0;
    fprintf(f, "%s %-5s %s", ts, upper, msg ? msg : "");
    for (size_t j = 0; j < nfields; j++) {
      if (!fields[j].key || !fields[j].value) continue;
      fprintf(f, strchr(fields[j].value, ' ') && !fields[j].is_raw ? " %s=\"%s\"" : " %s=%s",
              fields[j].key, fields[j].value);
    }
    fputc('\n', f);
  }
  fclose(f);
  /* stderr is unbuffered; a single write keeps the line atomic for pipes. */
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(STDERR_FILENO, line + off, len - off);
    if (w <= 0) break;
    off += (size_t)w;
  }
  free(line);
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
