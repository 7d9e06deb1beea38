/* test_store.c - runtime/core/store.c on a real SQLite file in a temporary directory: group
 * commit (writes of one loop turn in one transaction, a failing write rolled back alone),
 * parameters of every type (positional and named), reads on the reader connection, a
 * transaction that nothing interleaves with (and what the reader sees before and after),
 * the idle timeout of a transaction, scripts, the result size cap, cancelled jobs, the queue
 * cap, writes queued at close (committed), and a corrupt file (an error naming it; the file
 * is not touched). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"
#include "metrics.h"
#include "store.h"

#include "check.h"

static uv_loop_t g_loop;
static char g_dir[256];

typedef struct {
  int done;
  int order; /* completion order */
  char error[512];
  int64_t changes, last_id;
  size_t nrows, ncols;
  char cell[16][128]; /* the first rows' values as text */
  store_type_t type[16];
} res_t;

static int g_order;

static void on_done(const store_result_t *r, void *ud) {
  res_t *x = ud;
  x->done = 1;
  x->order = ++g_order;
  snprintf(x->error, sizeof x->error, "%s", r->error ? r->error : "");
  x->changes = r->changes;
  x->last_id = r->last_id;
  x->nrows = r->nrows;
  x->ncols = r->ncols;
  for (size_t i = 0; i < r->nrows * r->ncols && i < 16; i++) {
    const store_value_t *v = &r->rows[i];
    x->type[i] = v->type;
    switch (v->type) {
    case STORE_INT:
      snprintf(x->cell[i], sizeof x->cell[i], "%lld", (long long)v->i);
      break;
    case STORE_REAL:
      snprintf(x->cell[i], sizeof x->cell[i], "%g", v->r);
      break;
    case STORE_NULL:
      snprintf(x->cell[i], sizeof x->cell[i], "NULL");
      break;
    default: /* text/blob: printable bytes, others as '.' */
      for (size_t k = 0; k < v->len && k + 1 < sizeof x->cell[i]; k++)
        x->cell[i][k] = v->p[k] >= 32 && v->p[k] < 127 ? v->p[k] : '.';
      x->cell[i][v->len < sizeof x->cell[i] ? v->len : sizeof x->cell[i] - 1] = 0;
    }
  }
}

static void wait_for(res_t *r) {
  for (int i = 0; i < 2000 && !r->done; i++)
    uv_run(&g_loop, UV_RUN_ONCE);
}

static store_job_t *job(const char *sql) {
  return store_job_new(sql, strlen(sql), 0);
}

static void bind_text(store_job_t *j, const char *name, const char *s) {
  store_value_t v = {STORE_TEXT, 0, 0, s, strlen(s)};
  store_job_bind(j, name, &v);
}

static void bind_int(store_job_t *j, const char *name, int64_t i) {
  store_value_t v = {STORE_INT, i, 0, NULL, 0};
  store_job_bind(j, name, &v);
}

static int submit(store_t *s, store_job_t *j, int write, uint64_t tx, res_t *r) {
  char err[256];
  memset(r, 0, sizeof *r);
  int rc = store_submit(s, j, write, tx, on_done, r, err, sizeof err);
  if (rc != 0) snprintf(r->error, sizeof r->error, "%s", err);
  return rc;
}

/* Runs one job to its end. */
static void run(store_t *s, const char *sql, int write, res_t *r) {
  submit(s, job(sql), write, 0, r);
  wait_for(r);
}

static store_t *open_store(const char *name, const store_options_t *o) {
  char path[512], err[512] = "";
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  store_t *s = store_open(&g_loop, path, o, err, sizeof err);
  if (!s) printf("FAIL open %s: %s\n", path, err);
  return s;
}

static void close_store(store_t *s) {
  store_close(s);
  uv_run(&g_loop, UV_RUN_NOWAIT);
}

