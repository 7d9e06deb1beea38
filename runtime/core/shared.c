/* shared.c - named dictionaries kept in C that survive Lua reloads (see shared.h).
 *
 * Single-threaded: every call is expected on the event loop thread.
 *
 * Each dictionary is a chained hash table (keyed SipHash-1-3, per-process random key, so
 * client-chosen keys cannot build long chains) plus an intrusive doubly linked LRU list
 * (head = most recently used) plus a binary min-heap of the entries that have a TTL, ordered
 * by expiry. The heap makes "drop expired entries first" cost O(log n) per expired entry
 * instead of a scan; get/ttl/incr/add also expire the entry they touch lazily.
 *
 * Byte accounting: an entry costs klen + (string value length) + SHARED_ENTRY_OVERHEAD.
 * Numbers and booleans cost only the key and the overhead. */
#include "shared.h"

#include <stdlib.h>
#include <string.h>

#include "siphash.h"

/* Fixed cost charged per entry for its bookkeeping (the entry header: links, hash, expiry,
 * heap index, lengths, value) and allocator overhead, roughly what an entry really takes. */
#define SHARED_ENTRY_OVERHEAD 64

#define NO_HEAP ((size_t)-1)

typedef struct entry {
  struct entry *hnext;       /* hash chain */
  struct entry *prev, *next; /* LRU list */
  uint64_t hash;
  uint64_t expires; /* absolute ms; 0 = never */
  size_t heap_idx;  /* position in the expiry heap, NO_HEAP without TTL */
  size_t klen, vlen;
  double num;
  int boolean;
  shared_type_t type;
  char data[]; /* key bytes, then value bytes + NUL */
} entry_t;

struct shared_dict {
  struct shared_dict *next;
  char *name;
  size_t max_bytes, used, count;
  entry_t **table; /* power-of-two bucket count */
  size_t tsize;
  entry_t *head, *tail;
  entry_t **heap;
  size_t heap_len, heap_cap;
};

static shared_dict_t *g_dicts;
static uint64_t g_key[2]; /* hash key (siphash.h) */

/* ---- hashing --------------------------------------------------------------------------- */

static void seed_hash(void) {
  siphash_process_key(g_key);
}

static uint64_t hash_key(const char *key, size_t klen) {
  return siphash13(key, klen, g_key);
}

/* ---- expiry heap ----------------------------------------------------------------------- */

static void heap_swap(shared_dict_t *d, size_t a, size_t b) {
  entry_t *t = d->heap[a];
  d->heap[a] = d->heap[b];
  d->heap[b] = t;
  d->heap[a]->heap_idx = a;
  d->heap[b]->heap_idx = b;
}

static void heap_up(shared_dict_t *d, size_t i) {
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (d->heap[p]->expires <= d->heap[i]->expires) break;
    heap_swap(d, i, p);
    i = p;
  }
}

static void heap_down(shared_dict_t *d, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < d->heap_len && d->heap[l]->expires < d->heap[m]->expires) m = l;
    if (r < d->heap_len && d->heap[r]->expires < d->heap[m]->expires) m = r;
    if (m == i) break;
    heap_swap(d, i, m);
    i = m;
  }
}

static int heap_reserve(shared_dict_t *d) {
  if (d->heap_len < d->heap_cap) return 0;
  size_t cap = d->heap_cap ? d->heap_cap * 2 : 16;
  entry_t **h = realloc(d->heap, cap * sizeof *h);
  if (!h) return -1;
  d->heap = h;
  d->heap_cap = cap;
  return 0;
}

/* Caller has reserved room with heap_reserve. */
static void heap_push(shared_dict_t *d, entry_t *e) {
  e->heap_idx = d->heap_len;
  d->heap[d->heap_len++] = e;
  heap_up(d, e->heap_idx);
}

static void heap_remove(shared_dict_t *d, entry_t *e) {
  size_t i = e->heap_idx;
  if (i == NO_HEAP) return;
  e->heap_idx = NO_HEAP;
  size_t last = --d->heap_len;
  if (i == last) return;
  d->heap[i] = d->heap[last];
  d->heap[i]->heap_idx = i;
  heap_down(d, i);
  heap_up(d, i);
}

/* ---- entries --------------------------------------------------------------------------- */

static size_t entry_cost(size_t klen, size_t vlen) {
  return klen + vlen + SHARED_ENTRY_OVERHEAD;
}

static int is_expired(const entry_t *e, uint64_t now) {
  return e->expires != 0 && e->expires <= now;
}

static entry_t *lookup(shared_dict_t *d, const char *key, size_t klen, uint64_t h) {
  for (entry_t *e = d->table[(size_t)h & (d->tsize - 1)]; e; e = e->hnext)
    if (e->hash == h && e->klen == klen && (klen == 0 || memcmp(e->data, key, klen) == 0)) return e;
  return NULL;
}

