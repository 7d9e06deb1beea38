/* lib_http.c - the C half of chatgw.http.request (the Lua half is lua/chatgw/http.lua).
 *
 *   local h = chatgw._http_start(opts)  -- starts a transfer; raises on misuse
 *   chatgw._http_next(h)                -- yields until the next event:
 *       "chunk", bytes, status           (streaming only; status of the response)
 *       "done", status, headers, body, effective_url, duration_ms
 *       nil, "code: message"             (transport failure, cancelled)
 *   h:close()  h:host()
 *
 * _http_next always yields, even when an event is already there (it is delivered on the next
 * loop turn): a task cancelled by a reload learns it at its next call, and a fast stream
 * cannot starve the loop. */
#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"
#include "lib.h"
#include "lib_opts.h"
#include "vm.h"

#define HANDLE_MT "chatgw.http_handle"
#define FN "chatgw.http.request"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_MAX_BODY (10 * 1024 * 1024)
#define DEFAULT_MAX_REDIRECTS 10

typedef struct {
  pending_t base; /* the wait of _http_next */
  http_xfer_t *x;
  int waiting;
} lhttp_t;

/* ---- events ---- */

static void push_headers(lua_State *T, http_xfer_t *x) {
  size_t len;
  const char *p = http_xfer_headers(x, &len), *end = p + len;
  lua_newtable(T);
  while (p < end) {
    const char *name = p;
    size_t nl = strlen(name);
    const char *val = name + nl + 1;
    if (val >= end) break;
    size_t vl = strlen(val);
    p = val + vl + 1;
    lua_pushlstring(T, name, nl);
    lua_rawget(T, -2);
    if (lua_isnil(T, -1)) {
      lua_pop(T, 1);
      lua_pushlstring(T, name, nl);
      lua_pushlstring(T, val, vl);
    } else {
      lua_pushliteral(T, ", ");
      lua_pushlstring(T, val, vl);
      lua_concat(T, 3);
      lua_pushlstring(T, name, nl);
      lua_insert(T, -2);
    }
    lua_rawset(T, -3);
  }
}

/* Pushes the next event of x on T; 0 when there is none yet. */
static int push_event(lua_State *T, http_xfer_t *x) {
  if (http_xfer_chunk_len(x) > 0) {
    lua_pushliteral(T, "chunk");
    lua_pushlstring(T, http_xfer_chunk(x), http_xfer_chunk_len(x));
    lua_pushinteger(T, (lua_Integer)http_xfer_status(x));
    http_xfer_chunk_taken(x); /* may unpause the transfer */
    return 3;
  }
  if (!http_xfer_done(x)) return 0;
  const char *err = http_xfer_error(x);
  if (err) {
    lua_pushnil(T);
    lua_pushstring(T, err);
    return 2;
  }
  size_t blen;
  const char *body = http_xfer_body(x, &blen);
  lua_pushliteral(T, "done");
  lua_pushinteger(T, (lua_Integer)http_xfer_status(x));
  push_headers(T, x);
  lua_pushlstring(T, body, blen);
  lua_pushstring(T, http_xfer_effective_url(x));
  lua_pushnumber(T, http_xfer_duration_ms(x));
  return 6;
}

static void on_event(http_xfer_t *x, void *ud) {
  lhttp_t *h = ud;
  if (!h->waiting) return;
  co_t *co = h->base.co;
  lua_State *T = vm_co_thread(co);
  lua_checkstack(T, 8);
  int n = push_event(T, x);
  if (n == 0) return;
  h->waiting = 0;
  vm_wait_done(co);
  vm_resume(co, n); /* h may be gone after this */
}

static void wait_cancel(pending_t *p) {
  lhttp_t *h = (lhttp_t *)p;
  h->waiting = 0;
  if (h->x) http_xfer_abort(h->x, "cancelled");
}

/* ---- option parsing ---- */

/* Pushes t[k] and returns its type. */
static int field_type(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  return lua_type(L, -1);
}

