/* request.c - HTTP requests as coroutines (see request.h). */
#include "request.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- request handles: what the runtime's Lua layer reads headers through (lua/chatgw/cffi.lua)
 * while a request runs. A handle is slot << 32 | generation; the slot is freed when the request
 * is answered and its generation moves on, so a stale handle finds nothing (never a freed
 * request). ---- */

typedef struct {
  http_request_t *req; /* NULL: free */
  uint32_t gen;
  uint32_t next_free; /* index + 1 of the next free slot, 0: none */
} req_slot_t;

static req_slot_t *g_slots;
static uint32_t g_nslots, g_free_head; /* g_free_head: index + 1, 0: none */

#define MAX_SLOTS (1u << 20) /* so that a handle (< 2^52) is exact in a Lua number */

/* -> the request's handle (>= 1), or 0 when out of memory (then the headers are pushed whole). */
static uint64_t slot_take(http_request_t *req) {
  uint32_t i;
  if (g_free_head) {
    i = g_free_head - 1;
    g_free_head = g_slots[i].next_free;
  } else {
    if (g_nslots == MAX_SLOTS) return 0;
    uint32_t cap = g_nslots ? g_nslots * 2 : 64;
    if (cap > MAX_SLOTS) cap = MAX_SLOTS;
    req_slot_t *ns = realloc(g_slots, cap * sizeof *ns);
    if (!ns) return 0;
    g_slots = ns;
    for (uint32_t j = g_nslots; j < cap; j++)
      g_slots[j] = (req_slot_t){NULL, 1, j + 1 < cap ? j + 2 : 0};
    g_free_head = g_nslots + 1;
    g_nslots = cap;
    i = g_free_head - 1;
    g_free_head = g_slots[i].next_free;
  }
  g_slots[i].req = req;
  return ((uint64_t)i << 32) | g_slots[i].gen;
}

static http_request_t *slot_get(uint64_t h) {
  uint64_t i = h >> 32;
  if (i >= g_nslots) return NULL;
  req_slot_t *s = &g_slots[i];
  return s->req && s->gen == (uint32_t)h ? s->req : NULL;
}

static void slot_release(uint64_t h) {
  uint64_t i = h >> 32;
  if (!h || i >= g_nslots || g_slots[i].gen != (uint32_t)h) return;
  req_slot_t *s = &g_slots[i];
  s->req = NULL;
  s->gen = s->gen == UINT32_MAX ? 1 : s->gen + 1;
  s->next_free = g_free_head;
  g_free_head = (uint32_t)i + 1;
}

/* The value of header name (lower case, nlen bytes) of the request h: the first one, *count the
 * number of headers with that name (more than 1: the Lua side joins them, from the table).
 * NULL with *count 0: absent, or h names no running request (*count -1). */
static const char *ffi_req_header(uint64_t h, const char *name, size_t nlen, size_t *vlen,
                                  int *count) {
  if (!count) return NULL;
  *count = -1;
  http_request_t *req = slot_get(h);
  if (!req || !name || !vlen) return NULL;
  const char *found = NULL;
  *count = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    const http_header_t *hd = &req->headers[i];
    if (hd->name_len == nlen && memcmp(hd->name, name, nlen) == 0) {
      if (!found) {
        found = hd->value;
        *vlen = hd->value_len;
      }
      (*count)++;
    }
  }
  return found;
}

/* Header i (0-based) of the request h in arrival order: 1 and its name and value, 0 past the
 * last one, -1 when h names no running request. */
static int ffi_req_header_at(uint64_t h, size_t i, const char **name, size_t *nlen,
                             const char **value, size_t *vlen) {
  http_request_t *req = slot_get(h);
  if (!req || !name || !nlen || !value || !vlen) return -1;
  if (i >= req->nheaders) return 0;
  const http_header_t *hd = &req->headers[i];
  *name = hd->name;
  *nlen = hd->name_len;
  *value = hd->value;
  *vlen = hd->value_len;
  return 1;
}

/* The request's scalar fields and body as the Lua side builds req from them (lua/chatgw/cffi.lua
 * declares the same struct). One per process: read at once, before anything else runs. */
typedef struct {
  const char *method, *path, *query, *body, *remote_addr, *id, *listener;
  size_t method_len, path_len, query_len, body_len, remote_len, id_len, listener_len;
  int remote_port;
} req_view_t;

static const char *nz(const char *s) {
  return s ? s : "";
}

