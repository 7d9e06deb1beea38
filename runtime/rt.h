/* rt.h - the runtime: boot, reload (SIGHUP) and graceful stop (SIGTERM/SIGINT).
 *
 * rt.c owns the one runtime struct of the process and is the only module that reads it; the
 * layers below get what they need passed in (the loop, settings, the bindings' host). */
#ifndef CHATGW_RT_H
#define CHATGW_RT_H

typedef enum {
  RT_RUN,   /* chatgw run: serve until stopped */
  RT_CHECK, /* chatgw check: load and validate, start nothing */
  RT_TEST,  /* chatgw test: load, then run the handler specs on the test channel and exit */
} rt_mode_t;

typedef struct {
  const char *handlers_dir;
  const char *config_path;
  int config_explicit;
  rt_mode_t mode;
  const char *const *specs; /* RT_TEST: spec files or directories (none: DIR/../tests) */
  int nspecs;
} rt_options_t;

/* Runs the whole program: boot, serve until stopped. Returns the process exit code. */
int rt_run(const rt_options_t *opts);
#endif
