/* test_limiter.c - unit tests for rate limiters (runtime/core/limiter.c): token buckets, sliding
 * windows, reservations (lim:wait), idle-key dropping and the key cap. Time is a fake clock
 * passed as now_ms, so nothing here sleeps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limiter.h"

#include "check.h"

#define K(s) (s), strlen(s)
#define NEAR(a, b) (fabs((a) - (b)) < 1e-6)

static limiter_t *bucket(const char *name, double rate, double burst, size_t max_keys) {
  limiter_conf_t c = {.kind = LIMITER_BUCKET, .rate = rate, .burst = burst, .max_keys = max_keys};
  return limiter_get(name, &c, NULL);
}

static limiter_t *window(const char *name, double limit, double window_ms, size_t max_keys) {
  limiter_conf_t c = {
      .kind = LIMITER_WINDOW, .limit = limit, .window_ms = window_ms, .max_keys = max_keys};
  return limiter_get(name, &c, NULL);
}

static void test_bucket_basics(void) {
  limiter_t *l = bucket("b1", 10, 3, 0); /* 10/s, burst 3 */
  double ra = -5;
  CHECK(limiter_take(l, K("u"), 1, 0, &ra) == 1);
  CHECK(limiter_take(l, K("u"), 1, 0, &ra) == 1);
  CHECK(limiter_take(l, K("u"), 1, 0, &ra) == 1);
  CHECK(limiter_take(l, K("u"), 1, 0, &ra) == 0);
  CHECK(NEAR(ra, 100)); /* one token per 100 ms */
  CHECK(limiter_take(l, K("u"), 1, 50, &ra) == 0);
  CHECK(NEAR(ra, 50));
  CHECK(limiter_take(l, K("u"), 1, 100, &ra) == 1);
  /* other keys are independent */
  CHECK(limiter_take(l, K("v"), 3, 100, &ra) == 1);
  CHECK(limiter_take(l, K("v"), 1, 100, &ra) == 0);
  /* n > burst can never succeed */
  CHECK(limiter_take(l, K("w"), 4, 100, &ra) == 0);
  CHECK(ra == -1);
  CHECK(limiter_reserve(l, K("w"), 4, 100) == -1);
  /* a long idle period refills only up to burst */
  CHECK(limiter_take(l, K("u"), 3, 100000, &ra) == 1);
  CHECK(limiter_take(l, K("u"), 1, 100000, &ra) == 0);
  /* fractional rates: 1 per 3 s */
  limiter_t *slow = bucket("b_slow", 1.0 / 3.0, 1, 0);
  CHECK(limiter_take(slow, K("k"), 1, 0, &ra) == 1);
  CHECK(limiter_take(slow, K("k"), 1, 0, &ra) == 0);
  CHECK(NEAR(ra, 3000));
  CHECK(limiter_take(slow, K("k"), 1, 2999, &ra) == 0);
  CHECK(limiter_take(slow, K("k"), 1, 3000, &ra) == 1);
}

/* Takes every ms for 10 s: the count allowed is burst + rate * elapsed (within 1). */
static void test_bucket_accuracy(void) {
  limiter_t *l = bucket("b_acc", 50, 5, 0);
  int allowed = 0;
  for (int t = 0; t < 10000; t++)
    allowed += limiter_take(l, K("k"), 1, t, NULL) == 1;
  printf("     bucket 50/s burst 5 over 10 s: %d allowed (ideal %d)\n", allowed, 5 + 50 * 10);
  CHECK(abs(allowed - (5 + 50 * 10)) <= 1);
  /* and never more than burst + rate * t in any prefix */
  limiter_t *m = bucket("b_acc2", 7, 2, 0);
  int ok = 1, n = 0;
  for (int t = 0; t < 5000; t += 3) {
    n += limiter_take(m, K("k"), 1, t, NULL) == 1;
    if (n > 2 + 7.0 * t / 1000.0 + 1e-9) ok = 0;
  }
  CHECK(ok);
  CHECK(abs(n - (int)(2 + 7 * 4.998)) <= 1);
}

static void test_bucket_reserve(void) {
  limiter_t *l = bucket("b_res", 1, 1, 0); /* Telegram-style: 1 per second per chat */
  CHECK(limiter_reserve(l, K("chat"), 1, 0) == 0);
  CHECK(NEAR(limiter_reserve(l, K("chat"), 1, 0), 1000));
  CHECK(NEAR(limiter_reserve(l, K("chat"), 1, 0), 2000));
  CHECK(NEAR(limiter_reserve(l, K("chat"), 1, 500), 2500)); /* booked up to t=3000 */
  double ra;
  CHECK(limiter_take(l, K("chat"), 1, 2999, &ra) == 0); /* the bookings come first */
  CHECK(limiter_take(l, K("chat"), 1, 4000, &ra) == 1);
  /* a different chat is not delayed */
  CHECK(limiter_reserve(l, K("other"), 1, 0) == 0);
}

