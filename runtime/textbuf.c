/* textbuf.c - growable NUL-terminated byte strings (see textbuf.h). */
#include "textbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int textbuf_reserve(textbuf_t *b, size_t extra) {
  if (b->oom) return -1;
  if (b->len + extra + 1 <= b->cap) return 0;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap < b->len + extra + 1)
    ncap *= 2;
  char *np = realloc(b->p, ncap);
  if (!np) {
    b->oom = 1;
    return -1;
  }
  b->p = np;
  b->cap = ncap;
  return 0;
}

int textbuf_add(textbuf_t *b, const void *s, size_t n) {
  if (textbuf_reserve(b, n) != 0) return -1;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
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

void textbuf_free(textbuf_t *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}
