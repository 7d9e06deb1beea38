/* limiter.c - token buckets and sliding windows keyed by string (see limiter.h). */
#include "limiter.h"

#include "siphash.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-9
#define SWEEP_PER_OP 2 /* idle keys examined at the LRU end on every take/reserve */

typedef struct {
  double ts; /* when the units were (or will be) used */
  double n;
} wev_t;

typedef struct lkey {
  struct lkey *hnext;
  struct lkey *prev, *next; /* LRU list: head = most recently used */
  uint32_t hash;
  token_bucket_t tb; /* bucket */
  /* window: ring of events in ascending ts */
  wev_t *ev;
  size_t head, count, cap;
  double used;
  size_t klen;
  char key[];
} lkey_t;

struct limiter {
  char *name;
  limiter_conf_t conf;
  lkey_t **buckets;
  size_t nbuckets; /* power of two */
  size_t nkeys;
  lkey_t *lru_head, *lru_tail;
  struct limiter *next;
};

static limiter_t *g_limiters;

/* Keys are client-chosen (chat ids, addresses): keyed SipHash, so nobody can precompute a set
 * of keys that lands in one chain. */
static uint32_t hash_key(const char *k, size_t n) {
  static uint64_t key[2];
  static int have_key;
  if (!have_key) {
    siphash_process_key(key);
    have_key = 1;
  }
  return (uint32_t)siphash13(k, n, key);
}

static size_t max_keys(const limiter_t *l) {
  return l->conf.max_keys ? l->conf.max_keys : LIMITER_DEFAULT_MAX_KEYS;
}

/* ---- keys ---- */

static void lru_unlink(limiter_t *l, lkey_t *k) {
  if (k->prev)
    k->prev->next = k->next;
  else
    l->lru_head = k->next;
  if (k->next)
    k->next->prev = k->prev;
  else
    l->lru_tail = k->prev;
  k->prev = k->next = NULL;
}

static void lru_push_front(limiter_t *l, lkey_t *k) {
  k->prev = NULL;
  k->next = l->lru_head;
  if (l->lru_head) l->lru_head->prev = k;
  l->lru_head = k;
  if (!l->lru_tail) l->lru_tail = k;
}

static lkey_t *find_key(limiter_t *l, const char *key, size_t klen, uint32_t h) {
  if (!l->nbuckets) return NULL;
  for (lkey_t *k = l->buckets[h & (l->nbuckets - 1)]; k; k = k->hnext)
    if (k->hash == h && k->klen == klen && memcmp(k->key, key, klen) == 0) return k;
  return NULL;
}

static void drop_key(limiter_t *l, lkey_t *k) {
  lkey_t **pp = &l->buckets[k->hash & (l->nbuckets - 1)];
  while (*pp != k)
    pp = &(*pp)->hnext;
  *pp = k->hnext;
  lru_unlink(l, k);
  free(k->ev);
  free(k);
  l->nkeys--;
}

static int grow(limiter_t *l) {
  size_t n = l->nbuckets ? l->nbuckets * 2 : 64;
  lkey_t **b = calloc(n, sizeof *b);
  if (!b) return -1;
  for (size_t i = 0; i < l->nbuckets; i++) {
    lkey_t *k = l->buckets[i];
    while (k) {
      lkey_t *nx = k->hnext;
      k->hnext = b[k->hash & (n - 1)];
      b[k->hash & (n - 1)] = k;
      k = nx;
    }
  }
  free(l->buckets);
  l->buckets = b;
  l->nbuckets = n;
  return 0;
}

/* ---- the two kinds ---- */

static void bucket_refill(token_bucket_t *b, double rate, double burst, double now) {
  if (now > b->last_ms) {
    b->tokens += (now - b->last_ms) * rate / 1000.0;
    if (b->tokens > burst) b->tokens = burst;
    b->last_ms = now;
  }
}

void token_bucket_init(token_bucket_t *b, double burst, double now_ms) {
  b->tokens = burst;
  b->last_ms = now_ms;
}

int token_bucket_take(token_bucket_t *b, double rate, double burst, double n, double now_ms,
                      double *retry_ms) {
  bucket_refill(b, rate, burst, now_ms);
  if (b->tokens + EPS >= n) {
    b->tokens -= n;
    return 1;
  }
  if (retry_ms) *retry_ms = (n - b->tokens) * 1000.0 / rate;
  return 0;
}

static void refill(const limiter_t *l, lkey_t *k, double now) {
  bucket_refill(&k->tb, l->conf.rate, l->conf.burst, now);
}

