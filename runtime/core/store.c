/* store.c - the store's loop side (see store.h; store_internal.h says how the files divide the
 * work): open and close, jobs, submission with end-of-turn hand-over, result delivery. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "store_internal.h"

static metric_t *m_jobs, *m_seconds, *m_batch, *m_queue;

void store_options_default(store_options_t *o) {
  o->busy_timeout_ms = 5000;
  o->tx_idle_ms = 5000;
  o->queue_max = 100000;
  o->max_result_bytes = 64u << 20;
}

/* ---- lists ---- */

void store__list_push(job_list_t *l, store_job_t *j) {
  j->next = NULL;
  if (l->tail)
    l->tail->next = j;
  else
    l->head = j;
  l->tail = j;
}

store_job_t *store__list_pop(job_list_t *l) {
  store_job_t *j = l->head;
  if (!j) return NULL;
  l->head = j->next;
  if (!l->head) l->tail = NULL;
  j->next = NULL;
  return j;
}

/* ---- jobs ---- */

store_job_t *store_job_new(const char *sql, size_t len, int script) {
  store_job_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->sql = malloc(len + 1);
  if (!j->sql) {
    free(j);
    return NULL;
  }
  memcpy(j->sql, sql, len);
  j->sql[len] = 0;
  j->sql_len = len;
  j->kind = script ? JOB_SCRIPT : JOB_STMT;
  return j;
}

int store_job_bind(store_job_t *j, const char *name, const store_value_t *v) {
  if (j->nparams == j->cap_params) {
    size_t cap = j->cap_params ? j->cap_params * 2 : 8;
    store_param_t *np = realloc(j->params, cap * sizeof *np);
    if (!np) return -1;
    j->params = np;
    j->cap_params = cap;
  }
  store_param_t *p = &j->params[j->nparams];
  memset(p, 0, sizeof *p);
  p->v = *v;
  if (name && !(p->name = strdup(name))) return -1;
  if (v->type == STORE_TEXT || v->type == STORE_BLOB) {
    char *copy = malloc(v->len ? v->len : 1);
    if (!copy) {
      free(p->name);
      return -1;
    }
    if (v->len) memcpy(copy, v->p, v->len);
    p->v.p = copy;
  }
  j->nparams++;
  return 0;
}

void store_job_free(store_job_t *j) {
  if (!j) return;
  for (size_t i = 0; i < j->nparams; i++) {
    free(j->params[i].name);
    if (j->params[i].v.type == STORE_TEXT || j->params[i].v.type == STORE_BLOB)
      free((char *)j->params[i].v.p);
  }
  free(j->params);
  for (size_t c = 0; c < j->ncols; c++)
    free(j->cols ? j->cols[c] : NULL);
  free(j->cols);
  free(j->rows);
  free(j->bytes);
  free(j->sql);
  free(j);
}

void store_cancel(store_job_t *j) {
  if (j) j->cancelled = 1;
}

/* ---- delivery (loop) ---- */

static void deliver(store_t *s, store_job_t *j) {
  (void)s;
  const char *kind = j->write ? "write" : "read";
  const char *lv[] = {kind, j->failed ? "error" : "ok"};
  if (m_jobs) metrics_inc(m_jobs, lv, 1);
  if (m_seconds) metrics_observe(m_seconds, lv, (double)(j->done_ns - j->queued_ns) / 1e9);
  if (j->cancelled || !j->done) return;
  for (size_t i = 0; i < j->nvals; i++) /* offsets -> pointers: the bytes no longer move */
    if (j->rows[i].type == STORE_TEXT || j->rows[i].type == STORE_BLOB)
      j->rows[i].p = j->bytes + (uintptr_t)j->rows[i].p;
  store_result_t r;
  memset(&r, 0, sizeof r);
  r.error = j->failed ? j->error : NULL;
  r.changes = j->changes;
  r.last_id = j->last_id;
  r.ncols = j->ncols;
  r.nrows = j->nrows;
  r.cols = (const char *const *)j->cols;
  r.rows = j->rows;
  j->done(&r, j->ud);
}

static void on_async(uv_async_t *a) {
  store_t *s = a->data;
  pthread_mutex_lock(&s->mu);
  store_job_t *list = s->done.head;
  s->done.head = s->done.tail = NULL;
  size_t queued = s->queued;
  uint64_t batch = s->last_batch;
  pthread_mutex_unlock(&s->mu);
  while (list) {
    store_job_t *j = list;
    list = j->next;
    deliver(s, j);
    store_job_free(j);
  }
  if (m_queue) metrics_set(m_queue, NULL, (double)queued);
  if (m_batch && batch) metrics_set(m_batch, NULL, (double)batch);
}