static void test_window_basics(void) {
  limiter_t *l = window("w1", 5, 1000, 0);
  double ra;
  for (int i = 0; i < 5; i++)
    CHECK(limiter_take(l, K("u"), 1, 0, &ra) == 1);
  CHECK(limiter_take(l, K("u"), 1, 0, &ra) == 0);
  CHECK(NEAR(ra, 1000));
  CHECK(limiter_take(l, K("u"), 1, 500, &ra) == 0);
  CHECK(NEAR(ra, 500));
  CHECK(limiter_take(l, K("u"), 1, 1000, &ra) == 1); /* the takes at 0 left the window */
  /* spread takes: the window slides */
  limiter_t *s = window("w2", 3, 1000, 0);
  CHECK(limiter_take(s, K("k"), 1, 0, &ra) == 1);
  CHECK(limiter_take(s, K("k"), 1, 400, &ra) == 1);
  CHECK(limiter_take(s, K("k"), 1, 800, &ra) == 1);
  CHECK(limiter_take(s, K("k"), 1, 900, &ra) == 0);
  CHECK(NEAR(ra, 100)); /* the take at 0 leaves at 1000 */
  CHECK(limiter_take(s, K("k"), 1, 1000, &ra) == 1);
  CHECK(limiter_take(s, K("k"), 1, 1001, &ra) == 0);
  CHECK(NEAR(ra, 399));
  /* n units at once */
  limiter_t *n = window("w3", 10, 1000, 0);
  CHECK(limiter_take(n, K("k"), 7, 0, &ra) == 1);
  CHECK(limiter_take(n, K("k"), 4, 10, &ra) == 0);
  CHECK(limiter_take(n, K("k"), 3, 10, &ra) == 1);
  CHECK(limiter_take(n, K("k"), 11, 10, &ra) == 0 && ra == -1);
}

/* Random take times over 20 s: no 1000 ms span ever holds more than limit, and the total is
 * what an exact sliding window allows. */
static void test_window_accuracy(void) {
  limiter_t *l = window("w_acc", 10, 1000, 0);
  double times[4096];
  int n = 0;
  srand(7);
  double t = 0;
  int attempts = 0;
  while (t < 20000 && n < 4096) {
    t += (double)(rand() % 50); /* ~40 attempts per second, 4x the limit */
    attempts++;
    if (limiter_take(l, K("k"), 1, t, NULL) == 1) times[n++] = t;
  }
  int worst = 0;
  for (int i = 0; i < n; i++) {
    int c = 0;
    for (int j = i; j < n && times[j] < times[i] + 1000; j++)
      c++;
    if (c > worst) worst = c;
  }
  printf("     window 10/1000ms over 20 s: %d allowed of %d, busiest 1000 ms span %d\n", n,
         attempts, worst);
  CHECK(worst <= 10);
  CHECK(n >= 190 && n <= 210);
}

static void test_window_reserve(void) {
  limiter_t *l = window("w_res", 2, 1000, 0);
  CHECK(limiter_reserve(l, K("k"), 1, 0) == 0);
  CHECK(limiter_reserve(l, K("k"), 1, 0) == 0);
  CHECK(NEAR(limiter_reserve(l, K("k"), 1, 0), 1000));
  CHECK(NEAR(limiter_reserve(l, K("k"), 1, 0), 1000));
  CHECK(NEAR(limiter_reserve(l, K("k"), 1, 0), 2000));
  double ra;
  CHECK(limiter_take(l, K("k"), 1, 1500, &ra) == 0);
}

static void test_idle_keys_dropped(void) {
  limiter_t *l = bucket("b_idle", 10, 1, 0);
  char key[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "user%d", i);
    if (limiter_take(l, K(key), 1, 0, NULL) != 1) g_fail++;
  }
  CHECK(limiter_key_count(l) == 1000);
  /* 100 ms later every bucket is full again: each operation drops a couple from the LRU end */
  for (int i = 0; i < 10; i++)
    limiter_take(l, K("fresh"), 1, 100 + i * 100, NULL);
  CHECK(limiter_key_count(l) < 1000);
  limiter_sweep(l, 2000);
  CHECK(limiter_key_count(l) == 0);
  /* a busy key is kept */
  limiter_take(l, K("busy"), 1, 3000, NULL);
  limiter_sweep(l, 3050);
  CHECK(limiter_key_count(l) == 1);
  /* windows: dropped once empty */
  limiter_t *w = window("w_idle", 3, 1000, 0);
  for (int i = 0; i < 500; i++) {
    snprintf(key, sizeof key, "chat%d", i);
    limiter_take(w, K(key), 1, 0, NULL);
  }
  CHECK(limiter_key_count(w) == 500);
  limiter_sweep(w, 999);
  CHECK(limiter_key_count(w) == 500);
  limiter_sweep(w, 1000);
  CHECK(limiter_key_count(w) == 0);
  /* steady traffic over many keys stays bounded without an explicit sweep */
  limiter_t *s = bucket("b_steady", 100, 1, 0);
  size_t most = 0;
  for (int t = 0; t < 100000; t++) {
    snprintf(key, sizeof key, "k%d", t); /* a new key every ms; each idle 10 ms later */
    limiter_take(s, K(key), 1, t, NULL);
    if (limiter_key_count(s) > most) most = limiter_key_count(s);
  }
  printf("     100000 one-off keys, most tracked at once: %zu\n", most);
  CHECK(most <= 20);
}

