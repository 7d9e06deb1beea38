/* test_shared.c - unit tests for the shared dictionaries (runtime/core/shared.c). Time comes from a
 * test clock passed as now_ms, so nothing here sleeps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared.h"

#include "check.h"

/* Mirrors SHARED_ENTRY_OVERHEAD in shared.c (the documented per-entry cost). */
#define OVERHEAD 64

static shared_value_t str(const char *s) {
  shared_value_t v = {.type = SHARED_STRING, .str = s, .len = strlen(s)};
  return v;
}

static shared_value_t num(double n) {
  shared_value_t v = {.type = SHARED_NUMBER, .num = n};
  return v;
}

static shared_value_t boolean(int b) {
  shared_value_t v = {.type = SHARED_BOOLEAN, .boolean = b};
  return v;
}

#define K(s) (s), strlen(s)

/* 1 when key holds the string value s. */
static int get_is(shared_dict_t *d, const char *key, uint64_t now, const char *s) {
  shared_value_t v;
  return shared_get(d, key, strlen(key), now, &v) == 1 && v.type == SHARED_STRING &&
         v.len == strlen(s) && memcmp(v.str, s, v.len) == 0;
}

static int present(shared_dict_t *d, const char *key, uint64_t now) {
  return shared_get(d, key, strlen(key), now, NULL) == 1;
}

typedef struct {
  char keys[16][32];
  size_t n;
} keys_t;

static void collect(const char *key, size_t klen, void *ud) {
  keys_t *k = ud;
  if (k->n < 16 && klen < 32) {
    memcpy(k->keys[k->n], key, klen);
    k->keys[k->n][klen] = 0;
  }
  k->n++;
}

static void test_basic(void) {
  shared_dict_t *d = shared_dict_get("basic", 0);
  CHECK(d != NULL);
  CHECK(shared_dict_get("basic", 5) == d);
  CHECK(shared_max_bytes(d) == SHARED_DEFAULT_MAX_BYTES);
  CHECK(shared_dict_get("", 0) == NULL);
  CHECK(shared_dict_get(NULL, 0) == NULL);
  uint64_t now = 1000;
  shared_value_t v;
  CHECK(shared_get(d, K("a"), now, &v) == 0);
  shared_value_t s = str("hello");
  CHECK(shared_set(d, K("a"), &s, 0, now, NULL) == 0);
  CHECK(get_is(d, "a", now, "hello"));
  CHECK(shared_bytes_used(d) == 1 + 5 + OVERHEAD);
  shared_value_t n = num(42.5);
  int forcible = -1;
  CHECK(shared_set(d, K("a"), &n, 0, now, &forcible) == 0 && forcible == 0);
  CHECK(shared_get(d, K("a"), now, &v) == 1 && v.type == SHARED_NUMBER && v.num == 42.5);
  CHECK(shared_bytes_used(d) == 1 + OVERHEAD);
  shared_value_t b = boolean(1);
  CHECK(shared_set(d, K("flag"), &b, 0, now, NULL) == 0);
  CHECK(shared_get(d, K("flag"), now, &v) == 1 && v.type == SHARED_BOOLEAN && v.boolean == 1);
  b = boolean(0);
  CHECK(shared_set(d, K("flag"), &b, 0, now, NULL) == 0);
  CHECK(shared_get(d, K("flag"), now, &v) == 1 && v.type == SHARED_BOOLEAN && v.boolean == 0);
  CHECK(shared_count(d, now) == 2);
  /* Empty string values are values, not deletions. */
  shared_value_t e = str("");
  CHECK(shared_set(d, K("empty"), &e, 0, now, NULL) == 0);
  CHECK(get_is(d, "empty", now, ""));
  /* nil deletes */
  shared_value_t nil = {.type = SHARED_NIL};
  CHECK(shared_set(d, K("empty"), &nil, 0, now, NULL) == 0);
  CHECK(!present(d, "empty", now));
  CHECK(shared_set(d, K("flag"), NULL, 0, now, NULL) == 0);
  CHECK(!present(d, "flag", now));
  CHECK(shared_delete(d, K("a")) == 1);
  CHECK(shared_delete(d, K("a")) == 0);
  CHECK(shared_count(d, now) == 0);
  CHECK(shared_bytes_used(d) == 0);
}

