-- chatgw.url: percent-decoding and query strings, the one copy the runtime uses (router path
-- parameters, req.query, the WebSocket ?token=).
local gsub, gmatch, char, tonumber, type = string.gsub, string.gmatch, string.char, tonumber, type

local M = {}

local function hex(h) return char(tonumber(h, 16)) end

-- "%41b" -> "Ab" (a path segment: '+' stays '+').
function M.unescape(s)
  return (gsub(s, "%%(%x%x)", hex))
end

-- A query or form component: '+' is a space, then percent-decoding.
function M.unescape_form(s)
  return (gsub(gsub(s, "+", " "), "%%(%x%x)", hex))
end

-- "a=1&b=2&a=3" -> { a = { "1", "3" }, b = "2" } (a repeated key becomes a list).
function M.parse_query(qs)
  local q = {}
  if qs == "" then return q end
  for pair in gmatch(qs, "[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = M.unescape_form(k), M.unescape_form(v)
    local old = q[k]
    if old == nil then
      q[k] = v
    elseif type(old) == "table" then
      old[#old + 1] = v
    else
      q[k] = { old, v }
    end
  end
  return q
end

-- The first non-empty value of name in the query string, decoded, or nil.
function M.query_value(qs, name)
  for pair in gmatch(qs, "[^&]+") do
    local k, v = pair:match("^([^=]*)=(.+)$")
    if k and M.unescape_form(k) == name then return M.unescape_form(v) end
  end
  return nil
end

return M
