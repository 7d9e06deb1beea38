/* lib_opts.h - reading the options table of a binding (chatgw.limiter{...}, chatgw._breaker,
 * chatgw.http.request{...}) with errors that name the function, as in
 * "chatgw.limiter: rate must be a number, got string". */
#ifndef CHATGW_LIB_OPTS_H
#define CHATGW_LIB_OPTS_H

#include <lua.h>

/* Raises "<fn>: opts must be a table, got <type>" unless the value at t is a table, and
 * "<fn>: unknown option '<key>'" for a key not in known (NULL-terminated). */
void lib_opts_check(lua_State *L, int t, const char *fn, const char *const *known);

/* The `name` option of a registry object that lives on across reloads: a string of 1..200
 * bytes, else "<fn>: name must be a non-empty string (<what> are shared by name and survive
 * reloads)". Leaves the string on the stack, which keeps it alive. */
const char *lib_opts_name(lua_State *L, int t, const char *fn, const char *what);

/* Reads the number option k of the table at t into *v. Returns 1 if it is set, 0 if it is
 * nil (*v is left alone); raises "<fn>: <k> must be a number, got <type>" for anything else.
 * Range checks are the caller's. */
int lib_opts_number(lua_State *L, int t, const char *fn, const char *k, double *v);

#endif
