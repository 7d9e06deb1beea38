-- chatgw.http: outbound HTTP that yields, built on the C transfer engine
-- (runtime/vm/lib_http.c: chatgw._http_start / chatgw._http_next, libcurl multi on the loop).
--
--   local res, err = chatgw.http.request{ method = "POST", url = ..., json = {...} }
--
-- A response of any status is a result: { status, headers (lower-case), body, json, url,
-- duration_ms }. Only transport failures return nil, "code: message" with code one of
-- timeout, connect, dns, tls, too_large, io, cancelled. Misuse raises
-- "chatgw.http.request: ...". See docs/lua-api.md "Outbound HTTP".
local chatgw = chatgw
local json = require "chatgw.json"

local start, next_event = chatgw._http_start, chatgw._http_next
local type, pairs, ipairs, tostring, error, pcall, select = type, pairs, ipairs, tostring, error, pcall, select
local find, format, byte, gsub, gmatch, lower, upper, sub = string.find, string.format, string.byte,
    string.gsub, string.gmatch, string.lower, string.upper, string.sub
local sort, concat = table.sort, table.concat
local floor, random, min = math.floor, math.random, math.min

local FN = "chatgw.http.request"

local M = {}

local function raise(msg)
  error(FN .. ": " .. msg, 3)
end

local function escape(s)
  return (gsub(s, "[^%w%-%._~]", function(c) return format("%%%02X", byte(c)) end))
end
M.escape = escape

local function scalar(v, what)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" or t == "boolean" then return tostring(v) end
  raise(what .. " must be a string, number or boolean, got " .. t)
end

