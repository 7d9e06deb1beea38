/* lock.h - one-instance-per-channel advisory locks.
 *
 * A lock is flock(LOCK_EX) on <data_dir>/locks/<name>.lock, opened O_CLOEXEC (children never
 * inherit it) and never unlinked (unlinking would let two processes lock two different files
 * of the same name). The descriptor is held in C for the life of the process, so reloads keep
 * it; it is released when the process exits (however it exits). The holder writes its pid
 * (the master's under the master) into the file, which a refused process reports. */
#ifndef CHATGW_LOCK_H
#define CHATGW_LOCK_H

#include <stddef.h>

#define LOCK_NAME_MAX 64

/* 1 if name matches [a-z0-9_-]{1,64}. */
int lock_name_valid(const char *name);

/* 1: held by this process (now or already); 0: another process holds it (*holder_pid set to
 * its pid when the file names one, else 0); -1: error (err set). */
int lock_acquire(const char *data_dir, const char *name, long *holder_pid, char *err,
                 size_t errlen);

int lock_is_held(const char *name);

/* Names held by this process, in acquisition order; returns how many (at most max). */
size_t lock_list(const char **names, size_t max);

/* The pid written into lock files from now on (0: this process's). Under the master the
 * worker writes the master's pid: the one to signal, and the one systemd names MainPID. */
void lock_set_owner_pid(long pid);

/* Closes every lock descriptor (process exit). */
void lock_release_all(void);

#endif
