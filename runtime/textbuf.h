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

typedef struct {
  char *p;    /* NULL until the first append */
  size_t len; /* bytes in p, not counting the NUL */
  size_t cap;
  int oom;
} textbuf_t;

/* Makes room for extra more bytes (and the NUL). Returns 0, or -1 after a failed allocation
 * (then and from then on oom is set). */
int textbuf_reserve(textbuf_t *b, size_t extra);
/* Appends n bytes. Returns 0, or -1 once oom is set. */
int textbuf_add(textbuf_t *b, const void *s, size_t n);
/* Appends the C string s. */
void textbuf_str(textbuf_t *b, const char *s);
/* Appends printf output, at most 255 bytes of it. */
void textbuf_fmt(textbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees p and resets b to {0}. */
void textbuf_free(textbuf_t *b);

#endif
