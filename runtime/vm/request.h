/* request.h - HTTP requests as coroutines of a state: each request runs the state's dispatcher
 * (runtime.dispatch in lua/chatgw/runtime.lua) in a CO_REQUEST coroutine, and what it returns
 * (status, body, headers, route) becomes the response. */
#ifndef CHATGW_REQUEST_H
#define CHATGW_REQUEST_H

#include <lua.h>

#include "http_server.h"
#include "vm.h"

/* Once per process: a request still running when its state is destroyed gets 503. */
void request_init(void);
/* Pops the dispatcher function of state L and keeps it in L's registry. */
void request_set_dispatcher(lua_State *L);
/* Pops runtime.precheck of state L and keeps it in L's registry. */
void request_set_precheck(lua_State *L);
/* At headers-complete of a request with a body (http_headers_cb): runtime.precheck(method, path,
 * listener, authorization, remote) decides 401/403/404/405 (and a listener guard's refusal)
 * before the body is read; such an answer is sent with http_request_reject. */
void request_precheck(vm_t *vm, http_request_t *req);
/* The FFI readers of a running request's headers, for lua/chatgw/cffi.lua (lib.c hands them
 * over as function pointers): runtime.dispatch(req, handle) builds req.headers from them on first
 * read and reads single headers (authorization, content-type) without the table. */
void *request_ffi_header(void);
void *request_ffi_view(void);
void *request_ffi_header_at(void);
/* Answer req on vm. */
void request_dispatch(vm_t *vm, http_request_t *req);

#endif
