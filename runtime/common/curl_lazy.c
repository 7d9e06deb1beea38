/* curl_lazy.c - resolve the libcurl functions the runtime uses at first use (curl_lazy.h). */
#include <dlfcn.h>
#include <stdio.h>

/* Take the real prototypes for __typeof__ before the names are redirected. */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>

#include "curl_lazy.h"

struct curl_lazy_fns g_curl_fns;
static int g_loaded;
static char g_err[512];

int curl_lazy_loaded(void) {
  return g_loaded;
}

int curl_lazy_load(const char **err) {
  if (g_loaded) return 0;
  /* Kept loaded for the life of the process: libcurl keeps global state after cleanup. */
  void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(g_err, sizeof g_err, "cannot load libcurl.so.4: %s", dlerror());
    *err = g_err;
    return -1;
  }
  struct curl_lazy_fns f;
#define CURL_LAZY_RESOLVE(name)                                                                    \
  *(void **)&f.p_##name = dlsym(h, #name);                                                         \
  if (!f.p_##name) {                                                                               \
    snprintf(g_err, sizeof g_err, "libcurl.so.4 has no %s", #name);                                \
    *err = g_err;                                                                                  \
    return -1;                                                                                     \
  }
  CURL_LAZY_FUNCS(CURL_LAZY_RESOLVE)
#undef CURL_LAZY_RESOLVE
  g_curl_fns = f;
  g_loaded = 1;
  return 0;
}
