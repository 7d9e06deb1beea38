/* lua_target.c - libFuzzer driver of a parser written in Lua: the runtime's state (fuzz_lua.h)
 * gives each input to the function fuzz/lua/<FUZZ_TARGET>.lua returns. ASan/UBSan reports and
 * crashes in the bindings, cjson or libyaml are the findings; Lua errors are not (FUZZ_STRICT). */
#include <stdint.h>

#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  static int ref;
  if (!L) {
    L = fuzz_lua_state();
    ref = fuzz_lua_target(L, FUZZ_TARGET);
  }
  fuzz_lua_call(L, ref, data, size);
  return 0;
}
