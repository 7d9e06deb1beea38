/* test_metrics.c - unit tests for the metrics registry (runtime/core/metrics.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#include "check.h"

static char *render(void) {
  size_t len = 0;
  char *s = metrics_render(&len);
  if (s && strlen(s) != len) {
    free(s);
    return NULL;
  }
  return s;
}

/* 1 when text contains needle. */
static int has(const char *text, const char *needle) {
  int r = text && strstr(text, needle) != NULL;
  if (!r) printf("     missing: %s\n", needle);
  return r;
}

static size_t count_lines_with(const char *text, const char *prefix) {
  size_t n = 0, plen = strlen(prefix);
  for (const char *p = text; p && *p;) {
    if (strncmp(p, prefix, plen) == 0) n++;
    const char *nl = strchr(p, '\n');
    p = nl ? nl + 1 : NULL;
  }
  return n;
}

static void test_counter_basic(void) {
  const char *err = NULL;
  metric_t *c = metrics_counter("req_total", "Requests served.", NULL, 0, &err);
  CHECK(c != NULL && err == NULL);
  CHECK(metrics_type(c) == METRIC_COUNTER);
  CHECK(metrics_label_count(c) == 0);
  CHECK(metrics_find("req_total") == c);
  CHECK(metrics_find("nope") == NULL);
  char *t = render();
  CHECK(t && strcmp(t, "# HELP req_total Requests served.\n# TYPE req_total counter\n"
                       "req_total 0\n") == 0);
  free(t);
  CHECK(metrics_inc(c, NULL, 1) == 0);
  CHECK(metrics_inc(c, NULL, 2) == 0);
  CHECK(metrics_value(c, NULL) == 3);
  CHECK(metrics_inc(c, NULL, -1) == -1);
  CHECK(metrics_inc(c, NULL, NAN) == -1);
  CHECK(metrics_set(c, NULL, 5) == -1);
  CHECK(metrics_observe(c, NULL, 5) == -1);
  CHECK(metrics_value(c, NULL) == 3);
  t = render();
  CHECK(has(t, "\nreq_total 3\n"));
  free(t);
  /* Same name, type and labels: the same metric. */
  CHECK(metrics_counter("req_total", "other help", NULL, 0, &err) == c);
}

static void test_labels(void) {
  const char *err = NULL;
  const char *names[] = {"route", "status"};
  metric_t *c = metrics_counter("http_total", "HTTP.", names, 2, &err);
  CHECK(c != NULL);
  CHECK(metrics_label_count(c) == 2);
  const char *a[] = {"/chat", "200"}, *b[] = {"/health", "200"}, *a2[] = {"/chat", "200"};
  CHECK(metrics_inc(c, a, 1) == 0);
  CHECK(metrics_inc(c, b, 1) == 0);
  CHECK(metrics_inc(c, a2, 2.5) == 0);
  CHECK(metrics_value(c, a) == 3.5);
  CHECK(metrics_value(c, b) == 1);
  const char *none[] = {"/x", "500"};
  CHECK(metrics_value(c, none) == 0);
  const char *nullv[] = {"/x", NULL};
  CHECK(metrics_inc(c, NULL, 1) == -1);
  CHECK(metrics_inc(c, nullv, 1) == -1);
  char *t = render();
  CHECK(has(t, "# TYPE http_total counter\n"
               "http_total{route=\"/chat\",status=\"200\"} 3.5\n"
               "http_total{route=\"/health\",status=\"200\"} 1\n"));
  /* metrics_value did not create the absent series */
  CHECK(t && !strstr(t, "/x"));
  free(t);
  /* Same name with other labels, or other type: refused. */
  const char *other[] = {"route"};
  CHECK(metrics_counter("http_total", "", other, 1, &err) == NULL && err && strstr(err, "label"));
  const char *swapped[] = {"status", "route"};
  CHECK(metrics_counter("http_total", "", swapped, 2, &err) == NULL);
  CHECK(metrics_gauge("http_total", "", names, 2, &err) == NULL && err && strstr(err, "type"));
  CHECK(metrics_counter("http_total", "", names, 2, &err) == c);
}

