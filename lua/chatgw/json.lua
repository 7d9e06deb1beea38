-- chatgw.json: lua-cjson with the gateway's conventions.
--
-- * decode(text) returns value, or nil, "json: <reason>" (never raises on bad input).
-- * Integers longer than 14 digits decode as strings: lua-cjson keeps 14 significant digits,
--   so a Telegram id like 1234567890123456 would silently change as a number.
-- * encode writes "/" unescaped, and chatgw.json.empty_array encodes as [] (cjson 2.1.0 has
--   no empty-array marker; an empty Lua table encodes as {}).
-- * chatgw.json.null is JSON null (cjson.null).
local cjson = require("cjson").new()
cjson.encode_number_precision(14)
cjson.decode_invalid_numbers(false)
cjson.encode_invalid_numbers(false)

local find, sub, byte, gsub = string.find, string.sub, string.byte, string.gsub
local concat = table.concat

local M = {}
M.null = cjson.null

local EMPTY_ARRAY = "\0chatgw.empty_array\0"
M.empty_array = EMPTY_ARRAY
local EMPTY_ARRAY_JSON = '"\\u0000chatgw.empty_array\\u0000"'

-- Wraps integer literals of 15 or more digits (outside strings) in quotes.
local function quote_big_integers(s)
  local out, n, pos, i = {}, 0, 1, 1
  local len = #s
  while i <= len do
    local j = find(s, '[%-%d"]', i)
    if not j then break end
    if byte(s, j) == 34 then -- a string: skip to its closing quote, honouring escapes
      local k = j + 1
      while true do
        local q = find(s, '["\\]', k)
        if not q then return s end -- unterminated: let cjson report it
        if byte(s, q) == 92 then
          k = q + 2
        else
          i = q + 1
          break
        end
      end
    else
      local a, b = find(s, "^%-?%d+", j)
      if not a then
        i = j + 1
      else
        local digits = b - a + 1 - (byte(s, a) == 45 and 1 or 0)
        local nextc = sub(s, b + 1, b + 1)
        local prevc = j > 1 and sub(s, j - 1, j - 1) or ""
        if digits > 14 and nextc ~= "." and nextc ~= "e" and nextc ~= "E"
            and not find(prevc, "[%w%.]") then
          n = n + 1; out[n] = sub(s, pos, a - 1)
          n = n + 1; out[n] = '"' .. sub(s, a, b) .. '"'
          pos = b + 1
        end
        i = b + 1
        -- skip a fraction/exponent so its digits are not read as a new number
        local _, e = find(s, "^[%.eE][%+%-]?[%deE%.%+%-]*", i)
        if e then i = e + 1 end
      end
    end
  end
  if n == 0 then return s end
  out[n + 1] = sub(s, pos)
  return concat(out)
end

function M.decode(text)
  if type(text) ~= "string" then
    error("chatgw.json.decode: text must be a string, got " .. type(text), 2)
  end
  if find(text, "%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d") then text = quote_big_integers(text) end
  local ok, v = pcall(cjson.decode, text)
  if not ok then return nil, "json: " .. tostring(v) end
  return v
end

function M.encode(value)
  local ok, s = pcall(cjson.encode, value)
  if not ok then error("chatgw.json.encode: " .. tostring(s), 2) end
  if find(s, "\\/", 1, true) then s = gsub(s, "\\/", "/") end
  if find(s, EMPTY_ARRAY_JSON, 1, true) then s = gsub(s, EMPTY_ARRAY_JSON, "[]") end
  return s
end

M._quote_big_integers = quote_big_integers
return M
