/* test_lua_bindings.c - chatgw.shared and chatgw.metrics as seen from Lua (runtime/vm/lib_shared.c,
 * runtime/vm/lib_metrics.c). The dictionaries' clock is the host's loop, which never runs here, so
 * nothing depends on TTLs actually running out. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "lib.h"
#include "metrics.h"
#include "shared.h"

#include "check.h"

/* Helpers available to every snippet. */
static const char *PRELUDE =
    "function expect_err(needle, f, ...)\n"
    "  local ok, err = pcall(f, ...)\n"
    "  if ok then error('expected an error mentioning \"' .. needle .. '\"', 2) end\n"
    "  if not string.find(tostring(err), needle, 1, true) then\n"
    "    error('error \"' .. tostring(err) .. '\" does not mention \"' .. needle .. '\"', 2)\n"
    "  end\n"
    "end\n"
    "function eq(a, b, what)\n"
    "  if a ~= b then error((what or 'value') .. ': expected ' .. tostring(b) .. ', got ' ..\n"
    "    tostring(a), 2) end\n"
    "end\n";

static lib_host_t g_host;

static lua_State *new_state(void) {
  g_host.loop = uv_default_loop();
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  lua_pushinteger(L, 7); /* something above the table: the index must be honoured */
  lib_shared_register(L, -2, &g_host);
  lib_metrics_register(L, -2);
  lua_pop(L, 1);
  lua_setglobal(L, "chatgw");
  if (luaL_dostring(L, PRELUDE) != 0) {
    printf("FAIL prelude: %s\n", lua_tostring(L, -1));
    g_fail++;
  }
  return L;
}

static void run(lua_State *L, const char *name, const char *code) {
  int top = lua_gettop(L);
  if (luaL_dostring(L, code) == 0) {
    g_pass++;
    printf("ok   %s\n", name);
  } else {
    g_fail++;
    printf("FAIL %s: %s\n", name, lua_tostring(L, -1));
  }
  lua_settop(L, top);
}