/* The writes held during a loop phase go to the writer together: right before the loop would
 * block in poll (prepare: writes made by timers and deferred resumes) and right after it
 * (check: writes made by I/O callbacks). */
static void hand_over(store_t *s) {
  uv_prepare_stop(&s->prep);
  uv_check_stop(&s->check);
  if (!s->held.head) return;
  pthread_mutex_lock(&s->mu);
  if (s->wq.tail)
    s->wq.tail->next = s->held.head;
  else
    s->wq.head = s->held.head;
  s->wq.tail = s->held.tail;
  pthread_cond_signal(&s->wcond);
  pthread_mutex_unlock(&s->mu);
  s->held.head = s->held.tail = NULL;
}

static void on_prepare(uv_prepare_t *h) {
  hand_over(h->data);
}

static void on_check(uv_check_t *h) {
  hand_over(h->data);
}

int store_submit(store_t *s, store_job_t *j, int write, uint64_t tx, store_done_fn done, void *ud,
                 char *err, size_t errlen) {
  if (s->closed) {
    snprintf(err, errlen, "db: closed");
    store_job_free(j);
    return -1;
  }
  pthread_mutex_lock(&s->mu);
  size_t queued = s->queued;
  if (queued >= s->opts.queue_max) {
    pthread_mutex_unlock(&s->mu);
    snprintf(err, errlen, "busy: the store has %zu jobs waiting (store.queue_max)", queued);
    store_job_free(j);
    return -1;
  }
  s->queued++;
  j->write = write || tx;
  j->tx = tx;
  j->done = done;
  j->ud = ud;
  j->queued_ns = uv_hrtime();
  if (!j->write) {
    store__list_push(&s->rq, j);
    pthread_cond_signal(&s->rcond);
    pthread_mutex_unlock(&s->mu);
    return 0;
  }
  if (tx) { /* inside an open transaction: no reason to wait for the turn's end */
    store__list_push(&s->wq, j);
    pthread_cond_signal(&s->wcond);
    pthread_mutex_unlock(&s->mu);
    return 0;
  }
  pthread_mutex_unlock(&s->mu);
  store__list_push(&s->held, j);
  if (!uv_is_active((uv_handle_t *)&s->check)) {
    uv_prepare_start(&s->prep, on_prepare);
    uv_check_start(&s->check, on_check);
  }
  return 0;
}

store_job_t *store_tx_begin(store_t *s, uint64_t *tx, store_done_fn done, void *ud, char *err,
                            size_t errlen) {
  store_job_t *j = calloc(1, sizeof *j);
  if (!j) {
    snprintf(err, errlen, "db: out of memory");
    return NULL;
  }
  j->kind = JOB_TX_BEGIN;
  *tx = ++s->next_tx;
  /* A begin is queued as a plain write (tx 0) so it lines up after this turn's writes. */
  if (store_submit(s, j, 1, 0, done, ud, err, errlen) != 0) return NULL;
  j->tx = *tx;
  return j;
}

int store_tx_end(store_t *s, uint64_t tx, int commit, store_done_fn done, void *ud, char *err,
                 size_t errlen) {
  store_job_t *j = calloc(1, sizeof *j);
  if (!j) {
    snprintf(err, errlen, "db: out of memory");
    return -1;
  }
  j->kind = commit ? JOB_TX_COMMIT : JOB_TX_ROLLBACK;
  return store_submit(s, j, 1, tx, done, ud, err, errlen);
}

void store_stats(const store_t *s, store_stats_t *out) {
  store_t *m = (store_t *)s;
  pthread_mutex_lock(&m->mu);
  out->queued = m->queued;
  out->commits = m->commits;
  out->writes = m->writes;
  out->reads = m->reads;
  out->last_batch = m->last_batch;
  pthread_mutex_unlock(&m->mu);
}

/* ---- open / close ---- */

static int pragma(sqlite3 *db, const char *sql, char *err, size_t errlen, const char *path) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
  snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(db));
  sqlite3_free(msg);
  return -1;
}

static int open_conn(const char *path, int flags, uint64_t busy_ms, sqlite3 **out, char *err,
                     size_t errlen) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "%s: cannot open the database: %s", path,
             db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return -1;
  }
  sqlite3_busy_timeout(db, (int)busy_ms);
  sqlite3_extended_result_codes(db, 1);
  *out = db;
  return 0;
}

