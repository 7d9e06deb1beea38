/* fuzz_lua.c - see fuzz_lua.h. */
#include "fuzz_lua.h"

#include <lauxlib.h>
#include <luajit.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "lib.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "settings.h"
#include "ws.h"

static lib_host_t g_host;

/* LuaJIT's values carry type tags in a pointer's upper bits, so LeakSanitizer cannot follow
 * them and reports the live objects of the state (which lives until exit) as leaks. Lua's
 * memory still goes through malloc (CHATGW_SANITIZE), so ASan checks every access to it. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
  return "detect_leaks=0";
}

uv_loop_t *fuzz_runtime_init(void) {
  static uv_loop_t *loop;
  if (loop) return loop;
  loop = uv_default_loop();
  log_set_level(LOG_ERROR); /* a WARN per refused input would be most of the work */
  metrics_init();
  vm_sched_init(loop);
  exec_init(loop);
  ws_init(loop);
  request_init();
  lib_ws_install_hooks();
  return loop;
}

static int l_settings_read(lua_State *L) {
  static settings_t s;
  char err[512];
  if (settings_read(L, 1, &s, err, sizeof err) != 0) {
    lua_pushstring(L, err);
    return 1;
  }
  return 0;
}

static int l_cbc_encrypt(lua_State *L) {
  size_t kl, il, pl;
  const char *key = luaL_checklstring(L, 1, &kl);
  const char *iv = luaL_checklstring(L, 2, &il);
  const char *plain = luaL_checklstring(L, 3, &pl);
  if (kl != 32 || il != 16) return luaL_error(L, "fuzz.cbc_encrypt: a 32-byte key, a 16-byte iv");
  unsigned char *out = malloc(pl + 32);
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int n = 0, m = 0;
  if (!out || !ctx ||
      EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, (const unsigned char *)key,
                         (const unsigned char *)iv) != 1 ||
      EVP_EncryptUpdate(ctx, out, &n, (const unsigned char *)plain, (int)pl) != 1 ||
      EVP_EncryptFinal_ex(ctx, out + n, &m) != 1)
    abort();
  EVP_CIPHER_CTX_free(ctx);
  lua_pushlstring(L, (const char *)out, (size_t)(n + m));
  free(out);
  return 1;
}

static int l_abort(lua_State *L) {
  fprintf(stderr, "fuzz: %s\n", luaL_optstring(L, 1, "abort"));
  abort();
}

/* Coverage of the Lua code, which the compiler never saw: a line hook counts (previous line,
 * line) pairs, as AFL counts edges, in counters libFuzzer reads beside the C code's. The JIT is
 * off, since compiled traces call no hooks. */
#define LUA_COV_SIZE 65536
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t g_lua_cov[LUA_COV_SIZE];
static uintptr_t g_lua_prev;

static void cov_hook(lua_State *L, lua_Debug *ar) {
  if (!lua_getinfo(L, "S", ar)) return;
  uintptr_t here = ((uintptr_t)ar->source >> 4) * 2654435761u ^ (uintptr_t)ar->currentline;
  g_lua_cov[(here ^ g_lua_prev) % LUA_COV_SIZE]++;
  g_lua_prev = here >> 1;
}

lua_State *fuzz_lua_state(void) {
  static vm_t *vm;
  if (vm) return vm_state(vm);
  uv_loop_t *loop = fuzz_runtime_init();
  g_host.loop = loop;
  g_host.data_dir = "/tmp";
  g_host.mode = "run";
  snprintf(g_host.token, sizeof g_host.token, "%s", FUZZ_TOKEN);
  g_host.token_len = strlen(g_host.token);
  g_host.started_ms = uv_now(loop);
  static const vm_options_t opts = {CHATGW_LUA_DIR_FUZZ, lib_open_state, &g_host};
  char err[2048];
  vm = vm_new(&opts, err, sizeof err);
  if (!vm) {
    fprintf(stderr, "fuzz: cannot create the runtime's state: %s\n", err);
    abort();
  }
  vm_activate(vm);
  lua_State *L = vm_state(vm);
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_sethook(L, cov_hook, LUA_MASKLINE, 0);
  static const luaL_Reg fns[] = {{"settings_read", l_settings_read},
                                 {"cbc_encrypt", l_cbc_encrypt},
                                 {"abort", l_abort},
                                 {NULL, NULL}};
  lua_newtable(L);
  luaL_register(L, NULL, fns);
  lua_setglobal(L, "fuzz");
  return L;
}

int fuzz_lua_target(lua_State *L, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.lua", FUZZ_LUA_DIR, name);
  if (luaL_loadfile(L, path) != 0 || lua_pcall(L, 0, 1, 0) != 0 || !lua_isfunction(L, -1)) {
    fprintf(stderr, "fuzz: %s: %s\n", path,
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "does not return a function");
    abort();
  }
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

void fuzz_lua_call(lua_State *L, int ref, const uint8_t *data, size_t size) {
  static int strict = -1;
  if (strict < 0) strict = getenv("FUZZ_STRICT") && strcmp(getenv("FUZZ_STRICT"), "1") == 0;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != 0 && strict) {
    fprintf(stderr, "fuzz: Lua error: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, top);
}
