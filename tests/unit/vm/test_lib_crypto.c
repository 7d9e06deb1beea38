/* test_lib_crypto.c - chatgw.crypto as seen from Lua (runtime/vm/lib_crypto.c): the same
 * known answers as tests/unit/core/test_crypto.c, the return conventions (raw or hex digests;
 * nil, "crypto: <why>" for bad data) and the errors raised for misuse, which name the function. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "lib.h"

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
    "end\n"
    /* nil, err with err exactly `want` */
    "function fails(want, v, err)\n"
    "  if v ~= nil then error('expected nil, got ' .. type(v), 2) end\n"
    "  if err ~= want then error('expected \"' .. want .. '\", got \"' .. tostring(err) .. "
    "'\"', 2) end\n"
    "end\n"
    "function H(s) return (s:gsub('..', function(x) return string.char(tonumber(x, 16)) end)) "
    "end\n"
    "C = chatgw.crypto\n";

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_newtable(L);
  lua_pushinteger(L, 7); /* something above the table: the index must be honoured */
  lib_crypto_register(L, -2);
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

static void test_digests(lua_State *L) {
  run(L, "sha256: raw by default, hex on request",
      "local e = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'\n"
      "eq(C.sha256('', 'hex'), e)\n"
      "eq(#C.sha256(''), 32) eq(C.sha256(''), H(e)) eq(C.sha256('', 'raw'), H(e))\n"
      "eq(C.sha256('abc', 'hex'), "
      "'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')\n"
      "eq(C.hex(C.sha256('abc')), C.sha256('abc', 'hex'))\n"
      "eq(C.sha256('a\\0b', 'hex') ~= C.sha256('a', 'hex'), true)\n");

  run(L, "hmac_sha256: RFC 4231 cases 1, 2 and 6",
      "eq(C.hmac_sha256(string.rep('\\11', 20), 'Hi There', 'hex'),\n"
      "   'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7')\n"
      "eq(C.hmac_sha256('Jefe', 'what do ya want for nothing?', 'hex'),\n"
      "   '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843')\n"
      "local d = C.hmac_sha256(string.rep('\\170', 131),\n"
      "  'Test Using Larger Than Block-Size Key - Hash Key First')\n"
      "eq(#d, 32)\n"
      "eq(d, H('60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'))\n"
      "eq(C.hmac_sha256('', '', 'hex'),\n"
      "   'b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad')\n");

  run(L, "digests: misuse raises naming the function",
      "expect_err('chatgw.crypto.sha256: data must be a string, got no value', C.sha256)\n"
      "expect_err('chatgw.crypto.sha256: data must be a string, got nil', C.sha256, nil)\n"
      "expect_err('chatgw.crypto.sha256: data must be a string, got number', C.sha256, 5)\n"
      "expect_err('chatgw.crypto.sha256: format must be \"raw\" or \"hex\", got \"HEX\"',\n"
      "  C.sha256, 'x', 'HEX')\n"
      "expect_err('chatgw.crypto.sha256: format must be \"raw\" or \"hex\", got table',\n"
      "  C.sha256, 'x', {})\n"
      "expect_err('chatgw.crypto.hmac_sha256: key must be a string, got no value', C.hmac_sha256)\n"
      "expect_err('chatgw.crypto.hmac_sha256: msg must be a string, got boolean',\n"
      "  C.hmac_sha256, 'k', true)\n"
      "expect_err('chatgw.crypto.hmac_sha256: format must be', C.hmac_sha256, 'k', 'm', 1)\n");
}

