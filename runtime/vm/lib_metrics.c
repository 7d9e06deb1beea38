/* lib_metrics.c - Lua binding for the metrics registry: chatgw.metrics.{counter, gauge,
 * histogram, render}.
 *
 * Metric objects point at C metrics that live until process exit, so a reloaded Lua state
 * that registers the same metric again keeps counting where the old one left off. */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib.h"
#include "metrics.h"

#define METRIC_MT "chatgw.metric"

/* The object keeps its own copy of the label names (metrics.h exposes only the count), in
 * registration order, to map a {name = value} table onto the registry's ordered values. */
typedef struct {
  metric_t *m;
  metric_type_t type;
  size_t nlabels;
  size_t name_off[METRICS_MAX_LABELS]; /* offsets into names */
  size_t metric_name_off;              /* the metric's own name, after the label names */
  char names[];
} lmetric_t;

static const char *type_name(metric_type_t t) {
  return t == METRIC_COUNTER ? "counter" : t == METRIC_GAUGE ? "gauge" : "histogram";
}

/* ---- constructors ---------------------------------------------------------------------- */

/* Reads opts.field as an array; returns its length or -1 when absent. Leaves it on the stack
 * (or nothing when absent). */
static int get_array(lua_State *L, const char *fn, const char *field) {
  lua_getfield(L, 1, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return -1;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "%s: %s must be an array", fn, field);
  return (int)lua_objlen(L, -1);
}

static int new_metric(lua_State *L, metric_type_t type) {
  char fn[64];
  snprintf(fn, sizeof fn, "chatgw.metrics.%s", type_name(type));
  if (!lua_istable(L, 1))
    luaL_error(L, "%s: expected a table argument like {name = ..., help = ...}", fn);
  lua_settop(L, 1);

  lua_getfield(L, 1, "name"); /* 2 */
  if (lua_isnil(L, 2)) luaL_error(L, "%s: name is required", fn);
  if (lua_type(L, 2) != LUA_TSTRING) luaL_error(L, "%s: name must be a string", fn);
  const char *name = lua_tostring(L, 2);

  lua_getfield(L, 1, "help"); /* 3 */
  if (!lua_isnil(L, 3) && lua_type(L, 3) != LUA_TSTRING)
    luaL_error(L, "%s: help must be a string", fn);
  const char *help = lua_tostring(L, 3);

  const char *labels[METRICS_MAX_LABELS];
  size_t names_len = 0;
  int nl = get_array(L, fn, "labels"); /* 4 if present */
  if (nl > METRICS_MAX_LABELS)
    luaL_error(L, "%s: too many labels (max %d)", fn, METRICS_MAX_LABELS);
  if (nl < 0) {
    nl = 0;
    lua_pushnil(L); /* keep the stack layout fixed */
  }
  for (int i = 0; i < nl; i++) {
    lua_rawgeti(L, 4, i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: labels must be an array of strings", fn);
    size_t len;
    labels[i] = lua_tolstring(L, -1, &len);
    names_len += len + 1;
    lua_pop(L, 1); /* still referenced by the labels table */
  }

  double buckets[METRICS_MAX_BUCKETS + 1];
  size_t nb = 0;
  int nbuckets = get_array(L, fn, "buckets"); /* 5 if present */
  if (nbuckets >= 0 && type != METRIC_HISTOGRAM)
    luaL_error(L, "%s: buckets is only valid for histograms", fn);
  for (int i = 0; i < nbuckets; i++) {
    lua_rawgeti(L, 5, i + 1);
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "%s: buckets must be an array of numbers", fn);
    /* One more than the limit is enough for the registry to report "too many". */
    if (nb < METRICS_MAX_BUCKETS + 1) buckets[nb++] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }

  const char *err = NULL;
  metric_t *m;
  if (type == METRIC_COUNTER)
    m = metrics_counter(name, help, labels, (size_t)nl, &err);
  else if (type == METRIC_GAUGE)
    m = metrics_gauge(name, help, labels, (size_t)nl, &err);
  else
    m = metrics_histogram(name, help, labels, (size_t)nl, nb ? buckets : NULL, nb, &err);
  if (!m) luaL_error(L, "%s: %s", fn, err ? err : "registration failed");

  lmetric_t *ud = lua_newuserdata(L, sizeof *ud + names_len + strlen(name) + 1);
  ud->m = m;
  ud->type = type;
  ud->nlabels = (size_t)nl;
  size_t off = 0;
  for (int i = 0; i < nl; i++) {
    size_t len = strlen(labels[i]) + 1;
    memcpy(ud->names + off, labels[i], len);
    ud->name_off[i] = off;
    off += len;
  }
  ud->metric_name_off = off;
  memcpy(ud->names + off, name, strlen(name) + 1);
  luaL_setmetatable(L, METRIC_MT);
  return 1;
}

