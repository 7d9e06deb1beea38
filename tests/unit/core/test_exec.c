/* test_exec.c - runtime/core/exec.c without Lua: the secret rule for child environments, caps
 * (global and per module) sampled on every loop iteration, the queue bound, timeouts, spawn
 * errors, abandoning queued and running jobs, and shutdown leaving a closable loop. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "exec.h"
#include "metrics.h"

#include "check.h"

static uv_loop_t *g_loop;
static const char *const NO_ENV[] = {NULL};

typedef struct {
  int done;
  exec_result_kind_t kind;
  int64_t code;
  int sig;
  char out[256];
  char message[512];
  int truncated;
  size_t out_len;
} res_t;

static void on_done(const exec_result_t *r, void *ud) {
  res_t *x = ud;
  x->done++;
  x->kind = r->kind;
  x->code = r->exit_status;
  x->sig = r->term_signal;
  x->truncated = r->truncated;
  x->out_len = r->out_len;
  snprintf(x->out, sizeof x->out, "%.*s", (int)(r->out_len < 255 ? r->out_len : 255), r->out);
  snprintf(x->message, sizeof x->message, "%s", r->message ? r->message : "");
}

static exec_request_t req_of(const char *const *argv, const char *module, uint32_t cap) {
  exec_request_t r;
  memset(&r, 0, sizeof r);
  r.argv = argv;
  r.env_set = NO_ENV;
  r.env_unset = NO_ENV;
  r.max_output = 1 << 20;
  r.timeout_ms = 10000;
  r.module = module;
  r.module_max = cap;
  return r;
}

static void set_limits(uint32_t max_global, uint32_t queue_max) {
  exec_limits_t l = {max_global, queue_max, 1000, 60000, 60000, 100};
  exec_set_limits(&l);
}

static void run_until(int *flag, int want) {
  while (*flag < want && uv_run(g_loop, UV_RUN_ONCE)) {
  }
}

/* ---- secrets ---- */

static void test_secrets(void) {
  const char *secret[] = {"CHAT_GATEWAY_TOKEN",
                          "TELEGRAM_BOT_TOKEN",
                          "FEISHU_APP_SECRET",
                          "FEISHU_VERIFICATION_TOKEN",
                          "FEISHU_ENCRYPT_KEY",
                          "DEEPSEEK_API_KEY",
                          "DB_PASSWORD",
                          "github_token",
                          "AWS_SECRET_ACCESS_KEY",
                          "X_SECRET",
                          NULL};
  const char *plain[] = {"PATH",      "HOME",     "FEISHU_APP_ID", "CHAT_GATEWAY_PORT",
                         "TOKENIZER", "KEYBOARD", "SECRETS_DIR",   "CHAT_GATEWAY_EXEC_MAX_GLOBAL",
                         NULL};
  for (const char **s = secret; *s; s++)
    CHECK_MSG(exec_env_is_secret(*s, strlen(*s)), "%s should be withheld", *s);
  for (const char **s = plain; *s; s++)
    CHECK_MSG(!exec_env_is_secret(*s, strlen(*s)), "%s should be passed", *s);
}

/* ---- caps ---- */

static int g_max_inflight, g_max_m, g_done_total;
static uv_check_t g_check;

static void sample(uv_check_t *h) {
  (void)h;
  exec_stats_t s;
  exec_stats(&s);
  if ((int)s.inflight > g_max_inflight) g_max_inflight = (int)s.inflight;
}

static void count_done(const exec_result_t *r, void *ud) {
  (void)ud;
  if (r->kind == EXEC_RESULT_EXITED && r->exit_status == 0) g_done_total++;
}