static void on_closed(uv_handle_t *h) {
  store_t *s = h->data;
  if (++s->nclosed < 3) return; /* the async, the prepare and the check */
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->wcond);
  pthread_cond_destroy(&s->rcond);
  free(s);
}

static void metrics_setup(void) {
  if (m_jobs) return;
  static const char *const kr[] = {"kind", "result"};
  static const double buckets[] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                   0.025,  0.05,   0.1,   0.25,   1,     5};
  m_jobs = metrics_counter("chatgw_store_jobs_total",
                           "Store statements run, by kind (write, read) and result (ok, error)", kr,
                           2, NULL);
  m_seconds = metrics_histogram("chatgw_store_job_seconds",
                                "Store statements: submit to result, by kind and result", kr, 2,
                                buckets, sizeof buckets / sizeof buckets[0], NULL);
  m_batch = metrics_gauge("chatgw_store_last_batch_jobs",
                          "Writes committed together in the last group commit", NULL, 0, NULL);
  m_queue =
      metrics_gauge("chatgw_store_queue_jobs", "Store jobs waiting or running", NULL, 0, NULL);
}

store_t *store_open(uv_loop_t *loop, const char *path, const store_options_t *opts, char *err,
                    size_t errlen) {
  store_t *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "%s: out of memory", path);
    return NULL;
  }
  s->loop = loop;
  if (opts)
    s->opts = *opts;
  else
    store_options_default(&s->opts);
  snprintf(s->path, sizeof s->path, "%s", path);
  /* Files of the store are not passed to children (SQLite opens with O_CLOEXEC itself). */
  if (open_conn(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, s->opts.busy_timeout_ms, &s->wdb,
                err, errlen) != 0)
    goto fail;
  /* Reading the schema is what finds a file that is not a database (or is encrypted). */
  if (pragma(s->wdb, "PRAGMA journal_mode=WAL", err, errlen, path) != 0 ||
      pragma(s->wdb, "SELECT count(*) FROM sqlite_master", err, errlen, path) != 0 ||
      pragma(s->wdb, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY",
             err, errlen, path) != 0)
    goto fail;
  if (open_conn(path, SQLITE_OPEN_READONLY, s->opts.busy_timeout_ms, &s->rdb, err, errlen) != 0)
    goto fail;
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->wcond, &ca);
  pthread_condattr_destroy(&ca);
  pthread_cond_init(&s->rcond, NULL);
  uv_async_init(loop, &s->async, on_async);
  s->async.data = s;
  uv_prepare_init(loop, &s->prep);
  s->prep.data = s;
  uv_check_init(loop, &s->check);
  s->check.data = s;
  metrics_setup();
  if (pthread_create(&s->writer, NULL, store__writer_main, s) == 0) s->writer_started = 1;
  if (pthread_create(&s->reader, NULL, store__reader_main, s) == 0) s->reader_started = 1;
  if (!s->writer_started || !s->reader_started) {
    snprintf(err, errlen, "%s: cannot start the store's threads", path);
    store_close(s);
    return NULL;
  }
  return s;
fail:
  if (s->wdb) sqlite3_close(s->wdb);
  if (s->rdb) sqlite3_close(s->rdb);
  free(s);
  return NULL;
}

void store_close(store_t *s) {
  if (!s || s->closed) return;
  hand_over(s); /* what this turn still holds */
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  pthread_cond_broadcast(&s->wcond);
  pthread_cond_broadcast(&s->rcond);
  pthread_mutex_unlock(&s->mu);
  if (s->writer_started) pthread_join(s->writer, NULL);
  if (s->reader_started) pthread_join(s->reader, NULL);
  s->closed = 1;
  /* Results nobody waits for any more are dropped. */
  pthread_mutex_lock(&s->mu);
  store_job_t *list = s->done.head;
  s->done.head = s->done.tail = NULL;
  store_job_t *left = s->wq.head;
  s->wq.head = s->wq.tail = NULL;
  pthread_mutex_unlock(&s->mu);
  while (list) {
    store_job_t *n = list->next;
    store_job_free(list);
    list = n;
  }
  while (left) { /* jobs of a transaction that never ended */
    store_job_t *n = left->next;
    store_job_free(left);
    left = n;
  }
  store__cache_free(&s->wcache);
  store__cache_free(&s->rcache);
  sqlite3_close(s->rdb);
  sqlite3_close(s->wdb);
  s->rdb = s->wdb = NULL;
  uv_close((uv_handle_t *)&s->async, on_closed);
  uv_close((uv_handle_t *)&s->prep, on_closed);
  uv_close((uv_handle_t *)&s->check, on_closed);
}