static void test_binary(void) {
  shared_dict_t *d = shared_dict_get("binary", 0);
  const char k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'}, k3[] = {'a'};
  const char val[] = {'x', 0, 'y', 0};
  shared_value_t v = {.type = SHARED_STRING, .str = val, .len = sizeof val};
  CHECK(shared_set(d, k1, sizeof k1, &v, 0, 1, NULL) == 0);
  shared_value_t n = num(1);
  CHECK(shared_set(d, k2, sizeof k2, &n, 0, 1, NULL) == 0);
  shared_value_t out;
  CHECK(shared_get(d, k1, sizeof k1, 1, &out) == 1 && out.type == SHARED_STRING &&
        out.len == sizeof val && memcmp(out.str, val, sizeof val) == 0);
  CHECK(shared_get(d, k2, sizeof k2, 1, &out) == 1 && out.type == SHARED_NUMBER);
  CHECK(shared_get(d, k3, sizeof k3, 1, &out) == 0);
  CHECK(shared_bytes_used(d) == (3 + 4 + OVERHEAD) + (3 + OVERHEAD));
  /* A zero-length key is still a key at the C level. */
  CHECK(shared_set(d, "", 0, &n, 0, 1, NULL) == 0);
  CHECK(shared_get(d, "", 0, 1, &out) == 1);
  CHECK(shared_delete(d, "", 0) == 1);
}

static void test_ttl(void) {
  shared_dict_t *d = shared_dict_get("ttl", 0);
  uint64_t now = 5000;
  shared_value_t s = str("v");
  CHECK(shared_set(d, K("t"), &s, 100, now, NULL) == 0);
  CHECK(shared_set(d, K("forever"), &s, 0, now, NULL) == 0);
  CHECK(shared_ttl(d, K("t"), now) == 100);
  CHECK(shared_ttl(d, K("t"), now + 40) == 60);
  CHECK(shared_ttl(d, K("t"), now + 99) == 1);
  CHECK(shared_ttl(d, K("forever"), now) == 0);
  CHECK(shared_ttl(d, K("missing"), now) == -1);
  CHECK(present(d, "t", now + 99));
  CHECK(shared_count(d, now + 99) == 2);
  CHECK(shared_count(d, now + 100) == 1); /* expires at exactly now + ttl */
  CHECK(!present(d, "t", now + 100));
  CHECK(shared_ttl(d, K("t"), now + 100) == -1);
  CHECK(shared_bytes_used(d) == 7 + 1 + OVERHEAD);
  /* set replaces the TTL (0 = none) */
  CHECK(shared_set(d, K("t"), &s, 10, now, NULL) == 0);
  CHECK(shared_set(d, K("t"), &s, 0, now, NULL) == 0);
  CHECK(shared_ttl(d, K("t"), now + 1000000) == 0);
  /* lazily expired on get */
  CHECK(shared_set(d, K("g"), &s, 5, now, NULL) == 0);
  CHECK(!present(d, "g", now + 5));
  CHECK(shared_count(d, now + 5) == 2);
  /* an enormous TTL saturates instead of wrapping */
  CHECK(shared_set(d, K("huge"), &s, UINT64_MAX, now, NULL) == 0);
  CHECK(shared_ttl(d, K("huge"), now) > 0);
  CHECK(present(d, "huge", UINT64_MAX - 1));
  shared_flush(d);
  CHECK(shared_count(d, now) == 0 && shared_bytes_used(d) == 0);
  CHECK(!present(d, "forever", now));
  /* the dict keeps working after a flush, TTLs included */
  CHECK(shared_set(d, K("after"), &s, 10, now, NULL) == 0);
  CHECK(shared_count(d, now) == 1 && shared_count(d, now + 10) == 0);
}

static void test_add(void) {
  shared_dict_t *d = shared_dict_get("add", 0);
  shared_value_t a = str("first"), b = str("second");
  CHECK(shared_add(d, K("k"), &a, 0, 1, NULL) == 1);
  CHECK(shared_add(d, K("k"), &b, 0, 1, NULL) == 0);
  CHECK(get_is(d, "k", 1, "first"));
  CHECK(shared_add(d, K("e"), &a, 10, 1, NULL) == 1);
  CHECK(shared_add(d, K("e"), &b, 0, 5, NULL) == 0);
  CHECK(shared_add(d, K("e"), &b, 0, 11, NULL) == 1); /* expired counts as absent */
  CHECK(get_is(d, "e", 11, "second"));
  CHECK(shared_ttl(d, K("e"), 11) == 0);
  shared_dict_t *small = shared_dict_get("add_small", 100);
  char big[64];
  memset(big, 'x', sizeof big);
  shared_value_t v = {.type = SHARED_STRING, .str = big, .len = sizeof big};
  CHECK(shared_add(small, K("k"), &v, 0, 1, NULL) == -1);
  CHECK(shared_count(small, 1) == 0);
}