static void test_caps(void) {
  static const char *const argv[] = {"/bin/sh", "-c", "sleep 0.02", NULL};
  set_limits(3, 1000);
  uv_check_init(g_loop, &g_check);
  uv_check_start(&g_check, sample);
  char err[256];
  for (int i = 0; i < 12; i++) {
    exec_request_t r = req_of(argv, i % 2 ? "capm" : "capn", i % 2 ? 1 : 5);
    CHECK_MSG(exec_submit(&r, count_done, NULL, err, sizeof err) != NULL, "submit: %s", err);
  }
  exec_stats_t s;
  exec_stats(&s);
  CHECK_MSG(s.inflight == 3 && s.queued == 9, "started 3, queued 9 (got %zu, %zu)", s.inflight,
            s.queued);
  run_until(&g_done_total, 12);
  CHECK_MSG(g_done_total == 12, "all 12 ran (%d)", g_done_total);
  CHECK_MSG(g_max_inflight == 3, "never more than the global cap at once (max %d)", g_max_inflight);
  uv_check_stop(&g_check);
  uv_close((uv_handle_t *)&g_check, NULL);
  (void)g_max_m;

  /* per-module cap 1: never two of that module at once */
  static const char *const one[] = {"/bin/sh", "-c", "sleep 0.02", NULL};
  set_limits(8, 1000);
  g_done_total = 0;
  for (int i = 0; i < 4; i++) {
    exec_request_t r = req_of(one, "solo", 1);
    exec_submit(&r, count_done, NULL, err, sizeof err);
  }
  exec_stats(&s);
  CHECK_MSG(s.inflight == 1 && s.queued == 3, "module cap 1 (got %zu running, %zu queued)",
            s.inflight, s.queued);
  run_until(&g_done_total, 4);
}

/* ---- results ---- */

static void test_results(void) {
  char err[256];
  set_limits(8, 1000);
  static const char *const echo[] = {"/bin/sh", "-c", "printf hello; exit 3", NULL};
  res_t a = {0};
  exec_request_t r = req_of(echo, "res", 8);
  exec_submit(&r, on_done, &a, err, sizeof err);
  CHECK_MSG(a.done == 0, "done is never called from inside exec_submit");
  run_until(&a.done, 1);
  CHECK_MSG(a.kind == EXEC_RESULT_EXITED && a.code == 3 && strcmp(a.out, "hello") == 0,
            "exit 3 with output (kind %d code %lld out '%s')", a.kind, (long long)a.code, a.out);

  static const char *const missing[] = {"/nonexistent/prog", NULL};
  res_t b = {0};
  r = req_of(missing, "res", 8);
  exec_submit(&r, on_done, &b, err, sizeof err);
  CHECK_MSG(b.done == 0, "spawn errors are delivered later too");
  run_until(&b.done, 1);
  CHECK_MSG(b.kind == EXEC_RESULT_SPAWN_ERROR && strncmp(b.message, "spawn: ", 7) == 0,
            "spawn error (%d, %s)", b.kind, b.message);

  static const char *const slow[] = {"/bin/sleep", "10", NULL};
  res_t c = {0};
  r = req_of(slow, "res", 8);
  r.timeout_ms = 50;
  uint64_t t0 = uv_hrtime();
  exec_submit(&r, on_done, &c, err, sizeof err);
  run_until(&c.done, 1);
  double ms = (double)(uv_hrtime() - t0) / 1e6;
  CHECK_MSG(c.kind == EXEC_RESULT_TIMEOUT && strncmp(c.message, "timeout: ", 9) == 0,
            "timeout (%d, %s)", c.kind, c.message);
  CHECK_MSG(ms < 2000, "timeout answered after SIGTERM, not after the sleep (%.0f ms)", ms);

  static const char *const big[] = {"/bin/sh", "-c", "head -c 3000000 /dev/zero", NULL};
  res_t d = {0};
  r = req_of(big, "res", 8);
  r.max_output = 1000;
  exec_submit(&r, on_done, &d, err, sizeof err);
  run_until(&d.done, 1);
  CHECK_MSG(d.kind == EXEC_RESULT_EXITED && d.code == 0 && d.truncated && d.out_len == 1000,
            "output capped, child not blocked (code %lld, truncated %d, len %zu)",
            (long long)d.code, d.truncated, d.out_len);

  static const char *const cat[] = {"/bin/cat", NULL};
  res_t e = {0};
  r = req_of(cat, "res", 8);
  r.has_stdin = 1;
  r.stdin_data = "from stdin";
  r.stdin_len = 10;
  exec_submit(&r, on_done, &e, err, sizeof err);
  run_until(&e.done, 1);
  CHECK_MSG(strcmp(e.out, "from stdin") == 0, "stdin reaches the child ('%s')", e.out);

  static const char *const envp[] = {"/bin/sh", "-c", "printf '%s|%s' \"$A_VAR\" \"$HOME\"", NULL};
  static const char *const set[] = {"A_VAR=x y", NULL};
  static const char *const unset[] = {"HOME", NULL};
  res_t f = {0};
  r = req_of(envp, "res", 8);
  r.env_set = set;
  r.env_unset = unset;
  exec_submit(&r, on_done, &f, err, sizeof err);
  run_until(&f.done, 1);
  CHECK_MSG(strcmp(f.out, "x y|") == 0, "env set and unset ('%s')", f.out);
}