static void expire(const limiter_t *l, lkey_t *k, double now) {
  double cutoff = now - l->conf.window_ms;
  while (k->count && k->ev[k->head].ts <= cutoff) {
    k->used -= k->ev[k->head].n;
    k->head = (k->head + 1) % k->cap;
    k->count--;
  }
  if (!k->count) k->used = 0; /* no float residue */
}

static wev_t *ev_at(lkey_t *k, size_t i) {
  return &k->ev[(k->head + i) % k->cap];
}

static int ev_push(lkey_t *k, double ts, double n) {
  if (k->count && ev_at(k, k->count - 1)->ts >= ts) {
    /* Same instant, or the last units were booked ahead: merge into that entry (counting from
     * the later time is stricter, and keeps the log sorted). */
    ev_at(k, k->count - 1)->n += n;
    k->used += n;
    return 0;
  }
  if (k->count == k->cap) {
    size_t cap = k->cap ? k->cap * 2 : 4;
    wev_t *e = malloc(cap * sizeof *e);
    if (!e) return -1;
    for (size_t i = 0; i < k->count; i++)
      e[i] = *ev_at(k, i);
    free(k->ev);
    k->ev = e;
    k->cap = cap;
    k->head = 0;
  }
  *ev_at(k, k->count) = (wev_t){ts, n};
  k->count++;
  k->used += n;
  return 0;
}

/* Window: the earliest time at which n more units fit. */
static double window_fit_time(const limiter_t *l, lkey_t *k, double n) {
  double need = k->used + n - l->conf.limit, freed = 0;
  for (size_t i = 0; i < k->count; i++) {
    wev_t *e = ev_at(k, i);
    freed += e->n;
    if (freed + EPS >= need) return e->ts + l->conf.window_ms;
  }
  return -1; /* cannot happen when n <= limit */
}

static int is_idle(const limiter_t *l, lkey_t *k, double now) {
  if (l->conf.kind == LIMITER_BUCKET) {
    double t = k->tb.tokens;
    if (now > k->tb.last_ms) t += (now - k->tb.last_ms) * l->conf.rate / 1000.0;
    return t + EPS >= l->conf.burst;
  }
  if (!k->count) return 1;
  return ev_at(k, k->count - 1)->ts <= now - l->conf.window_ms;
}

/* Drops up to max idle keys from the LRU end, never keep (the key being used). */
static void sweep_tail(limiter_t *l, double now, size_t max, const lkey_t *keep) {
  for (size_t i = 0; i < max && l->lru_tail; i++) {
    lkey_t *k = l->lru_tail;
    if (k == keep || !is_idle(l, k, now)) return;
    drop_key(l, k);
  }
}

/* Finds or creates key (most recently used now). NULL on OOM. */
static lkey_t *get_key(limiter_t *l, const char *key, size_t klen, double now) {
  uint32_t h = hash_key(key, klen);
  lkey_t *k = find_key(l, key, klen, h);
  if (k) {
    if (l->lru_head != k) {
      lru_unlink(l, k);
      lru_push_front(l, k);
    }
    sweep_tail(l, now, SWEEP_PER_OP, k);
    return k;
  }
  sweep_tail(l, now, SWEEP_PER_OP, NULL);
  if (l->nkeys >= max_keys(l)) {
    sweep_tail(l, now, l->nkeys, NULL);
    while (l->nkeys >= max_keys(l) && l->lru_tail)
      drop_key(l, l->lru_tail);
  }
  if (l->nkeys >= l->nbuckets && grow(l) != 0) return NULL;
  k = calloc(1, sizeof *k + klen + 1);
  if (!k) return NULL;
  memcpy(k->key, key, klen);
  k->klen = klen;
  k->hash = h;
  token_bucket_init(&k->tb, l->conf.burst, now);
  k->hnext = l->buckets[h & (l->nbuckets - 1)];
  l->buckets[h & (l->nbuckets - 1)] = k;
  lru_push_front(l, k);
  l->nkeys++;
  return k;
}

/* ---- public ---- */

static void drop_all_keys(limiter_t *l) {
  while (l->lru_head)
    drop_key(l, l->lru_head);
}

limiter_t *limiter_find(const char *name) {
  for (limiter_t *l = g_limiters; l; l = l->next)
    if (strcmp(l->name, name) == 0) return l;
  return NULL;
}