static int has_crlf(const char *s, size_t n) {
  return memchr(s, '\r', n) || memchr(s, '\n', n) || memchr(s, 0, n);
}

static int valid_token(const char *s, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c)) return 0;
  }
  return 1;
}

/* headers = { name = value }: appended to *list. Sets *seen bits for names we default. */
enum { SEEN_CT = 1, SEEN_EXPECT = 2 };

static struct curl_slist *parse_headers(lua_State *L, int t, int *seen) {
  struct curl_slist *list = NULL;
  int ty = field_type(L, t, "headers");
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  if (ty != LUA_TTABLE) luaL_error(L, FN ": headers must be a table, got %s", lua_typename(L, ty));
  int ht = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, ht) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      curl_slist_free_all(list);
      luaL_error(L, FN ": header names must be strings");
    }
    size_t nl, vl;
    const char *name = lua_tolstring(L, -2, &nl);
    int vt = lua_type(L, -1);
    if (vt != LUA_TSTRING && vt != LUA_TNUMBER) {
      curl_slist_free_all(list);
      luaL_error(L, FN ": header '%s' must be a string or number, got %s", name,
                 lua_typename(L, vt));
    }
    lua_pushvalue(L, -1);
    const char *val = lua_tolstring(L, -1, &vl);
    if (!valid_token(name, nl) || has_crlf(val, vl)) {
      curl_slist_free_all(list);
      luaL_error(L, FN ": header '%s' has an invalid name or a CR/LF in its value", name);
    }
    if (nl == 12 && strncasecmp(name, "content-type", 12) == 0) *seen |= SEEN_CT;
    if (nl == 6 && strncasecmp(name, "expect", 6) == 0) *seen |= SEEN_EXPECT;
    /* "Name;" sends an empty header (curl would drop "Name:"). */
    lua_pushfstring(L, vl ? "%s: %s" : "%s;", name, val);
    struct curl_slist *nlist = curl_slist_append(list, lua_tostring(L, -1));
    if (!nlist) {
      curl_slist_free_all(list);
      luaL_error(L, FN ": out of memory");
    }
    list = nlist;
    lua_pop(L, 3);
  }
  lua_pop(L, 1);
  return list;
}

/* form = array of { name=, value= | data= | path=, filename=, content_type= } (the Lua layer
 * turns a {name = ...} map into this array). Raises with mime freed on misuse. */