static void test_group_commit(store_t *s) {
  res_t r;
  run(s, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n REAL, b BLOB)", 1, &r);
  check(r.done && !r.error[0], "create table (%s)", r.error);
  store_stats_t before;
  store_stats(s, &before);
  res_t a, b, c;
  store_job_t *j = job("INSERT INTO t (name) VALUES (?)");
  bind_text(j, NULL, "alice");
  submit(s, j, 1, 0, &a);
  j = job("INSERT INTO t (name) VALUES (?)");
  bind_text(j, NULL, "alice"); /* UNIQUE: fails */
  submit(s, j, 1, 0, &b);
  j = job("INSERT INTO t (name) VALUES (?)");
  bind_text(j, NULL, "bob");
  submit(s, j, 1, 0, &c);
  wait_for(&a);
  wait_for(&b);
  wait_for(&c);
  check(!a.error[0] && a.changes == 1 && a.last_id == 1, "first write ok, id 1 (%s)", a.error);
  check(strstr(b.error, "db: UNIQUE constraint failed") == b.error,
        "the failing write fails alone: %s", b.error);
  check(!c.error[0] && c.last_id == 2, "the write after it commits (id %lld)",
        (long long)c.last_id);
  store_stats_t after;
  store_stats(s, &after);
  check(after.commits == before.commits + 1 && after.last_batch == 3,
        "three writes of one loop turn: one commit, a batch of 3 (%llu, %llu)",
        (unsigned long long)(after.commits - before.commits), (unsigned long long)after.last_batch);
  run(s, "SELECT name FROM t ORDER BY id", 0, &r);
  check(r.nrows == 2 && strcmp(r.cell[0], "alice") == 0 && strcmp(r.cell[1], "bob") == 0,
        "the reader sees the two committed rows (%zu)", r.nrows);
}

static void test_params(store_t *s) {
  res_t r;
  store_job_t *j = job("INSERT INTO t (name, n, b) VALUES (:name, :n, @b)");
  bind_text(j, "name", "x\ny");
  store_value_t real = {STORE_REAL, 0, 2.5, NULL, 0};
  store_job_bind(j, "n", &real);
  static const char blob[] = {'a', 0, 'b'};
  store_value_t bl = {STORE_BLOB, 0, 0, blob, 3};
  store_job_bind(j, "b", &bl);
  submit(s, j, 1, 0, &r);
  wait_for(&r);
  check(!r.error[0], "named parameters (:name, @b) bind (%s)", r.error);
  run(s, "SELECT name, n, b, length(b), typeof(b) FROM t WHERE n = 2.5", 0, &r);
  check(r.nrows == 1 && r.type[0] == STORE_TEXT && strcmp(r.cell[0], "x.y") == 0 &&
            r.type[1] == STORE_REAL && strcmp(r.cell[1], "2.5") == 0 && r.type[2] == STORE_BLOB &&
            strcmp(r.cell[2], "a.b") == 0 && strcmp(r.cell[3], "3") == 0 &&
            strcmp(r.cell[4], "blob") == 0,
        "text, real and a blob with a NUL come back typed and whole");
  j = job("SELECT ? + 1, ?, ?");
  bind_int(j, NULL, 9007199254740993LL);
  store_value_t null = {STORE_NULL, 0, 0, NULL, 0};
  store_job_bind(j, NULL, &null);
  bind_text(j, NULL, "");
  submit(s, j, 0, 0, &r);
  wait_for(&r);
  check(r.nrows == 1 && strcmp(r.cell[0], "9007199254740994") == 0 && r.type[1] == STORE_NULL &&
            r.type[2] == STORE_TEXT && r.cell[2][0] == 0,
        "64-bit integers exact, NULL, empty text (%s)", r.cell[0]);
  j = job("SELECT ?");
  bind_int(j, NULL, 1);
  bind_int(j, NULL, 2);
  submit(s, j, 0, 0, &r);
  wait_for(&r);
  check(strstr(r.error, "db: 2 values for 1 parameters") != NULL, "too many values: %s", r.error);
  j = job("SELECT :a");
  bind_int(j, "b", 1);
  submit(s, j, 0, 0, &r);
  wait_for(&r);
  check(strstr(r.error, "no parameter :b") != NULL, "unknown name: %s", r.error);
  run(s, "SELEC nonsense", 0, &r);
  check(strstr(r.error, "db: near \"SELEC\"") == r.error, "syntax error reported: %s", r.error);
}

