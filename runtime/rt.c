/* rt.c - boot, reload (SIGHUP) and graceful stop (SIGTERM/SIGINT) of the runtime. */
#include "rt.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "breaker.h"
#include "clock.h"
#include "exec.h"
#include "http_client.h"
#include "lib.h"
#include "limiter.h"
#include "lock.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "settings.h"
#include "shared.h"
#include "store.h"
#include "token.h"
#include "vm.h"
#include "watchdog.h"
#include "worker.h"
#include "ws.h"

typedef struct {
  uv_loop_t *loop;
  http_server_t *http;
  vm_t *vm; /* the current Lua state: new requests go here */
  settings_t settings;
  lib_host_t host; /* what the bindings see: loop, token, data dir, start, reloads, server */
  vm_options_t vm_opts;
  char handlers_dir[1024];
  char config_path[1024];
  int config_path_explicit;
  char lua_dir[1024];      /* directory holding the chatgw Lua layer */
  char token_source[1100]; /* "env" or the path of the generated token file */
  int reloading;           /* a reload is in progress */
  int reload_again;        /* a SIGHUP arrived during the reload */
  int stopping;            /* SIGTERM/SIGINT seen */
  int check_only;          /* chatgw check */
  rt_mode_t mode;
  const char *const *specs; /* chatgw test */
  int nspecs;
  char test_dir[256]; /* chatgw test: the temporary data dir, removed at exit */
  settings_t pending; /* a reload's settings while its state starts */
  int exit_code;
} rt_t;

static rt_t g_rt;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* chatgw test's temporary data dir: the store's files, the token, locks. */
static void remove_tree(const char *dir) {
  nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static uv_signal_t g_sighup;
/* SIGTERM/SIGINT: a raw sigaction handler (stop_signal_handler), so that a second signal
 * exits even while the loop is stuck in a handler; the first one wakes the loop through
 * g_stop_async. */
static uv_async_t g_stop_async;
static volatile sig_atomic_t g_stop_signals; /* how many SIGTERM/SIGINT arrived */
static volatile sig_atomic_t g_stop_signo;   /* the first one */
static uv_timer_t g_reload_timer;            /* runs a queued reload outside of any Lua call */
static uv_timer_t g_drain_timer;
static uv_prepare_t g_log_flusher; /* writes buffered log lines before the loop blocks */
static uint64_t g_drain_deadline;
static int g_hooks_running;
static metric_t *g_m_reloads;

static void log_flush_cb(uv_prepare_t *h) {
  (void)h;
  log_flush();
}

/* ---- loading config + handlers into a state ---- */

typedef void (*loaded_fn)(vm_t *vm, int ok, lua_State *T);

/* Runs chatgw.runtime.load{...} in a CO_LOAD coroutine; calls done with its results:
 * true, cfg  or  false, {"file:line: message", ...}. */
static void load_done(co_t *co, int ok, void *ud) {
  loaded_fn done = (loaded_fn)ud;
  lua_State *T = vm_co_thread(co);
  if (!ok) {
    /* The loader itself failed: report its traceback as the single problem. */
    const char *msg = lua_tostring(T, -1);
    lua_settop(T, 0);
    lua_pushboolean(T, 0);
    lua_newtable(T);
    lua_pushstring(T, msg ? msg : "loader failed");
    lua_rawseti(T, -2, 1);
  }
  done(vm_co_vm(co), ok && lua_toboolean(T, 1), T);
}

/* Pushes package.loaded["chatgw.runtime"][name] (lua/chatgw/runtime.lua). */
static void push_runtime_fn(lua_State *L, const char *name) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_getfield(L, -1, "chatgw.runtime");
  lua_getfield(L, -1, name);
  lua_insert(L, -4);
  lua_pop(L, 3);
}

static void start_load(vm_t *vm, loaded_fn done) {
  lua_State *L = vm_state(vm);
  push_runtime_fn(L, "load");
  lua_newtable(L);
  lua_pushstring(L, g_rt.handlers_dir);
  lua_setfield(L, -2, "handlers_dir");
  lua_pushstring(L, g_rt.config_path);
  lua_setfield(L, -2, "config_path");
  lua_pushboolean(L, g_rt.config_path_explicit);
  lua_setfield(L, -2, "config_explicit");
  lua_pushboolean(L, g_rt.check_only);
  lua_setfield(L, -2, "check_only");
  lua_pushstring(L, g_rt.mode == RT_TEST ? "test" : g_rt.mode == RT_CHECK ? "check" : "run");
  lua_setfield(L, -2, "mode");
  vm_spawn(vm, CO_LOAD, 1, load_done, (void *)done);
}

