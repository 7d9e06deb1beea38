/* test_breaker.c - unit tests for circuit breakers (runtime/core/breaker.c): consecutive and ratio
 * trips, OPEN rejection with retry time, HALF_OPEN trials, the growing capped open time, stale
 * tickets, the registry. Time is a fake clock passed as now_ms. */
#include <stdio.h>
#include <string.h>

#include "breaker.h"

#include "check.h"

/* Transitions seen by the observer, as "closed>open,open>half_open,..." */
static char g_log[1024];

static void observe(breaker_t *b, breaker_state_t from, breaker_state_t to) {
  (void)b;
  size_t n = strlen(g_log);
  snprintf(g_log + n, sizeof g_log - n, "%s%s>%s", n ? "," : "", breaker_state_name(from),
           breaker_state_name(to));
}

static breaker_conf_t conf(unsigned failures, double open_ms, double max_open_ms) {
  breaker_conf_t c;
  breaker_conf_default(&c);
  c.failures = failures;
  c.open_ms = open_ms;
  c.max_open_ms = max_open_ms;
  return c;
}

/* One call at now with the given outcome; returns 1 if it was admitted. */
static int call(breaker_t *b, double now, breaker_result_t r) {
  uint64_t t;
  double ra;
  if (!breaker_acquire(b, now, &t, &ra)) return 0;
  breaker_record(b, t, r, now);
  return 1;
}

static void test_defaults(void) {
  breaker_conf_t c;
  breaker_conf_default(&c);
  CHECK(c.failures == 5 && c.ratio == 0.5 && c.min_calls == 20);
  CHECK(c.window_ms == 60000 && c.open_ms == 30000 && c.max_open_ms == 300000);
  CHECK(c.half_open_calls == 1);
}

static void test_consecutive(void) {
  g_log[0] = 0;
  breaker_conf_t c = conf(3, 1000, 8000);
  breaker_t *b = breaker_get("consec", &c);
  CHECK(breaker_state(b, 0) == BREAKER_CLOSED);
  CHECK(call(b, 0, BREAKER_FAILURE));
  CHECK(call(b, 1, BREAKER_FAILURE));
  CHECK(call(b, 2, BREAKER_SUCCESS)); /* resets the streak */
  CHECK(call(b, 3, BREAKER_FAILURE));
  CHECK(call(b, 4, BREAKER_FAILURE));
  CHECK(breaker_state(b, 4) == BREAKER_CLOSED);
  CHECK(call(b, 5, BREAKER_FAILURE));
  CHECK(breaker_state(b, 5) == BREAKER_OPEN);
  CHECK(strcmp(g_log, "closed>open") == 0);
  /* OPEN: rejected at once with the time left */
  uint64_t t;
  double ra;
  CHECK(breaker_acquire(b, 405, &t, &ra) == 0);
  CHECK(ra == 600);
  breaker_stats_t st;
  breaker_stats(b, 405, &st);
  CHECK(st.rejections == 1 && st.opens == 1 && st.retry_after_ms == 600);
  /* after open_ms: HALF_OPEN, one trial; a second caller is rejected meanwhile */
  CHECK(breaker_state(b, 1005) == BREAKER_HALF_OPEN);
  uint64_t trial;
  CHECK(breaker_acquire(b, 1005, &trial, &ra) == 1);
  CHECK(breaker_acquire(b, 1006, &t, &ra) == 0);
  CHECK(ra > 0 && ra <= 1000);
  /* the trial fails: OPEN again for twice as long */
  breaker_record(b, trial, BREAKER_FAILURE, 1010);
  CHECK(breaker_state(b, 1010) == BREAKER_OPEN);
  CHECK(breaker_acquire(b, 1010, &t, &ra) == 0 && ra == 2000);
  CHECK(breaker_state(b, 3009) == BREAKER_OPEN);
  CHECK(breaker_state(b, 3010) == BREAKER_HALF_OPEN);
  CHECK(call(b, 3010, BREAKER_FAILURE)); /* 4000 */
  CHECK(breaker_acquire(b, 3010, &t, &ra) == 0 && ra == 4000);
  CHECK(call(b, 7010, BREAKER_FAILURE));  /* 8000 */
  CHECK(call(b, 15010, BREAKER_FAILURE)); /* capped at 8000 */
  CHECK(breaker_acquire(b, 15010, &t, &ra) == 0 && ra == 8000);
  CHECK(breaker_open_ms(b) == 8000);
  /* a successful trial closes it and the open time starts over */
  CHECK(call(b, 23010, BREAKER_SUCCESS));
  CHECK(breaker_state(b, 23010) == BREAKER_CLOSED);
  CHECK(breaker_open_ms(b) == 1000);
  for (int i = 0; i < 3; i++)
    call(b, 23020 + i, BREAKER_FAILURE);
  CHECK(breaker_acquire(b, 23030, &t, &ra) == 0 && ra == 1000 - 8);
  printf("     transitions: %s\n", g_log);
  CHECK(strcmp(g_log, "closed>open,open>half_open,half_open>open,open>half_open,half_open>open,"
                      "open>half_open,half_open>open,open>half_open,half_open>open,"
                      "open>half_open,half_open>closed,closed>open") == 0);
}

