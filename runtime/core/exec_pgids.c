/* exec_pgids.c - the process groups of running exec children, in a fixed array that a signal
 * handler (the second SIGTERM) and the master (a worker that died) can walk without the loop. */
#include "exec_pgids.h"

#include <signal.h>
#include <stddef.h>

#include "exec.h"
#include "log.h"

/* The process group of every running child, for exec_kill_all_signal_safe(): a fixed array a
 * signal handler can walk (no list, no allocation). 0 is a free slot. Under the master it is
 * the master's shared mapping (exec_set_pgid_table), so the master can kill the groups of a
 * worker that died without running any code (kill -9). */
static volatile sig_atomic_t g_pgids_own[EXEC_PGID_SLOTS];
static volatile sig_atomic_t *g_pgids = g_pgids_own;

void exec_set_pgid_table(volatile sig_atomic_t *slots) {
  g_pgids = slots ? slots : g_pgids_own;
}

void exec_clear_pgid_table(void) {
  for (size_t i = 0; i < EXEC_PGID_SLOTS; i++)
    g_pgids[i] = 0;
}

void exec__pgid_add(int pid) {
  for (size_t i = 0; i < EXEC_PGID_SLOTS; i++) {
    if (g_pgids[i] == 0) {
      g_pgids[i] = pid;
      return;
    }
  }
  log_warnf("exec: more than %d children: pid %d is not killed by a second signal", EXEC_PGID_SLOTS,
            pid);
}

void exec__pgid_remove(int pid) {
  for (size_t i = 0; i < EXEC_PGID_SLOTS; i++) {
    if (g_pgids[i] == pid) {
      g_pgids[i] = 0;
      return;
    }
  }
}

void exec_kill_all_signal_safe(void) {
  for (size_t i = 0; i < EXEC_PGID_SLOTS; i++) {
    int pid = g_pgids[i];
    if (pid > 0) kill(-pid, SIGKILL);
  }
}
