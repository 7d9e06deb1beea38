/* store_run.c - the store's threads (see store_internal.h): statements through a statement
 * cache, the writer's group commit and reserved transactions, the reader. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "store_internal.h"

/* ---- statement cache ---- */

/* Whitespace and SQL comments only: what may follow the one statement of a call. */
static int only_blank(const char *p, size_t n) {
  const char *end = p + n;
  while (p < end) {
    if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ';') {
      p++;
    } else if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
      while (p < end && *p != '\n')
        p++;
    } else if (end - p >= 2 && p[0] == '/' && p[1] == '*') {
      const char *c = p + 2;
      while (c + 1 < end && !(c[0] == '*' && c[1] == '/'))
        c++;
      if (c + 1 >= end) return 1; /* an unterminated comment runs to the end */
      p = c + 2;
    } else {
      return 0;
    }
  }
  return 1;
}

static sqlite3_stmt *cache_get(sqlite3 *db, stmt_cache_t *c, const char *sql, size_t len,
                               const char **err) {
  c->tick++;
  int free_slot = -1, lru = 0;
  for (int i = 0; i < STORE_STMT_CACHE; i++) {
    sqlite3_stmt *s = c->stmt[i];
    if (!s) {
      if (free_slot < 0) free_slot = i;
      continue;
    }
    if (c->klen[i] == len && memcmp(c->key[i], sql, len) == 0) {
      c->used[i] = c->tick;
      return s;
    }
    if (c->used[i] < c->used[lru]) lru = i;
  }
  sqlite3_stmt *s = NULL;
  const char *rest = NULL;
  if (sqlite3_prepare_v3(db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, &s, &rest) != SQLITE_OK) {
    *err = sqlite3_errmsg(db);
    return NULL;
  }
  if (!s) { /* only whitespace or a comment */
    *err = "empty statement";
    return NULL;
  }
  if (rest && !only_blank(rest, (size_t)(sql + len - rest))) {
    /* a second statement would be silently skipped: say so instead */
    sqlite3_finalize(s);
    *err = "one statement per call (several: tx:script)";
    return NULL;
  }
  char *key = malloc(len + 1);
  if (!key) {
    sqlite3_finalize(s);
    *err = "out of memory";
    return NULL;
  }
  memcpy(key, sql, len);
  key[len] = 0;
  int slot = free_slot >= 0 ? free_slot : lru;
  if (c->stmt[slot]) sqlite3_finalize(c->stmt[slot]);
  free(c->key[slot]);
  c->key[slot] = key;
  c->klen[slot] = len;
  c->stmt[slot] = s;
  c->used[slot] = c->tick;
  return s;
}

void store__cache_free(stmt_cache_t *c) {
  for (int i = 0; i < STORE_STMT_CACHE; i++) {
    if (c->stmt[i]) sqlite3_finalize(c->stmt[i]);
    c->stmt[i] = NULL;
    free(c->key[i]);
    c->key[i] = NULL;
  }
}

/* ---- results ---- */

static void job_fail(store_job_t *j, const char *prefix, const char *msg) {
  j->failed = 1;
  snprintf(j->error, sizeof j->error, "%s: %s", prefix, msg);
}

static int add_bytes(store_job_t *j, const void *p, size_t n, size_t *off) {
  if (j->nbytes + n + 1 > j->cap_bytes) {
    size_t cap = j->cap_bytes ? j->cap_bytes : 1024;
    while (cap < j->nbytes + n + 1)
      cap *= 2;
    char *nb = realloc(j->bytes, cap);
    if (!nb) return -1;
    j->bytes = nb;
    j->cap_bytes = cap;
  }
  *off = j->nbytes;
  if (n) memcpy(j->bytes + j->nbytes, p, n);
  j->bytes[j->nbytes + n] = 0;
  j->nbytes += n + 1;
  return 0;
}