static void test_gauge_numbers(void) {
  const char *err = NULL;
  metric_t *g = metrics_gauge("temp", "", NULL, 0, &err);
  CHECK(g != NULL);
  CHECK(metrics_set(g, NULL, 1.5) == 0);
  char *t = render();
  CHECK(has(t, "\ntemp 1.5\n"));
  CHECK(has(t, "# HELP temp \n# TYPE temp gauge\n"));
  free(t);
  CHECK(metrics_inc(g, NULL, -3.5) == 0);
  CHECK(metrics_value(g, NULL) == -2);
  t = render();
  CHECK(has(t, "\ntemp -2\n"));
  free(t);
  CHECK(metrics_set(g, NULL, 0.1 + 0.2) == 0);
  t = render();
  CHECK(has(t, "\ntemp 0.30000000000000004\n"));
  free(t);
  CHECK(metrics_set(g, NULL, 0.1) == 0);
  t = render();
  CHECK(has(t, "\ntemp 0.1\n"));
  free(t);
  CHECK(metrics_set(g, NULL, INFINITY) == 0);
  t = render();
  CHECK(has(t, "\ntemp +Inf\n"));
  free(t);
  CHECK(metrics_set(g, NULL, NAN) == 0);
  t = render();
  CHECK(has(t, "\ntemp NaN\n"));
  free(t);
  CHECK(metrics_set(g, NULL, 1e20) == 0);
  t = render();
  CHECK(has(t, "\ntemp 1e+20\n"));
  free(t);
  CHECK(metrics_set(g, NULL, -0.0) == 0);
  t = render();
  CHECK(has(t, "\ntemp 0\n"));
  free(t);
  CHECK(metrics_observe(g, NULL, 1) == -1);
}

