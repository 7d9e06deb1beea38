/* strutil.c - small string helpers (see strutil.h). */
#include "strutil.h"

#include <string.h>
#include <strings.h>

int str_eq_ci(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  return alen == blen && strncasecmp(a, b, blen) == 0;
}

int str_list_has(const char *v, const char *token) {
  size_t tl = strlen(token);
  while (v && *v) {
    while (*v == ' ' || *v == '\t' || *v == ',')
      v++;
    const char *e = v;
    while (*e && *e != ',')
      e++;
    const char *te = e;
    while (te > v && (te[-1] == ' ' || te[-1] == '\t'))
      te--;
    if ((size_t)(te - v) == tl && strncasecmp(v, token, tl) == 0) return 1;
    v = e;
  }
  return 0;
}

int str_bearer(const char *value, size_t len, const char **tok, size_t *toklen) {
  if (!value || len < 7 || strncasecmp(value, "Bearer ", 7) != 0) return 0;
  *tok = value + 7;
  *toklen = len - 7;
  return 1;
}

int str_ct_equal(const void *given, size_t glen, const void *secret, size_t slen) {
  const unsigned char *g = given, *s = secret;
  unsigned diff = glen != slen;
  for (size_t i = 0; i < slen; i++)
    diff |= s[i] ^ (i < glen ? g[i] : 0u);
  return diff == 0;
}
