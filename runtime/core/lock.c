/* lock.c - advisory locks held for the life of the process (see lock.h). */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct held {
  struct held *next;
  int fd;
  char name[LOCK_NAME_MAX + 1];
} held_t;

static held_t *g_held, **g_tail = &g_held;
static long g_owner_pid; /* written into lock files; 0: getpid() */

void lock_set_owner_pid(long pid) {
  g_owner_pid = pid;
}

int lock_name_valid(const char *name) {
  size_t n = 0;
  for (const char *p = name; *p; p++, n++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return 0;
  }
  return n >= 1 && n <= LOCK_NAME_MAX;
}

int lock_is_held(const char *name) {
  for (held_t *h = g_held; h; h = h->next)
    if (strcmp(h->name, name) == 0) return 1;
  return 0;
}

static long read_pid(int fd) {
  char buf[32];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = 0;
  return strtol(buf, NULL, 10);
}

int lock_acquire(const char *data_dir, const char *name, long *holder_pid, char *err,
                 size_t errlen) {
  *holder_pid = 0;
  if (!lock_name_valid(name)) {
    snprintf(err, errlen, "bad lock name '%s'", name);
    return -1;
  }
  if (lock_is_held(name)) return 1;
  char path[1200];
  snprintf(path, sizeof path, "%s/locks", data_dir);
  if (mkdir(path, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
    return -1;
  }
  snprintf(path, sizeof path, "%s/locks/%s.lock", data_dir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e == EWOULDBLOCK) *holder_pid = read_pid(fd);
    close(fd);
    if (e == EWOULDBLOCK) return 0;
    snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
    return -1;
  }
  held_t *h = calloc(1, sizeof *h);
  if (!h) {
    close(fd);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%ld\n", g_owner_pid > 0 ? g_owner_pid : (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
    /* The lock is ours all the same; only the holder's pid is not recorded. */
  }
  h->fd = fd;
  snprintf(h->name, sizeof h->name, "%s", name);
  *g_tail = h;
  g_tail = &h->next;
  return 1;
}

size_t lock_list(const char **names, size_t max) {
  size_t n = 0;
  for (held_t *h = g_held; h && n < max; h = h->next)
    names[n++] = h->name;
  return n;
}

void lock_release_all(void) {
  while (g_held) {
    held_t *h = g_held;
    g_held = h->next;
    close(h->fd);
    free(h);
  }
  g_tail = &g_held;
}