/* The fields of the running request h, or NULL when h names none. */
static const req_view_t *ffi_req_view(uint64_t h) {
  static req_view_t v;
  http_request_t *req = slot_get(h);
  if (!req) return NULL;
  v.method = nz(req->method);
  v.method_len = strlen(v.method);
  v.path = nz(req->path);
  v.path_len = strlen(v.path);
  v.query = nz(req->query);
  v.query_len = strlen(v.query);
  v.body = req->body ? req->body : "";
  v.body_len = req->body ? req->body_len : 0;
  v.remote_addr = nz(req->remote_addr);
  v.remote_len = strlen(v.remote_addr);
  v.id = nz(req->request_id);
  v.id_len = strlen(v.id);
  v.listener = nz(req->listener);
  v.listener_len = strlen(v.listener);
  v.remote_port = req->remote_port;
  return &v;
}

void *request_ffi_view(void) {
  return (void *)ffi_req_view;
}

void *request_ffi_header(void) {
  return (void *)ffi_req_header;
}

void *request_ffi_header_at(void) {
  return (void *)ffi_req_header_at;
}

static void push_headers(lua_State *L, http_request_t *req) {
  lua_createtable(L, 0, (int)req->nheaders);
  for (size_t i = 0; i < req->nheaders; i++) {
    const http_header_t *h = &req->headers[i];
    lua_pushlstring(L, h->name, h->name_len);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, h->name, h->name_len);
      lua_pushlstring(L, h->value, h->value_len);
    } else {
      /* Repeated header: join the values as HTTP allows. */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, h->value, h->value_len);
      lua_concat(L, 3);
      lua_pushlstring(L, h->name, h->name_len);
      lua_insert(L, -2);
    }
    lua_rawset(L, -3);
  }
}

/* The request table, whole: only when no handle could be had (out of memory), else the
 * dispatcher builds it through the FFI (ffi_req_view) and req.headers on first read. */
static void push_request(lua_State *L, http_request_t *req) {
  lua_createtable(L, 0, 12);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, req->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, req->query);
  lua_setfield(L, -2, "query_string");
  push_headers(L, req);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, req->body ? req->body : "", req->body_len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, req->remote_addr);
  lua_setfield(L, -2, "remote_addr");
  lua_pushinteger(L, req->remote_port);
  lua_setfield(L, -2, "remote_port");
  lua_pushstring(L, req->request_id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, req->listener);
  lua_setfield(L, -2, "listener");
}

#define STACK_RESPONSE_HEADERS 32 /* more are rare: those get a heap array */

static void respond_internal_error(http_request_t *req) {
  char body[256];
  int n = snprintf(body, sizeof body,
                   "{\"ok\":false,\"error\":\"internal_error\",\"request_id\":\"%s\"}",
                   req->request_id);
  http_header_t h = {"Content-Type", 12, "application/json", 16};
  http_request_respond(req, 500, &h, 1, body, (size_t)n, NULL);
}

/* status, body (string), headers (table), route template at T[base..base+3] -> the response
 * (early: http_request_reject, from the headers callback). */
static void respond_from(lua_State *T, int base, http_request_t *req, int early) {
  int status = (int)lua_tointeger(T, base);
  size_t blen = 0;
  const char *body = lua_tolstring(T, base + 1, &blen);
  const char *route = lua_tostring(T, base + 3);
  if (status < 100 || status > 999 || !body) {
    if (!early) respond_internal_error(req);
    return;
  }
  http_header_t stack[STACK_RESPONSE_HEADERS], *hs = stack;
  size_t nh = 0, cap = STACK_RESPONSE_HEADERS;
  int ht = base + 2;
  if (lua_istable(T, ht)) {
    lua_pushnil(T);
    while (lua_next(T, ht) != 0) {
      if (lua_type(T, -2) == LUA_TSTRING && lua_type(T, -1) == LUA_TSTRING) {
        if (nh == cap) { /* every header is sent: grow rather than drop any */
          http_header_t *nhs = malloc(2 * cap * sizeof *nhs);
          if (!nhs) {
            if (hs != stack) free(hs);
            log_field_t f[] = {{"request_id", req->request_id, 0}};
            log_write(LOG_ERROR, "out of memory for the response headers", f, 1);
            if (!early) respond_internal_error(req);
            return;
          }
          memcpy(nhs, hs, nh * sizeof *hs);
          if (hs != stack) free(hs);
          hs = nhs;
          cap *= 2;
        }
        size_t kl, vl;
        const char *k = lua_tolstring(T, -2, &kl);
        const char *v = lua_tolstring(T, -1, &vl);
        hs[nh++] = (http_header_t){k, kl, v, vl}; /* strings stay alive in the table */
      }
      lua_pop(T, 1);
    }
  }
  if (early)
    http_request_reject(req, status, hs, nh, body, blen, route);
  else
    http_request_respond(req, status, hs, nh, body, blen, route);
  if (hs != stack) free(hs);
}