static void test_gcm(lua_State *L) {
  run(L, "aes_256_gcm: GCM spec test cases 14, 15 and 16",
      "local z32, z12 = string.rep('\\0', 32), string.rep('\\0', 12)\n"
      "local ct, tag = C.aes_256_gcm_encrypt(z32, z12, string.rep('\\0', 16))\n"
      "eq(C.hex(ct), 'cea7403d4d606b6e074ec5d3baf39d18')\n"
      "eq(C.hex(tag), 'd0d1c8a799996bf0265b98b5d48ab919')\n"
      "eq(C.aes_256_gcm_decrypt(z32, z12, ct, tag), string.rep('\\0', 16))\n"
      "local k = H('feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308')\n"
      "local iv = H('cafebabefacedbaddecaf888')\n"
      "local p = H('d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72' ..\n"
      "  '1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255')\n"
      "local c15 = '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa' ..\n"
      "  '8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad'\n"
      "ct, tag = C.aes_256_gcm_encrypt(k, iv, p)\n"
      "eq(C.hex(ct), c15) eq(C.hex(tag), 'b094dac5d93471bdec1a502270e3cc6c')\n"
      "eq(C.aes_256_gcm_decrypt(k, iv, ct, tag), p)\n"
      "eq(C.aes_256_gcm_decrypt(k, iv, ct, tag, nil), p)\n"
      "local aad = H('feedfacedeadbeeffeedfacedeadbeefabaddad2')\n"
      "ct, tag = C.aes_256_gcm_encrypt(k, iv, p:sub(1, 60), aad)\n"
      "eq(C.hex(ct), c15:sub(1, 120)) eq(C.hex(tag), '76fc6ece0f4e1768cddf8853bb2d551b')\n"
      "eq(C.aes_256_gcm_decrypt(k, iv, ct, tag, aad), p:sub(1, 60))\n"
      "local e, t = C.aes_256_gcm_encrypt(z32, z12, '')\n"
      "eq(e, '') eq(C.hex(t), '530f8afbc74536b9a963b4f1c4cb738b')\n"
      "eq(C.aes_256_gcm_decrypt(z32, z12, '', t), '')\n");

  run(L, "aes_256_gcm: tampering gives nil, err",
      "local k, iv = C.random_bytes(32), C.random_bytes(12)\n"
      "local ct, tag = C.aes_256_gcm_encrypt(k, iv, 'attack at dawn', 'hdr')\n"
      "eq(C.aes_256_gcm_decrypt(k, iv, ct, tag, 'hdr'), 'attack at dawn')\n"
      "local flip = function(s, i) return s:sub(1, i - 1) .. string.char((s:byte(i) + 1) % 256) "
      ".. s:sub(i + 1) end\n"
      "local A = 'crypto: authentication failed'\n"
      "fails(A, C.aes_256_gcm_decrypt(k, iv, ct, flip(tag, 16), 'hdr'))\n"
      "fails(A, C.aes_256_gcm_decrypt(k, iv, flip(ct, 1), tag, 'hdr'))\n"
      "fails(A, C.aes_256_gcm_decrypt(k, iv, ct, tag))\n"
      "fails(A, C.aes_256_gcm_decrypt(k, iv, ct, tag, 'hdR'))\n"
      "fails(A, C.aes_256_gcm_decrypt(k, flip(iv, 12), ct, tag, 'hdr'))\n"
      "fails(A, C.aes_256_gcm_decrypt(flip(k, 1), iv, ct, tag, 'hdr'))\n"
      "fails(A, C.aes_256_gcm_decrypt(k, iv, ct:sub(1, -2), tag, 'hdr'))\n"
      "fails('crypto: tag must be 16 bytes, got 15', C.aes_256_gcm_decrypt(k, iv, ct, "
      "tag:sub(1, 15), 'hdr'))\n"
      "fails('crypto: tag must be 16 bytes, got 0', C.aes_256_gcm_decrypt(k, iv, ct, '', "
      "'hdr'))\n"
      "local big = string.rep('0123456789', 20000)\n"
      "local bc, bt = C.aes_256_gcm_encrypt(k, iv, big)\n"
      "eq(#bc, #big) eq(C.aes_256_gcm_decrypt(k, iv, bc, bt), big)\n");

  run(L, "aes_256_gcm: misuse raises naming the function",
      "local k, iv = string.rep('k', 32), string.rep('i', 12)\n"
      "local E, D = C.aes_256_gcm_encrypt, C.aes_256_gcm_decrypt\n"
      "expect_err('chatgw.crypto.aes_256_gcm_encrypt: key must be 32 bytes, got 5', E, "
      "'short', iv, 'x')\n"
      "expect_err('chatgw.crypto.aes_256_gcm_encrypt: iv must be 12 bytes, got 16', E, k, "
      "string.rep('i', 16), 'x')\n"
      "expect_err('chatgw.crypto.aes_256_gcm_encrypt: key must be a string, got no value', E)\n"
      "expect_err('chatgw.crypto.aes_256_gcm_encrypt: iv must be a string, got number', E, k, "
      "12, 'x')\n"
      "expect_err('chatgw.crypto.aes_256_gcm_encrypt: plaintext must be a string, got nil', E, "
      "k, iv, nil)\n"
      "expect_err('chatgw.crypto.aes_256_gcm_encrypt: aad must be a string, got table', E, k, "
      "iv, 'x', {})\n"
      "expect_err('chatgw.crypto.aes_256_gcm_decrypt: key must be 32 bytes, got 0', D, '', iv, "
      "'x', string.rep('t', 16))\n"
      "expect_err('chatgw.crypto.aes_256_gcm_decrypt: iv must be 12 bytes, got 11', D, k, "
      "iv:sub(2), 'x', string.rep('t', 16))\n"
      "expect_err('chatgw.crypto.aes_256_gcm_decrypt: ciphertext must be a string, got no value', "
      "D, k, iv)\n"
      "expect_err('chatgw.crypto.aes_256_gcm_decrypt: tag must be a string, got nil', D, k, "
      "iv, 'x', nil)\n"
      "expect_err('chatgw.crypto.aes_256_gcm_decrypt: aad must be a string, got boolean', D, "
      "k, iv, 'x', string.rep('t', 16), false)\n");
}

