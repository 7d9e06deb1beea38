/* master.h - `chatgw run`'s master process (docs/architecture.md, "Process model").
 *
 * A small process without Lua and without an event loop: a ppoll/waitpid loop that forks one
 * worker (rt_run), keeps the worker's listening sockets for the next one, re-forks a worker
 * that died (backoff), forwards SIGHUP/SIGTERM/SIGINT, and kills the exec process groups a
 * dead worker left. */
#ifndef CHATGW_MASTER_H
#define CHATGW_MASTER_H

#include "rt.h"

/* Runs the master; returns its exit code. In the forked worker it returns rt_run's. */
int master_run(const rt_options_t *opts);

#endif