static void test_tx(store_t *s) {
  res_t begin, w1, in_tx_read, reader, plain, commit, after;
  uint64_t tx = 0;
  char err[256];
  memset(&begin, 0, sizeof begin);
  store_tx_begin(s, &tx, on_done, &begin, err, sizeof err);
  wait_for(&begin);
  check(begin.done && !begin.error[0] && tx, "transaction begins (%s)", begin.error);
  submit(s, job("INSERT INTO t (name) VALUES ('in-tx')"), 1, tx, &w1);
  wait_for(&w1);
  /* a plain write submitted now must wait for the transaction's end */
  submit(s, job("INSERT INTO t (name) VALUES ('plain')"), 1, 0, &plain);
  submit(s, job("SELECT count(*) FROM t WHERE name = 'in-tx'"), 1, tx, &in_tx_read);
  wait_for(&in_tx_read);
  submit(s, job("SELECT count(*) FROM t WHERE name = 'in-tx'"), 0, 0, &reader);
  wait_for(&reader);
  check(strcmp(in_tx_read.cell[0], "1") == 0, "inside the transaction its write is visible");
  check(strcmp(reader.cell[0], "0") == 0, "the reader does not see it before the commit");
  for (int i = 0; i < 20; i++)
    uv_run(&g_loop, UV_RUN_NOWAIT);
  check(!plain.done, "a plain write waits while the transaction holds the writer");
  memset(&commit, 0, sizeof commit);
  store_tx_end(s, tx, 1, on_done, &commit, err, sizeof err);
  wait_for(&commit);
  wait_for(&plain);
  check(commit.done && !commit.error[0] && plain.done && plain.order > commit.order,
        "commit, then the plain write runs (order %d > %d)", plain.order, commit.order);
  run(s, "SELECT count(*) FROM t WHERE name IN ('in-tx', 'plain')", 0, &after);
  check(strcmp(after.cell[0], "2") == 0, "the reader sees both after the commit");

  memset(&begin, 0, sizeof begin);
  store_tx_begin(s, &tx, on_done, &begin, err, sizeof err);
  wait_for(&begin);
  submit(s, job("INSERT INTO t (name) VALUES ('rolled-back')"), 1, tx, &w1);
  wait_for(&w1);
  store_tx_end(s, tx, 0, NULL, NULL, err, sizeof err); /* fire and forget */
  run(s, "SELECT count(*) FROM t WHERE name = 'rolled-back'", 1, &after);
  check(strcmp(after.cell[0], "0") == 0, "a rolled-back write is gone");
}

static void test_tx_idle(void) {
  store_options_t o;
  store_options_default(&o);
  o.tx_idle_ms = 100;
  store_t *s = open_store("idle.db", &o);
  res_t r, begin, late, plain;
  run(s, "CREATE TABLE k (v TEXT)", 1, &r);
  uint64_t tx = 0;
  char err[256];
  memset(&begin, 0, sizeof begin);
  store_tx_begin(s, &tx, on_done, &begin, err, sizeof err);
  wait_for(&begin);
  submit(s, job("INSERT INTO k VALUES ('lost')"), 1, tx, &r);
  wait_for(&r);
  submit(s, job("INSERT INTO k VALUES ('plain')"), 1, 0, &plain);
  uv_sleep(300);
  wait_for(&plain);
  check(plain.done && !plain.error[0], "after the idle timeout the writer serves others again");
  submit(s, job("INSERT INTO k VALUES ('late')"), 1, tx, &late);
  wait_for(&late);
  check(strstr(late.error, "not open") != NULL, "a late job of the timed-out transaction fails: %s",
        late.error);
  run(s, "SELECT group_concat(v) FROM k", 0, &r);
  check(strcmp(r.cell[0], "plain") == 0, "its writes were rolled back (%s)", r.cell[0]);
  close_store(s);
}