static void test_incr(void) {
  shared_dict_t *d = shared_dict_get("incr", 0);
  double r = 0;
  CHECK(shared_incr(d, K("n"), 1, 0, 0, 0, 1, &r) == -1);
  CHECK(shared_incr(d, K("n"), 2, 1, 10, 0, 1, &r) == 0 && r == 12);
  CHECK(shared_incr(d, K("n"), -0.5, 1, 10, 0, 1, &r) == 0 && r == 11.5);
  CHECK(shared_incr(d, K("n"), 1, 0, 0, 0, 1, &r) == 0 && r == 12.5);
  shared_value_t s = str("text");
  CHECK(shared_set(d, K("s"), &s, 0, 1, NULL) == 0);
  CHECK(shared_incr(d, K("s"), 1, 1, 0, 0, 1, &r) == -2);
  /* new entries get init_ttl; existing ones keep their TTL */
  CHECK(shared_incr(d, K("w"), 1, 1, 0, 100, 1000, &r) == 0 && r == 1);
  CHECK(shared_ttl(d, K("w"), 1000) == 100);
  CHECK(shared_incr(d, K("w"), 1, 1, 0, 5000, 1050, &r) == 0 && r == 2);
  CHECK(shared_ttl(d, K("w"), 1050) == 50);
  /* after expiry the counter starts over */
  CHECK(shared_incr(d, K("w"), 1, 1, 0, 100, 1100, &r) == 0 && r == 1);
  CHECK(shared_incr(d, K("w"), 1, 0, 0, 0, 1300, &r) == -1);
  shared_dict_t *tiny = shared_dict_get("incr_tiny", 10);
  CHECK(shared_incr(tiny, K("n"), 1, 1, 0, 0, 1, &r) == -3); /* even a number does not fit */
}

static void test_too_large(void) {
  shared_dict_t *d = shared_dict_get("cap200", 200);
  CHECK(shared_max_bytes(d) == 200);
  shared_value_t s = str("keep");
  CHECK(shared_set(d, K("k"), &s, 0, 1, NULL) == 0);
  char big[200];
  memset(big, 'y', sizeof big);
  shared_value_t v = {.type = SHARED_STRING, .str = big, .len = 200 - OVERHEAD - 1 + 1};
  int forcible = 0;
  CHECK(shared_set(d, K("k"), &v, 0, 1, &forcible) == -1);
  CHECK(get_is(d, "k", 1, "keep")); /* a failed set leaves the old value */
  v.len = 200 - OVERHEAD - 1;       /* exactly the cap */
  CHECK(shared_set(d, K("k"), &v, 0, 1, &forcible) == 0 && forcible == 0);
  CHECK(shared_bytes_used(d) == 200);
  v.len = (size_t)-1; /* absurd length must not overflow the accounting */
  CHECK(shared_set(d, K("x"), &v, 0, 1, NULL) == -1);
}

static void test_lru(void) {
  /* room for exactly three entries with 1-byte keys and 1-byte values */
  shared_dict_t *d = shared_dict_get("lru", 3 * (2 + OVERHEAD));
  shared_value_t v = str("v");
  int forcible = 0;
  CHECK(shared_set(d, K("a"), &v, 0, 1, &forcible) == 0 && !forcible);
  CHECK(shared_set(d, K("b"), &v, 0, 1, &forcible) == 0 && !forcible);
  CHECK(shared_set(d, K("c"), &v, 0, 1, &forcible) == 0 && !forcible);
  CHECK(present(d, "a", 1)); /* a becomes most recently used; b is now the oldest */
  CHECK(shared_set(d, K("d"), &v, 0, 1, &forcible) == 0 && forcible == 1);
  CHECK(present(d, "a", 1) && !present(d, "b", 1) && present(d, "c", 1) && present(d, "d", 1));
  /* replacing an existing key needs no eviction */
  CHECK(shared_set(d, K("c"), &v, 0, 1, &forcible) == 0 && forcible == 0);
  keys_t k = {0};
  shared_keys(d, 1, 0, collect, &k);
  CHECK(k.n == 3 && strcmp(k.keys[0], "c") == 0 && strcmp(k.keys[1], "d") == 0 &&
        strcmp(k.keys[2], "a") == 0);
  keys_t k2 = {0};
  shared_keys(d, 1, 2, collect, &k2);
  CHECK(k2.n == 2);
  /* a bigger value evicts as many as needed */
  char big[3 * (2 + OVERHEAD) - OVERHEAD - 1];
  memset(big, 'z', sizeof big);
  shared_value_t bv = {.type = SHARED_STRING, .str = big, .len = sizeof big};
  CHECK(shared_set(d, K("B"), &bv, 0, 1, &forcible) == 0 && forcible == 1);
  CHECK(shared_count(d, 1) == 1 && shared_bytes_used(d) == shared_max_bytes(d));
}