static void test_shared(lua_State *L) {
  run(L, "shared: types and get/set",
      "local d = chatgw.shared('t_basic')\n"
      "eq(type(d), 'userdata')\n"
      "assert(tostring(d):find('t_basic', 1, true))\n"
      "eq(d:get('missing'), nil)\n"
      "local ok, err, forcible = d:set('s', 'hello')\n"
      "eq(ok, true) eq(err, nil) eq(forcible, false)\n"
      "eq(d:get('s'), 'hello')\n"
      "d:set('n', 42.5) eq(d:get('n'), 42.5)\n"
      "d:set('t', true) eq(d:get('t'), true)\n"
      "d:set('f', false) eq(d:get('f'), false)\n"
      "d:set('bin', 'a\\0b') eq(d:get('bin'), 'a\\0b') eq(#d:get('bin'), 3)\n"
      "d:set('a\\0x', 1) eq(d:get('a\\0x'), 1) eq(d:get('a'), nil)\n"
      "eq(d:count(), 6)\n"
      "d:set('s', nil) eq(d:get('s'), nil) eq(d:count(), 5)\n"
      "eq(d:delete('n'), true) eq(d:delete('n'), false)\n"
      "d:flush() eq(d:count(), 0)\n"
      "local used, max = d:bytes() eq(used, 0) eq(max, 1024 * 1024)\n");

  run(L, "shared: same dict by name, options",
      "local a = chatgw.shared('t_same', {max_bytes = 4096})\n"
      "local b = chatgw.shared('t_same', {max_bytes = 99999})\n"
      "a:set('k', 'v') eq(b:get('k'), 'v')\n"
      "assert(a == b)\n"
      "local _, max = b:bytes() eq(max, 4096)\n"
      "assert(chatgw.shared('t_other') ~= a)\n");

  run(L, "shared: add",
      "local d = chatgw.shared('t_add')\n"
      "local ok, err, forcible = d:add('k', 'one') eq(ok, true) eq(err, nil) eq(forcible, false)\n"
      "ok, err = d:add('k', 'two') eq(ok, false) eq(err, 'exists')\n"
      "eq(d:get('k'), 'one')\n");

  run(L, "shared: incr",
      "local d = chatgw.shared('t_incr')\n"
      "local v, err = d:incr('c', 1) eq(v, nil) assert(err:find('^not_found: '))\n"
      "eq(d:incr('c', 1, 0), 1)\n"
      "eq(d:incr('c', 2), 3)\n"
      "eq(d:incr('c', -0.5), 2.5)\n"
      "d:set('s', 'x')\n"
      "v, err = d:incr('s', 1, 0) eq(v, nil) assert(err:find('^not_a_number: '))\n"
      "eq(d:incr('t', 1, 10, 60000), 11)\n"
      "local ttl = d:ttl('t') assert(ttl > 0 and ttl <= 60000, 'ttl ' .. tostring(ttl))\n");

  run(L, "shared: ttl",
      "local d = chatgw.shared('t_ttl')\n"
      "d:set('a', 1, 60000)\n"
      "local t = d:ttl('a') assert(type(t) == 'number' and t > 0 and t <= 60000)\n"
      "d:set('b', 1) eq(d:ttl('b'), 0)\n"
      "eq(d:ttl('nope'), nil)\n"
      "d:set('c', 1, 0.25) assert(d:ttl('c') == nil or d:ttl('c') >= 0)\n");

  run(L, "shared: keys",
      "local d = chatgw.shared('t_keys')\n"
      "d:set('a', 1) d:set('b', 2) d:set('c', 3)\n"
      "local k = d:keys() eq(#k, 3) eq(k[1], 'c') eq(k[3], 'a')\n"
      "eq(#d:keys(2), 2)\n"
      "eq(#d:keys(0), 3)\n");

  run(L, "shared: too_large and forcible",
      "local d = chatgw.shared('t_small', {max_bytes = 200})\n"
      "local ok, err, forcible = d:set('k', string.rep('x', 300))\n"
      "eq(ok, nil) assert(err:find('^too_large: '), err) eq(forcible, false)\n"
      "ok, err = d:add('k', string.rep('x', 300))\n"
      "eq(ok, nil) assert(err:find('^too_large: '))\n"
      "eq(d:count(), 0)\n"
      "assert(d:set('a', string.rep('x', 100)))\n"
      "ok, err, forcible = d:set('b', string.rep('x', 100))\n"
      "eq(ok, true) eq(forcible, true) eq(d:get('a'), nil)\n"
      "local used, max = d:bytes() assert(used <= max) eq(max, 200)\n");

  run(L, "shared: argument errors name the function",
      "local d = chatgw.shared('t_err')\n"
      "expect_err('chatgw.shared: name must be a non-empty string', chatgw.shared)\n"
      "expect_err('chatgw.shared: name must be a non-empty string', chatgw.shared, '')\n"
      "expect_err('chatgw.shared: name must be a non-empty string', chatgw.shared, 5)\n"
      "expect_err('chatgw.shared: name must be a non-empty string', chatgw.shared, 'a\\0b')\n"
      "expect_err('chatgw.shared: options must be a table', chatgw.shared, 'x', 5)\n"
      "expect_err('chatgw.shared: max_bytes', chatgw.shared, 'x', {max_bytes = -1})\n"
      "expect_err('chatgw.shared: max_bytes', chatgw.shared, 'x', {max_bytes = 1.5})\n"
      "expect_err('chatgw.shared: max_bytes', chatgw.shared, 'x', {max_bytes = 'big'})\n"
      "expect_err('dict:get: key must be a non-empty string', d.get, d)\n"
      "expect_err('dict:get: key', d.get, d, 5)\n"
      "expect_err('dict:get: key', d.get, d, '')\n"
      "expect_err('dict:get: self', d.get, 'k')\n"
      "expect_err('dict:get: self', d.get, {}, 'k')\n"
      "expect_err('dict:set: self', d.set, io.stdout, 'k', 1)\n"
      "expect_err('dict:set: value must be a string, number or boolean', d.set, d, 'k', {})\n"
      "expect_err('dict:set: value must be', d.set, d, 'k', print)\n"
      "expect_err('dict:set: ttl_ms must be a non-negative number', d.set, d, 'k', 1, -1)\n"
      "expect_err('dict:set: ttl_ms', d.set, d, 'k', 1, '10')\n"
      "expect_err('dict:set: ttl_ms', d.set, d, 'k', 1, 0/0)\n"
      "expect_err('dict:set: ttl_ms', d.set, d, 'k', 1, math.huge)\n"
      "expect_err('dict:add: value must be', d.add, d, 'k', nil)\n"
      "expect_err('dict:add: ttl_ms', d.add, d, 'k', 1, -5)\n"
      "expect_err('dict:incr: by must be a number', d.incr, d, 'k')\n"
      "expect_err('dict:incr: by must be a number', d.incr, d, 'k', '1')\n"
      "expect_err('dict:incr: init', d.incr, d, 'k', 1, 'x')\n"
      "expect_err('dict:incr: init_ttl_ms', d.incr, d, 'k', 1, 0, -1)\n"
      "expect_err('dict:delete: key', d.delete, d, nil)\n"
      "expect_err('dict:ttl: key', d.ttl, d, {})\n"
      "expect_err('dict:keys: max', d.keys, d, -1)\n"
      "expect_err('dict:keys: max', d.keys, d, 'all')\n"
      "expect_err('dict:count: self', d.count)\n"
      "expect_err('dict:flush: self', d.flush, 1)\n"
      "expect_err('dict:bytes: self', d.bytes, nil)\n"
      "eq(getmetatable(d), 'chatgw.shared_dict')\n"
      "eq(d:count(), 0)\n");
}