/* ---- starting a loaded state: runtime.start() (migrations, channels) ---- */

typedef void (*started_fn)(vm_t *vm, const char *error);

/* runtime.start returns true, or false and an error. */
static void start_done(co_t *co, int ok, void *ud) {
  started_fn done = (started_fn)ud;
  lua_State *T = vm_co_thread(co);
  const char *error = NULL;
  if (!ok)
    error = lua_tostring(T, -1) ? lua_tostring(T, -1) : "start failed";
  else if (!lua_toboolean(T, 1))
    error = lua_tostring(T, 2) ? lua_tostring(T, 2) : "start failed";
  done(vm_co_vm(co), error);
}

static void start_state(vm_t *vm, started_fn done) {
  lua_State *L = vm_state(vm);
  push_runtime_fn(L, "start");
  if (!vm_spawn(vm, CO_START, 0, start_done, (void *)done)) done(vm, "out of memory");
}

/* Joins the problems array at index 2 of T into buf, one per line. */
static void collect_errors(lua_State *T, char *buf, size_t len) {
  buf[0] = 0;
  size_t off = 0;
  if (!lua_istable(T, 2)) return;
  size_t n = lua_objlen(T, 2);
  for (size_t i = 1; i <= n && off + 1 < len; i++) {
    lua_rawgeti(T, 2, (int)i);
    const char *e = lua_tostring(T, -1);
    int w = snprintf(buf + off, len - off, "%s%s", off ? "\n" : "", e ? e : "?");
    if (w > 0) off += (size_t)w < len - off ? (size_t)w : len - off - 1;
    lua_pop(T, 1);
  }
}

static void print_errors(lua_State *T) {
  if (!lua_istable(T, 2)) return;
  size_t n = lua_objlen(T, 2);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(T, 2, (int)i);
    fprintf(stderr, "%s\n", lua_tostring(T, -1));
    lua_pop(T, 1);
  }
}

/* ---- exit ---- */

static void close_loop_handles(void) {
  uv_close((uv_handle_t *)&g_sighup, NULL);
  uv_close((uv_handle_t *)&g_stop_async, NULL);
  uv_close((uv_handle_t *)&g_reload_timer, NULL);
  uv_close((uv_handle_t *)&g_drain_timer, NULL);
  uv_close((uv_handle_t *)&g_log_flusher, NULL);
  watchdog_stop();
  vm_sched_close();
  http_client_shutdown();
  lib_redis_shutdown(); /* the cluster's Redis connections (docs/cluster.md) */
}

static void http_closed(void *ud) {
  (void)ud;
  exec_shutdown(); /* kill running children; the loop runs until they are reaped */
  vm_destroy_all();
  g_rt.vm = NULL;
  store_close(g_rt.host.store); /* commits what was queued; no callback runs any more */
  g_rt.host.store = NULL;
  close_loop_handles();
}

static void finish_exit(void);

static void exit_timer_cb(uv_timer_t *t) {
  (void)t;
  finish_exit();
}

/* Exit from inside a coroutine callback: the states are destroyed on the next loop turn,
 * never under a running resume. */
static void schedule_exit(void) {
  uv_timer_start(&g_drain_timer, exit_timer_cb, 0, 0);
}

static void finish_exit(void) {
  ws_close_all(); /* WebSocket connections and the ws module's handles (no hooks from here on) */
  if (g_rt.http) {
    http_server_close(g_rt.http, http_closed, NULL);
  } else {
    http_closed(NULL);
  }
}

/* ---- boot ---- */

static void on_http_request(http_request_t *req, void *ud) {
  (void)ud;
  if (ws_handle_request(req)) return; /* the WebSocket path (upgrade) */
  request_dispatch(g_rt.vm, req);
}

/* Headers of a request with a body: route and auth now, before the body is read. */
static void on_http_headers(http_request_t *req, void *ud) {
  (void)ud;
  if (g_rt.vm) request_precheck(g_rt.vm, req);
}

