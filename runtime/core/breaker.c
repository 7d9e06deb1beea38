/* breaker.c - circuit breakers (see breaker.h). */
#include "breaker.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HALF_OPEN_BUSY_HINT_MS 1000.0

struct breaker {
  char *name;
  breaker_conf_t conf;
  breaker_state_t state;
  uint64_t epoch; /* +1 on every state change: tickets of older epochs are ignored */
  unsigned consecutive;
  /* rolling window: bucket i holds calls of the absolute bucket number abs[i] */
  int64_t abs[BREAKER_WINDOW_BUCKETS];
  uint64_t calls[BREAKER_WINDOW_BUCKETS], fails[BREAKER_WINDOW_BUCKETS];
  double open_ms;    /* current open time */
  double open_until; /* OPEN: when a trial may go */
  unsigned trials, trial_successes;
  uint64_t successes, failures, rejections, opens;
  struct breaker *next;
};

static breaker_t *g_breakers;
static breaker_observer_fn g_observer;

void breaker_conf_default(breaker_conf_t *c) {
  c->failures = 5;
  c->ratio = 0.5;
  c->min_calls = 20;
  c->window_ms = 60000;
  c->open_ms = 30000;
  c->max_open_ms = 300000;
  c->half_open_calls = 1;
}

void breaker_set_observer(breaker_observer_fn fn) {
  g_observer = fn;
}

static void window_reset(breaker_t *b) {
  for (int i = 0; i < BREAKER_WINDOW_BUCKETS; i++) {
    b->abs[i] = INT64_MIN;
    b->calls[i] = b->fails[i] = 0;
  }
}

static int64_t bucket_of(const breaker_t *b, double now) {
  return (int64_t)floor(now / (b->conf.window_ms / BREAKER_WINDOW_BUCKETS));
}

static void window_add(breaker_t *b, double now, int failed) {
  int64_t a = bucket_of(b, now);
  int i = (int)(((a % BREAKER_WINDOW_BUCKETS) + BREAKER_WINDOW_BUCKETS) % BREAKER_WINDOW_BUCKETS);
  if (b->abs[i] != a) {
    b->abs[i] = a;
    b->calls[i] = b->fails[i] = 0;
  }
  b->calls[i]++;
  if (failed) b->fails[i]++;
}

static void window_sum(const breaker_t *b, double now, uint64_t *calls, uint64_t *fails) {
  int64_t a = bucket_of(b, now);
  *calls = *fails = 0;
  for (int i = 0; i < BREAKER_WINDOW_BUCKETS; i++) {
    if (b->abs[i] > a - BREAKER_WINDOW_BUCKETS && b->abs[i] <= a) {
      *calls += b->calls[i];
      *fails += b->fails[i];
    }
  }
}

static void set_state(breaker_t *b, breaker_state_t to, double now) {
  breaker_state_t from = b->state;
  b->state = to;
  b->epoch++;
  b->trials = b->trial_successes = 0;
  if (to == BREAKER_OPEN) {
    if (from == BREAKER_HALF_OPEN) {
      b->open_ms *= 2;
      if (b->open_ms > b->conf.max_open_ms) b->open_ms = b->conf.max_open_ms;
    } else {
      b->open_ms = b->conf.open_ms;
    }
    b->open_until = now + b->open_ms;
    b->opens++;
  } else if (to == BREAKER_CLOSED) {
    b->open_ms = b->conf.open_ms;
    b->consecutive = 0;
    window_reset(b);
  }
  if (g_observer && from != to) g_observer(b, from, to);
}

/* OPEN whose time is up becomes HALF_OPEN. */
static void advance(breaker_t *b, double now) {
  if (b->state == BREAKER_OPEN && now >= b->open_until) set_state(b, BREAKER_HALF_OPEN, now);
}

breaker_t *breaker_get(const char *name, const breaker_conf_t *conf) {
  for (breaker_t *b = g_breakers; b; b = b->next) {
    if (strcmp(b->name, name) != 0) continue;
    if (b->conf.window_ms != conf->window_ms) window_reset(b);
    b->conf = *conf;
    if (b->open_ms < conf->open_ms) b->open_ms = conf->open_ms;
    if (b->open_ms > conf->max_open_ms) b->open_ms = conf->max_open_ms;
    return b;
  }
  breaker_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->name = strdup(name);
  if (!b->name) {
    free(b);
    return NULL;
  }
  b->conf = *conf;
  b->state = BREAKER_CLOSED;
  b->open_ms = conf->open_ms;
  window_reset(b);
  b->next = g_breakers;
  g_breakers = b;
  return b;
}

