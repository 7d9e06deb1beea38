/* textbuf.c - growable NUL-terminated byte strings (see textbuf.h). */
#include "textbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void textbuf_init_on(textbuf_t *b, char *storage, size_t cap) {
  memset(b, 0, sizeof *b);
  b->p = storage;
  b->cap = cap;
  b->borrowed = 1;
  if (cap) storage[0] = 0;
}

int textbuf_reserve(textbuf_t *b, size_t extra) {
  if (b->oom) return -1;
  if (b->len + extra + 1 <= b->cap) return 0;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap < b->len + extra + 1)
    ncap *= 2;
  char *np = b->borrowed ? malloc(ncap) : realloc(b->p, ncap);
  if (!np) {
    b->oom = 1;
    return -1;
  }
  if (b->borrowed && b->len) memcpy(np, b->p, b->len);
  b->borrowed = 0;
  b->p = np;
  b->cap = ncap;
  return 0;
}

void textbuf_str(textbuf_t *b, const char *s) {
  textbuf_add(b, s, strlen(s));
}

void textbuf_fmt(textbuf_t *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  textbuf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

void textbuf_json(textbuf_t *b, const char *s) {
  const char *run = s;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p >= 0x20 && *p != '"' && *p != '\\') continue;
    char esc[8];
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      esc[2] = 0;
    } else if (*p == '\n') {
      memcpy(esc, "\\n", 3);
    } else if (*p == '\r') {
      memcpy(esc, "\\r", 3);
    } else if (*p == '\t') {
      memcpy(esc, "\\t", 3);
    } else {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
    }
    textbuf_add(b, run, (size_t)((const char *)p - run));
    textbuf_str(b, esc);
    run = (const char *)p + 1;
  }
  textbuf_str(b, run);
}

void textbuf_json_str(textbuf_t *b, const char *s) {
  if (!s) {
    textbuf_add(b, "null", 4);
    return;
  }
  textbuf_add(b, "\"", 1);
  textbuf_json(b, s);
  textbuf_add(b, "\"", 1);
}

void textbuf_free(textbuf_t *b) {
  if (!b->borrowed) free(b->p);
  memset(b, 0, sizeof *b);
}
