/* textbuf.h - a growable, NUL-terminated byte string for building text (HTTP response heads,
 * WebSocket JSON messages, Prometheus output) and for collecting outbound HTTP responses.
 *
 * Not named strbuf_*: chatgw exports its symbols to the Lua C modules it dlopens, and
 * lua-cjson's own strbuf_* functions would then bind to these.
 *
 * Start from {0}; every append leaves p NUL-terminated. A failed allocation sets oom and turns
 * every later append into a no-op, so a builder can append freely and check oom once at the
 * end. The caller owns p (free(p), or textbuf_free). */
#ifndef CHATGW_TEXTBUF_H
#define CHATGW_TEXTBUF_H

#include <stddef.h>
#include <string.h>

typedef struct {
  char *p;    /* NULL until the first append */
  size_t len; /* bytes in p, not counting the NUL */
  size_t cap;
  int oom;
  int borrowed; /* p is the caller's storage (textbuf_init_on): copied out when it grows */
} textbuf_t;

/* Starts b on the caller's storage (e.g. a stack array of cap bytes): no allocation until the
 * text outgrows it. Free with textbuf_free as usual (it frees only what it allocated). */
void textbuf_init_on(textbuf_t *b, char *storage, size_t cap);

/* Makes room for extra more bytes (and the NUL). Returns 0, or -1 after a failed allocation
 * (then and from then on oom is set). */
int textbuf_reserve(textbuf_t *b, size_t extra);
/* Appends n bytes. Returns 0, or -1 once oom is set. Inline: it is on every hot path (log
 * lines, response heads); textbuf_reserve is the slow path. */
static inline int textbuf_add(textbuf_t *b, const void *s, size_t n) {
  if ((b->oom || b->len + n >= b->cap) && textbuf_reserve(b, n) != 0) return -1;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
  return 0;
}
/* Appends the C string s. */
void textbuf_str(textbuf_t *b, const char *s);
/* Appends printf output, at most 255 bytes of it. */
void textbuf_fmt(textbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as the inside of a JSON string: quote, backslash and control characters escaped
 * (\n, \r, \t, else \u00XX); other bytes, UTF-8 included, as they are. */
void textbuf_json(textbuf_t *b, const char *s);
/* Appends s as a JSON string with its quotes; NULL appends null. */
void textbuf_json_str(textbuf_t *b, const char *s);
/* Frees p and resets b to {0}. */
void textbuf_free(textbuf_t *b);

#endif