static int l_counter(lua_State *L) {
  return new_metric(L, METRIC_COUNTER);
}

static int l_gauge(lua_State *L) {
  return new_metric(L, METRIC_GAUGE);
}

static int l_histogram(lua_State *L) {
  return new_metric(L, METRIC_HISTOGRAM);
}

static int l_render(lua_State *L) {
  size_t len;
  char *text = metrics_render(&len);
  if (!text) luaL_error(L, "chatgw.metrics.render: out of memory");
  lua_pushlstring(L, text, len);
  free(text);
  return 1;
}

/* ---- methods --------------------------------------------------------------------------- */

static lmetric_t *check_self(lua_State *L, const char *method) {
  lmetric_t *ud = luaL_testudata(L, 1, METRIC_MT);
  if (!ud) luaL_error(L, "metric:%s: self must be a metric (call it as m:%s(...))", method, method);
  return ud;
}

/* Fills values (in registration order) from the labels table at idx (0 = no table). The
 * label value strings stay referenced by that table while the caller uses them. */
static void read_labels(lua_State *L, const lmetric_t *ud, int idx, const char *fn,
                        const char *values[METRICS_MAX_LABELS]) {
  luaL_checkstack(L, METRICS_MAX_LABELS + 4, fn);
  for (size_t i = 0; i < ud->nlabels; i++) {
    const char *lname = ud->names + ud->name_off[i];
    if (idx == 0) luaL_error(L, "%s: missing label '%s'", fn, lname);
    lua_getfield(L, idx, lname);
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) luaL_error(L, "%s: missing label '%s'", fn, lname);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      luaL_error(L, "%s: label '%s' must be a string or number", fn, lname);
    size_t len;
    const char *v = lua_tolstring(L, -1, &len); /* a number converts in this stack slot */
    if (strlen(v) != len) luaL_error(L, "%s: label '%s' must not contain NUL bytes", fn, lname);
    values[i] = v;
    /* Leave it on the stack: a converted number is only referenced there. */
  }
  if (idx == 0) return;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int known = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -1);
      for (size_t i = 0; i < ud->nlabels && !known; i++)
        known = strcmp(k, ud->names + ud->name_off[i]) == 0;
      if (!known) luaL_error(L, "%s: unknown label '%s'", fn, k);
    } else {
      luaL_error(L, "%s: unknown label (label names are strings)", fn);
    }
  }
}

/* Parses (self, [labels,] [v]): returns the stack index of the labels table (0 = none) and
 * leaves the value in *v (dflt when absent and has_dflt, else an error). want_value = 0 for
 * methods without a value (value()). */
static int parse_args(lua_State *L, const char *fn, int want_value, int has_dflt, double dflt,
                      double *v) {
  int labels = 0, vidx = 3;
  switch (lua_type(L, 2)) {
  case LUA_TTABLE:
    labels = 2;
    break;
  case LUA_TNIL:
  case LUA_TNONE:
    break;
  case LUA_TNUMBER:
    if (want_value && lua_isnoneornil(L, 3)) { /* m:inc(5) on a metric without labels */
      vidx = 2;
      break;
    }
    /* fall through */
  default:
    luaL_error(L, "%s: labels must be a table or nil", fn);
  }
  if (!want_value) return labels;
  if (lua_isnoneornil(L, vidx)) {
    if (!has_dflt) luaL_error(L, "%s: value must be a number", fn);
    *v = dflt;
  } else if (lua_type(L, vidx) == LUA_TNUMBER) {
    *v = lua_tonumber(L, vidx);
  } else {
    luaL_error(L, "%s: value must be a number", fn);
  }
  return labels;
}