static void test_script_and_caps(store_t *s) {
  res_t r;
  store_job_t *j =
      store_job_new("CREATE TABLE a (x); CREATE TABLE b (y); INSERT INTO a VALUES (1);", 66, 1);
  submit(s, j, 1, 0, &r);
  wait_for(&r);
  check(r.done && !r.error[0], "a script of several statements runs (%s)", r.error);
  run(s, "SELECT count(*) FROM sqlite_master WHERE name IN ('a', 'b')", 0, &r);
  check(strcmp(r.cell[0], "2") == 0, "both tables exist");
  /* a plain statement is one statement: a second one would be skipped, so it is refused */
  run(s, "INSERT INTO a VALUES (2); INSERT INTO a VALUES (3)", 1, &r);
  check(strstr(r.error, "one statement per call") != NULL, "two statements in a call: %s", r.error);
  run(s, "INSERT INTO a VALUES (4); -- done\n", 1, &r);
  check(!r.error[0] && r.changes == 1 && r.last_id > 0,
        "a trailing ';' and comment are fine, the insert reports its rowid (%s)", r.error);
  run(s, "SELECT x FROM a", 1, &r);
  check(!r.error[0] && r.changes == 0 && r.last_id == 0,
        "a SELECT on the writer reports no changes and no rowid (%lld, %lld)", (long long)r.changes,
        (long long)r.last_id);
  run(s, "UPDATE a SET x = x WHERE x = 1", 1, &r);
  check(!r.error[0] && r.changes == 1 && r.last_id == 0,
        "an UPDATE reports its changes and no rowid (%lld)", (long long)r.last_id);

  store_options_t o;
  store_options_default(&o);
  o.max_result_bytes = 4096;
  o.queue_max = 3;
  store_t *small = open_store("small.db", &o);
  run(small, "CREATE TABLE big (v TEXT)", 1, &r);
  run(small,
      "INSERT INTO big WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < "
      "500)"
      " SELECT printf('%050d', i) FROM c",
      1, &r);
  run(small, "SELECT v FROM big", 0, &r);
  check(strstr(r.error, "result too large") != NULL, "a result over the cap fails: %s", r.error);
  res_t q[4];
  int refused = 0; /* writes are held until the turn ends: all four are queued at once */
  for (int i = 0; i < 4; i++)
    refused += submit(small, job("INSERT INTO big VALUES ('q')"), 1, 0, &q[i]) != 0;
  check(refused == 1 && strstr(q[3].error, "busy: ") == q[3].error,
        "the fourth job over queue_max 3 is refused: %s", q[3].error);
  for (int i = 0; i < 3; i++)
    wait_for(&q[i]);
  close_store(small);
}

static int g_cancel_called;
static void on_cancel_done(const store_result_t *r, void *ud) {
  (void)r;
  (void)ud;
  g_cancel_called++;
}

static void test_cancel_and_close(void) {
  store_t *s = open_store("close.db", NULL);
  res_t r;
  run(s, "CREATE TABLE c (v)", 1, &r);
  char err[256];
  store_job_t *j = job("INSERT INTO c VALUES ('cancelled-but-written')");
  store_submit(s, j, 1, 0, on_cancel_done, NULL, err, sizeof err);
  store_cancel(j);
  for (int i = 0; i < 5; i++) {
    store_job_t *w = job("INSERT INTO c VALUES ('queued at close')");
    store_submit(s, w, 1, 0, on_cancel_done, NULL, err, sizeof err);
  }
  close_store(s); /* same turn: the writes were still held */
  check(g_cancel_called == 0, "no callback for a cancelled job, nor after close");
  s = open_store("close.db", NULL);
  run(s, "SELECT count(*) FROM c", 0, &r);
  check(strcmp(r.cell[0], "6") == 0, "writes queued at close were committed (%s rows)", r.cell[0]);
  submit(s, job("SELECT 1"), 0, 0, &r);
  close_store(s);
}

static void test_corrupt_file(void) {
  char path[512], err[512] = "";
  snprintf(path, sizeof path, "%s/corrupt.db", g_dir);
  FILE *f = fopen(path, "wb");
  static const char junk[] = "this is not an SQLite database, just some bytes of text.....";
  for (int i = 0; i < 100; i++)
    fwrite(junk, 1, sizeof junk - 1, f);
  fclose(f);
  store_t *s = store_open(&g_loop, path, NULL, err, sizeof err);
  check(!s && strstr(err, path) == err && strstr(err, "not a database"),
        "a corrupt file: an error naming it (%s)", err);
  f = fopen(path, "rb");
  char head[sizeof junk];
  size_t n = fread(head, 1, sizeof junk - 1, f);
  fclose(f);
  check(n == sizeof junk - 1 && memcmp(head, junk, n) == 0, "the corrupt file is left untouched");
  snprintf(path, sizeof path, "%s/no/such/dir/x.db", g_dir);
  s = store_open(&g_loop, path, NULL, err, sizeof err);
  check(!s && strstr(err, "cannot open the database"), "an unopenable path: %s", err);
}

int main(void) {
  log_init();
  metrics_init();
  uv_loop_init(&g_loop);
  snprintf(g_dir, sizeof g_dir, "/tmp/chatgw-store-XXXXXX");
  if (!mkdtemp(g_dir)) return 1;

  store_t *s = open_store("main.db", NULL);
  if (!s) return 1;
  test_group_commit(s);
  test_params(s);
  test_tx(s);
  test_script_and_caps(s);
  close_store(s);
  test_tx_idle();
  test_cancel_and_close();
  test_corrupt_file();

  uv_run(&g_loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&g_loop);
  check(rc == 0, "the loop closes with no handle left (%d)", rc);
  metrics_shutdown();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) printf("(could not remove %s)\n", g_dir);
  return check_report();
}