void breaker_free_all(void) {
  while (g_breakers) {
    breaker_t *b = g_breakers;
    g_breakers = b->next;
    free(b->name);
    free(b);
  }
}

const char *breaker_name(const breaker_t *b) {
  return b->name;
}

const breaker_conf_t *breaker_conf(const breaker_t *b) {
  return &b->conf;
}

double breaker_open_ms(const breaker_t *b) {
  return b->open_ms;
}

int breaker_acquire(breaker_t *b, double now, uint64_t *ticket, double *retry_after_ms) {
  advance(b, now);
  *retry_after_ms = 0;
  switch (b->state) {
  case BREAKER_OPEN:
    b->rejections++;
    *retry_after_ms = b->open_until - now;
    return 0;
  case BREAKER_HALF_OPEN:
    if (b->trials >= b->conf.half_open_calls) {
      b->rejections++;
      *retry_after_ms = b->open_ms < HALF_OPEN_BUSY_HINT_MS ? b->open_ms : HALF_OPEN_BUSY_HINT_MS;
      return 0;
    }
    b->trials++;
    *ticket = b->epoch;
    return 1;
  default:
    *ticket = b->epoch;
    return 1;
  }
}

void breaker_record(breaker_t *b, uint64_t ticket, breaker_result_t r, double now) {
  if (r == BREAKER_SUCCESS) b->successes++;
  if (r == BREAKER_FAILURE) b->failures++;
  if (ticket != b->epoch) return; /* admitted before the last state change */
  if (b->state == BREAKER_HALF_OPEN) {
    if (r == BREAKER_IGNORE) {
      if (b->trials) b->trials--;
    } else if (r == BREAKER_FAILURE) {
      set_state(b, BREAKER_OPEN, now);
    } else if (++b->trial_successes >= b->conf.half_open_calls) {
      set_state(b, BREAKER_CLOSED, now);
    }
    return;
  }
  if (b->state != BREAKER_CLOSED || r == BREAKER_IGNORE) return;
  window_add(b, now, r == BREAKER_FAILURE);
  if (r == BREAKER_SUCCESS) {
    b->consecutive = 0;
    return;
  }
  b->consecutive++;
  int trip = b->conf.failures > 0 && b->consecutive >= b->conf.failures;
  if (!trip) {
    uint64_t calls, fails;
    window_sum(b, now, &calls, &fails);
    trip = calls >= b->conf.min_calls && calls > 0 && (double)fails / (double)calls > b->conf.ratio;
  }
  if (trip) set_state(b, BREAKER_OPEN, now);
}

breaker_state_t breaker_state(breaker_t *b, double now) {
  advance(b, now);
  return b->state;
}

void breaker_stats(breaker_t *b, double now, breaker_stats_t *out) {
  advance(b, now);
  memset(out, 0, sizeof *out);
  out->state = b->state;
  out->consecutive_failures = b->consecutive;
  window_sum(b, now, &out->window_calls, &out->window_failures);
  out->open_ms = b->open_ms;
  out->retry_after_ms = b->state == BREAKER_OPEN ? b->open_until - now : 0;
  out->half_open_inflight = b->state == BREAKER_HALF_OPEN ? b->trials : 0;
  out->half_open_successes = b->state == BREAKER_HALF_OPEN ? b->trial_successes : 0;
  out->successes = b->successes;
  out->failures = b->failures;
  out->rejections = b->rejections;
  out->opens = b->opens;
}

void breaker_reset(breaker_t *b, double now) {
  if (b->state != BREAKER_CLOSED)
    set_state(b, BREAKER_CLOSED, now);
  else {
    b->consecutive = 0;
    window_reset(b);
  }
}

void breaker_trip(breaker_t *b, double now) {
  if (b->state == BREAKER_OPEN) return;
  breaker_state_t from = b->state;
  b->state = BREAKER_OPEN;
  b->epoch++;
  b->trials = b->trial_successes = 0;
  b->open_ms = b->conf.open_ms; /* a forced open starts from open_ms */
  b->open_until = now + b->open_ms;
  b->opens++;
  if (g_observer) g_observer(b, from, BREAKER_OPEN);
}

const char *breaker_state_name(breaker_state_t s) {
  return s == BREAKER_CLOSED ? "closed" : s == BREAKER_OPEN ? "open" : "half_open";
}