static curl_mime *parse_form(lua_State *L, int ft, CURL *e) {
  curl_mime *mime = curl_mime_init(e);
  if (!mime) luaL_error(L, FN ": out of memory");
  size_t n = lua_objlen(L, ft);
  char msg[512];
  msg[0] = 0;
  for (size_t i = 1; i <= n && !msg[0]; i++) {
    lua_rawgeti(L, ft, (int)i);
    int pt = lua_gettop(L);
    if (!lua_istable(L, pt)) {
      snprintf(msg, sizeof msg, "form part %zu must be a table", i);
      break;
    }
    lua_getfield(L, pt, "name");
    lua_getfield(L, pt, "value");
    lua_getfield(L, pt, "data");
    lua_getfield(L, pt, "path");
    lua_getfield(L, pt, "filename");
    lua_getfield(L, pt, "content_type");
    const char *name = lua_tostring(L, pt + 1);
    int has_value = !lua_isnil(L, pt + 2), has_data = !lua_isnil(L, pt + 3),
        has_path = !lua_isnil(L, pt + 4);
    if (lua_type(L, pt + 1) != LUA_TSTRING || !*name) {
      snprintf(msg, sizeof msg, "form part %zu: name must be a non-empty string", i);
    } else if (has_value + has_data + has_path != 1) {
      snprintf(msg, sizeof msg, "form.%s: give exactly one of a value, data = bytes or path = file",
               name);
    } else if (has_value && lua_type(L, pt + 2) != LUA_TSTRING &&
               lua_type(L, pt + 2) != LUA_TNUMBER) {
      snprintf(msg, sizeof msg, "form.%s must be a string, number or a file table", name);
    } else if ((has_data && lua_type(L, pt + 3) != LUA_TSTRING) ||
               (has_path && lua_type(L, pt + 4) != LUA_TSTRING) ||
               (!lua_isnil(L, pt + 5) && lua_type(L, pt + 5) != LUA_TSTRING) ||
               (!lua_isnil(L, pt + 6) && lua_type(L, pt + 6) != LUA_TSTRING)) {
      snprintf(msg, sizeof msg, "form.%s: data, path, filename and content_type must be strings",
               name);
    } else {
      curl_mimepart *part = curl_mime_addpart(mime);
      CURLcode rc = part ? curl_mime_name(part, name) : CURLE_OUT_OF_MEMORY;
      if (rc == CURLE_OK && has_value) {
        size_t vl;
        lua_pushvalue(L, pt + 2);
        const char *v = lua_tolstring(L, -1, &vl);
        rc = curl_mime_data(part, v, vl);
        lua_pop(L, 1);
      } else if (rc == CURLE_OK && has_data) {
        size_t dl;
        const char *d = lua_tolstring(L, pt + 3, &dl);
        rc = curl_mime_data(part, d, dl);
        if (rc == CURLE_OK)
          rc = curl_mime_filename(part, lua_isnil(L, pt + 5) ? "blob" : lua_tostring(L, pt + 5));
      } else if (rc == CURLE_OK && has_path) {
        const char *path = lua_tostring(L, pt + 4);
        FILE *f = fopen(path, "rb");
        if (!f) {
          snprintf(msg, sizeof msg, "form.%s: cannot read %s: %s", name, path, strerror(errno));
        } else {
          fclose(f);
          rc = curl_mime_filedata(part, path);
          if (rc == CURLE_OK && !lua_isnil(L, pt + 5))
            rc = curl_mime_filename(part, lua_tostring(L, pt + 5));
        }
      }
      if (!msg[0] && rc == CURLE_OK && !lua_isnil(L, pt + 6))
        rc = curl_mime_type(part, lua_tostring(L, pt + 6));
      if (!msg[0] && rc != CURLE_OK)
        snprintf(msg, sizeof msg, "form.%s: %s", name, curl_easy_strerror(rc));
    }
    lua_settop(L, pt - 1);
  }
  if (msg[0]) {
    curl_mime_free(mime);
    luaL_error(L, FN ": %s", msg);
  }
  return mime;
}

/* Validates url (http/https, parseable) and copies its host into host. */
static void check_url(lua_State *L, const char *url, char *host, size_t hostlen) {
  CURLU *u = curl_url();
  if (!u) luaL_error(L, FN ": out of memory");
  char *scheme = NULL, *h = NULL;
  CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
  if (uc == CURLUE_OK) uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  int ok = uc == CURLUE_OK && scheme &&
           (strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0);
  if (ok && curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h)
    snprintf(host, hostlen, "%s", h);
  char why[128];
  snprintf(why, sizeof why, "%s", uc != CURLUE_OK ? curl_url_strerror(uc) : "not http or https");
  curl_free(scheme);
  curl_free(h);
  curl_url_cleanup(u);
  if (!ok) luaL_error(L, FN ": url must be an http:// or https:// URL (%s): %s", why, url);
}

/* ---- chatgw._http_start(opts) ---- */

