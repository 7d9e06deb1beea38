/* lib_opts.h - reading the arguments and option tables of a binding (chatgw.limiter{...},
 * chatgw._breaker, chatgw.http.request{...}, chatgw._exec, ...) with errors that name the
 * function, as in "chatgw.limiter: rate must be a number, got string", and filling result
 * tables. Every Lua-facing C function checks its arguments through these or raises the same
 * way: nothing in a binding may crash the process. */
#ifndef CHATGW_LIB_OPTS_H
#define CHATGW_LIB_OPTS_H

#include <lua.h>
#include <stddef.h>

/* Raises "<fn>: opts must be a table, got <type>" unless the value at t is a table, and
 * "<fn>: unknown option '<key>' (known: a, b, ...)" for a key not in known (NULL-terminated). */
void lib_opts_check(lua_State *L, int t, const char *fn, const char *const *known);

/* The `name` option of a registry object that lives on across reloads: a string of 1..200
 * bytes, else "<fn>: name must be a non-empty string (<what> are shared by name and survive
 * reloads)". Leaves the string on the stack, which keeps it alive. */
const char *lib_opts_name(lua_State *L, int t, const char *fn, const char *what);

/* Reads the number option k of the table at t into *v. Returns 1 if it is set, 0 if it is
 * nil (*v is left alone); raises "<fn>: <k> must be a number, got <type>" for anything else
 * and "<fn>: <k> must be a finite number" for inf and nan. */
int lib_opts_number(lua_State *L, int t, const char *fn, const char *k, double *v);

/* The number option k (dflt when nil) within min..max; integer: whole numbers only. Raises
 * "<fn>: <k> must be a number in <min>..<max>" ("an integer in", or ">= <min>" when max is
 * HUGE_VAL) otherwise. */
double lib_opts_range(lua_State *L, int t, const char *fn, const char *k, double dflt, double min,
                      double max, int integer);

/* The string option k (NULL when nil); raises "<fn>: <k> must be a string, got <type>". The
 * string stays referenced by the table. len may be NULL. */
const char *lib_opts_string(lua_State *L, int t, const char *fn, const char *k, size_t *len);

/* Positional argument idx as an optional string: NULL when none or nil; raises
 * "<fn>: <what> must be a string, got <type>". */
const char *lib_arg_string(lua_State *L, int idx, const char *fn, const char *what);

/* t[k] = v for the table at the top of the stack (lib_set_str skips a NULL v). */
void lib_set_num(lua_State *L, const char *k, double v);
void lib_set_str(lua_State *L, const char *k, const char *v);

#endif