static int add_value(store_job_t *j, sqlite3_stmt *s, int col) {
  if (j->nvals == j->cap_vals) {
    size_t cap = j->cap_vals ? j->cap_vals * 2 : 64;
    store_value_t *nv = realloc(j->rows, cap * sizeof *nv);
    if (!nv) return -1;
    j->rows = nv;
    j->cap_vals = cap;
  }
  store_value_t *v = &j->rows[j->nvals++];
  memset(v, 0, sizeof *v);
  switch (sqlite3_column_type(s, col)) {
  case SQLITE_INTEGER:
    v->type = STORE_INT;
    v->i = sqlite3_column_int64(s, col);
    return 0;
  case SQLITE_FLOAT:
    v->type = STORE_REAL;
    v->r = sqlite3_column_double(s, col);
    return 0;
  case SQLITE_NULL:
    v->type = STORE_NULL;
    return 0;
  case SQLITE_BLOB:
    v->type = STORE_BLOB;
    break;
  default:
    v->type = STORE_TEXT;
    break;
  }
  const void *p = v->type == STORE_BLOB ? sqlite3_column_blob(s, col) : sqlite3_column_text(s, col);
  size_t n = (size_t)sqlite3_column_bytes(s, col);
  size_t off;
  if (add_bytes(j, p, n, &off) != 0) return -1;
  v->p = (const char *)(uintptr_t)off; /* an offset until the job is done (bytes may move) */
  v->len = n;
  return 0;
}

static int bind_one(sqlite3_stmt *s, int idx, const store_value_t *v) {
  switch (v->type) {
  case STORE_INT:
    return sqlite3_bind_int64(s, idx, v->i);
  case STORE_REAL:
    return sqlite3_bind_double(s, idx, v->r);
  case STORE_TEXT:
    return sqlite3_bind_text64(s, idx, v->p, v->len, SQLITE_STATIC, SQLITE_UTF8);
  case STORE_BLOB:
    return sqlite3_bind_blob64(s, idx, v->p, v->len, SQLITE_STATIC);
  default:
    return sqlite3_bind_null(s, idx);
  }
}

static int bind_params(sqlite3_stmt *s, store_job_t *j) {
  int pos = 0, n = sqlite3_bind_parameter_count(s);
  for (size_t i = 0; i < j->nparams; i++) {
    const store_param_t *p = &j->params[i];
    int idx;
    if (p->name) {
      static const char prefixes[] = ":@$";
      char name[256];
      idx = 0;
      for (int k = 0; k < 3 && !idx; k++) {
        snprintf(name, sizeof name, "%c%s", prefixes[k], p->name);
        idx = sqlite3_bind_parameter_index(s, name);
      }
      if (!idx) {
        j->failed = 1;
        snprintf(j->error, sizeof j->error, "db: the statement has no parameter :%s", p->name);
        return -1;
      }
    } else {
      idx = ++pos;
      if (idx > n) {
        snprintf(j->error, sizeof j->error, "db: %zu values for %d parameters", j->nparams, n);
        j->failed = 1;
        return -1;
      }
    }
    if (bind_one(s, idx, &p->v) != SQLITE_OK) {
      job_fail(j, "db", sqlite3_errmsg(sqlite3_db_handle(s)));
      return -1;
    }
  }
  return 0;
}

