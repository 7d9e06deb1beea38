/* store_internal.h - what the two files of the store share (store__ prefix):
 *
 *   store.c      the loop side: open/close, jobs and their parameters, submission (writes are
 *                held until the end of the loop turn, then handed over together), delivery
 *                of results through a uv_async, metrics
 *   store_run.c  the thread side: the writer (group commit with a SAVEPOINT per job,
 *                reserved transactions with an idle timeout) and the reader, running
 *                statements through a per-connection statement cache
 *
 * Jobs move loop -> queue (mutex) -> thread -> done list (mutex) -> loop. A job's fields are
 * written by one side at a time: the loop until it is queued, the thread while it runs, the
 * loop again once it is on the done list. */
#ifndef CHATGW_STORE_INTERNAL_H
#define CHATGW_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "store.h"

typedef enum { JOB_STMT, JOB_SCRIPT, JOB_TX_BEGIN, JOB_TX_COMMIT, JOB_TX_ROLLBACK } job_kind_t;

typedef struct {
  char *name; /* NULL: positional */
  store_value_t v;
} store_param_t;

struct store_job {
  store_job_t *next;
  job_kind_t kind;
  int write;
  int cancelled; /* loop side only */
  uint64_t tx;
  char *sql;
  size_t sql_len;
  store_param_t *params;
  size_t nparams, cap_params;
  store_done_fn done;
  void *ud;
  uint64_t queued_ns, done_ns;
  /* the result, filled by the thread */
  char error[512];
  int failed;
  int64_t changes, last_id;
  size_t ncols, nrows;
  char **cols;
  store_value_t *rows;
  size_t nvals, cap_vals;
  char *bytes; /* TEXT/BLOB results: value.p are offsets into it until the job is done */
  size_t nbytes, cap_bytes;
};

typedef struct {
  store_job_t *head, *tail;
} job_list_t;

/* Prepared statements of one connection, reused by SQL text (small LRU). */
#define STORE_STMT_CACHE 64
typedef struct {
  sqlite3_stmt *stmt[STORE_STMT_CACHE];
  char *key[STORE_STMT_CACHE]; /* the SQL exactly as the caller passed it */
  size_t klen[STORE_STMT_CACHE];
  uint64_t used[STORE_STMT_CACHE];
  uint64_t tick;
} stmt_cache_t;

struct store {
  uv_loop_t *loop;
  store_options_t opts;
  char path[1024];
  sqlite3 *wdb, *rdb;
  stmt_cache_t wcache, rcache;
  pthread_t writer, reader;
  int writer_started, reader_started;
  pthread_mutex_t mu;
  pthread_cond_t wcond, rcond;
  job_list_t wq, rq, done; /* under mu */
  int stopping;            /* under mu */
  size_t queued;           /* under mu: jobs in wq, rq, running */
  /* loop side */
  job_list_t held; /* writes of this loop turn, handed over at its end */
  uv_async_t async;
  uv_prepare_t prep;
  uv_check_t check;
  uint64_t next_tx;
  int closed, nclosed;
  /* stats (thread side writes under mu) */
  uint64_t commits, writes, reads, last_batch;
};

void store__list_push(job_list_t *l, store_job_t *j);
store_job_t *store__list_pop(job_list_t *l);
void *store__writer_main(void *arg);
void *store__reader_main(void *arg);
void store__cache_free(stmt_cache_t *c);
/* Runs one statement or script on db (no transaction handling) into j's result. */
void store__run_job(sqlite3 *db, stmt_cache_t *cache, store_job_t *j, size_t max_bytes);

#endif