static void test_half_open_calls(void) {
  breaker_conf_t c = conf(1, 100, 1000);
  c.half_open_calls = 3;
  breaker_t *b = breaker_get("trials", &c);
  call(b, 0, BREAKER_FAILURE);
  CHECK(breaker_state(b, 0) == BREAKER_OPEN);
  uint64_t t1, t2, t3, t4;
  double ra;
  CHECK(breaker_acquire(b, 100, &t1, &ra) == 1);
  CHECK(breaker_acquire(b, 100, &t2, &ra) == 1);
  CHECK(breaker_acquire(b, 100, &t3, &ra) == 1);
  CHECK(breaker_acquire(b, 100, &t4, &ra) == 0); /* only 3 trials */
  breaker_record(b, t1, BREAKER_SUCCESS, 101);
  breaker_record(b, t2, BREAKER_SUCCESS, 102);
  CHECK(breaker_state(b, 102) == BREAKER_HALF_OPEN);
  breaker_stats_t st;
  breaker_stats(b, 102, &st);
  CHECK(st.half_open_inflight == 3 && st.half_open_successes == 2);
  breaker_record(b, t3, BREAKER_SUCCESS, 103);
  CHECK(breaker_state(b, 103) == BREAKER_CLOSED);
  /* an ignored trial (cancelled) frees its slot without deciding */
  call(b, 200, BREAKER_FAILURE);
  CHECK(breaker_acquire(b, 300, &t1, &ra) == 1);
  CHECK(breaker_acquire(b, 300, &t2, &ra) == 1);
  CHECK(breaker_acquire(b, 300, &t3, &ra) == 1);
  breaker_record(b, t3, BREAKER_IGNORE, 301);
  CHECK(breaker_acquire(b, 301, &t4, &ra) == 1);
  CHECK(breaker_state(b, 301) == BREAKER_HALF_OPEN);
}

