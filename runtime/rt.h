/* rt.h - the runtime: boot, reload (SIGHUP) and graceful stop (SIGTERM/SIGINT).
 *
 * rt.c owns the one runtime struct of the process and is the only module that reads it; the
 * layers below get what they need passed in (the loop, settings, the bindings' host). */
#ifndef CHATGW_RT_H
#define CHATGW_RT_H

/* Runs the whole program: boot, serve until stopped. Returns the process exit code. */
int rt_run(const char *handlers_dir, const char *config_path, int config_explicit, int check_only);
#endif
