-- chatgw.testing: `chatgw test DIR [SPEC...]` - handler specs against a simulated chat.
--
-- A spec file (*_spec.lua; default: the files in DIR/../tests) calls test(name, fn) for each case;
-- fn(t) gets a context:
--
--   local c = t:chat()                 a private chat (t:group{ title = } for a group)
--   local u = c:user{ name = "Alice" } a user in it (ids are made up; owner = true makes the
--                                      user the owner for the allowlist)
--   local new = u:send("/echo hi")     sends a message (opts: mentioned, reply_to = a bot message)
--                                      and waits until the handlers are done and their replies
--                                      delivered; returns the bot messages that came of it
--   c:messages(), c:last()             what the bot sent to the chat: { text, format, buttons,
--                                      edits, image_bytes, caption, reply_to, deleted, id }
--   u:press(message, "Yes")            presses a button (by its text or data); returns replies
--   t:advance(ms)                      moves the clock on (chatgw.now/time, sleeps, rate limits)
--   t:stub_http(match, response)       outbound HTTP: match "GET https://x/..." (a Lua pattern
--                                      on "METHOD url") or a function(opts); response a table
--                                      {status, body, headers, json} or a function(opts)
--   t:stub_exec(match, result)         chatgw.exec: match the argv[1] (pattern) or a function
--   t:http_calls(), t:exec_calls()     what was called
--   t:policy(yaml)                     this case runs under that policy file text
--   t:config("app.ops", value)         sets a chatgw.config value (dotted path) for this case
--   t:eq(a, b, what), t:ok(v, what), t:contains(s, part, what)
--
-- Time is virtual: chatgw.sleep in a handler does not wait for real; when nothing else is
-- happening the clock jumps to the next sleeper, so specs run in milliseconds. Each case gets
-- fresh stubs and new chat ids; the data dir is a temporary one, removed at exit.
local chatgw = chatgw
local chat = require "chatgw.chat"
local test_channel = require "chatgw.chat.channels.test"
local json = require "chatgw.json"
local policy = require "chatgw.chat.policy"

local M = {}

-- ---- virtual time ----

local real_now, real_time, real_sleep = chatgw.now, chatgw.time, chatgw.sleep
local offset_ms = 0
local sleepers, next_sleeper = {}, 0

local function vnow() return real_now() + offset_ms end

local function vsleep(ms)
  if type(ms) ~= "number" or ms ~= ms or ms < 0 then
    error("chatgw.sleep: ms must be a number >= 0", 2)
  end
  local deadline = vnow() + ms
  next_sleeper = next_sleeper + 1
  local id = next_sleeper
  sleepers[id] = deadline
  while vnow() < deadline do
    local _, err = chatgw._wait("test:sleep:" .. id, 60000)
    if err then
      sleepers[id] = nil
      return nil, err
    end
  end
  sleepers[id] = nil
  return true
end

local function wake_due()
  local t = vnow()
  for id, dl in pairs(sleepers) do
    if dl <= t then chatgw._notify("test:sleep:" .. id) end
  end
  chatgw._notify("outbox:test:default")
end

local function advance(ms)
  offset_ms = offset_ms + ms
  wake_due()
end

-- The next sleeper's deadline, or nil.
local function next_deadline()
  local best
  for _, dl in pairs(sleepers) do if not best or dl < best then best = dl end end
  return best
end

