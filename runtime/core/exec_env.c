/* exec_env.c - the environment of a subprocess (see exec_env.h). */
#include "exec_env.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

int exec_env_is_secret(const char *name, size_t len) {
  static const char *const exact[] = {"CHAT_GATEWAY_TOKEN", "TELEGRAM_BOT_TOKEN",
                                      "FEISHU_APP_SECRET",  "FEISHU_VERIFICATION_TOKEN",
                                      "FEISHU_ENCRYPT_KEY", NULL};
  static const char *const suffix[] = {"_TOKEN", "_SECRET", "_PASSWORD", "_KEY", NULL};
  for (const char *const *e = exact; *e; e++)
    if (strlen(*e) == len && strncasecmp(*e, name, len) == 0) return 1;
  for (const char *const *s = suffix; *s; s++) {
    size_t sl = strlen(*s);
    if (len >= sl && strncasecmp(name + len - sl, *s, sl) == 0) return 1;
  }
  return 0;
}

/* entry's name (nlen bytes) equals the name of `name`, which may be "NAME" or "NAME=value". */
static int env_name_eq(const char *entry, size_t nlen, const char *name) {
  size_t l = strlen(name);
  const char *eq = strchr(name, '=');
  if (eq) l = (size_t)(eq - name);
  return l == nlen && memcmp(entry, name, nlen) == 0;
}

char **exec_env_build(char *const *set, char *const *unset) {
  size_t n = 0, nset = 0;
  for (char **e = environ; e && *e; e++)
    n++;
  while (set[nset])
    nset++;
  char **env = calloc(n + nset + 1, sizeof *env);
  if (!env) return NULL;
  size_t k = 0;
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    size_t nlen = (size_t)(eq - *e);
    if (exec_env_is_secret(*e, nlen)) continue;
    int skip = 0;
    for (char *const *s = set; *s && !skip; s++)
      skip = env_name_eq(*e, nlen, *s);
    for (char *const *u = unset; *u && !skip; u++)
      skip = env_name_eq(*e, nlen, *u);
    if (!skip) env[k++] = *e;
  }
  for (size_t i = 0; i < nset; i++)
    env[k++] = set[i];
  env[k] = NULL;
  return env;
}