void store__run_job(sqlite3 *db, stmt_cache_t *cache, store_job_t *j, size_t max_bytes) {
  if (j->kind == JOB_SCRIPT) {
    char *msg = NULL;
    if (sqlite3_exec(db, j->sql, NULL, NULL, &msg) != SQLITE_OK) {
      job_fail(j, "db", msg ? msg : sqlite3_errmsg(db));
      sqlite3_free(msg);
      return;
    }
    j->changes = sqlite3_changes64(db);
    return;
  }
  const char *perr = NULL;
  sqlite3_stmt *s = cache_get(db, cache, j->sql, j->sql_len, &perr);
  if (!s) {
    job_fail(j, "db", perr);
    return;
  }
  if (bind_params(s, j) == 0) {
    sqlite3_set_last_insert_rowid(db, 0); /* a statement that inserts nothing reports 0 */
    int ncols = sqlite3_column_count(s);
    if (ncols > 0) {
      j->ncols = (size_t)ncols;
      j->cols = calloc((size_t)ncols, sizeof *j->cols);
      for (int c = 0; j->cols && c < ncols; c++)
        j->cols[c] = strdup(sqlite3_column_name(s, c) ? sqlite3_column_name(s, c) : "?");
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      for (int c = 0; c < ncols; c++) {
        if (add_value(j, s, c) != 0) {
          job_fail(j, "db", "out of memory");
          break;
        }
      }
      if (j->failed) break;
      j->nrows++;
      if (j->nbytes + j->nvals * sizeof(store_value_t) > max_bytes) {
        snprintf(j->error, sizeof j->error, "db: result too large (over %zu bytes; use LIMIT)",
                 max_bytes);
        j->failed = 1;
        break;
      }
    }
    if (!j->failed && rc != SQLITE_DONE) job_fail(j, "db", sqlite3_errmsg(db));
    if (!j->failed && !sqlite3_stmt_readonly(s)) {
      /* both are the connection's: only meaningful for a statement that wrote (a SELECT
       * would report the previous write's); the rowid was zeroed before the step */
      j->changes = sqlite3_changes64(db);
      j->last_id = sqlite3_last_insert_rowid(db);
    }
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
}

/* ---- the writer ---- */

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
  snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
  sqlite3_free(msg);
  return -1;
}

static void finish(store_t *s, store_job_t *j, int write) {
  j->done_ns = uv_hrtime();
  pthread_mutex_lock(&s->mu);
  store__list_push(&s->done, j);
  s->queued--;
  if (write)
    s->writes++;
  else
    s->reads++;
  pthread_mutex_unlock(&s->mu);
  uv_async_send(&s->async); /* thread-safe; wake-ups merge */
}

/* The writes of one batch (no transaction jobs): one BEGIN..COMMIT, a SAVEPOINT per job. */
static void run_batch(store_t *s, store_job_t *batch, size_t n) {
  char err[400];
  if (exec_sql(s->wdb, "BEGIN IMMEDIATE", err, sizeof err) != 0) {
    for (store_job_t *j = batch; j; j = j->next)
      job_fail(j, "db", err);
  } else {
    for (store_job_t *j = batch; j; j = j->next) {
      sqlite3_exec(s->wdb, "SAVEPOINT job", NULL, NULL, NULL);
      store__run_job(s->wdb, &s->wcache, j, s->opts.max_result_bytes);
      if (j->failed) sqlite3_exec(s->wdb, "ROLLBACK TO job", NULL, NULL, NULL);
      sqlite3_exec(s->wdb, "RELEASE job", NULL, NULL, NULL);
    }
    if (exec_sql(s->wdb, "COMMIT", err, sizeof err) != 0) {
      sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
      for (store_job_t *j = batch; j; j = j->next) {
        j->failed = 1;
        snprintf(j->error, sizeof j->error, "db: commit failed: %.400s", err);
        j->changes = 0;
      }
    } else {
      pthread_mutex_lock(&s->mu);
      s->commits++;
      s->last_batch = n;
      pthread_mutex_unlock(&s->mu);
    }
  }
  while (batch) {
    store_job_t *next = batch->next;
    finish(s, batch, 1);
    batch = next;
  }
}

/* Takes from wq (under mu): while transaction tx is open, its jobs (in order) and nothing
 * else; otherwise a transaction begin alone when it is first, or every job before the first
 * begin (plain writes, and stray jobs of a transaction no longer open, which fail). */
static store_job_t *take(store_t *s, uint64_t tx, size_t *n) {
  store_job_t *out = NULL, **tail = &out, **pp = &s->wq.head, *prev = NULL;
  *n = 0;
  while (*pp) {
    store_job_t *j = *pp;
    int mine;
    if (tx)
      mine = j->tx == tx;
    else if (j->kind == JOB_TX_BEGIN)
      mine = *n == 0;
    else
      mine = 1;
    if (!mine && !tx) break; /* a begin after plain jobs: it waits for their commit */
    if (mine) {
      *pp = j->next;
      if (s->wq.tail == j) s->wq.tail = prev;
      j->next = NULL;
      *tail = j;
      tail = &j->next;
      (*n)++;
      if (!tx && j->kind == JOB_TX_BEGIN) break;
    } else {
      prev = j;
      pp = &j->next;
    }
  }
  return out;
}