static void test_expired_evicted_first(void) {
  shared_dict_t *d = shared_dict_get("exp_first", 3 * (2 + OVERHEAD));
  shared_value_t v = str("v");
  int forcible = 0;
  CHECK(shared_set(d, K("y"), &v, 0, 1, NULL) == 0); /* oldest, live */
  CHECK(shared_set(d, K("x"), &v, 10, 1, NULL) == 0);
  CHECK(shared_set(d, K("z"), &v, 0, 1, NULL) == 0);
  /* at t=20 x has expired: it goes instead of the LRU entry y */
  CHECK(shared_set(d, K("w"), &v, 0, 20, &forcible) == 0 && forcible == 0);
  CHECK(present(d, "y", 20) && present(d, "z", 20) && present(d, "w", 20));
  CHECK(shared_count(d, 20) == 3);
  /* nothing expired now: the LRU goes, forcibly */
  CHECK(shared_set(d, K("q"), &v, 0, 20, &forcible) == 0 && forcible == 1);
  CHECK(!present(d, "y", 20));
  /* keys skips expired entries */
  CHECK(shared_set(d, K("e"), &v, 5, 20, NULL) == 0);
  keys_t k = {0};
  shared_keys(d, 30, 0, collect, &k);
  CHECK(k.n == 2);
}

/* Random operations against a plain array model (no eviction: big cap). */
static void test_random_model(void) {
  enum { NKEYS = 64 };
  shared_dict_t *d = shared_dict_get("model", 64 * 1024 * 1024);
  int has[NKEYS] = {0};
  double val[NKEYS] = {0};
  uint64_t exp[NKEYS] = {0};
  unsigned seed = 12345;
  int mismatches = 0;
  uint64_t now = 1;
  for (int i = 0; i < 200000; i++) {
    seed = seed * 1103515245u + 12345u;
    unsigned r = seed >> 8;
    int k = (int)(r % NKEYS);
    char key[16];
    snprintf(key, sizeof key, "key%d", k);
    if (has[k] && exp[k] && exp[k] <= now) has[k] = 0;
    switch ((r >> 8) % 5) {
    case 0: {
      uint64_t ttl = (r >> 12) % 3 == 0 ? (r >> 14) % 50 + 1 : 0;
      shared_value_t v = num(i);
      shared_set(d, K(key), &v, ttl, now, NULL);
      has[k] = 1;
      val[k] = i;
      exp[k] = ttl ? now + ttl : 0;
      break;
    }
    case 1: {
      shared_value_t v;
      int got = shared_get(d, K(key), now, &v);
      if (got != has[k] || (got && v.num != val[k])) mismatches++;
      break;
    }
    case 2:
      if (shared_delete(d, K(key)) != has[k] && has[k]) mismatches++;
      has[k] = 0;
      break;
    case 3: {
      double res;
      int rc = shared_incr(d, K(key), 1, 1, 0, 0, now, &res);
      if (rc != 0) mismatches++;
      if (!has[k]) {
        has[k] = 1;
        val[k] = 0;
        exp[k] = 0;
      }
      val[k] += 1;
      if (res != val[k]) mismatches++;
      break;
    }
    default:
      now += (r >> 16) % 4;
    }
  }
  size_t live = 0;
  for (int k = 0; k < NKEYS; k++)
    live += has[k] && !(exp[k] && exp[k] <= now);
  CHECK(mismatches == 0);
  CHECK(shared_count(d, now) == live);
}

int main(void) {
  test_basic();
  test_binary();
  test_ttl();
  test_add();
  test_incr();
  test_too_large();
  test_lru();
  test_expired_evicted_first();
  test_random_model();
  shared_dict_free_all();
  /* usable again after free_all */
  shared_dict_t *d = shared_dict_get("basic", 0);
  CHECK(d != NULL && shared_count(d, 0) == 0);
  shared_dict_free_all();
  return check_report();
}