static void test_ratio(void) {
  breaker_conf_t c = conf(0, 1000, 10000); /* consecutive rule off */
  c.ratio = 0.5;
  c.min_calls = 10;
  c.window_ms = 10000;
  breaker_t *b = breaker_get("ratio", &c);
  /* 9 failures in 9 calls: below min_calls */
  for (int i = 0; i < 9; i++)
    call(b, i * 10, BREAKER_FAILURE);
  CHECK(breaker_state(b, 100) == BREAKER_CLOSED);
  breaker_reset(b, 100);
  /* 5 of 10 is 0.5: not above the ratio */
  for (int i = 0; i < 5; i++)
    call(b, 200 + i, BREAKER_SUCCESS);
  for (int i = 0; i < 5; i++)
    call(b, 300 + i, BREAKER_FAILURE);
  CHECK(breaker_state(b, 400) == BREAKER_CLOSED);
  breaker_stats_t st;
  breaker_stats(b, 400, &st);
  CHECK(st.window_calls == 10 && st.window_failures == 5);
  call(b, 500, BREAKER_FAILURE); /* 6 of 11 */
  CHECK(breaker_state(b, 500) == BREAKER_OPEN);
  /* old calls leave the rolling window */
  breaker_reset(b, 600);
  for (int i = 0; i < 8; i++)
    call(b, 1000, BREAKER_FAILURE);
  for (int i = 0; i < 2; i++)
    call(b, 1000, BREAKER_SUCCESS);
  breaker_stats(b, 12000, &st);
  CHECK(st.window_calls == 0); /* the window moved on */
  for (int i = 0; i < 5; i++)
    call(b, 12000, BREAKER_SUCCESS);
  for (int i = 0; i < 5; i++)
    call(b, 12000, BREAKER_FAILURE);
  CHECK(breaker_state(b, 12000) == BREAKER_CLOSED);
  /* and the window slides bucket by bucket: calls from 9 s ago still count */
  breaker_reset(b, 20000);
  for (int i = 0; i < 6; i++)
    call(b, 20000, BREAKER_FAILURE);
  for (int i = 0; i < 4; i++)
    call(b, 29500, BREAKER_SUCCESS);
  breaker_stats(b, 29500, &st);
  CHECK(st.window_calls == 10 && st.window_failures == 6);
  CHECK(breaker_state(b, 29500) == BREAKER_CLOSED); /* ratio checked on failures */
  call(b, 29600, BREAKER_FAILURE);
  CHECK(breaker_state(b, 29600) == BREAKER_OPEN);
}

static void test_stale_tickets(void) {
  breaker_conf_t c = conf(2, 100, 1000);
  breaker_t *b = breaker_get("stale", &c);
  uint64_t slow, t;
  double ra;
  CHECK(breaker_acquire(b, 0, &slow, &ra) == 1); /* a slow call admitted while CLOSED */
  call(b, 1, BREAKER_FAILURE);
  call(b, 2, BREAKER_FAILURE);
  CHECK(breaker_state(b, 2) == BREAKER_OPEN);
  CHECK(breaker_acquire(b, 102, &t, &ra) == 1);  /* the trial */
  breaker_record(b, slow, BREAKER_SUCCESS, 103); /* the slow call ends: does not decide */
  CHECK(breaker_state(b, 103) == BREAKER_HALF_OPEN);
  breaker_record(b, t, BREAKER_SUCCESS, 104);
  CHECK(breaker_state(b, 104) == BREAKER_CLOSED);
  breaker_stats_t st;
  breaker_stats(b, 104, &st);
  CHECK(st.successes == 2 && st.failures == 2);
}

static void test_registry_reset_trip(void) {
  breaker_conf_t c = conf(1, 500, 5000);
  breaker_t *a = breaker_get("reg", &c);
  call(a, 0, BREAKER_FAILURE);
  CHECK(breaker_state(a, 0) == BREAKER_OPEN);
  breaker_conf_t c2 = conf(4, 700, 5000);
  breaker_t *b = breaker_get("reg", &c2); /* same name: same breaker, state kept */
  CHECK(a == b);
  CHECK(breaker_state(b, 10) == BREAKER_OPEN);
  CHECK(breaker_conf(b)->failures == 4 && breaker_conf(b)->open_ms == 700);
  CHECK(breaker_open_ms(b) == 700); /* raised to the new minimum */
  breaker_reset(b, 20);
  CHECK(breaker_state(b, 20) == BREAKER_CLOSED);
  breaker_trip(b, 30);
  CHECK(breaker_state(b, 30) == BREAKER_OPEN);
  uint64_t t;
  double ra;
  CHECK(breaker_acquire(b, 30, &t, &ra) == 0 && ra == 700);
  CHECK(strcmp(breaker_name(b), "reg") == 0);
  CHECK(strcmp(breaker_state_name(BREAKER_HALF_OPEN), "half_open") == 0);
}

int main(void) {
  breaker_set_observer(observe);
  test_defaults();
  test_consecutive();
  test_half_open_calls();
  test_ratio();
  test_stale_tickets();
  test_registry_reset_trip();
  breaker_free_all();
  return check_report();
}