static void method_name(char *buf, size_t n, const lmetric_t *ud, const char *method) {
  snprintf(buf, n, "%s:%s", type_name(ud->type), method);
}

static int l_inc(lua_State *L) {
  lmetric_t *ud = check_self(L, "inc");
  char fn[32];
  method_name(fn, sizeof fn, ud, "inc");
  if (ud->type == METRIC_HISTOGRAM) luaL_error(L, "%s: not supported (use observe)", fn);
  double v = 1;
  int labels = parse_args(L, fn, 1, 1, 1, &v);
  if (ud->type == METRIC_COUNTER && !(v >= 0))
    luaL_error(L, "%s: value must be a non-negative number", fn);
  const char *values[METRICS_MAX_LABELS];
  lua_settop(L, 3);
  read_labels(L, ud, labels, fn, values);
  if (metrics_inc(ud->m, values, v) != 0) luaL_error(L, "%s: rejected by the registry", fn);
  return 0;
}

static int l_set(lua_State *L) {
  lmetric_t *ud = check_self(L, "set");
  char fn[32];
  method_name(fn, sizeof fn, ud, "set");
  if (ud->type != METRIC_GAUGE) luaL_error(L, "%s: not supported (only gauges can be set)", fn);
  double v = 0;
  int labels = parse_args(L, fn, 1, 0, 0, &v);
  const char *values[METRICS_MAX_LABELS];
  lua_settop(L, 3);
  read_labels(L, ud, labels, fn, values);
  if (metrics_set(ud->m, values, v) != 0) luaL_error(L, "%s: rejected by the registry", fn);
  return 0;
}

static int l_observe(lua_State *L) {
  lmetric_t *ud = check_self(L, "observe");
  char fn[32];
  method_name(fn, sizeof fn, ud, "observe");
  if (ud->type != METRIC_HISTOGRAM)
    luaL_error(L, "%s: not supported (only histograms observe)", fn);
  double v = 0;
  int labels = parse_args(L, fn, 1, 0, 0, &v);
  if (v != v) luaL_error(L, "%s: value must not be NaN", fn);
  const char *values[METRICS_MAX_LABELS];
  lua_settop(L, 3);
  read_labels(L, ud, labels, fn, values);
  if (metrics_observe(ud->m, values, v) != 0) luaL_error(L, "%s: rejected by the registry", fn);
  return 0;
}

static int l_value(lua_State *L) {
  lmetric_t *ud = check_self(L, "value");
  char fn[32];
  method_name(fn, sizeof fn, ud, "value");
  if (ud->type == METRIC_HISTOGRAM) luaL_error(L, "%s: not supported on histograms", fn);
  int labels = parse_args(L, fn, 0, 0, 0, NULL);
  const char *values[METRICS_MAX_LABELS];
  lua_settop(L, 3);
  read_labels(L, ud, labels, fn, values);
  lua_pushnumber(L, metrics_value(ud->m, values));
  return 1;
}

static int l_tostring(lua_State *L) {
  lmetric_t *ud = luaL_checkudata(L, 1, METRIC_MT);
  lua_pushfstring(L, "chatgw.metric(%s %s)", type_name(ud->type), ud->names + ud->metric_name_off);
  return 1;
}

static const luaL_Reg METHODS[] = {
    {"inc", l_inc}, {"set", l_set}, {"observe", l_observe}, {"value", l_value}, {NULL, NULL}};

static const luaL_Reg FUNCS[] = {{"counter", l_counter},
                                 {"gauge", l_gauge},
                                 {"histogram", l_histogram},
                                 {"render", l_render},
                                 {NULL, NULL}};

void lib_metrics_register(lua_State *L, int chatgw_table_index) {
  int t = chatgw_table_index;
  if (t < 0 && t > LUA_REGISTRYINDEX) t = lua_gettop(L) + t + 1;
  if (luaL_newmetatable(L, METRIC_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, METHODS, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "chatgw.metric");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_setfuncs(L, FUNCS, 0);
  lua_setfield(L, t, "metrics");
}