static void test_max_keys(void) {
  limiter_t *l = bucket("b_cap", 0.001, 1, 100); /* buckets stay empty: nothing is idle */
  char key[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    limiter_take(l, K(key), 1, i, NULL);
  }
  CHECK(limiter_key_count(l) == 100);
  /* the most recent keys are the ones kept */
  double ra;
  CHECK(limiter_take(l, K("k999"), 1, 1000, &ra) == 0);
  CHECK(limiter_take(l, K("k0"), 1, 1000, &ra) == 1); /* evicted: starts full again */
}

static void test_registry(void) {
  limiter_t *a = bucket("shared_name", 1, 1, 0);
  CHECK(limiter_take(a, K("x"), 1, 0, NULL) == 1);
  limiter_t *b = bucket("shared_name", 2, 1, 0); /* same name: same limiter, options updated */
  CHECK(a == b);
  CHECK(limiter_find("shared_name") == a);
  CHECK(limiter_conf(a)->rate == 2);
  CHECK(limiter_take(b, K("x"), 1, 0, NULL) == 0); /* state kept */
  CHECK(strcmp(limiter_name(a), "shared_name") == 0);
  /* a smaller burst clamps existing buckets */
  limiter_t *c = bucket("clamp", 1, 10, 0);
  limiter_take(c, K("x"), 1, 0, NULL); /* 9 left */
  bucket("clamp", 1, 2, 0);
  CHECK(limiter_take(c, K("x"), 2, 0, NULL) == 1);
  CHECK(limiter_take(c, K("x"), 1, 0, NULL) == 0);
  /* a change of kind drops the keys */
  int changed = 0;
  limiter_conf_t wc = {.kind = LIMITER_WINDOW, .limit = 1, .window_ms = 1000};
  limiter_t *d = limiter_get("shared_name", &wc, &changed);
  CHECK(d == a && changed == 1);
  CHECK(limiter_key_count(d) == 0);
  CHECK(limiter_take(d, K("x"), 1, 0, NULL) == 1);
  CHECK(limiter_take(d, K("x"), 1, 0, NULL) == 0);
  /* reset forgets one key */
  CHECK(limiter_reset_key(d, K("x")) == 1);
  CHECK(limiter_reset_key(d, K("x")) == 0);
  CHECK(limiter_take(d, K("x"), 1, 0, NULL) == 1);
  /* binary keys */
  limiter_t *e = bucket("binary", 1, 1, 0);
  CHECK(limiter_take(e, "a\0b", 3, 1, 0, NULL) == 1);
  CHECK(limiter_take(e, "a\0c", 3, 1, 0, NULL) == 1);
  CHECK(limiter_take(e, "a\0b", 3, 1, 0, NULL) == 0);
}

/* peek answers what take would, and takes nothing */
static void test_peek(void) {
  limiter_t *b = bucket("b_peek", 10, 2, 0);
  double ra = -5;
  CHECK(limiter_peek(b, K("u"), 1, 0, &ra) == 1);
  CHECK(limiter_key_count(b) == 0); /* an untracked key stays untracked */
  CHECK(limiter_take(b, K("u"), 2, 0, &ra) == 1);
  CHECK(limiter_peek(b, K("u"), 1, 0, &ra) == 0);
  CHECK(NEAR(ra, 100));
  CHECK(limiter_peek(b, K("u"), 1, 0, &ra) == 0); /* still: nothing was booked */
  CHECK(NEAR(ra, 100));
  CHECK(limiter_peek(b, K("u"), 1, 100, &ra) == 1);
  CHECK(limiter_peek(b, K("u"), 1, 100, &ra) == 1);
  CHECK(limiter_take(b, K("u"), 1, 100, &ra) == 1);
  CHECK(limiter_peek(b, K("u"), 3, 100, &ra) == 0 && ra == -1); /* > burst: never */
  limiter_t *w = window("w_peek", 2, 1000, 0);
  CHECK(limiter_take(w, K("k"), 2, 0, &ra) == 1);
  CHECK(limiter_peek(w, K("k"), 1, 500, &ra) == 0);
  CHECK(NEAR(ra, 500));
  CHECK(limiter_peek(w, K("k"), 1, 1000, &ra) == 1);
  CHECK(limiter_peek(w, K("k"), 1, 1000, &ra) == 1);
  CHECK(limiter_take(w, K("k"), 2, 1000, &ra) == 1);
  CHECK(limiter_take(w, K("k"), 1, 1000, &ra) == 0);
}

int main(void) {
  test_bucket_basics();
  test_bucket_accuracy();
  test_bucket_reserve();
  test_window_basics();
  test_window_accuracy();
  test_window_reserve();
  test_idle_keys_dropped();
  test_max_keys();
  test_registry();
  test_peek();
  limiter_free_all();
  return check_report();
}