static void test_histogram(void) {
  const char *err = NULL;
  const char *names[] = {"route"};
  metric_t *h = metrics_histogram("lat_seconds", "Latency.", names, 1, NULL, 0, &err);
  CHECK(h != NULL && metrics_type(h) == METRIC_HISTOGRAM);
  const char *r[] = {"/a"};
  CHECK(metrics_observe(h, r, 0.003) == 0);
  CHECK(metrics_observe(h, r, 0.3) == 0);
  CHECK(metrics_observe(h, r, 0.5) == 0); /* on a bound: le is inclusive */
  CHECK(metrics_observe(h, r, 100) == 0);
  CHECK(metrics_observe(h, r, NAN) == -1);
  CHECK(metrics_inc(h, r, 1) == -1);
  CHECK(metrics_set(h, r, 1) == -1);
  CHECK(metrics_value(h, r) == 0);
  char *t = render();
  CHECK(has(t, "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n"
               "lat_seconds_bucket{route=\"/a\",le=\"0.005\"} 1\n"
               "lat_seconds_bucket{route=\"/a\",le=\"0.01\"} 1\n"
               "lat_seconds_bucket{route=\"/a\",le=\"0.025\"} 1\n"
               "lat_seconds_bucket{route=\"/a\",le=\"0.05\"} 1\n"
               "lat_seconds_bucket{route=\"/a\",le=\"0.1\"} 1\n"
               "lat_seconds_bucket{route=\"/a\",le=\"0.25\"} 1\n"
               "lat_seconds_bucket{route=\"/a\",le=\"0.5\"} 3\n"
               "lat_seconds_bucket{route=\"/a\",le=\"1\"} 3\n"
               "lat_seconds_bucket{route=\"/a\",le=\"2.5\"} 3\n"
               "lat_seconds_bucket{route=\"/a\",le=\"5\"} 3\n"
               "lat_seconds_bucket{route=\"/a\",le=\"10\"} 3\n"
               "lat_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"
               "lat_seconds_sum{route=\"/a\"} 100.803\n"
               "lat_seconds_count{route=\"/a\"} 4\n"));
  free(t);

  double b[] = {1, 2, 4};
  metric_t *h2 = metrics_histogram("sizes", "", NULL, 0, b, 3, &err);
  CHECK(h2 != NULL);
  CHECK(metrics_observe(h2, NULL, 3) == 0);
  CHECK(metrics_observe(h2, NULL, -1) == 0);
  t = render();
  CHECK(has(t, "sizes_bucket{le=\"1\"} 1\nsizes_bucket{le=\"2\"} 1\nsizes_bucket{le=\"4\"} 2\n"
               "sizes_bucket{le=\"+Inf\"} 2\nsizes_sum 2\nsizes_count 2\n"));
  free(t);
  /* Re-registering with the same buckets returns it; other buckets are refused. */
  CHECK(metrics_histogram("sizes", "", NULL, 0, b, 3, &err) == h2);
  double b2[] = {1, 2, 8};
  CHECK(metrics_histogram("sizes", "", NULL, 0, b2, 3, &err) == NULL && err &&
        strstr(err, "buckets"));

  double unsorted[] = {1, 3, 2};
  CHECK(metrics_histogram("h_unsorted", "", NULL, 0, unsorted, 3, &err) == NULL && err);
  double dup[] = {1, 1};
  CHECK(metrics_histogram("h_dup", "", NULL, 0, dup, 2, &err) == NULL);
  double inf[] = {1, INFINITY};
  CHECK(metrics_histogram("h_inf", "", NULL, 0, inf, 2, &err) == NULL);
  double nan[] = {NAN};
  CHECK(metrics_histogram("h_nan", "", NULL, 0, nan, 1, &err) == NULL);
  double many[METRICS_MAX_BUCKETS + 1];
  for (int i = 0; i <= METRICS_MAX_BUCKETS; i++)
    many[i] = i;
  CHECK(metrics_histogram("h_many", "", NULL, 0, many, METRICS_MAX_BUCKETS + 1, &err) == NULL &&
        err && strstr(err, "buckets"));
  CHECK(metrics_histogram("h_max", "", NULL, 0, many, METRICS_MAX_BUCKETS, &err) != NULL);
  const char *le[] = {"le"};
  CHECK(metrics_histogram("h_le", "", le, 1, NULL, 0, &err) == NULL);
  CHECK(metrics_counter("c_le", "", le, 1, &err) != NULL); /* only reserved for histograms */
  /* Names clashing with a histogram's generated series. */
  CHECK(metrics_counter("sizes_count", "", NULL, 0, &err) == NULL && err);
  CHECK(metrics_gauge("sizes_bucket", "", NULL, 0, &err) == NULL);
  CHECK(metrics_counter("q_sum", "", NULL, 0, &err) != NULL);
  CHECK(metrics_histogram("q", "", NULL, 0, NULL, 0, &err) == NULL && err);
  CHECK(metrics_find("q") == NULL);
}