static void lru_unlink(shared_dict_t *d, entry_t *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    d->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    d->tail = e->prev;
  e->prev = e->next = NULL;
}

static void lru_push_head(shared_dict_t *d, entry_t *e) {
  e->prev = NULL;
  e->next = d->head;
  if (d->head)
    d->head->prev = e;
  else
    d->tail = e;
  d->head = e;
}

static void touch(shared_dict_t *d, entry_t *e) {
  if (d->head == e) return;
  lru_unlink(d, e);
  lru_push_head(d, e);
}

static void remove_entry(shared_dict_t *d, entry_t *e) {
  entry_t **pp = &d->table[(size_t)e->hash & (d->tsize - 1)];
  while (*pp != e)
    pp = &(*pp)->hnext;
  *pp = e->hnext;
  lru_unlink(d, e);
  heap_remove(d, e);
  d->used -= entry_cost(e->klen, e->vlen);
  d->count--;
  free(e);
}

static void purge_expired(shared_dict_t *d, uint64_t now) {
  while (d->heap_len && d->heap[0]->expires <= now)
    remove_entry(d, d->heap[0]);
}

static void grow_table(shared_dict_t *d) {
  size_t nsize = d->tsize * 2;
  entry_t **nt = calloc(nsize, sizeof *nt);
  if (!nt) return; /* longer chains, still correct */
  for (size_t i = 0; i < d->tsize; i++) {
    for (entry_t *e = d->table[i], *n; e; e = n) {
      n = e->hnext;
      size_t j = (size_t)e->hash & (nsize - 1);
      e->hnext = nt[j];
      nt[j] = e;
    }
  }
  free(d->table);
  d->table = nt;
  d->tsize = nsize;
}

static uint64_t expiry_for(uint64_t ttl_ms, uint64_t now) {
  if (ttl_ms == 0) return 0;
  return ttl_ms > UINT64_MAX - now ? UINT64_MAX : now + ttl_ms;
}

/* Stores key -> val (replacing any entry), making room first. 0 ok, -1 too large or OOM. */
static int store(shared_dict_t *d, const char *key, size_t klen, uint64_t h,
                 const shared_value_t *val, uint64_t ttl_ms, uint64_t now, int *forcible) {
  size_t vlen = val->type == SHARED_STRING ? val->len : 0;
  if (klen > d->max_bytes || vlen > d->max_bytes) return -1; /* keeps the sum from overflowing */
  size_t cost = entry_cost(klen, vlen);
  if (cost > d->max_bytes) return -1;
  if (ttl_ms && heap_reserve(d) != 0) return -1;

  /* Allocate before touching the old entry so an OOM leaves the dict unchanged. */
  entry_t *e = malloc(sizeof *e + klen + vlen + 1);
  if (!e) return -1;
  memset(e, 0, sizeof *e);
  if (klen) memcpy(e->data, key, klen);
  if (vlen) memcpy(e->data + klen, val->str, vlen);
  e->data[klen + vlen] = 0;
  e->hash = h;
  e->klen = klen;
  e->vlen = vlen;
  e->type = val->type;
  e->num = val->type == SHARED_NUMBER ? val->num : 0;
  e->boolean = val->type == SHARED_BOOLEAN ? !!val->boolean : 0;
  e->expires = expiry_for(ttl_ms, now);
  e->heap_idx = NO_HEAP;

  entry_t *old = lookup(d, key, klen, h);
  if (old) remove_entry(d, old);
  if (d->used + cost > d->max_bytes) purge_expired(d, now);
  /* Everything still in the list is live now: evicting from the tail is forcible. */
  while (d->used + cost > d->max_bytes && d->tail) {
    remove_entry(d, d->tail);
    if (forcible) *forcible = 1;
  }

  if (d->count >= d->tsize) grow_table(d);
  size_t bi = (size_t)h & (d->tsize - 1);
  e->hnext = d->table[bi];
  d->table[bi] = e;
  lru_push_head(d, e);
  if (e->expires) heap_push(d, e);
  d->used += cost;
  d->count++;
  return 0;
}

/* ---- dictionaries ---------------------------------------------------------------------- */

shared_dict_t *shared_dict_get(const char *name, size_t max_bytes) {
  if (!name || !*name) return NULL;
  for (shared_dict_t *d = g_dicts; d; d = d->next)
    if (strcmp(d->name, name) == 0) return d;
  seed_hash();
  shared_dict_t *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->name = strdup(name);
  d->tsize = 16;
  d->table = calloc(d->tsize, sizeof *d->table);
  if (!d->name || !d->table) {
    free(d->name);
    free(d->table);
    free(d);
    return NULL;
  }
  d->max_bytes = max_bytes ? max_bytes : SHARED_DEFAULT_MAX_BYTES;
  d->next = g_dicts;
  g_dicts = d;
  return d;
}

