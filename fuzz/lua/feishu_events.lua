-- fuzz/lua/feishu_events.lua: the Feishu event callback (chatgw.chat.channels.feishu.events
-- route: JSON body, decryption with chatgw.crypto's base64 and AES-256-CBC over OpenSSL,
-- X-Lark-Signature, the timestamp window, the verification token, url_verification, message
-- and card action events through feishu.parse), then chatgw.crypto's decoders on raw bytes.
-- The first byte picks what the rest is:
--   0  the raw request body, to an app with an encrypt key and to one without
--   1  a plaintext event that the harness encrypts and signs for the app's key (so the fuzzer
--      reaches what comes after decryption and the signature)
--   2  a key, an iv and data for chatgw.crypto.aes_256_cbc_decrypt / aes_256_gcm_decrypt, and
--      the data for base64(url)_decode and unhex
local events = require "chatgw.chat.channels.feishu.events"
local crypto = chatgw.crypto

local ENCRYPT_KEY = "fuzz-encrypt-key"
local TOKEN = "fuzz-verification-token"
local BOT = { id = "ou_bot", open_id = "ou_bot", name = "fuzzbot" }
local function is_ours(id) return id == "ou_bot" end

local function account(name, key)
  return { name = name, app_id = "cli_fuzz", encrypt_key = key, verification_token = TOKEN,
           bot = BOT, is_ours = is_ours, ensure_bot = function() return BOT end }
end
local ACCOUNTS = { default = account("default", ENCRYPT_KEY), plain = account("plain", nil) }

local function on_message() return true end
local function on_action() return function() return nil end, true end
local route = events.route(function(name) return ACCOUNTS[name] end, on_message, on_action)

local function call(acct, body, headers)
  route({ params = { account = acct }, body = body, headers = headers or {} })
end

local KEY = crypto.sha256(ENCRYPT_KEY)

return function(input)
  local mode, rest = input:byte(1) or 0, input:sub(2)
  mode = mode % 3
  if mode == 0 then
    call("default", rest)
    call("plain", rest)
  elseif mode == 1 then
    local iv = (rest:sub(1, 16) .. ("\0"):rep(16)):sub(1, 16)
    local body = '{"encrypt":"' .. crypto.base64_encode(iv .. fuzz.cbc_encrypt(KEY, iv, rest:sub(17))) .. '"}'
    local ts, nonce = tostring(math.floor(chatgw.time())), "n0nce"
    call("default", body, { ["x-lark-request-timestamp"] = ts, ["x-lark-request-nonce"] = nonce,
      ["x-lark-signature"] = crypto.sha256(ts .. nonce .. ENCRYPT_KEY .. body, "hex") })
  else
    local key, iv, data = rest:sub(1, 32), rest:sub(33, 48), rest:sub(49)
    if #key == 32 and #iv == 16 then
      crypto.aes_256_cbc_decrypt(key, iv, data)
      if #data >= 16 then crypto.aes_256_gcm_decrypt(key, iv:sub(1, 12), data:sub(17), data:sub(1, 16)) end
    end
    crypto.base64_decode(rest)
    crypto.base64url_decode(rest)
    crypto.unhex(rest)
  end
end
