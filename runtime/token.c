/* token.c - data directory creation and the API token (see token.h). */
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

int data_dir_prepare(const char *dir, char *err, size_t errlen) {
  char path[1024];
  snprintf(path, sizeof path, "%s", dir);
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/')
    path[--len] = 0;
  for (char *p = path + 1;; p++) {
    if (*p == '/' || *p == 0) {
      char c = *p;
      *p = 0;
      if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "data_dir %s: cannot create %s: %s", dir, path, strerror(errno));
        return -1;
      }
      *p = c;
      if (c == 0) break;
    }
  }
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "data_dir %s: not a directory", dir);
    return -1;
  }
  return 0;
}

/* Reads a token file: the first line, trimmed. */
static int read_token_file(const char *path, char *token, size_t tlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, token, tlen - 1);
  close(fd);
  if (n <= 0) return -1;
  token[n] = 0;
  token[strcspn(token, "\r\n \t")] = 0;
  return token[0] ? 0 : -1;
}

int token_setup(const char *data_dir, char *token, size_t tlen, char *source, size_t slen,
                char *err, size_t errlen) {
  const char *env = getenv("CHAT_GATEWAY_TOKEN");
  if (env && *env) {
    if (strlen(env) >= tlen) {
      snprintf(err, errlen, "CHAT_GATEWAY_TOKEN is too long (at most %zu bytes)", tlen - 1);
      return -1;
    }
    snprintf(token, tlen, "%s", env);
    snprintf(source, slen, "env");
    return 0;
  }
  char path[1100];
  snprintf(path, sizeof path, "%s/token", data_dir);
  snprintf(source, slen, "%s", path);
  if (read_token_file(path, token, tlen) == 0) {
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077))
      log_warnf("token file %s is readable by others (mode %03o); chmod 600 it", path,
                (unsigned)(st.st_mode & 0777));
    log_infof("CHAT_GATEWAY_TOKEN is not set: using the token stored in %s", path);
    return 0;
  }
  unsigned char raw[32];
  if (uv_random(NULL, NULL, raw, sizeof raw, 0, NULL) != 0) {
    snprintf(err, errlen, "cannot generate a token: no randomness");
    return -1;
  }
  if (tlen < 2 * sizeof raw + 1) {
    snprintf(err, errlen, "token buffer too small");
    return -1;
  }
  for (size_t i = 0; i < sizeof raw; i++)
    snprintf(token + 2 * i, 3, "%02x", raw[i]);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "cannot create token file %s: %s", path, strerror(errno));
    return -1;
  }
  char line[80];
  int n = snprintf(line, sizeof line, "%s\n", token);
  if (write(fd, line, (size_t)n) != n) {
    close(fd);
    unlink(path);
    snprintf(err, errlen, "cannot write token file %s", path);
    return -1;
  }
  close(fd);
  log_warnf("CHAT_GATEWAY_TOKEN is not set: generated an API token, read it from %s", path);
  return 0;
}