static void timed_wait(pthread_cond_t *c, pthread_mutex_t *mu, uint64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(c, mu, &ts);
}

void *store__writer_main(void *arg) {
  store_t *s = arg;
  uint64_t tx = 0;        /* the transaction holding the writer */
  uint64_t tx_active = 0; /* uv_hrtime of its last job */
  char err[400];
  for (;;) {
    pthread_mutex_lock(&s->mu);
    size_t n = 0;
    store_job_t *batch = NULL;
    for (;;) {
      batch = take(s, tx, &n);
      if (batch || (s->stopping && (tx || !s->wq.head))) break;
      if (tx) {
        uint64_t idle_ms = (uv_hrtime() - tx_active) / 1000000u;
        if (idle_ms >= s->opts.tx_idle_ms) break;
        timed_wait(&s->wcond, &s->mu, s->opts.tx_idle_ms - idle_ms);
      } else {
        pthread_cond_wait(&s->wcond, &s->mu);
      }
    }
    int stop = s->stopping;
    pthread_mutex_unlock(&s->mu);

    if (!batch) {
      if (tx) { /* idle too long, or stopping with it open: roll it back */
        sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
        tx = 0;
        continue;
      }
      if (stop) break;
      continue;
    }
    if (tx) {
      tx_active = uv_hrtime();
      while (batch) {
        store_job_t *j = batch;
        batch = j->next;
        j->next = NULL;
        if (j->kind == JOB_TX_COMMIT || j->kind == JOB_TX_ROLLBACK) {
          if (exec_sql(s->wdb, j->kind == JOB_TX_COMMIT ? "COMMIT" : "ROLLBACK", err, sizeof err) !=
              0) {
            job_fail(j, "db", err);
            sqlite3_exec(s->wdb, "ROLLBACK", NULL, NULL, NULL);
          } else if (j->kind == JOB_TX_COMMIT) {
            pthread_mutex_lock(&s->mu);
            s->commits++;
            pthread_mutex_unlock(&s->mu);
          }
          tx = 0;
        } else {
          store__run_job(s->wdb, &s->wcache, j, s->opts.max_result_bytes);
        }
        finish(s, j, 1);
      }
      continue;
    }
    if (batch->kind == JOB_TX_BEGIN) {
      if (exec_sql(s->wdb, "BEGIN IMMEDIATE", err, sizeof err) != 0)
        job_fail(batch, "db", err);
      else
        tx = batch->tx;
      tx_active = uv_hrtime();
      finish(s, batch, 1);
      continue;
    }
    /* Jobs of a transaction that is not open (it timed out, or its begin failed). */
    store_job_t *plain = NULL, **ptail = &plain;
    size_t nplain = 0;
    while (batch) {
      store_job_t *j = batch;
      batch = j->next;
      j->next = NULL;
      if (j->tx) {
        snprintf(j->error, sizeof j->error,
                 "db: the transaction is not open (rolled back after %llu ms idle, or its begin "
                 "failed)",
                 (unsigned long long)s->opts.tx_idle_ms);
        j->failed = j->kind != JOB_TX_ROLLBACK; /* rolling back a dead one is fine */
        finish(s, j, 1);
      } else {
        *ptail = j;
        ptail = &j->next;
        nplain++;
      }
    }
    if (plain) run_batch(s, plain, nplain);
  }
  return NULL;
}

void *store__reader_main(void *arg) {
  store_t *s = arg;
  for (;;) {
    pthread_mutex_lock(&s->mu);
    while (!s->rq.head && !s->stopping)
      pthread_cond_wait(&s->rcond, &s->mu);
    store_job_t *j = store__list_pop(&s->rq);
    pthread_mutex_unlock(&s->mu);
    if (!j) break; /* stopping and nothing left */
    store__run_job(s->rdb, &s->rcache, j, s->opts.max_result_bytes);
    finish(s, j, 0);
  }
  return NULL;
}