static int listen_all(const settings_t *s, char *err, size_t errlen) {
  g_rt.http = http_server_new(g_rt.loop, &s->http, on_http_request, NULL);
  if (!g_rt.http) {
    snprintf(err, errlen, "cannot create the HTTP server");
    return -1;
  }
  http_server_set_headers_cb(g_rt.http, on_http_headers);
  for (int i = 0; i < s->nlisteners; i++) {
    const settings_listener_t *l = &s->listeners[i];
    int fd = worker_take_listen_fd(l->name); /* the master's socket: bound since the first worker */
    if (fd >= 0) {
      if (http_server_listen_fd(g_rt.http, l->name, fd, err, errlen) != 0) return -1;
      int bound = http_server_port(g_rt.http, l->name);
      if (l->port != 0 && bound != l->port)
        log_warnf("listener %s: the config says port %d, the master holds %d: a changed listener "
                  "address takes a restart of chatgw",
                  l->name, l->port, bound);
    } else if (http_server_listen(g_rt.http, l->name, l->host, l->port, err, errlen) != 0) {
      return -1;
    }
    if (l->tls_cert[0] &&
        http_server_set_tls(g_rt.http, l->name, l->tls_cert, l->tls_key, err, errlen) != 0)
      return -1;
    char port[16];
    snprintf(port, sizeof port, "%d", http_server_port(g_rt.http, l->name));
    log_field_t f[] = {{"listener", l->name, 0},
                       {"host", l->host, 0},
                       {"port", port, 1},
                       {"tls", l->tls_cert[0] ? "true" : "false", 1}};
    log_write(LOG_INFO, "listening", f, 4);
  }
  worker_close_untaken();
  return 0;
}

/* Under the master: hand it our listening sockets (it keeps them for the next worker) and say
 * we serve. Before the `ready` line, so that a signal sent on seeing it finds the master knowing.
 */
static void tell_master_ready(void) {
  const char *names[SETTINGS_MAX_LISTENERS];
  int fds[SETTINGS_MAX_LISTENERS], n = 0;
  for (int i = 0; i < g_rt.settings.nlisteners && n < SETTINGS_MAX_LISTENERS; i++) {
    int fd = http_server_listener_fd(g_rt.http, g_rt.settings.listeners[i].name);
    if (fd < 0) continue;
    names[n] = g_rt.settings.listeners[i].name;
    fds[n++] = fd;
  }
  worker_send_ready(names, fds, n);
}

static void boot_fail(vm_t *vm, const char *err) {
  if (err) fprintf(stderr, "chatgw: %s\n", err);
  g_rt.exit_code = 1;
  vm_retire(vm, "boot failed");
  schedule_exit();
}

/* chatgw test: the specs ran; their summary was printed by runtime.test. */
static void tests_done(co_t *co, int ok, void *ud) {
  (void)ud;
  lua_State *T = vm_co_thread(co);
  if (!ok) fprintf(stderr, "chatgw test: the spec runner failed: %s\n", lua_tostring(T, -1));
  g_rt.exit_code = ok && lua_toboolean(T, 1) ? 0 : 1;
  schedule_exit();
}

/* The descriptors the configured connections need (HTTP + WebSocket, plus a margin for the
 * listeners, the store, logs, outbound HTTP and exec pipes): the soft RLIMIT_NOFILE is raised
 * toward it, up to the hard limit (as nginx's worker_rlimit_nofile does, but only as far as
 * needed), and a WARN says when even the hard limit is below it. */