-- A sliding window per key on the virtual clock (the policy's rpm in specs).
local function rate(key, rpm)
  M.windows = M.windows or {}
  local w = M.windows[key] or {}
  local t = vnow()
  local keep = {}
  for _, ts in ipairs(w) do if ts > t - 60000 then keep[#keep + 1] = ts end end
  if #keep >= rpm then
    M.windows[key] = keep
    return false, keep[1] + 60000 - t
  end
  keep[#keep + 1] = t
  M.windows[key] = keep
  return true
end

-- ---- waiting for the chat to settle ----

-- Handlers done and replies delivered; virtual sleepers are woken by jumping the clock when
-- nothing else moves (real time bound: 10 s).
local function settle()
  return test_channel.settle(10000, function()
    local dl = next_deadline()
    if dl then advance(math.max(0, dl - vnow())) end
  end, real_now)
end

-- ---- stubs ----

local stubs = { http = {}, exec = {} }
local calls = { http = {}, exec = {} }
local real_http, real_exec = chatgw.http.request, chatgw.exec

local function matches(m, key, opts)
  if type(m) == "function" then return m(opts) end
  return key:find(m) ~= nil
end

local function stub_http(opts)
  if type(opts) ~= "table" then return real_http(opts) end -- let it raise as usual
  local key = (opts.method or (opts.body or opts.json or opts.form) and "POST" or "GET"):upper() .. " " .. tostring(opts.url)
  calls.http[#calls.http + 1] = { method = key:match("^(%S+)"), url = opts.url, body = opts.body,
                                  json = opts.json, headers = opts.headers }
  for _, s in ipairs(stubs.http) do
    if matches(s.match, key, opts) then
      local r = s.response
      if type(r) == "function" then r = r(opts) end
      if r == nil then return nil, "connect: (stub) connection refused" end
      if type(r) == "string" then return nil, r end
      local body, headers = r.body, {}
      for k, v in pairs(r.headers or {}) do headers[tostring(k):lower()] = v end
      if body == nil and r.json ~= nil then
        body = json.encode(r.json)
        headers["content-type"] = headers["content-type"] or "application/json"
      end
      -- the shape of a real answer: a JSON body is decoded into res.json, as chatgw.http does
      local res = { status = r.status or 200, headers = headers, body = body or "", url = opts.url }
      local ct = headers["content-type"]
      if res.body ~= "" and ((type(ct) == "string" and ct:lower():find("json", 1, true))
          or (ct == nil and res.body:find("^%s*[%[{]"))) then
        res.json = json.decode(res.body)
      end
      if opts.on_chunk and res.body ~= "" then opts.on_chunk(res.body, res.status or 200) end
      return res
    end
  end
  return nil, "connect: no test stub for " .. key
end

local function stub_exec(opts)
  if type(opts) ~= "table" or type(opts.argv) ~= "table" then return real_exec(opts) end
  calls.exec[#calls.exec + 1] = { argv = opts.argv, module = opts.module, stdin = opts.stdin }
  for _, s in ipairs(stubs.exec) do
    if matches(s.match, tostring(opts.argv[1]), opts) then
      local r = s.result
      if type(r) == "function" then r = r(opts) end
      if type(r) == "string" then return nil, r end
      r = r or {}
      return { code = r.code or 0, stdout = r.stdout or "", stderr = r.stderr or "", truncated = false,
               wait_ms = 0, duration_ms = 0 }
    end
  end
  return nil, "spawn: no test stub for " .. tostring(opts.argv[1])
end

-- ---- the context ----

local T = {}
T.__index = T
local Chat = {}
Chat.__index = Chat
local User = {}
User.__index = User

local ids = 0
local function new_id(prefix)
  ids = ids + 1
  return prefix .. ids
end

local function fail(msg, level) error({ spec_failure = msg }, (level or 1) + 1) end

function T:eq(a, b, what)
  if a ~= b then
    fail(("%s: expected %s, got %s"):format(what or "value", chatgw.json.encode(b), chatgw.json.encode(a)), 2)
  end
end
function T:ok(v, what) if not v then fail((what or "expected a true value"), 2) end return v end
function T:contains(s, part, what)
  if type(s) ~= "string" or not s:find(part, 1, true) then
    fail(("%s: %s does not contain %s"):format(what or "text", chatgw.json.encode(s), chatgw.json.encode(part)), 2)
  end
end
function T:advance(ms) advance(ms) settle() end
function T:stub_http(match, response) table.insert(stubs.http, { match = match, response = response }) end
function T:stub_exec(match, result) table.insert(stubs.exec, { match = match, result = result }) end
function T:http_calls() return calls.http end
function T:exec_calls() return calls.exec end
function T:chat(opts) return setmetatable({ id = new_id("chat"), type = "private", opts = opts or {} }, Chat) end
function T:group(opts)
  opts = opts or {}
  return setmetatable({ id = new_id("-100"), type = "group", title = opts.title or "A group", opts = opts }, Chat)
end
function T:fail_next(kind, opts) test_channel.fail_next(kind, opts) end

-- t:policy and t:config change state beyond the case; each records how to put it back, and
-- the runner undoes them (last first) when the case ends, passed or failed.
local function on_undo(t, fn) t._undo[#t._undo + 1] = fn end
function T:policy(text)
  if type(text) ~= "string" then fail("t:policy: expects the policy file's YAML text", 2) end
  local p, err = policy.parse(text, "t:policy")
  if not p then
    fail("t:policy: " .. (type(err) == "table" and table.concat(err, "; ") or tostring(err)), 2)
  end
  local old = chat.dispatch.policy
  chat.dispatch.policy, chat.policy = p, p
  on_undo(self, function() chat.dispatch.policy, chat.policy = old, old end)
end
function T:config(path, value)
  if type(path) ~= "string" or not path:match("^[%w_]+[%w_.]*$") then
    fail("t:config: expects a dotted path such as \"app.ops\"", 2)
  end
  local node = chatgw.config
  local keys = {}
  for k in path:gmatch("[^.]+") do keys[#keys + 1] = k end
  for i = 1, #keys - 1 do
    local k = keys[i]
    if node[k] == nil then
      local parent = node
      parent[k] = {}
      on_undo(self, function() parent[k] = nil end)
    elseif type(node[k]) ~= "table" then
      fail(("t:config: %s is not a table"):format(table.concat(keys, ".", 1, i)), 2)
    end
    node = node[k]
  end
  local leaf, old = keys[#keys], node[keys[#keys]]
  node[leaf] = value
  on_undo(self, function() node[leaf] = old end)
end

function Chat:user(opts)
  opts = opts or {}
  local u = setmetatable({ chat = self, id = opts.id or (self.type == "private" and self.id or new_id("user")),
                           name = opts.name or "Test User", username = opts.username }, User)
  if opts.owner then M.owners[u.id] = true end
  return u
end
function Chat:messages()
  local out = {}
  for _, r in ipairs(test_channel.sent(self.id)) do out[#out + 1] = test_channel.public(r) end
  return out
end
function Chat:last()
  local m = self:messages()
  return m[#m]
end

local function since(c, n)
  local all, out = c:messages(), {}
  for i = n + 1, #all do out[#out + 1] = all[i] end
  return out
end

function User:send(text, opts)
  opts = opts or {}
  local c = self.chat
  local before = #c:messages()
  local reply_to = opts.reply_to
  if type(reply_to) == "table" then reply_to = reply_to.id end
  local id, err = chat.inbound({ channel = "test", account = "default", id = new_id("m"),
    chat = { id = c.id, type = c.type, title = c.title },
    user = { id = self.id, name = self.name, username = self.username },
    text = text, mentioned = opts.mentioned == true,
    reply_to = reply_to and { id = tostring(reply_to), from_bot = opts.reply_to_user == nil,
      text = test_channel.message(reply_to) and test_channel.message(reply_to).text,
      user = opts.reply_to_user } or nil,
    attachments = opts.attachments })
  if not id then fail("send: " .. tostring(err), 2) end
  local ok, serr = settle()
  if not ok then fail(serr, 2) end
  return since(c, before)
end

function User:press(message, button)
  local c = self.chat
  local before = #c:messages()
  local data
  for _, row in ipairs(type(message.buttons) == "table" and message.buttons or {}) do
    for _, b in ipairs(row) do
      if b.text == button or b.data == button then data = b.data end
    end
  end
  if not data then fail("press: no button '" .. tostring(button) .. "' on the message", 2) end
  chat.callback{ channel = "test", account = "default", id = new_id("cb"), data = data,
    chat = { id = c.id, type = c.type }, user = { id = self.id, name = self.name },
    message = { id = message.id, text = message.text } }
  local ok, serr = settle()
  if not ok then fail(serr, 2) end
  return since(c, before)
end

-- ---- running ----

local function spec_files(args, handlers_dir)
  local list = {}
  if #args == 0 then args = { (handlers_dir:gsub("/+$", ""):match("^(.*)/[^/]*$") or ".") .. "/tests" } end
  for _, a in ipairs(args) do
    if a:match("%.lua$") then
      list[#list + 1] = a
    else
      local names, err = chatgw._listdir(a)
      if not names then return nil, err end
      for _, n in ipairs(names) do
        if n:match("_spec%.lua$") then list[#list + 1] = a:gsub("/+$", "") .. "/" .. n end
      end
    end
  end
  return list
end

local function failure_text(e)
  if type(e) == "table" and e.spec_failure then return e.spec_failure end
  return tostring(e)
end

-- Runs the specs; prints a line per case and the summary. Returns true when none failed.
function M.run(args, runtime)
  M.owners = {}
  -- handlers see the data directory in use: a temporary one, never the deployment's
  if chatgw._data_dir() and chatgw.config then chatgw.config.data_dir = chatgw._data_dir() end
  local files, err = spec_files(args or {}, runtime.handlers_dir or ".")
  if not files then
    io.stderr:write("chatgw test: " .. tostring(err) .. "\n")
    return false
  end
  chatgw.now, chatgw.time, chatgw.sleep = vnow, function() return real_time() + offset_ms / 1000 end, vsleep
  chatgw.http.request, chatgw.exec = stub_http, stub_exec
  chat.dispatch.rate = rate
  local owners_env = chat.allowlist.owners
  chat.allowlist.owners = function(channel)
    local set = owners_env(channel)
    for id in pairs(M.owners) do set[id] = true end
    return set
  end
  local cases = {}
  for _, f in ipairs(files) do
    local chunk, lerr = loadfile(f)
    if not chunk then
      cases[#cases + 1] = { file = f, name = "(load)", load_error = lerr }
    else
      local env = setmetatable({ test = function(name, fn)
        cases[#cases + 1] = { file = f, name = tostring(name), fn = fn }
      end }, { __index = _G })
      setfenv(chunk, env)
      local ok, e = pcall(chunk)
      if not ok then cases[#cases + 1] = { file = f, name = "(load)", load_error = tostring(e) } end
    end
  end
  local passed, failed = 0, 0
  local out = io.stdout
  for _, c in ipairs(cases) do
    local ok, e
    if c.load_error then
      ok, e = false, c.load_error
    else
      stubs.http, stubs.exec, calls.http, calls.exec = {}, {}, {}, {}
      local t0 = real_now()
      local ctx = setmetatable({ _undo = {} }, T)
      ok, e = xpcall(c.fn, function(x)
        if type(x) == "table" and x.spec_failure then return x end
        return debug.traceback(tostring(x), 2)
      end, ctx)
      local settled, serr = settle()
      for i = #ctx._undo, 1, -1 do ctx._undo[i]() end
      if ok and not settled then ok, e = false, serr end
      c.ms = real_now() - t0
    end
    if ok then
      passed = passed + 1
      out:write(("ok   %s  (%s, %.0f ms)\n"):format(c.name, c.file, c.ms or 0))
    else
      failed = failed + 1
      out:write(("FAIL %s  (%s)\n     %s\n"):format(c.name, c.file, (failure_text(e):gsub("\n", "\n     "))))
    end
  end
  out:write(("%d passed, %d failed\n"):format(passed, failed))
  out:flush()
  chatgw.now, chatgw.time, chatgw.sleep, chatgw.http.request, chatgw.exec = real_now, real_time, real_sleep, real_http, real_exec
  return failed == 0 and #cases > 0
end

return M