/* A running request's handle is kept in req->user (the consumer's field). */
static uint64_t handle_of(const http_request_t *req) {
  return (uint64_t)(uintptr_t)req->user;
}

/* The dispatcher returns status, body (string), headers (table), route template. */
static void request_done(co_t *co, int ok, void *ud) {
  http_request_t *req = ud;
  slot_release(handle_of(req)); /* from here on the Lua side cannot read it */
  req->user = NULL;
  lua_State *T = vm_co_thread(co);
  if (!ok) {
    log_field_t f[] = {{"request_id", req->request_id, 0}, {"error", lua_tostring(T, -1), 0}};
    log_write(LOG_ERROR, "request dispatcher failed", f, 2);
    respond_internal_error(req);
    return;
  }
  respond_from(T, 1, req, 0);
}

/* Its state is being destroyed (process exit) with the request unanswered. */
static void request_drop(void *ud) {
  static const char body[] = "{\"ok\":false,\"error\":\"shutting_down\"}";
  http_request_t *req = ud;
  slot_release(handle_of(req));
  req->user = NULL;
  http_header_t h = {"Content-Type", 12, "application/json", 16};
  http_request_respond(req, 503, &h, 1, body, sizeof body - 1, NULL);
}

void request_init(void) {
  vm_set_drop(CO_REQUEST, request_drop);
}

static char g_dispatcher_key; /* its address keys the dispatcher in each state's registry */

void request_set_dispatcher(lua_State *L) {
  lua_pushlightuserdata(L, &g_dispatcher_key);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

static char g_precheck_key;

void request_set_precheck(lua_State *L) {
  lua_pushlightuserdata(L, &g_precheck_key);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

void request_precheck(vm_t *vm, http_request_t *req) {
  lua_State *L = vm_state(vm);
  int top = lua_gettop(L);
  lua_pushlightuserdata(L, &g_precheck_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isfunction(L, -1)) {
    lua_settop(L, top);
    return;
  }
  const char *authz = NULL;
  for (size_t i = 0; i < req->nheaders && !authz; i++)
    if (req->headers[i].name_len == 13 && memcmp(req->headers[i].name, "authorization", 13) == 0)
      authz = req->headers[i].value;
  lua_pushstring(L, req->method);
  lua_pushstring(L, req->path);
  lua_pushstring(L, req->listener);
  if (authz)
    lua_pushstring(L, authz);
  else
    lua_pushnil(L);
  lua_pushstring(L, req->remote_addr);
  /* A plain call on the state's main thread: it never yields, runs no handler code. */
  if (lua_pcall(L, 5, 4, 0) != 0) {
    log_field_t f[] = {{"request_id", req->request_id, 0}, {"error", lua_tostring(L, -1), 0}};
    log_write(LOG_WARN, "request precheck failed (the body is read, the dispatcher decides)", f, 2);
  } else if (lua_type(L, top + 1) == LUA_TNUMBER) {
    respond_from(L, top + 1, req, 1);
  }
  lua_settop(L, top);
}

void request_dispatch(vm_t *vm, http_request_t *req) {
  lua_State *L = vm_state(vm);
  uint64_t h = slot_take(req);
  req->user = (void *)(uintptr_t)h;
  lua_pushlightuserdata(L, &g_dispatcher_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (h) { /* the Lua side builds req through the FFI (ffi_req_view) */
    lua_pushboolean(L, 0);
    lua_pushnumber(L, (lua_Number)h); /* < 2^52: exact in a double */
  } else {
    push_request(L, req);
    lua_pushnil(L);
  }
  co_t *co = vm_spawn_labeled3(vm, CO_REQUEST, 2, request_done, req, req->method, " ", req->path);
  if (!co) {
    slot_release(h);
    req->user = NULL;
    respond_internal_error(req);
  }
}
