/* breaker.h - named circuit breakers kept in C (they survive Lua reloads).
 *
 * CLOSED: calls pass. It opens after `failures` consecutive failures (0 = rule off), or when
 *   over the rolling `window_ms` (10 buckets) at least `min_calls` calls were recorded and the
 *   failure ratio exceeds `ratio`.
 * OPEN: calls are rejected at once with the time left. After the open time it becomes
 *   HALF_OPEN on the next call. The open time starts at `open_ms`.
 * HALF_OPEN: up to `half_open_calls` trial calls are let through (others are rejected). When
 *   that many trials succeeded it CLOSES (open time back to open_ms); any trial failure
 *   re-OPENS it with the open time doubled, capped at `max_open_ms`.
 *
 * A call is admitted with a ticket and its outcome recorded with that ticket; outcomes of calls
 * admitted before the last state change are ignored (a slow call admitted while CLOSED does not
 * decide a HALF_OPEN trial). Time is passed in (ms, any monotonic origin) for testability. */
#ifndef CHATGW_BREAKER_H
#define CHATGW_BREAKER_H

#include <stdint.h>

typedef struct breaker breaker_t;

typedef enum { BREAKER_CLOSED = 0, BREAKER_OPEN = 1, BREAKER_HALF_OPEN = 2 } breaker_state_t;
typedef enum { BREAKER_SUCCESS = 0, BREAKER_FAILURE = 1, BREAKER_IGNORE = 2 } breaker_result_t;

#define BREAKER_WINDOW_BUCKETS 10

typedef struct {
  unsigned failures;        /* consecutive failures that open it; 0 = off. Default 5 */
  double ratio;             /* failure ratio (0..1) over the window that opens it. Default 0.5 */
  unsigned min_calls;       /* calls in the window before the ratio applies. Default 20 */
  double window_ms;         /* rolling window. Default 60000 */
  double open_ms;           /* first open time. Default 30000 */
  double max_open_ms;       /* cap of the growing open time. Default 300000 */
  unsigned half_open_calls; /* trial calls in HALF_OPEN, all must succeed. Default 1 */
} breaker_conf_t;

typedef struct {
  breaker_state_t state;
  unsigned consecutive_failures;
  uint64_t window_calls, window_failures;
  double open_ms;        /* the open time in force (grows while trials fail) */
  double retry_after_ms; /* OPEN: time until HALF_OPEN; else 0 */
  unsigned half_open_inflight, half_open_successes;
  uint64_t successes, failures, rejections, opens;
} breaker_stats_t;

typedef void (*breaker_observer_fn)(breaker_t *b, breaker_state_t from, breaker_state_t to);

void breaker_conf_default(breaker_conf_t *c);
/* Called on every state change (logging, metrics). One process-wide observer. */
void breaker_set_observer(breaker_observer_fn fn);

/* The breaker called name: created with conf (state CLOSED), or the existing one with conf
 * applied (its state is kept). NULL on OOM. */
breaker_t *breaker_get(const char *name, const breaker_conf_t *conf);
void breaker_free_all(void); /* at process exit */
const char *breaker_name(const breaker_t *b);
const breaker_conf_t *breaker_conf(const breaker_t *b);
/* The open time in force (open_ms, doubled by each failed trial, capped). */
double breaker_open_ms(const breaker_t *b);

/* 1 admitted (*ticket set), 0 rejected (*retry_after_ms set: OPEN: time until a trial may go;
 * HALF_OPEN with every trial slot taken: a short hint). */
int breaker_acquire(breaker_t *b, double now_ms, uint64_t *ticket, double *retry_after_ms);
void breaker_record(breaker_t *b, uint64_t ticket, breaker_result_t r, double now_ms);
/* The state at now (an OPEN breaker whose time is up reports HALF_OPEN). */
breaker_state_t breaker_state(breaker_t *b, double now_ms);
void breaker_stats(breaker_t *b, double now_ms, breaker_stats_t *out);
/* Force CLOSED (counters kept) or OPEN (for open_ms). */
void breaker_reset(breaker_t *b, double now_ms);
void breaker_trip(breaker_t *b, double now_ms);
const char *breaker_state_name(breaker_state_t s); /* "closed", "open", "half_open" */

#endif