static void test_validation(void) {
  const char *err = NULL;
  CHECK(metrics_counter("", "", NULL, 0, &err) == NULL && err);
  CHECK(metrics_counter(NULL, "", NULL, 0, &err) == NULL);
  CHECK(metrics_counter("1abc", "", NULL, 0, &err) == NULL);
  CHECK(metrics_counter("a-b", "", NULL, 0, &err) == NULL);
  CHECK(metrics_counter("a b", "", NULL, 0, &err) == NULL);
  CHECK(metrics_counter("ns:sub_total", "", NULL, 0, &err) != NULL);
  CHECK(metrics_counter(":x", "", NULL, 0, NULL) != NULL); /* err may be NULL */
  const char *bad1[] = {"a:b"}, *bad2[] = {"1a"}, *bad3[] = {"__name"}, *bad4[] = {"x", "x"};
  const char *bad5[] = {""};
  CHECK(metrics_counter("v1", "", bad1, 1, &err) == NULL);
  CHECK(metrics_counter("v2", "", bad2, 1, &err) == NULL);
  CHECK(metrics_counter("v3", "", bad3, 1, &err) == NULL);
  CHECK(metrics_counter("v4", "", bad4, 2, &err) == NULL);
  CHECK(metrics_counter("v5", "", bad5, 1, &err) == NULL);
  CHECK(metrics_counter("v6", "", NULL, 1, &err) == NULL);
  const char *nine[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
  CHECK(metrics_counter("v7", "", nine, 9, &err) == NULL);
  metric_t *eight = metrics_counter("v8", "", nine, 8, &err);
  CHECK(eight != NULL);
  CHECK(metrics_inc(eight, nine, 1) == 0);
  CHECK(metrics_value(eight, nine) == 1);
  CHECK(metrics_find("v1") == NULL && metrics_find("v7") == NULL);
  CHECK(metrics_inc(NULL, NULL, 1) == -1);
}

static void test_escaping(void) {
  const char *err = NULL;
  const char *names[] = {"v"};
  metric_t *c = metrics_counter("esc_total", "line1\nback\\slash \"q\"", names, 1, &err);
  CHECK(c != NULL);
  const char *v[] = {"a\"b\\c\nd"};
  CHECK(metrics_inc(c, v, 1) == 0);
  char *t = render();
  CHECK(has(t, "# HELP esc_total line1\\nback\\\\slash \"q\"\n"));
  CHECK(has(t, "esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n"));
  free(t);
}

static void test_many_series_and_cap(void) {
  const char *err = NULL;
  const char *names[] = {"id"};
  metric_t *c = metrics_counter("many_total", "", names, 1, &err);
  CHECK(c != NULL);
  char buf[32];
  int bad = 0;
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 10050; i++) {
      snprintf(buf, sizeof buf, "k%d", i);
      const char *v[] = {buf};
      if (metrics_inc(c, v, 1) != 0) bad++;
    }
  }
  CHECK(bad == 0);
  int wrong = 0;
  for (int i = 0; i < 10000; i++) {
    snprintf(buf, sizeof buf, "k%d", i);
    const char *v[] = {buf};
    if (metrics_value(c, v) != 2) wrong++;
  }
  CHECK(wrong == 0);
  const char *over[] = {"k10000"};
  CHECK(metrics_value(c, over) == 0); /* dropped by the cap */
  char *t = render();
  CHECK(count_lines_with(t, "many_total{") == 10000);
  /* creation order */
  CHECK(has(t, "many_total{id=\"k0\"} 2\nmany_total{id=\"k1\"} 2\n"));
  free(t);
}

static void test_order_and_shutdown(void) {
  char *t = render();
  const char *a = t ? strstr(t, "# HELP req_total") : NULL;
  const char *b = t ? strstr(t, "# HELP http_total") : NULL;
  const char *c = t ? strstr(t, "# HELP temp") : NULL;
  CHECK(a && b && c && a < b && b < c);
  free(t);
  metrics_shutdown();
  CHECK(metrics_find("req_total") == NULL);
  t = render();
  CHECK(t && strcmp(t, "") == 0);
  free(t);
  /* usable again after shutdown */
  metrics_init();
  const char *err;
  metric_t *m = metrics_counter("again_total", "", NULL, 0, &err);
  CHECK(m && metrics_inc(m, NULL, 1) == 0 && metrics_value(m, NULL) == 1);
  metrics_shutdown();
}

int main(void) {
  log_set_json(0);
  metrics_init();
  test_counter_basic();
  test_labels();
  test_gauge_numbers();
  test_histogram();
  test_validation();
  test_escaping();
  test_many_series_and_cap();
  test_order_and_shutdown();
  return check_report();
}
