/* curl_lazy.h - libcurl, loaded with dlopen at the first outbound request.
 *
 * libcurl pulls in some twenty shared libraries (GnuTLS via LDAP, Kerberos, libssh2, ...)
 * whose relocations and constructors cost about 5 MiB of RSS at start. A gateway that never
 * calls out should not pay that, so the runtime resolves the libcurl functions it uses at
 * first use. Include this header instead of <curl/curl.h>: the usual names then call through
 * the loaded table. Call curl_lazy_load() before any of them. */
#ifndef CHATGW_CURL_LAZY_H
#define CHATGW_CURL_LAZY_H

#ifndef CURL_DISABLE_TYPECHECK
#define CURL_DISABLE_TYPECHECK /* the type-checking macros would shadow the table below */
#endif
#include <curl/curl.h>

#define CURL_LAZY_FUNCS(X)                                                                         \
  X(curl_global_init)                                                                              \
  X(curl_global_cleanup)                                                                           \
  X(curl_easy_init)                                                                                \
  X(curl_easy_cleanup)                                                                             \
  X(curl_easy_setopt)                                                                              \
  X(curl_easy_getinfo)                                                                             \
  X(curl_easy_pause)                                                                               \
  X(curl_easy_strerror)                                                                            \
  X(curl_free)                                                                                     \
  X(curl_mime_init)                                                                                \
  X(curl_mime_free)                                                                                \
  X(curl_mime_addpart)                                                                             \
  X(curl_mime_name)                                                                                \
  X(curl_mime_data)                                                                                \
  X(curl_mime_filedata)                                                                            \
  X(curl_mime_filename)                                                                            \
  X(curl_mime_type)                                                                                \
  X(curl_multi_init)                                                                               \
  X(curl_multi_cleanup)                                                                            \
  X(curl_multi_add_handle)                                                                         \
  X(curl_multi_remove_handle)                                                                      \
  X(curl_multi_assign)                                                                             \
  X(curl_multi_setopt)                                                                             \
  X(curl_multi_socket_action)                                                                      \
  X(curl_multi_info_read)                                                                          \
  X(curl_multi_strerror)                                                                           \
  X(curl_slist_append)                                                                             \
  X(curl_slist_free_all)                                                                           \
  X(curl_url)                                                                                      \
  X(curl_url_cleanup)                                                                              \
  X(curl_url_get)                                                                                  \
  X(curl_url_set)                                                                                  \
  X(curl_url_strerror)

struct curl_lazy_fns {
#define CURL_LAZY_FIELD(name) __typeof__(&name) p_##name;
  CURL_LAZY_FUNCS(CURL_LAZY_FIELD)
#undef CURL_LAZY_FIELD
};
extern struct curl_lazy_fns g_curl_fns;

/* Loads libcurl.so.4 once. Returns 0, or -1 with a message in *err (static storage). */
int curl_lazy_load(const char **err);
int curl_lazy_loaded(void);

/* curl.h maps these three to themselves when type checks are off: drop that first. */
#undef curl_easy_setopt
#undef curl_easy_getinfo
#undef curl_multi_setopt
#define curl_global_init (*g_curl_fns.p_curl_global_init)
#define curl_global_cleanup (*g_curl_fns.p_curl_global_cleanup)
#define curl_easy_init (*g_curl_fns.p_curl_easy_init)
#define curl_easy_cleanup (*g_curl_fns.p_curl_easy_cleanup)
#define curl_easy_setopt (*g_curl_fns.p_curl_easy_setopt)
#define curl_easy_getinfo (*g_curl_fns.p_curl_easy_getinfo)
#define curl_easy_pause (*g_curl_fns.p_curl_easy_pause)
#define curl_easy_strerror (*g_curl_fns.p_curl_easy_strerror)
#define curl_free (*g_curl_fns.p_curl_free)
#define curl_mime_init (*g_curl_fns.p_curl_mime_init)
#define curl_mime_free (*g_curl_fns.p_curl_mime_free)
#define curl_mime_addpart (*g_curl_fns.p_curl_mime_addpart)
#define curl_mime_name (*g_curl_fns.p_curl_mime_name)
#define curl_mime_data (*g_curl_fns.p_curl_mime_data)
#define curl_mime_filedata (*g_curl_fns.p_curl_mime_filedata)
#define curl_mime_filename (*g_curl_fns.p_curl_mime_filename)
#define curl_mime_type (*g_curl_fns.p_curl_mime_type)
#define curl_multi_init (*g_curl_fns.p_curl_multi_init)
#define curl_multi_cleanup (*g_curl_fns.p_curl_multi_cleanup)
#define curl_multi_add_handle (*g_curl_fns.p_curl_multi_add_handle)
#define curl_multi_remove_handle (*g_curl_fns.p_curl_multi_remove_handle)
#define curl_multi_assign (*g_curl_fns.p_curl_multi_assign)
#define curl_multi_setopt (*g_curl_fns.p_curl_multi_setopt)
#define curl_multi_socket_action (*g_curl_fns.p_curl_multi_socket_action)
#define curl_multi_info_read (*g_curl_fns.p_curl_multi_info_read)
#define curl_multi_strerror (*g_curl_fns.p_curl_multi_strerror)
#define curl_slist_append (*g_curl_fns.p_curl_slist_append)
#define curl_slist_free_all (*g_curl_fns.p_curl_slist_free_all)
#define curl_url (*g_curl_fns.p_curl_url)
#define curl_url_cleanup (*g_curl_fns.p_curl_url_cleanup)
#define curl_url_get (*g_curl_fns.p_curl_url_get)
#define curl_url_set (*g_curl_fns.p_curl_url_set)
#define curl_url_strerror (*g_curl_fns.p_curl_url_strerror)

#endif