-- query = { k = v | {v1, v2} }: appended in key order (stable URLs, cache-friendly).
local function encode_query(q)
  local keys = {}
  for k in pairs(q) do
    if type(k) ~= "string" then raise("query keys must be strings") end
    keys[#keys + 1] = k
  end
  sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do out[#out + 1] = escape(k) .. "=" .. escape(scalar(x, "query." .. k)) end
    else
      out[#out + 1] = escape(k) .. "=" .. escape(scalar(v, "query." .. k))
    end
  end
  return concat(out, "&")
end
M.encode_query = encode_query

-- form = { name = "value" | number | { path = ... } | { data = ... } } (sorted by name), or an
-- array of { name = ..., value | data | path = ..., filename, content_type } (kept in order).
local function form_parts(form)
  if form[1] ~= nil then return form end
  local names = {}
  for k in pairs(form) do
    if type(k) ~= "string" then raise("form keys must be strings") end
    names[#names + 1] = k
  end
  sort(names)
  local parts = {}
  for i, name in ipairs(names) do
    local v = form[name]
    if type(v) == "table" then
      parts[i] = { name = name, data = v.data, path = v.path, filename = v.filename,
                   content_type = v.content_type, value = v.value }
    else
      parts[i] = { name = name, value = v }
    end
  end
  return parts
end

local function header_value(headers, name)
  if not headers then return nil end
  for k, v in pairs(headers) do
    if type(k) == "string" and lower(k) == name then return v end
  end
end

local function decode_json(headers, body)
  if body == "" then return nil end
  local ct = headers["content-type"]
  if ct then
    if not find(lower(ct), "json", 1, true) then return nil end
  elseif not find(body, "^%s*[%[{]") then
    return nil
  end
  return (json.decode(body))
end

local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true }
local RETRY_ERRORS = { timeout = true, connect = true, dns = true, io = true }
local RETRY_STATUS = { [502] = true, [503] = true, [504] = true }

local retries_metric
local function count_retry(host)
  if not retries_metric then
    retries_metric = chatgw.metrics.counter{
      name = "chatgw_http_client_retries_total",
      help = "Outbound HTTP requests retried (option retries), by host.",
      labels = { "host" },
    }
  end
  retries_metric:inc({ host = host }, 1)
end

-- One transfer. Returns res | nil, err, and whether any chunk reached on_chunk, and the host.
local function attempt(copts, on_chunk)
  local ok, h = pcall(start, copts)
  if not ok then return false, tostring(h) end -- misuse: request() raises it at the caller
  local host = h:host()
  local streamed = false
  while true do
    local kind, a, b, c, d, e = next_event(h)
    if kind == "chunk" then
      streamed = true
      local ok, err = pcall(on_chunk, a, b)
      if not ok then
        h:close()
        error(err, 0)
      end
    elseif kind == "done" then
      h:close()
      local res = { status = a, headers = b, body = c, url = d, duration_ms = e }
      res.json = decode_json(b, c)
      return res, nil, streamed, host
    else
      h:close()
      return nil, a, streamed, host
    end
  end
end

local KNOWN = {}
for k in gmatch("method url query headers body json form timeout_ms connect_timeout_ms " ..
    "follow_redirects max_body on_chunk tls_verify ca_file proxy retries retry_backoff_ms", "%S+") do
  KNOWN[k] = true
end

function M.request(opts)
  if type(opts) ~= "table" then raise("opts must be a table, got " .. type(opts)) end
  for k in pairs(opts) do
    if not KNOWN[k] then raise("unknown option '" .. tostring(k) .. "'") end
  end
  local url = opts.url
  if type(url) ~= "string" then raise("url must be a string, got " .. type(url)) end
  local on_chunk = opts.on_chunk
  if on_chunk ~= nil and type(on_chunk) ~= "function" then
    raise("on_chunk must be a function, got " .. type(on_chunk))
  end
  local q = opts.query
  if q ~= nil then
    if type(q) ~= "table" then raise("query must be a table, got " .. type(q)) end
    local qs = encode_query(q)
    if qs ~= "" then
      local hash = find(url, "#", 1, true)
      if hash then url = sub(url, 1, hash - 1) end
      url = url .. (find(url, "?", 1, true) and (sub(url, -1) == "?" and "" or "&") or "?") .. qs
    end
  end
  local headers, body, form = opts.headers, opts.body, opts.form
  if headers ~= nil and type(headers) ~= "table" then
    raise("headers must be a table, got " .. type(headers))
  end
  if body ~= nil and type(body) ~= "string" then raise("body must be a string, got " .. type(body)) end
  if opts.json ~= nil then
    if body ~= nil or form ~= nil then raise("give only one of body, json and form") end
    body = json.encode(opts.json)
    if not header_value(headers, "content-type") then
      local h2 = { ["Content-Type"] = "application/json" }
      if headers then for k, v in pairs(headers) do h2[k] = v end end
      headers = h2
    end
  end
  if form ~= nil then
    if type(form) ~= "table" then raise("form must be a table, got " .. type(form)) end
    if body ~= nil then raise("give only one of body, json and form") end
    form = form_parts(form)
  end
  local method = opts.method
  if method == nil then
    method = (body ~= nil or form ~= nil) and "POST" or "GET"
  elseif type(method) ~= "string" then
    raise("method must be a string, got " .. type(method))
  else
    method = upper(method)
  end
  local retries = opts.retries or 0
  if type(retries) ~= "number" or retries < 0 or retries > 10 or retries % 1 ~= 0 then
    raise("retries must be an integer 0..10")
  end
  local backoff = opts.retry_backoff_ms or 200
  if type(backoff) ~= "number" or not (backoff >= 0) then
    raise("retry_backoff_ms must be a number >= 0")
  end
  if not IDEMPOTENT[method] then retries = 0 end

  local copts = {
    method = method, url = url, headers = headers, body = body, form = form,
    timeout_ms = opts.timeout_ms, connect_timeout_ms = opts.connect_timeout_ms,
    follow_redirects = opts.follow_redirects, max_body = opts.max_body,
    stream = on_chunk ~= nil, tls_verify = opts.tls_verify, ca_file = opts.ca_file,
    proxy = opts.proxy,
  }
  local n = 0
  while true do
    local res, err, streamed, host = attempt(copts, on_chunk)
    if res == false then error((gsub(err, "^[^\n]-:%d+: (" .. FN .. ")", "%1")), 2) end
    local code = err and find(err, ":", 1, true) and sub(err, 1, find(err, ":", 1, true) - 1)
    local again = n < retries and not streamed
        and ((err and RETRY_ERRORS[code]) or (res and RETRY_STATUS[res.status]))
    if not again then return res, err end
    n = n + 1
    count_retry(host)
    -- exponential backoff with +-25% jitter
    local wait = backoff * 2 ^ (n - 1)
    wait = floor(wait * (0.75 + 0.5 * random()))
    local ok, serr = chatgw.sleep(min(wait, 30000))
    if not ok then return nil, serr end
  end
end

chatgw.http = { request = M.request, escape = escape, encode_query = encode_query }
return M