void shared_flush(shared_dict_t *d) {
  for (entry_t *e = d->head, *n; e; e = n) {
    n = e->next;
    free(e);
  }
  memset(d->table, 0, d->tsize * sizeof *d->table);
  d->head = d->tail = NULL;
  d->heap_len = 0;
  d->used = 0;
  d->count = 0;
}

void shared_dict_free_all(void) {
  for (shared_dict_t *d = g_dicts, *n; d; d = n) {
    n = d->next;
    shared_flush(d);
    free(d->table);
    free(d->heap);
    free(d->name);
    free(d);
  }
  g_dicts = NULL;
}

/* ---- operations ------------------------------------------------------------------------ */

/* Finds a live entry; an expired one is removed on the way. */
static entry_t *find_live(shared_dict_t *d, const char *key, size_t klen, uint64_t h,
                          uint64_t now) {
  entry_t *e = lookup(d, key, klen, h);
  if (e && is_expired(e, now)) {
    remove_entry(d, e);
    return NULL;
  }
  return e;
}

int shared_get(shared_dict_t *d, const char *key, size_t klen, uint64_t now_ms,
               shared_value_t *out) {
  entry_t *e = find_live(d, key, klen, hash_key(key, klen), now_ms);
  if (!e) return 0;
  touch(d, e);
  if (out) {
    memset(out, 0, sizeof *out);
    out->type = e->type;
    if (e->type == SHARED_STRING) {
      out->str = e->data + e->klen;
      out->len = e->vlen;
    }
    out->num = e->num;
    out->boolean = e->boolean;
  }
  return 1;
}

int shared_set(shared_dict_t *d, const char *key, size_t klen, const shared_value_t *val,
               uint64_t ttl_ms, uint64_t now_ms, int *forcible) {
  if (forcible) *forcible = 0;
  if (!val || val->type == SHARED_NIL) {
    shared_delete(d, key, klen);
    return 0;
  }
  return store(d, key, klen, hash_key(key, klen), val, ttl_ms, now_ms, forcible);
}

int shared_add(shared_dict_t *d, const char *key, size_t klen, const shared_value_t *val,
               uint64_t ttl_ms, uint64_t now_ms, int *forcible) {
  if (forcible) *forcible = 0;
  uint64_t h = hash_key(key, klen);
  if (find_live(d, key, klen, h, now_ms)) return 0;
  if (!val || val->type == SHARED_NIL) return 1; /* nothing to store; the key stays absent */
  return store(d, key, klen, h, val, ttl_ms, now_ms, forcible) == 0 ? 1 : -1;
}

/* Returns 0 ok, -1 not found, -2 not a number, -3 a new entry does not fit (too large/OOM). */
int shared_incr(shared_dict_t *d, const char *key, size_t klen, double by, int has_init,
                double init, uint64_t init_ttl_ms, uint64_t now_ms, double *result) {
  uint64_t h = hash_key(key, klen);
  entry_t *e = find_live(d, key, klen, h, now_ms);
  if (e) {
    if (e->type != SHARED_NUMBER) return -2;
    e->num += by;
    touch(d, e);
    if (result) *result = e->num;
    return 0;
  }
  if (!has_init) return -1;
  shared_value_t v = {.type = SHARED_NUMBER, .num = init + by};
  if (store(d, key, klen, h, &v, init_ttl_ms, now_ms, NULL) != 0) return -3;
  if (result) *result = v.num;
  return 0;
}

int shared_delete(shared_dict_t *d, const char *key, size_t klen) {
  entry_t *e = lookup(d, key, klen, hash_key(key, klen));
  if (!e) return 0;
  remove_entry(d, e);
  return 1;
}

size_t shared_count(shared_dict_t *d, uint64_t now_ms) {
  purge_expired(d, now_ms);
  return d->count;
}

size_t shared_bytes_used(shared_dict_t *d) {
  return d->used;
}

size_t shared_max_bytes(shared_dict_t *d) {
  return d->max_bytes;
}

/* fn must not modify the dictionary. */
void shared_keys(shared_dict_t *d, uint64_t now_ms, size_t max,
                 void (*fn)(const char *key, size_t klen, void *ud), void *ud) {
  purge_expired(d, now_ms);
  size_t n = 0;
  for (entry_t *e = d->head; e && (max == 0 || n < max); e = e->next, n++)
    fn(e->data, e->klen, ud);
}

int64_t shared_ttl(shared_dict_t *d, const char *key, size_t klen, uint64_t now_ms) {
  entry_t *e = find_live(d, key, klen, hash_key(key, klen), now_ms);
  if (!e) return -1;
  if (e->expires == 0) return 0;
  uint64_t left = e->expires - now_ms; /* > 0: the entry is live */
  return left > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)left;
}