static void test_metrics(lua_State *L) {
  run(L, "metrics: counter",
      "local m = chatgw.metrics\n"
      "local c = m.counter{name = 'lua_req_total', help = 'Requests.', labels = {'route', "
      "'code'}}\n"
      "assert(tostring(c):find('lua_req_total', 1, true))\n"
      "c:inc({route = '/a', code = 200})\n"
      "c:inc({route = '/a', code = '200'}, 2)\n"
      "c:inc({code = 500, route = '/b'}, 0.5)\n"
      "eq(c:value({route = '/a', code = '200'}), 3)\n"
      "eq(c:value({route = '/b', code = '500'}), 0.5)\n"
      "eq(c:value({route = '/zzz', code = '1'}), 0)\n"
      "local text = m.render()\n"
      "assert(text:find('# TYPE lua_req_total counter\\n', 1, true))\n"
      "assert(text:find('lua_req_total{route=\"/a\",code=\"200\"} 3\\n', 1, true), text)\n"
      "local plain = m.counter{name = 'lua_plain_total'}\n"
      "plain:inc() plain:inc(4) plain:inc(nil, 2)\n"
      "eq(plain:value(), 7) eq(plain:value(nil), 7) eq(plain:value({}), 7)\n"
      "assert(m.render():find('\\nlua_plain_total 7\\n', 1, true))\n"
      "local again = m.counter{name = 'lua_plain_total', help = 'x'}\n"
      "again:inc() eq(plain:value(), 8)\n");

  run(L, "metrics: gauge",
      "local g = chatgw.metrics.gauge{name = 'lua_temp', labels = {'room'}}\n"
      "g:set({room = 'a'}, 21.5)\n"
      "g:inc({room = 'a'}, -1.5)\n"
      "eq(g:value({room = 'a'}), 20)\n"
      "g:inc({room = 'a'}) eq(g:value({room = 'a'}), 21)\n"
      "assert(chatgw.metrics.render():find('lua_temp{room=\"a\"} 21\\n', 1, true))\n");

  run(L, "metrics: histogram",
      "local h = chatgw.metrics.histogram{name = 'lua_lat', help = 'L.', labels = {'r'}, "
      "buckets = {0.1, 1}}\n"
      "h:observe({r = 'x'}, 0.05) h:observe({r = 'x'}, 5)\n"
      "local t = chatgw.metrics.render()\n"
      "assert(t:find('lua_lat_bucket{r=\"x\",le=\"0.1\"} 1\\n', 1, true), t)\n"
      "assert(t:find('lua_lat_bucket{r=\"x\",le=\"1\"} 1\\n', 1, true))\n"
      "assert(t:find('lua_lat_bucket{r=\"x\",le=\"+Inf\"} 2\\n', 1, true))\n"
      "assert(t:find('lua_lat_sum{r=\"x\"} 5.05\\n', 1, true))\n"
      "assert(t:find('lua_lat_count{r=\"x\"} 2\\n', 1, true))\n"
      "local d = chatgw.metrics.histogram{name = 'lua_lat_default'}\n"
      "d:observe(0.2) d:observe(nil, 0.3)\n"
      "assert(chatgw.metrics.render():find('lua_lat_default_count 2\\n', 1, true))\n");

  run(L, "metrics: errors name the function",
      "local m = chatgw.metrics\n"
      "expect_err('chatgw.metrics.counter: name is required', m.counter, {})\n"
      "expect_err('chatgw.metrics.counter: ', m.counter)\n"
      "expect_err('chatgw.metrics.counter: ', m.counter, 'name')\n"
      "expect_err('chatgw.metrics.gauge: name is required', m.gauge, {help = 'x'})\n"
      "expect_err('chatgw.metrics.histogram: name is required', m.histogram, {})\n"
      "expect_err('chatgw.metrics.counter: name must be a string', m.counter, {name = 5})\n"
      "expect_err('chatgw.metrics.counter: help must be a string', m.counter, {name = 'a', "
      "help = {}})\n"
      "expect_err('chatgw.metrics.counter: invalid metric name', m.counter, {name = 'a-b'})\n"
      "expect_err('chatgw.metrics.counter: labels', m.counter, {name = 'e1', labels = 'x'})\n"
      "expect_err('chatgw.metrics.counter: labels', m.counter, {name = 'e1', labels = {1}})\n"
      "expect_err('chatgw.metrics.counter: too many labels', m.counter, {name = 'e1', labels = "
      "{'a','b','c','d','e','f','g','h','i'}})\n"
      "expect_err('chatgw.metrics.counter: invalid label name', m.counter, {name = 'e1', labels "
      "= {'a-b'}})\n"
      "expect_err('chatgw.metrics.counter: buckets', m.counter, {name = 'e1', buckets = {1}})\n"
      "expect_err('chatgw.metrics.histogram: histogram buckets must be strictly ascending', "
      "m.histogram, {name = 'e2', buckets = {2, 1}})\n"
      "expect_err('chatgw.metrics.histogram: buckets', m.histogram, {name = 'e2', buckets = "
      "{'a'}})\n"
      "local many = {} for i = 1, 40 do many[i] = i end\n"
      "expect_err('chatgw.metrics.histogram: too many histogram buckets', m.histogram, {name = "
      "'e2', buckets = many})\n"
      "expect_err('chatgw.metrics.gauge: metric already registered with a different type', "
      "m.gauge, {name = 'lua_req_total', labels = {'route', 'code'}})\n"
      "expect_err('chatgw.metrics.counter: metric already registered with different label', "
      "m.counter, {name = 'lua_req_total', labels = {'route'}})\n"
      "local c = m.counter{name = 'lua_req_total', labels = {'route', 'code'}}\n"
      "expect_err(\"counter:inc: missing label 'code'\", c.inc, c, {route = '/'})\n"
      "expect_err(\"counter:inc: missing label 'route'\", c.inc, c)\n"
      "expect_err(\"counter:inc: unknown label 'extra'\", c.inc, c, {route = '/', code = 1, "
      "extra = 2})\n"
      "expect_err('counter:inc: unknown label', c.inc, c, {route = '/', code = 1, [1] = 2})\n"
      "expect_err(\"counter:inc: label 'code' must be a string or number\", c.inc, c, {route = "
      "'/', code = true})\n"
      "expect_err(\"counter:inc: label 'code' must not contain NUL\", c.inc, c, {route = '/', "
      "code = 'a\\0b'})\n"
      "expect_err('counter:inc: value must be a non-negative number', c.inc, c, {route = '/', "
      "code = 1}, -1)\n"
      "expect_err('counter:inc: value must be a number', c.inc, c, {route = '/', code = 1}, "
      "'5')\n"
      "expect_err('counter:inc: labels must be a table or nil', c.inc, c, 'x')\n"
      "expect_err('counter:set: not supported', c.set, c, {route = '/', code = 1}, 1)\n"
      "expect_err('counter:observe: not supported', c.observe, c, {route = '/', code = 1}, 1)\n"
      "expect_err('counter:value: labels must be a table or nil', c.value, c, 5)\n"
      "expect_err('metric:inc: self must be a metric', c.inc)\n"
      "expect_err('metric:inc: self must be a metric', c.inc, {}, 1)\n"
      "expect_err('metric:value: self', c.value, chatgw.shared('t_x'))\n"
      "local g = m.gauge{name = 'lua_g2'}\n"
      "expect_err('gauge:set: value must be a number', g.set, g, nil)\n"
      "expect_err('gauge:set: value must be a number', g.set, g, {}, 'x')\n"
      "expect_err('gauge:observe: not supported', g.observe, g, 1)\n"
      "local h = m.histogram{name = 'lua_h2'}\n"
      "expect_err('histogram:inc: not supported', h.inc, h)\n"
      "expect_err('histogram:set: not supported', h.set, h, nil, 1)\n"
      "expect_err('histogram:value: not supported', h.value, h)\n"
      "expect_err('histogram:observe: value must be a number', h.observe, h)\n"
      "expect_err('histogram:observe: value must not be NaN', h.observe, h, nil, 0/0)\n"
      "eq(getmetatable(c), 'chatgw.metric')\n");
}

/* A second Lua state (as after a reload) sees the same dicts and metrics. */
static void test_reload(void) {
  lua_State *L2 = new_state();
  run(L2, "reload: state survives in C",
      "eq(chatgw.shared('t_same'):get('k'), 'v')\n"
      "eq(chatgw.shared('t_incr'):get('c'), 2.5)\n"
      "local c = chatgw.metrics.counter{name = 'lua_plain_total'}\n"
      "eq(c:value(), 8)\n");
  lua_close(L2);
}

int main(void) {
  metrics_init();
  lua_State *L = new_state();
  test_shared(L);
  test_metrics(L);
  test_reload();
  lua_close(L);
  metrics_shutdown();
  shared_dict_free_all();
  return check_report();
}