static void test_cbc(lua_State *L) {
  run(L, "aes_256_cbc_decrypt: SP 800-38A F.2.6 plus a PKCS#7 block",
      "local k = H('603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4')\n"
      "local iv = H('000102030405060708090a0b0c0d0e0f')\n"
      "local pt = H('6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51' ..\n"
      "  '30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710')\n"
      "local ct = H('f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d' ..\n"
      "  '39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b')\n"
      /* the vector is unpadded: its last byte 0x10 claims a full pad block that is not there */
      "fails('crypto: bad padding', C.aes_256_cbc_decrypt(k, iv, ct))\n"
      /* the fifth block of OpenSSL's padded encryption of the F.2.5 plaintext (openssl enc
       * -aes-256-cbc): E_k(16 bytes of 0x10 xor the last ciphertext block) */
      "local pad = H('3f461796d6b0d6b2e0c2a72b4d80e644')\n"
      "eq(C.aes_256_cbc_decrypt(k, iv, ct .. pad), pt)\n");

  run(L, "aes_256_cbc_decrypt: lengths and padding give nil, err",
      "local k, iv = string.rep('k', 32), string.rep('i', 16)\n"
      "fails('crypto: ciphertext length 15 is not a positive multiple of 16', "
      "C.aes_256_cbc_decrypt(k, iv, string.rep('x', 15)))\n"
      "fails('crypto: ciphertext length 0 is not a positive multiple of 16', "
      "C.aes_256_cbc_decrypt(k, iv, ''))\n"
      "fails('crypto: ciphertext length 33 is not a positive multiple of 16', "
      "C.aes_256_cbc_decrypt(k, iv, string.rep('x', 33)))\n"
      /* random blocks: almost never a valid pad; try until one is rejected */
      "local rejected = 0\n"
      "for i = 1, 20 do\n"
      "  local v, err = C.aes_256_cbc_decrypt(k, iv, C.random_bytes(32))\n"
      "  if v == nil then eq(err, 'crypto: bad padding') rejected = rejected + 1 end\n"
      "end\n"
      "assert(rejected >= 10, 'rejected ' .. rejected)\n");

  run(L, "aes_256_cbc_decrypt: misuse raises naming the function",
      "local D = C.aes_256_cbc_decrypt\n"
      "expect_err('chatgw.crypto.aes_256_cbc_decrypt: key must be 32 bytes, got 16', D, "
      "string.rep('k', 16), string.rep('i', 16), string.rep('x', 16))\n"
      "expect_err('chatgw.crypto.aes_256_cbc_decrypt: iv must be 16 bytes, got 12', D, "
      "string.rep('k', 32), string.rep('i', 12), string.rep('x', 16))\n"
      "expect_err('chatgw.crypto.aes_256_cbc_decrypt: ciphertext must be a string, got no value', "
      "D, string.rep('k', 32), string.rep('i', 16))\n"
      "expect_err('chatgw.crypto.aes_256_cbc_decrypt: key must be a string, got nil', D, nil)\n");

  run(L, "feishu: the docs' sample event decrypts",
      "local function feishu(encrypt_key, encrypt)\n"
      "  local data, err = C.base64_decode(encrypt)\n"
      "  if not data then return nil, err end\n"
      "  if #data < 16 then return nil, 'short' end\n"
      "  return C.aes_256_cbc_decrypt(C.sha256(encrypt_key), data:sub(1, 16), data:sub(17))\n"
      "end\n"
      "eq(feishu('test key', 'P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk='), 'hello world')\n"
      "fails('crypto: bad padding', feishu('wrong key', "
      "'P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk='))\n"
      "fails('crypto: invalid base64', feishu('test key', "
      "'P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk'))\n");
}