static void check_fd_limit(const settings_t *s) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t want = (rlim_t)s->http.max_connections + (rlim_t)s->ws.max_connections + 256;
  if (rl.rlim_cur < want && rl.rlim_cur < rl.rlim_max) {
    struct rlimit nl = rl;
    nl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &nl) == 0) {
      log_infof("raised the open file limit from %llu to %llu (of %llu)",
                (unsigned long long)rl.rlim_cur, (unsigned long long)nl.rlim_cur,
                (unsigned long long)rl.rlim_max);
      rl = nl;
    }
  }
  if (rl.rlim_cur < want)
    log_warnf("the open file limit (%llu) is below http.max_connections + ws.max_connections + "
              "256 (%llu): connections past it fail to be accepted; raise LimitNOFILE= or "
              "ulimit -n, or lower the caps",
              (unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

static void boot_started(vm_t *vm, const char *error) {
  char err[1024];
  if (error) {
    snprintf(err, sizeof err, "start failed: %s", error);
    boot_fail(vm, err);
    return;
  }
  if (g_rt.mode != RT_TEST) check_fd_limit(&g_rt.settings);
  if (g_rt.mode != RT_TEST && listen_all(&g_rt.settings, err, sizeof err) != 0) {
    boot_fail(vm, err);
    return;
  }
  g_rt.host.http = g_rt.http;
  g_rt.vm = vm;
  vm_activate(vm);
  if (g_rt.mode == RT_TEST) {
    lua_State *L = vm_state(vm);
    push_runtime_fn(L, "test");
    lua_newtable(L);
    for (int i = 0; i < g_rt.nspecs; i++) {
      lua_pushstring(L, g_rt.specs[i]);
      lua_rawseti(L, -2, i + 1);
    }
    vm_spawn(vm, CO_START, 1, tests_done, NULL);
    return;
  }
  tell_master_ready();
  log_field_t f[] = {{"version", CHATGW_VERSION, 0},
                     {"handlers", g_rt.handlers_dir, 0},
                     {"lua_dir", g_rt.lua_dir, 0}};
  log_write(LOG_INFO, "ready", f, 3);
}

static void boot_loaded(vm_t *vm, int ok, lua_State *T) {
  if (!ok) {
    print_errors(T);
    fprintf(stderr, "chatgw: %s failed: fix the problems above\n",
            g_rt.check_only ? "check" : "start");
    boot_fail(vm, NULL);
    return;
  }
  char err[1400];
  if (settings_read(T, 2, &g_rt.settings, err, sizeof err) != 0) {
    boot_fail(vm, err);
    return;
  }
  if (g_rt.check_only) {
    fprintf(stdout, "chatgw check: OK\n");
    fflush(stdout);
    vm_retire(vm, "check done");
    schedule_exit();
    return;
  }
  if (g_rt.mode == RT_TEST) {
    /* Specs never touch the deployment's data, and print only their own lines. */
    snprintf(g_rt.settings.data_dir, sizeof g_rt.settings.data_dir, "%s", g_rt.test_dir);
    const char *lvl = getenv("CHAT_GATEWAY_LOG_LEVEL");
    if (!lvl || !*lvl) snprintf(g_rt.settings.log_level, sizeof g_rt.settings.log_level, "warn");
    if (!getenv("CHAT_GATEWAY_TOKEN")) setenv("CHAT_GATEWAY_TOKEN", "chatgw-test-token", 1);
  }
  settings_apply_runtime(&g_rt.settings, NULL);
  if (data_dir_prepare(g_rt.settings.data_dir, err, sizeof err) != 0 ||
      token_setup(g_rt.settings.data_dir, g_rt.host.token, sizeof g_rt.host.token,
                  g_rt.token_source, sizeof g_rt.token_source, err, sizeof err) != 0) {
    boot_fail(vm, err);
    return;
  }
  g_rt.host.token_len = strlen(g_rt.host.token);
  char path[1100];
  snprintf(path, sizeof path, "%s/chatgw.db", g_rt.settings.data_dir);
  store_options_t so;
  store_options_default(&so);
  g_rt.host.store = store_open(g_rt.loop, path, &so, err, sizeof err);
  if (!g_rt.host.store) {
    boot_fail(vm, err);
    return;
  }
  start_state(vm, boot_started);
}

/* ---- reload ---- */

static void reload_timer_cb(uv_timer_t *t);

static void reload_finished(int ok, const char *error) {
  lib_reload_stats_t *r = &g_rt.host.reloads;
  g_rt.reloading = 0;
  r->count++;
  r->last_time = clock_wall_s();
  r->last_ok = ok;
  const char *labels[] = {ok ? "ok" : "failed"};
  metrics_inc(g_m_reloads, labels, 1);
  if (ok) {
    r->ok++;
    log_field_t f[] = {{"generation", NULL, 1}};
    char gen[32];
    snprintf(gen, sizeof gen, "%llu", (unsigned long long)vm_generation(g_rt.vm));
    f[0].value = gen;
    log_write(LOG_INFO, "reload ok", f, 1);
  } else {
    r->failed++;
    snprintf(r->last_error, sizeof r->last_error, "%s", error);
    log_field_t f[] = {{"error", error, 0}};
    log_write(LOG_ERROR, "reload failed: keeping the running handlers", f, 1);
  }
  if (g_rt.reload_again && !g_rt.stopping) {
    g_rt.reload_again = 0;
    uv_timer_start(&g_reload_timer, reload_timer_cb, 0, 0);
  }
}

static void reload_started(vm_t *vm, const char *error) {
  if (g_rt.stopping) {
    vm_retire(vm, "shutdown");
    g_rt.reloading = 0;
    return;
  }
  if (error) {
    char err[4096];
    snprintf(err, sizeof err, "start failed: %s", error);
    vm_retire(vm, "reload failed");
    reload_finished(0, err);
    return;
  }
  g_rt.settings = g_rt.pending;
  settings_apply_runtime(&g_rt.settings, g_rt.http);
  vm_t *old = g_rt.vm;
  g_rt.vm = vm;
  if (old) vm_retire(old, "reload");
  vm_activate(vm);
  g_rt.host.reloads.last_error[0] = 0;
  reload_finished(1, NULL);
}

static void reload_loaded(vm_t *vm, int ok, lua_State *T) {
  if (g_rt.stopping) {
    vm_retire(vm, "shutdown");
    g_rt.reloading = 0;
    return;
  }
  char err[4096];
  settings_t *s = &g_rt.pending;
  if (!ok) {
    collect_errors(T, err, sizeof err);
    vm_retire(vm, "reload failed");
    reload_finished(0, err);
    return;
  }
  if (settings_read(T, 2, s, err, sizeof err) != 0) {
    vm_retire(vm, "reload failed");
    reload_finished(0, err);
    return;
  }
  settings_warn_restart_only(&g_rt.settings, s);
  /* Listeners and the data directory stay as they are until a restart. */
  memcpy(s->listeners, g_rt.settings.listeners, sizeof s->listeners);
  s->nlisteners = g_rt.settings.nlisteners;
  memcpy(s->data_dir, g_rt.settings.data_dir, sizeof s->data_dir);
  start_state(vm, reload_started); /* the old state serves until the new one has started */
}

static void do_reload(void) {
  if (g_rt.stopping || !g_rt.vm) return;
  if (g_rt.reloading) {
    g_rt.reload_again = 1;
    return;
  }
  g_rt.reloading = 1;
  log_infof("reload: loading config and handlers");
  if (g_rt.http) http_server_tls_reload(g_rt.http); /* certificates: new connections only */
  char err[2048];
  vm_t *vm = vm_new(&g_rt.vm_opts, err, sizeof err);
  if (!vm) {
    reload_finished(0, err);
    return;
  }
  start_load(vm, reload_loaded);
}

static void reload_timer_cb(uv_timer_t *t) {
  (void)t;
  do_reload();
}

static void on_sighup(uv_signal_t *h, int sig) {
  (void)h;
  (void)sig;
  do_reload();
}

/* ---- graceful stop ---- */

static void drain_check(uv_timer_t *t) {
  size_t inflight = g_rt.http ? http_server_inflight(g_rt.http) : 0;
  /* WebSocket connections were sent close 1001 by ws_stop(): wait for their close handshakes */
  if ((inflight == 0 && !g_hooks_running && ws_connection_count() == 0) ||
      uv_now(g_rt.loop) >= g_drain_deadline) {
    uv_timer_stop(t);
    if (inflight) log_warnf("drain timeout: %zu request(s) still running are cancelled", inflight);
    log_infof("stopped accepting; in-flight requests done, closing");
    finish_exit();
  }
}

static void hooks_done(co_t *co, int ok, void *ud) {
  (void)ud;
  g_hooks_running = 0;
  if (!ok) {
    log_field_t f[] = {{"error", lua_tostring(vm_co_thread(co), -1), 0}};
    log_write(LOG_ERROR, "on_shutdown hooks failed", f, 1);
  }
}

/* Writes a NUL-terminated string with write(2) (async-signal-safe). */
static void write_str(const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

/* SIGTERM/SIGINT, on whatever the process was doing: the first one only wakes the loop (which
 * drains as usual); a second one kills every exec child's process group and exits 1 at once,
 * without the loop, so it works while a handler keeps the loop busy. */
static void stop_signal_handler(int sig) {
  int saved = errno;
  if (g_stop_signals++ == 0) {
    g_stop_signo = sig;
    uv_async_send(&g_stop_async);
    errno = saved;
    return;
  }
  exec_kill_all_signal_safe();
  write_str(sig == SIGTERM ? "{\"level\":\"warn\",\"msg\":\"second signal: exiting now\","
                             "\"signal\":\"SIGTERM\"}\n"
                           : "{\"level\":\"warn\",\"msg\":\"second signal: exiting now\","
                             "\"signal\":\"SIGINT\"}\n");
  _exit(1);
}

/* The watchdog's last resort (on its thread): the loop is stuck where no hook reaches (a
 * JIT-compiled loop). Kill the exec children's groups and exit 70 (systemd restarts us). */
static void watchdog_abort(void) {
  exec_kill_all_signal_safe();
  _exit(70);
}

static void install_stop_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = stop_signal_handler;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaddset(&sa.sa_mask, SIGINT);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
}

static void on_stop_signal(uv_async_t *h) {
  (void)h;
  int sig = g_stop_signo;
  if (g_rt.stopping) return;
  g_rt.stopping = 1;
  g_rt.host.stopping = 1;
  log_field_t f[] = {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT", 0}};
  log_write(LOG_INFO, "stopping: draining in-flight requests", f, 1);
  if (!g_rt.vm) { /* still booting */
    finish_exit();
    return;
  }
  if (g_rt.http) http_server_stop_accepting(g_rt.http);
  ws_stop(); /* `shutdown` event and close 1001 to every WebSocket connection */
  lua_State *L = vm_state(g_rt.vm);
  push_runtime_fn(L, "shutdown");
  g_hooks_running = 1;
  vm_spawn(g_rt.vm, CO_SHUTDOWN, 0, hooks_done, NULL);
  g_drain_deadline = uv_now(g_rt.loop) + g_rt.settings.drain_timeout_ms;
  uv_timer_start(&g_drain_timer, drain_check, 0, 20);
}

/* ---- entry ---- */

/* The directory holding the runtime's own Lua layer (its chatgw/ modules), the first of:
 *   1. $CHATGW_LUA_DIR, when set and not empty;
 *   2. <directory of /proc/self/exe>/../share/chatgw/lua, when it is a directory: the layout
 *      `make install` makes (PREFIX/bin/chatgw beside PREFIX/share/chatgw/lua), for any PREFIX
 *      or DESTDIR;
 *   3. CHATGW_LUA_DIR_DEFAULT, the source tree's lua/ that CMake bakes in: a build tree run.
 * The `ready` log line names the one in use (docs/operations.md, "Deployment"). */
static void resolve_lua_dir(char *out, size_t outlen) {
  const char *env = getenv("CHATGW_LUA_DIR");
  if (env && *env) {
    snprintf(out, outlen, "%s", env);
    return;
  }
  char exe[PATH_MAX], dir[PATH_MAX + 32], real[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  char *slash = NULL;
  if (n > 0) {
    exe[n] = '\0';
    slash = strrchr(exe, '/');
  }
  if (slash) {
    *slash = '\0';
    snprintf(dir, sizeof dir, "%s/../share/chatgw/lua", exe);
    struct stat st;
    if (realpath(dir, real) && stat(real, &st) == 0 && S_ISDIR(st.st_mode) &&
        strlen(real) < outlen) {
      snprintf(out, outlen, "%s", real);
      return;
    }
  }
  snprintf(out, outlen, "%s", CHATGW_LUA_DIR_DEFAULT);
}

/* /health?verbose=1's `process`: this worker and what the master told it. */
static void host_process_info(lib_process_info_t *p) {
  const worker_link_t *w = worker_link();
  memset(p, 0, sizeof *p);
  if (!w->active) return;
  lock_set_owner_pid(w->master_pid); /* lock files name the master, the pid to signal */
  p->master_pid = w->master_pid;
  p->worker_restarts = w->restarts;
  const worker_exit_t *e = &w->last_exit;
  if (!e->valid) return;
  p->last_valid = 1;
  p->last_pid = e->pid;
  p->last_code = e->code;
  if (e->signal) {
    char buf[16];
    snprintf(p->last_signal, sizeof p->last_signal, "%s", worker_signal_name(e->signal, buf));
  }
  snprintf(p->last_cause, sizeof p->last_cause, "%s", e->cause);
  p->last_at = e->at;
  p->last_ran_s = e->ran_s;
}

int rt_run(const rt_options_t *o) {
  const char *handlers_dir = o->handlers_dir, *config_path = o->config_path;
  int config_explicit = o->config_explicit, check_only = o->mode == RT_CHECK;
  memset(&g_rt, 0, sizeof g_rt);
  signal(SIGPIPE, SIG_IGN);
  log_init();
  g_rt.loop = uv_default_loop();
  g_rt.check_only = check_only;
  g_rt.mode = o->mode;
  g_rt.specs = o->specs;
  g_rt.nspecs = o->nspecs;
  if (o->mode == RT_TEST) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_rt.test_dir, sizeof g_rt.test_dir, "%s/chatgw-test.XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_rt.test_dir)) {
      fprintf(stderr, "chatgw test: cannot create a temporary data dir in %s\n",
              tmp && *tmp ? tmp : "/tmp");
      return 1;
    }
  }
  g_rt.config_path_explicit = config_explicit;
  snprintf(g_rt.handlers_dir, sizeof g_rt.handlers_dir, "%s", handlers_dir);
  snprintf(g_rt.config_path, sizeof g_rt.config_path, "%s", config_path);
  resolve_lua_dir(g_rt.lua_dir, sizeof g_rt.lua_dir);
  g_rt.host.loop = g_rt.loop;
  g_rt.host.check_only = check_only;
  g_rt.host.mode = o->mode == RT_TEST ? "test" : o->mode == RT_CHECK ? "check" : "run";
  g_rt.host.data_dir = g_rt.settings.data_dir;
  g_rt.host.started_wall = clock_wall_s();
  g_rt.host.started_ms = uv_now(g_rt.loop);
  host_process_info(&g_rt.host.process);
  g_rt.vm_opts = (vm_options_t){g_rt.lua_dir, lib_open_state, &g_rt.host};

  metrics_init();
  const char *lbl[] = {"result"};
  g_m_reloads =
      metrics_counter("chatgw_reloads_total", "Reloads by result (ok, failed).", lbl, 1, NULL);
  vm_sched_init(g_rt.loop);
  exec_init(g_rt.loop);
  ws_init(g_rt.loop);
  request_init();
  lib_ws_install_hooks();
  uv_signal_init(g_rt.loop, &g_sighup);
  uv_async_init(g_rt.loop, &g_stop_async, on_stop_signal);
  uv_unref((uv_handle_t *)&g_stop_async); /* it never keeps the loop alive */
  uv_timer_init(g_rt.loop, &g_reload_timer);
  uv_timer_init(g_rt.loop, &g_drain_timer);
  uv_prepare_init(g_rt.loop, &g_log_flusher);
  uv_prepare_start(&g_log_flusher, log_flush_cb);
  log_set_buffered(1);
  g_reload_timer.data = NULL;
  if (o->mode == RT_RUN) {
    uv_signal_start(&g_sighup, on_sighup, SIGHUP);
    install_stop_signals();
  }

  watchdog_settings_t wd;
  watchdog_settings_default(&wd); /* until runtime.load reads the config's */
  watchdog_configure(&wd);
  if (watchdog_start(g_rt.loop, vm_watchdog_interrupt(), watchdog_abort) != 0)
    log_warnf("watchdog: cannot start its thread: running without it");
  char err[2048];
  vm_t *vm = vm_new(&g_rt.vm_opts, err, sizeof err);
  if (!vm) {
    fprintf(stderr, "chatgw: cannot start the Lua runtime: %s\n", err);
    g_rt.exit_code = 1;
    finish_exit();
  } else {
    start_load(vm, boot_loaded);
  }
  uv_run(g_rt.loop, UV_RUN_DEFAULT);

  if (g_rt.http) http_server_free(g_rt.http);
  g_rt.http = g_rt.host.http = NULL;
  int rc = uv_loop_close(g_rt.loop);
  if (rc != 0) {
    log_errorf("event loop closed with handles still open: %s", uv_strerror(rc));
    if (!g_rt.exit_code) g_rt.exit_code = 70;
  }
  shared_dict_free_all();
  limiter_free_all();
  breaker_free_all();
  lock_release_all();
  metrics_shutdown();
  log_set_buffered(0);
  http_client_global_cleanup();
  if (g_rt.test_dir[0]) remove_tree(g_rt.test_dir);
  if (o->mode == RT_RUN && !g_rt.exit_code) log_infof("stopped");
  return g_rt.exit_code;
}
