/* store.h - the embedded store: one SQLite database file (WAL, synchronous=NORMAL, busy
 * timeout), a writer thread and a reader thread, each with its own connection.
 *
 * Callers on the loop submit jobs (one SQL statement with bound parameters, or a script) and
 * get the result through a callback on the loop, never from a thread. Writes queued during one
 * loop turn are handed to the writer together at the end of the turn and committed in one
 * transaction, each in its own SAVEPOINT, so one failing write rolls back alone (group
 * commit); a write's callback runs after that COMMIT, so a result means the data is in the
 * file. Reads run on the reader connection and see what was committed.
 *
 * A transaction (store_tx_begin .. store_tx_end) reserves the writer: once the writes queued
 * before it are committed, only that transaction's jobs run until it ends, so no other write
 * interleaves with it; one idle for longer than the idle timeout is rolled back and its later
 * jobs fail. libuv's thread pool is not used (it is shared with DNS and fs work). */
#ifndef CHATGW_STORE_H
#define CHATGW_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct store store_t;
typedef struct store_job store_job_t;

typedef enum { STORE_NULL, STORE_INT, STORE_REAL, STORE_TEXT, STORE_BLOB } store_type_t;

typedef struct {
  store_type_t type;
  int64_t i;     /* STORE_INT */
  double r;      /* STORE_REAL */
  const char *p; /* STORE_TEXT / STORE_BLOB: len bytes (a TEXT result is also NUL-terminated) */
  size_t len;
} store_value_t;

typedef struct {
  const char *error; /* NULL on success, else "db: <sqlite's message>" or "busy: ..." */
  int64_t changes;   /* rows changed by a write */
  int64_t last_id;   /* rowid of the last insert */
  size_t ncols, nrows;
  const char *const *cols;   /* column names */
  const store_value_t *rows; /* nrows * ncols values, row after row */
} store_result_t;

/* Called once, on the loop. r and everything it points to are valid during the call only. */
typedef void (*store_done_fn)(const store_result_t *r, void *ud);

typedef struct {
  uint64_t busy_timeout_ms; /* SQLite's wait for a lock held by another process */
  uint64_t tx_idle_ms;      /* a transaction with no job for this long is rolled back */
  size_t queue_max;         /* jobs waiting (both threads); beyond: "busy: ..." */
  size_t max_result_bytes;  /* a read whose rows exceed this fails */
} store_options_t;

void store_options_default(store_options_t *o);

/* Opens (creating it if missing) the database at path and starts the threads. A file that is
 * not a database, or cannot be read or written, is an error naming the file: nothing is ever
 * deleted or recreated. NULL with err set on failure. */
store_t *store_open(uv_loop_t *loop, const char *path, const store_options_t *opts, char *err,
                    size_t errlen);
/* At exit: the writes queued so far are committed, an open transaction is rolled back, the
 * threads are joined, the connections closed and the loop handles closed (the loop must run
 * once more to finish). Callbacks not yet called are not called. */
void store_close(store_t *s);

/* A job for one statement (script 0) or a script of several statements without parameters
 * (script 1, e.g. a migration). The SQL is copied. NULL on OOM. */
store_job_t *store_job_new(const char *sql, size_t len, int script);
/* Binds the next positional parameter (name NULL) or a named one (name without its prefix:
 * ":name", "@name" and "$name" are tried). Bytes are copied. 0, or -1 on OOM. */
int store_job_bind(store_job_t *j, const char *name, const store_value_t *v);
void store_job_free(store_job_t *j); /* only for a job never submitted */

/* Submits j (consumed). write: on the writer (in the next group commit, or inside tx when tx is
 * not 0); else on the reader. done is called once from the loop unless store_cancel comes
 * first. Returns 0, or -1 with err set ("busy: ...", "db: closed"); then j is freed and done
 * is never called. */
int store_submit(store_t *s, store_job_t *j, int write, uint64_t tx, store_done_fn done, void *ud,
                 char *err, size_t errlen);
/* The caller went away: done is not called. The job still runs. */
void store_cancel(store_job_t *j);

/* Begins a transaction: done reports it open (error NULL) once the writer is reserved for it.
 * Returns the job (for store_cancel) and sets *tx, or NULL with err set. */
store_job_t *store_tx_begin(store_t *s, uint64_t *tx, store_done_fn done, void *ud, char *err,
                            size_t errlen);
/* Commits (commit 1) or rolls back tx; done (may be NULL: fire and forget) reports it. 0, or -1
 * with err set. */
int store_tx_end(store_t *s, uint64_t tx, int commit, store_done_fn done, void *ud, char *err,
                 size_t errlen);

typedef struct {
  size_t queued;       /* jobs waiting or running */
  uint64_t commits;    /* group commits and transactions committed */
  uint64_t writes;     /* write jobs finished */
  uint64_t reads;      /* read jobs finished */
  uint64_t last_batch; /* jobs in the last group commit */
} store_stats_t;
void store_stats(const store_t *s, store_stats_t *out);

#endif