static void test_base64(lua_State *L) {
  run(L, "base64: RFC 4648 section 10, both directions and both alphabets",
      "local v = {{'', ''}, {'f', 'Zg=='}, {'fo', 'Zm8='}, {'foo', 'Zm9v'},\n"
      "  {'foob', 'Zm9vYg=='}, {'fooba', 'Zm9vYmE='}, {'foobar', 'Zm9vYmFy'}}\n"
      "for _, p in ipairs(v) do\n"
      "  eq(C.base64_encode(p[1]), p[2], 'encode ' .. p[1])\n"
      "  eq(C.base64_decode(p[2]), p[1], 'decode ' .. p[2])\n"
      "  local bare = p[2]:gsub('=', '')\n"
      "  eq(C.base64url_encode(p[1]), bare, 'url encode ' .. p[1])\n"
      "  eq(C.base64url_decode(bare), p[1], 'url decode ' .. bare)\n"
      "  eq(C.base64url_decode(p[2]), p[1], 'url decode padded ' .. p[2])\n"
      "end\n"
      "eq(C.base64_encode('\\251\\255\\191'), '+/+/')\n"
      "eq(C.base64url_encode('\\251\\255\\191'), '-_-_')\n"
      "eq(C.base64url_encode('\\251\\255'), '-_8')\n"
      "eq(C.base64url_decode('-_8'), '\\251\\255')\n"
      "eq(C.base64url_decode('-_8='), '\\251\\255')\n"
      "eq(C.base64url_decode('_w'), '\\255')\n"
      "local bin = C.random_bytes(1000)\n"
      "eq(C.base64_decode(C.base64_encode(bin)), bin)\n"
      "eq(C.base64url_decode(C.base64url_encode(bin)), bin)\n");

  run(L, "base64: invalid input gives nil, err",
      "local B = 'crypto: invalid base64'\n"
      "for _, s in ipairs({'Zg', 'Zg=', 'Z===', '====', 'Zm9vY', 'Zg==Zg==', 'Zm=v', 'Zm9v!',\n"
      "    'Zm 9v', 'Zm9v\\n', ' Zm9v', 'Zh==', 'Zm9=', 'Zm\\0v', '-_-_'}) do\n"
      "  fails(B, C.base64_decode(s))\n"
      "end\n"
      "local U = 'crypto: invalid base64url'\n"
      "for _, s in ipairs({'Zg=', 'Z===', 'Zm9vY', 'Zg==Zg==', 'Zm9v!', 'Zm9v\\n', 'Zh', '+/+/',\n"
      "    'Zm\\0v'}) do\n"
      "  fails(U, C.base64url_decode(s))\n"
      "end\n"
      "eq(C.base64url_decode('Zg'), 'f')\n");

  run(L, "base64: misuse raises naming the function",
      "expect_err('chatgw.crypto.base64_encode: data must be a string, got no value', "
      "C.base64_encode)\n"
      "expect_err('chatgw.crypto.base64_encode: data must be a string, got number', "
      "C.base64_encode, 12)\n"
      "expect_err('chatgw.crypto.base64_decode: text must be a string, got table', "
      "C.base64_decode, {})\n"
      "expect_err('chatgw.crypto.base64url_encode: data must be a string, got nil', "
      "C.base64url_encode, nil)\n"
      "expect_err('chatgw.crypto.base64url_decode: text must be a string, got boolean', "
      "C.base64url_decode, true)\n");
}

