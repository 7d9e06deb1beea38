/* limiter.h - named rate limiters kept in C (they survive Lua reloads), keyed by any string.
 *
 * Two kinds:
 * - token bucket: `rate` tokens per second refill a bucket of `burst` tokens; a take of n
 *   needs n tokens. A new key starts with a full bucket.
 * - sliding window: at most `limit` units in any `window_ms` span (an exact log of the takes
 *   in the window, stored as (time, n) pairs).
 *
 * take() answers now: allowed, or not with the time until it would be. reserve() always books
 * the units and returns how long the caller must wait before using them (0 = now): waiters are
 * served in arrival order and never exceed the rate.
 *
 * Memory stays bounded: a key whose bucket is full again (or whose window is empty) holds no
 * information and is dropped, a few at a time from the least recently used end on every
 * operation; and at most max_keys keys are kept (when full, idle keys go first, then the least
 * recently used key). Time is passed in (milliseconds, any monotonic origin) so tests can use a
 * fake clock. */
#ifndef CHATGW_LIMITER_H
#define CHATGW_LIMITER_H

#include <stddef.h>

typedef struct limiter limiter_t;

typedef enum { LIMITER_BUCKET = 0, LIMITER_WINDOW = 1 } limiter_kind_t;

#define LIMITER_DEFAULT_MAX_KEYS 10000

/* One token bucket on its own, for a rate that needs no name or key table (e.g. each
 * WebSocket connection's inbound messages). The limiters' buckets are the same thing. */
typedef struct {
  double tokens;
  double last_ms;
} token_bucket_t;

void token_bucket_init(token_bucket_t *b, double burst, double now_ms); /* starts full */
/* Refills at rate tokens/s up to burst, then takes n: 1, or 0 with *retry_ms (may be NULL) set
 * to the wait until n tokens are there. */
int token_bucket_take(token_bucket_t *b, double rate, double burst, double n, double now_ms,
                      double *retry_ms);

typedef struct {
  limiter_kind_t kind;
  double rate;      /* bucket: tokens per second (> 0) */
  double burst;     /* bucket: capacity (>= 1) */
  double limit;     /* window: units per window (>= 1) */
  double window_ms; /* window: span in ms (> 0) */
  size_t max_keys;  /* 0 = LIMITER_DEFAULT_MAX_KEYS */
} limiter_conf_t;

/* The limiter called name: created with conf, or the existing one with its options updated to
 * conf (keys are kept; a change of kind drops them). *kind_changed (may be NULL) says so. NULL
 * on OOM. */
limiter_t *limiter_get(const char *name, const limiter_conf_t *conf, int *kind_changed);
limiter_t *limiter_find(const char *name);
void limiter_free_all(void); /* at process exit */

const char *limiter_name(const limiter_t *l);
const limiter_conf_t *limiter_conf(const limiter_t *l);
/* burst (bucket) or limit (window): a take of more can never succeed. */
double limiter_capacity(const limiter_t *l);

/* 1 allowed (n units taken), 0 not allowed (*retry_after_ms, may be NULL, set to the wait
 * until it would be), -1 out of memory. n > capacity: 0 with retry_after -1 (never). */
int limiter_take(limiter_t *l, const char *key, size_t klen, double n, double now_ms,
                 double *retry_after_ms);
/* What take() would answer now, without taking anything (1 or 0 with *retry_after_ms): lets a
 * caller that needs several limiters at once (a chat, its group, the bot) take from all of
 * them or from none. */
int limiter_peek(limiter_t *l, const char *key, size_t klen, double n, double now_ms,
                 double *retry_after_ms);
/* Books n units: returns the ms to wait before using them (0 = now), -1 on OOM or when
 * n > capacity. */
double limiter_reserve(limiter_t *l, const char *key, size_t klen, double n, double now_ms);
/* Forgets key (its bucket is full / window empty again). 1 if it was tracked. */
int limiter_reset_key(limiter_t *l, const char *key, size_t klen);
size_t limiter_key_count(const limiter_t *l);
/* Drops every idle key now (the operations do this a few keys at a time). */
void limiter_sweep(limiter_t *l, double now_ms);

#endif