limiter_t *limiter_get(const char *name, const limiter_conf_t *conf, int *kind_changed) {
  if (kind_changed) *kind_changed = 0;
  limiter_t *l = limiter_find(name);
  if (l) {
    if (l->conf.kind != conf->kind) {
      drop_all_keys(l);
      if (kind_changed) *kind_changed = 1;
    } else if (conf->kind == LIMITER_BUCKET) {
      for (lkey_t *k = l->lru_head; k; k = k->next)
        if (k->tb.tokens > conf->burst) k->tb.tokens = conf->burst;
    }
    l->conf = *conf;
    return l;
  }
  l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->name = strdup(name);
  if (!l->name) {
    free(l);
    return NULL;
  }
  l->conf = *conf;
  l->next = g_limiters;
  g_limiters = l;
  return l;
}

void limiter_free_all(void) {
  while (g_limiters) {
    limiter_t *l = g_limiters;
    g_limiters = l->next;
    drop_all_keys(l);
    free(l->buckets);
    free(l->name);
    free(l);
  }
}

const char *limiter_name(const limiter_t *l) {
  return l->name;
}

const limiter_conf_t *limiter_conf(const limiter_t *l) {
  return &l->conf;
}

double limiter_capacity(const limiter_t *l) {
  return l->conf.kind == LIMITER_BUCKET ? l->conf.burst : l->conf.limit;
}

/* n over the capacity can never be allowed: says so (retry -1). 1 when it is. */
static int over_capacity(const limiter_t *l, double n, double *retry_after_ms) {
  if (retry_after_ms) *retry_after_ms = 0;
  if (n <= limiter_capacity(l) + EPS) return 0;
  if (retry_after_ms) *retry_after_ms = -1;
  return 1;
}

int limiter_take(limiter_t *l, const char *key, size_t klen, double n, double now,
                 double *retry_after_ms) {
  if (over_capacity(l, n, retry_after_ms)) return 0;
  lkey_t *k = get_key(l, key, klen, now);
  if (!k) return -1;
  if (l->conf.kind == LIMITER_BUCKET)
    return token_bucket_take(&k->tb, l->conf.rate, l->conf.burst, n, now, retry_after_ms);
  expire(l, k, now);
  if (k->used + n <= l->conf.limit + EPS) return ev_push(k, now, n) == 0 ? 1 : -1;
  if (retry_after_ms) {
    double t = window_fit_time(l, k, n);
    *retry_after_ms = t > now ? t - now : 0;
  }
  return 0;
}

int limiter_peek(limiter_t *l, const char *key, size_t klen, double n, double now,
                 double *retry_after_ms) {
  if (over_capacity(l, n, retry_after_ms)) return 0;
  lkey_t *k = find_key(l, key, klen, hash_key(key, klen));
  if (!k) return 1; /* untracked: a full bucket, an empty window */
  if (l->conf.kind == LIMITER_BUCKET) {
    double t = k->tb.tokens;
    if (now > k->tb.last_ms) t += (now - k->tb.last_ms) * l->conf.rate / 1000.0;
    if (t > l->conf.burst) t = l->conf.burst;
    if (t + EPS >= n) return 1;
    if (retry_after_ms) *retry_after_ms = (n - t) * 1000.0 / l->conf.rate;
    return 0;
  }
  expire(l, k, now); /* drops only what no longer counts: the answer of take() is unchanged */
  if (k->used + n <= l->conf.limit + EPS) return 1;
  if (retry_after_ms) {
    double t = window_fit_time(l, k, n);
    *retry_after_ms = t > now ? t - now : 0;
  }
  return 0;
}

double limiter_reserve(limiter_t *l, const char *key, size_t klen, double n, double now) {
  if (n > limiter_capacity(l) + EPS) return -1;
  lkey_t *k = get_key(l, key, klen, now);
  if (!k) return -1;
  if (l->conf.kind == LIMITER_BUCKET) {
    refill(l, k, now);
    k->tb.tokens -= n;
    return k->tb.tokens >= -EPS ? 0 : -k->tb.tokens * 1000.0 / l->conf.rate;
  }
  expire(l, k, now);
  double at = now;
  if (k->used + n > l->conf.limit + EPS) at = window_fit_time(l, k, n);
  if (k->count && ev_at(k, k->count - 1)->ts > at) at = ev_at(k, k->count - 1)->ts;
  if (ev_push(k, at, n) != 0) return -1;
  return at > now ? at - now : 0;
}

int limiter_reset_key(limiter_t *l, const char *key, size_t klen) {
  lkey_t *k = find_key(l, key, klen, hash_key(key, klen));
  if (!k) return 0;
  drop_key(l, k);
  return 1;
}

size_t limiter_key_count(const limiter_t *l) {
  return l->nkeys;
}

void limiter_sweep(limiter_t *l, double now) {
  lkey_t *k = l->lru_head;
  while (k) {
    lkey_t *nx = k->next;
    if (is_idle(l, k, now)) drop_key(l, k);
    k = nx;
  }
}