static void test_misc(lua_State *L) {
  run(L, "random_bytes: lengths, different draws, misuse",
      "local a, b = C.random_bytes(32), C.random_bytes(32)\n"
      "eq(#a, 32) eq(#b, 32) assert(a ~= b)\n"
      "eq(#C.random_bytes(1), 1) eq(#C.random_bytes(65536), 65536)\n"
      "local R = 'chatgw.crypto.random_bytes: n must be an integer in 1..65536, got '\n"
      "expect_err(R .. '0', C.random_bytes, 0)\n"
      "expect_err(R .. '65537', C.random_bytes, 65537)\n"
      "expect_err(R .. '1.5', C.random_bytes, 1.5)\n"
      "expect_err(R .. '-1', C.random_bytes, -1)\n"
      "expect_err(R .. 'no value', C.random_bytes)\n"
      "expect_err(R .. 'nil', C.random_bytes, nil)\n"
      "expect_err(R .. 'string', C.random_bytes, '16')\n"
      "expect_err(R, C.random_bytes, 0/0)\n"
      "expect_err(R, C.random_bytes, math.huge)\n");

  run(L, "constant_time_eq: booleans, lengths, misuse",
      "eq(C.constant_time_eq('secret', 'secret'), true)\n"
      "eq(C.constant_time_eq('secreT', 'secret'), false)\n"
      "eq(C.constant_time_eq('secret!', 'secret'), false)\n"
      "eq(C.constant_time_eq('secre', 'secret'), false)\n"
      "eq(C.constant_time_eq('', 'secret'), false)\n"
      "eq(C.constant_time_eq('', ''), true)\n"
      "eq(C.constant_time_eq('a\\0b', 'a\\0c'), false)\n"
      "local mac = C.hmac_sha256('k', 'body')\n"
      "eq(C.constant_time_eq(C.hmac_sha256('k', 'body'), mac), true)\n"
      "expect_err('chatgw.crypto.constant_time_eq: a must be a string, got no value', "
      "C.constant_time_eq)\n"
      "expect_err('chatgw.crypto.constant_time_eq: b must be a string, got no value', "
      "C.constant_time_eq, 'x')\n"
      "expect_err('chatgw.crypto.constant_time_eq: a must be a string, got nil', "
      "C.constant_time_eq, nil, 'x')\n"
      "expect_err('chatgw.crypto.constant_time_eq: b must be a string, got number', "
      "C.constant_time_eq, '1', 1)\n");

  run(L, "hex / unhex",
      "eq(C.hex('\\1\\35\\69\\103\\137\\171\\205\\239\\0\\255'), '0123456789abcdef00ff')\n"
      "eq(C.hex(''), '')\n"
      "eq(C.unhex('0123456789ABCDEFabcdef'), "
      "'\\1\\35\\69\\103\\137\\171\\205\\239\\171\\205\\239')\n"
      "eq(C.unhex(''), '')\n"
      "local bin = C.random_bytes(3000)\n"
      "eq(C.unhex(C.hex(bin)), bin)\n"
      "for _, s in ipairs({'abc', 'zz', '0g', '0x12', '12 34', 'a\\0', '00\\0\\0'}) do\n"
      "  fails('crypto: invalid hex', C.unhex(s))\n"
      "end\n"
      "expect_err('chatgw.crypto.hex: data must be a string, got no value', C.hex)\n"
      "expect_err('chatgw.crypto.unhex: text must be a string, got number', C.unhex, 12)\n");

  run(L, "the table holds exactly the documented functions",
      "local want = {'sha256', 'hmac_sha256', 'aes_256_gcm_encrypt', 'aes_256_gcm_decrypt',\n"
      "  'aes_256_cbc_decrypt', 'base64_encode', 'base64_decode', 'base64url_encode',\n"
      "  'base64url_decode', 'random_bytes', 'constant_time_eq', 'hex', 'unhex'}\n"
      "local n = 0 for _ in pairs(C) do n = n + 1 end\n"
      "eq(n, #want)\n"
      "for _, k in ipairs(want) do eq(type(C[k]), 'function', k) end\n");
}

int main(void) {
  lua_State *L = new_state();
  test_digests(L);
  test_gcm(L);
  test_cbc(L);
  test_base64(L);
  test_misc(L);
  lua_close(L);
  return check_report();
}
