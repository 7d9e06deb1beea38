-- chatgw.registry.secrets: the gateway registry's credentials at rest.
--
-- AES-256-GCM (OpenSSL, chatgw.crypto) with the 32-byte key of CHAT_GATEWAY_ENCRYPTION_KEY
-- (64 hex digits or base64; seed 002's ENCRYPTION_KEY is read too). Each value gets a random
-- 96-bit IV, and the gateway id is the AAD: a row copied onto another id does not decrypt.
-- Stored as "v1:" .. base64(iv .. tag .. ciphertext). Without a key nothing is encrypted,
-- so nothing is stored: creating a gateway answers 503 encryption_key_missing.
local crypto = chatgw.crypto

local M = {}

-- The key (32 raw bytes), or nil, why (no variable, or a value that is not 32 bytes).
function M.key()
  local raw = os.getenv("CHAT_GATEWAY_ENCRYPTION_KEY")
  local name = "CHAT_GATEWAY_ENCRYPTION_KEY"
  if not raw or raw == "" then raw, name = os.getenv("ENCRYPTION_KEY"), "ENCRYPTION_KEY" end
  if not raw or raw == "" then return nil, "missing" end
  raw = raw:match("^%s*(.-)%s*$")
  local key
  if #raw == 64 and raw:match("^%x+$") then
    key = crypto.unhex(raw)
  else
    key = crypto.base64_decode(raw)
  end
  if not key or #key ~= 32 then
    return nil, name .. " must be 32 bytes as 64 hex digits or base64"
  end
  return key
end

function M.encrypt(key, id, plaintext)
  local iv = crypto.random_bytes(12)
  local ct, tag = crypto.aes_256_gcm_encrypt(key, iv, plaintext, "chatgw.gateway:" .. id)
  return "v1:" .. crypto.base64_encode(iv .. tag .. ct)
end

-- The plaintext, or nil, "cannot decrypt credentials" (wrong key, another id, damage). The
-- ciphertext is never part of an error.
function M.decrypt(key, id, stored)
  local b64 = type(stored) == "string" and stored:match("^v1:(.+)$")
  local blob = b64 and crypto.base64_decode(b64)
  if not blob or #blob < 28 then return nil, "cannot decrypt credentials" end
  local pt = crypto.aes_256_gcm_decrypt(key, blob:sub(1, 12), blob:sub(29), blob:sub(13, 28),
    "chatgw.gateway:" .. id)
  if not pt then return nil, "cannot decrypt credentials" end
  return pt
end

-- A hint that names a secret without showing it: "123456:…wxyz" for a bot token, "…wxyz"
-- for a key (nothing at all for one shorter than 12 characters).
function M.mask(value, keep_prefix)
  if type(value) ~= "string" or #value < 12 then return "…" end
  local prefix = keep_prefix and value:match("^(%d+:)") or ""
  return prefix .. "…" .. value:sub(-4)
end

return M