static int l_http_start(lua_State *L) {
  if (!lua_istable(L, 1))
    return luaL_error(L, FN ": opts must be a table, got %s", luaL_typename(L, 1));
  vm_check_yieldable(L, FN);
  const char *load_err;
  if (curl_lazy_load(&load_err) != 0) return luaL_error(L, FN ": %s", load_err);
  size_t len;
  const char *url = lib_opts_string(L, 1, FN, "url", &len);
  if (!url) return luaL_error(L, FN ": url must be a string");
  char host[256] = "";
  check_url(L, url, host, sizeof host);
  const char *method = lib_opts_string(L, 1, FN, "method", &len);
  char m[32] = "GET";
  if (method) {
    if (len == 0 || len >= sizeof m || !valid_token(method, len))
      return luaL_error(L, FN ": method must be an HTTP method name like \"POST\"");
    for (size_t i = 0; i <= len; i++)
      m[i] = (char)toupper((unsigned char)method[i]);
  }
  size_t blen = 0;
  const char *body = lib_opts_string(L, 1, FN, "body", &blen);
  double timeout = lib_opts_range(L, 1, FN, "timeout_ms", DEFAULT_TIMEOUT_MS, 0, 1e15, 0);
  double ctimeout =
      lib_opts_range(L, 1, FN, "connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT_MS, 0, 1e15, 0);
  int stream = field_type(L, 1, "stream") != LUA_TNIL && lua_toboolean(L, -1);
  lua_pop(L, 1);
  double max_body = lib_opts_range(L, 1, FN, "max_body", stream ? 0 : DEFAULT_MAX_BODY, 1, 1e15, 0);
  long redirects = -1;
  int ty = field_type(L, 1, "follow_redirects");
  if (ty == LUA_TBOOLEAN) {
    redirects = lua_toboolean(L, -1) ? DEFAULT_MAX_REDIRECTS : -1;
  } else if (ty == LUA_TNUMBER) {
    double r = lua_tonumber(L, -1);
    if (!(r >= 0) || r > 100 || r != floor(r))
      return luaL_error(L, FN ": follow_redirects must be a boolean or an integer 0..100");
    redirects = (long)r;
  } else if (ty != LUA_TNIL) {
    return luaL_error(L, FN ": follow_redirects must be a boolean or a number, got %s",
                      lua_typename(L, ty));
  }
  lua_pop(L, 1);
  int verify = 1;
  ty = field_type(L, 1, "tls_verify");
  if (ty == LUA_TBOOLEAN)
    verify = lua_toboolean(L, -1);
  else if (ty != LUA_TNIL)
    return luaL_error(L, FN ": tls_verify must be a boolean, got %s", lua_typename(L, ty));
  lua_pop(L, 1);
  const char *ca_file = lib_opts_string(L, 1, FN, "ca_file", &len);
  const char *proxy = NULL;
  int no_proxy = 0;
  ty = field_type(L, 1, "proxy");
  if (ty == LUA_TSTRING)
    proxy = lua_tostring(L, -1);
  else if (ty == LUA_TBOOLEAN && !lua_toboolean(L, -1))
    no_proxy = 1;
  else if (ty != LUA_TNIL)
    return luaL_error(L, FN ": proxy must be a string or false, got %s", lua_typename(L, ty));
  lua_pop(L, 1);
  ty = field_type(L, 1, "form");
  int form_idx = 0;
  if (ty == LUA_TTABLE)
    form_idx = lua_gettop(L); /* stays on the stack until the end */
  else if (ty != LUA_TNIL)
    return luaL_error(L, FN ": form must be a table, got %s", lua_typename(L, ty));
  else
    lua_pop(L, 1);
  if (form_idx && body) return luaL_error(L, FN ": give either body (or json) or form, not both");

  int seen = 0;
  struct curl_slist *hdrs = parse_headers(L, 1, &seen); /* raises before anything is allocated */
  if (!(seen & SEEN_EXPECT)) {
    /* No "Expect: 100-continue" round trip before large bodies. */
    struct curl_slist *nh = curl_slist_append(hdrs, "Expect:");
    if (!nh) {
      curl_slist_free_all(hdrs);
      return luaL_error(L, FN ": out of memory");
    }
    hdrs = nh;
  }

  lhttp_t *h = lua_newuserdata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  luaL_getmetatable(L, HANDLE_MT);
  lua_setmetatable(L, -2);
  int hidx = lua_gettop(L);
  const lib_host_t *lhost = lua_touserdata(L, lua_upvalueindex(1));
  http_xfer_t *x = http_xfer_new(lhost->loop);
  if (!x) {
    curl_slist_free_all(hdrs);
    return luaL_error(L, FN ": out of memory");
  }
  h->x = x; /* from here on, __gc frees x if we raise */
  http_xfer_own_slist(x, hdrs);
  CURL *e = http_xfer_easy(x);
  curl_mime *mime = NULL;
  if (form_idx) {
    mime = parse_form(L, form_idx, e);
    http_xfer_own_mime(x, mime);
  }
  http_xfer_set_host(x, host);
  http_xfer_set_streaming(x, stream);
  http_xfer_set_max_body(x, (size_t)max_body);
  http_xfer_set_notify(x, on_event, h);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ctimeout);
  if (redirects >= 0) {
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, redirects);
  }
  if (!verify) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
  if (proxy) curl_easy_setopt(e, CURLOPT_PROXY, proxy);
  if (no_proxy) curl_easy_setopt(e, CURLOPT_PROXY, "");

  int is_post = strcmp(m, "POST") == 0, is_head = strcmp(m, "HEAD") == 0;
  if (is_head) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (mime) {
    curl_easy_setopt(e, CURLOPT_MIMEPOST, mime);
  } else if (body || is_post) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body ? body : "");
  }
  /* POST stays a plain POST (so a 303 redirect turns it into a GET, as browsers do). */
  if (!is_post && !is_head && (strcmp(m, "GET") != 0 || body || mime))
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);

  char err[256];
  /* On failure (shutting down, out of resources) x is done with that error: the next
   * _http_next returns it. */
  http_xfer_start(x, err, sizeof err);
  lua_pushvalue(L, hidx);
  return 1;
}