/* ---- queue bound, abandon ---- */

static void test_busy_and_abandon(void) {
  char err[256];
  set_limits(1, 1);
  static const char *const slow[] = {"/bin/sleep", "10", NULL};
  res_t a = {0}, b = {0};
  exec_request_t r = req_of(slow, "ab", 1);
  exec_job_t *running = exec_submit(&r, on_done, &a, err, sizeof err);
  exec_job_t *queued = exec_submit(&r, on_done, &b, err, sizeof err);
  CHECK_MSG(running && queued, "one runs, one waits");
  exec_job_t *third = exec_submit(&r, on_done, &b, err, sizeof err);
  CHECK_MSG(!third && strncmp(err, "busy: ", 6) == 0, "third is busy (%s)", err);
  exec_abandon(queued);
  exec_stats_t s;
  exec_stats(&s);
  CHECK_MSG(s.queued == 0 && s.inflight == 1, "abandoned while queued: dropped");
  exec_abandon(running);
  uint64_t t0 = uv_hrtime();
  while (uv_run(g_loop, UV_RUN_ONCE)) {
    exec_stats(&s);
    if (s.jobs == 0) break;
  }
  exec_stats(&s);
  CHECK_MSG(s.jobs == 0 && s.inflight == 0, "abandoned while running: killed, reaped, slot freed");
  CHECK_MSG((uv_hrtime() - t0) / 1000000 < 3000, "killed promptly");
  CHECK_MSG(a.done == 0 && b.done == 0, "no callback after abandon");
}

/* ---- shutdown ---- */

static void test_shutdown(void) {
  char err[256];
  set_limits(8, 10);
  static const char *const slow[] = {"/bin/sh", "-c", "sleep 30 & sleep 30", NULL};
  res_t a = {0};
  exec_request_t r = req_of(slow, "sd", 8);
  exec_job_t *j = exec_submit(&r, on_done, &a, err, sizeof err);
  CHECK_MSG(j != NULL, "submit");
  for (int i = 0; i < 5; i++)
    uv_run(g_loop, UV_RUN_NOWAIT);
  exec_shutdown();
  exec_abandon(j); /* what cancelling its coroutine does */
  exec_job_t *late = exec_submit(&r, on_done, &a, err, sizeof err);
  CHECK_MSG(!late && strncmp(err, "cancelled: ", 11) == 0, "no new jobs after shutdown (%s)", err);
  uint64_t t0 = uv_hrtime();
  uv_run(g_loop, UV_RUN_DEFAULT);
  CHECK_MSG((uv_hrtime() - t0) / 1000000 < 3000, "children killed at shutdown");
  CHECK_MSG(uv_loop_close(g_loop) == 0, "the loop closes: no handle left");
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  metrics_init();
  g_loop = uv_default_loop();
  exec_init(g_loop);
  test_secrets();
  test_caps();
  test_results();
  test_busy_and_abandon();
  test_shutdown();
  metrics_shutdown();
  return check_report();
}
