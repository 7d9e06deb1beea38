/* strutil.h - small string helpers shared by the layers above: ASCII case-insensitive
 * comparison, comma-separated token lists, bearer credentials and a constant-time compare. */
#ifndef CHATGW_STRUTIL_H
#define CHATGW_STRUTIL_H

#include <stddef.h>

/* 1 if a[0..alen) equals the C string b, ignoring ASCII case. */
int str_eq_ci(const char *a, size_t alen, const char *b);

/* 1 if the comma-separated list (an HTTP header value like "keep-alive, Upgrade") holds token,
 * ignoring ASCII case and the spaces around each item. */
int str_list_has(const char *list, const char *token);

/* The credentials of an "Authorization: Bearer <token>" value (scheme case-insensitive). Returns
 * 1 and sets *tok and *toklen (not NUL-terminated, may be empty), or 0 when it is not a bearer
 * value. */
int str_bearer(const char *value, size_t len, const char **tok, size_t *toklen);

/* 1 if given[0..glen) equals secret[0..slen). The time taken depends only on slen (the secret's
 * length, which an attacker cannot choose), never on where the strings differ. */
int str_ct_equal(const void *given, size_t glen, const void *secret, size_t slen);

#endif
