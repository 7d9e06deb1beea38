/* shared.h - named dictionaries kept in C that survive Lua reloads.
 *
 * Values are strings (binary safe), numbers (double) or booleans. Each entry may expire
 * (ttl_ms > 0). Each dictionary has a byte cap (keys + values + per-entry overhead); when
 * a set would exceed it, expired entries are dropped first, then least recently used ones
 * ("forcible" eviction, reported to the caller). */
#ifndef CHATGW_SHARED_H
#define CHATGW_SHARED_H

#include <stddef.h>
#include <stdint.h>

typedef struct shared_dict shared_dict_t;

typedef enum { SHARED_NIL = 0, SHARED_STRING, SHARED_NUMBER, SHARED_BOOLEAN } shared_type_t;

typedef struct {
  shared_type_t type;
  const char *str; /* SHARED_STRING: points into the dict; valid until the next mutation */
  size_t len;
  double num;
  int boolean;
} shared_value_t;

#define SHARED_DEFAULT_MAX_BYTES (1024 * 1024)

/* Returns the dictionary called name, creating it with max_bytes (0 = default) if absent.
 * An existing dictionary keeps its original cap. */
shared_dict_t *shared_dict_get(const char *name, size_t max_bytes);
void shared_dict_free_all(void); /* at process exit */

/* now_ms: monotonic milliseconds (callers pass uv_now or a test clock). */
int shared_get(shared_dict_t *d, const char *key, size_t klen, uint64_t now_ms,
               shared_value_t *out); /* 1 found, 0 absent/expired */
/* set: val NULL or type SHARED_NIL deletes. Returns 0 ok, -1 if the entry alone is larger than
 * the cap. *forcible (may be NULL) set to 1 when live entries were evicted to make room. */
int shared_set(shared_dict_t *d, const char *key, size_t klen, const shared_value_t *val,
               uint64_t ttl_ms, uint64_t now_ms, int *forcible);
/* add: like set but only when absent (or expired). Returns 1 added, 0 exists, -1 too large. */
int shared_add(shared_dict_t *d, const char *key, size_t klen, const shared_value_t *val,
               uint64_t ttl_ms, uint64_t now_ms, int *forcible);
/* incr: numeric add. Absent key: uses init (if has_init) else returns -1 ("not found").
 * Existing non-number: -2 ("not a number"). On success 0 and *result set. The TTL of an
 * existing entry is kept; a new one gets init_ttl_ms. -3: a new entry does not fit. */
int shared_incr(shared_dict_t *d, const char *key, size_t klen, double by, int has_init,
                double init, uint64_t init_ttl_ms, uint64_t now_ms, double *result);
int shared_delete(shared_dict_t *d, const char *key, size_t klen); /* 1 deleted, 0 absent */
void shared_flush(shared_dict_t *d);                               /* drop all entries */
size_t shared_count(shared_dict_t *d, uint64_t now_ms);            /* live (unexpired) entries */
size_t shared_bytes_used(shared_dict_t *d);
size_t shared_max_bytes(shared_dict_t *d);
/* Calls fn for up to max live keys (0 = all), most recently used first. */
void shared_keys(shared_dict_t *d, uint64_t now_ms, size_t max,
                 void (*fn)(const char *key, size_t klen, void *ud), void *ud);
/* Remaining TTL in ms: >0, 0 for no expiry, -1 absent. */
int64_t shared_ttl(shared_dict_t *d, const char *key, size_t klen, uint64_t now_ms);

#endif