/* ---- chatgw._http_next(h) and the handle ---- */

static lhttp_t *check_handle(lua_State *L, const char *fname) {
  lhttp_t *h = luaL_testudata(L, 1, HANDLE_MT);
  if (!h) luaL_error(L, "%s: expected an HTTP handle", fname);
  return h;
}

static int l_http_next(lua_State *L) {
  lhttp_t *h = check_handle(L, FN);
  if (!h->x) return luaL_error(L, FN ": the transfer was closed");
  if (h->waiting) return luaL_error(L, FN ": another coroutine is waiting on this transfer");
  co_t *co = vm_check_yieldable(L, FN);
  lua_settop(L, 1); /* keeps the handle referenced by this coroutine while it waits */
  if (http_xfer_chunk_len(h->x) > 0 || http_xfer_done(h->x)) http_xfer_poke(h->x);
  h->waiting = 1;
  h->base.cancel = wait_cancel;
  return vm_wait(L, co, &h->base);
}

static int l_handle_close(lua_State *L) {
  lhttp_t *h = check_handle(L, "chatgw.http handle:close");
  if (h->waiting) return luaL_error(L, "chatgw.http handle:close: a coroutine is waiting on it");
  http_xfer_free(h->x);
  h->x = NULL;
  return 0;
}

static int l_handle_gc(lua_State *L) {
  lhttp_t *h = lua_touserdata(L, 1);
  if (h && h->x) {
    http_xfer_free(h->x);
    h->x = NULL;
  }
  return 0;
}

static int l_handle_host(lua_State *L) {
  lhttp_t *h = check_handle(L, "chatgw.http handle:host");
  lua_pushstring(L, h->x ? http_xfer_host(h->x) : "-");
  return 1;
}

void lib_http_register(lua_State *L, int t, lib_host_t *host) {
  if (t < 0) t = lua_gettop(L) + t + 1;
  if (luaL_newmetatable(L, HANDLE_MT)) {
    lua_newtable(L);
    lua_pushcfunction(L, l_handle_close);
    lua_setfield(L, -2, "close");
    lua_pushcfunction(L, l_handle_host);
    lua_setfield(L, -2, "host");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_handle_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushlightuserdata(L, host);
  lua_pushcclosure(L, l_http_start, 1);
  lua_setfield(L, t, "_http_start");
  lua_pushcfunction(L, l_http_next);
  lua_setfield(L, t, "_http_next");
}
