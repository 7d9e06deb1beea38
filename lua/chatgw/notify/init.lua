-- The notify API (docs/notify.md): seed 000's POST /v1/notify/text and /v1/notify/image, on
-- the `notify` listener (INTEGRATIONS_HOST:INTEGRATIONS_PORT, by default the main host and
-- port + 2), which always exists. Every message goes through the outbox.
--
-- In order, for every request on that listener: the peer must be internal (the socket's
-- address: loopback, private ranges, or notify.allow_cidrs) else 403 forbidden; the projects
-- registry is checked for changes (at most once a second); the bearer token (401); the route.
-- Bodies are JSON whatever their Content-Type.
--
-- Also: POST /v1/notify/alertmanager (Alertmanager's webhook), GET /v1/notify/projects (the
-- registry loaded and its hash), GET /v1/outbox/:id (one message's status), and for handlers
-- chatgw.notify.lookup(channel, chat_id, message_id) (the notify a message was) and
-- chatgw.notify.set_min_priority(channel, chat_id, level) (a chat's minimum at run time, over
-- the registry's override).
local chatgw = chatgw
local json = require "chatgw.json"
local config = require "chatgw.config"
local chat = require "chatgw.chat"
local chatstore = require "chatgw.chat.store"
local outbox = require "chatgw.chat.outbox"
local supervisor = require "chatgw.supervisor"
local cidr = require "chatgw.notify.cidr"
local gatemod = require "chatgw.notify.gate"
local targets = require "chatgw.notify.targets"
local registry = require "chatgw.notify.registry"
local deliver = require "chatgw.notify.deliver"
local alertmanager = require "chatgw.notify.alertmanager"
local audit = require "chatgw.audit"
require "chatgw.notify.config"

local type, tostring, ipairs, pairs = type, tostring, ipairs, pairs

local M = {}

local NULL = json.null
local shared = chatgw.shared("chatgw.notify.registry") -- the last good registry (outlives reloads)

local S = { nets = cidr.INTERNAL, gate = gatemod.new(), cfg = nil, path = nil, explicit_path = false }

config.register_auto_listener("notify", function() return true end)

-- ---- the registry ----

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("*a")
  f:close()
  return text
end

local function hash12(text) return chatgw.crypto.sha256(text, "hex"):sub(1, 12) end

local function current()
  local r = json.decode(shared:get("current") or "null")
  if type(r) == "table" then return r end
  return { hash = "none", reg = { projects = {} } }
end

-- (Re)reads the registry. reason: "boot", "reload" (SIGHUP), "mtime" (the file changed)
local function load_registry(reason)
  local path = S.path
  local text, err = read_file(path)
  local cur = current()
  if not text then
    if reason == "mtime" and shared:get("seen") == "missing" then return end
    if not S.explicit_path and reason == "boot" then
      chatgw.log.info("notify: no projects registry (requests name their chats)", { path = path })
      audit.reload("registry.reload", { source = path, hash = "none", reason = reason })
    else
      chatgw.log.warn(("[registry][WARN] reload failed (%s) keep hash %s: %s"):format(reason, cur.hash, tostring(err)),
        { path = path, good_hash = cur.hash, failed_hash = "missing" })
    end
    shared:set("seen", "missing")
    return
  end
  local h = hash12(text)
  local seen = shared:get("seen")
  shared:set("seen", h)
  if h == cur.hash then return end
  if reason == "mtime" and h == seen then return end -- the same bytes as last read (a touch)
  local reg, errs = registry.parse(text, path, S.gate.levels)
  if not reg then
    local why = type(errs) == "table" and table.concat(errs, "; ") or tostring(errs)
    chatgw.log.warn(("[registry][WARN] reload failed (%s) keep hash %s: %s"):format(reason, cur.hash, why),
      { path = path, good_hash = cur.hash, failed_hash = h })
    return
  end
  for _, w in ipairs(reg.warnings or {}) do chatgw.log.warn("[registry][WARN] " .. w, { path = path }) end
  shared:set("current", json.encode({ hash = h, path = path, reg = reg, loaded_at = chatgw.time() }))
  chatgw.log.info(("[registry] reloaded (%s) hash %s -> %s"):format(reason, cur.hash, h), { path = path })
  audit.reload("registry.reload", { source = path, hash = h, reason = reason })
end

-- At most once a second, from a request: has the file changed?
local function check_registry()
  if not shared:add("checked", 1, 1000) then return end
  local st = chatgw.fs.stat(S.path)
  local mtime = st and tostring(st.mtime) or "missing"
  if shared:get("mtime") == mtime then return end
  shared:set("mtime", mtime)
  load_registry("mtime")
end

local function reg() return current().reg end

-- ---- gate context ----

local function min_key(channel, chat_id) return ("notify:min:%s:%s"):format(channel, chat_id) end

local function override(project_id)
  return function(channel, chat_id)
    local run = chatstore.state_get(min_key(channel, chat_id)) -- set at run time (feedback) wins
    if run then return run end
    return registry.overrides_of(reg(), project_id, channel, chat_id)
  end
end

local function account_of(channel) return S.cfg.accounts[channel] or "default" end

local function off(channel)
  local def = chat.channel(channel)
  if not def then return "the " .. channel .. " channel does not exist" end
  local name = account_of(channel)
  local list = def.accounts and def.accounts() or { { name = "default" } }
  for _, a in ipairs(list) do
    if a.name == name then return a.off and (a.off_reason or "off") or nil end
  end
  return "no " .. channel .. " account '" .. name .. "'"
end

-- ---- requests ----

local function body_of(req)
  local raw = req.body or ""
  if raw:find("^%s*$") then return {} end
  local b = json.decode(raw)
  if type(b) ~= "table" or b[1] ~= nil then return nil end
  return b
end

local function bad(code) return 400, { ok = false, error = code } end

local function want_wait(req, b)
  return b.wait == true or req.query.wait == "1" or req.query.wait == "true"
end

-- The pipeline of text and image notifies: resolve, then each chat of the target(s).
local function run(req, b, item)
  local t, err = targets.resolve(b, function(target) return registry.defaults(reg(), b.project_id, target) or {} end)
  if not t then return bad(err) end
  local ov = override(b.project_id)
  local ctx = { gate = S.gate, info = S.gate:info(b), require_priority = S.cfg.require_priority, override = ov,
                account = account_of, off = off, dedupe_window_s = S.cfg.dedupe_window_s, digest = S.cfg.digest }
  local over = { telegram = {}, feishu = {} }
  for _, side in ipairs({ "telegram", "feishu" }) do
    for _, id in ipairs(t[side]) do
      local o = ov(side, id) -- the minimum in force: set at run time, else the registry's
      over[side][id] = o == nil and NULL or o
    end
  end
  if item.check then
    local code, e2 = item.check()
    if code then return code, e2 end
  end
  -- a JSON null project_id is no project (not the text "userdata: NULL" in notify_messages)
  item.project_id = (type(b.project_id) == "string" or type(b.project_id) == "number") and b.project_id or nil
  item.meta = b.meta
  item.priority = ctx.info and ctx.info.delivery_priority or nil -- for lookup: the alert's level
  item.update_key = (type(b.update_key) == "string" or type(b.update_key) == "number") and tostring(b.update_key) or nil
  item.dedupe_key = (type(b.dedupe_key) == "string" or type(b.dedupe_key) == "number") and tostring(b.dedupe_key) or nil
  item.dedupe_window_s = type(b.dedupe_window_s) == "number" and b.dedupe_window_s > 0 and b.dedupe_window_s or nil
  local sent, all = { telegram = {}, feishu = {} }, {}
  for _, side in ipairs({ "telegram", "feishu" }) do
    if t.target == side or t.target == "both" then
      for _, id in ipairs(t[side]) do
        local e = deliver.one(ctx, side, id, item)
        sent[side][id] = e
        all[#all + 1] = e
      end
    end
  end
  if want_wait(req, b) then
    local ms = tonumber(b.wait_ms) or tonumber(req.query.wait_ms) or S.cfg.wait_ms
    deliver.wait(all, math.min(math.max(ms, 0), 120000))
  end
  for _, e in ipairs(all) do deliver.strip(e) end
  return { ok = true, target_overrides = over, sent = sent }
end

local function text_route(req)
  local b = body_of(req)
  if not b then return bad("invalid_json") end
  local item = { text = type(b.text) == "string" and b.text:match("^%s*(.-)%s*$") or
                        (type(b.text) == "number" and tostring(b.text) or "") }
  item.check = function() if item.text == "" then return bad("missing_text") end end
  return run(req, b, item)
end

local function inside_image_dirs(real)
  for _, dir in ipairs(S.image_dirs) do
    local d = chatgw.fs.realpath(dir)
    if d and (real == d or real:sub(1, #d + 1) == d .. "/") then return true end
  end
  return false
end

-- A path that is not there: image_not_found only where it would lie in an allowed dir (its
-- deepest existing ancestor resolved, the rest appended; ".." in the rest is not allowed), else
-- image_path_not_allowed, so that the answer tells nothing about paths elsewhere.
local function missing_reason(path)
  local rest, p = "", path:sub(1, 1) == "/" and path or ("./" .. path)
  while true do
    local parent, name = p:match("^(.*)/([^/]*)$")
    if not parent or name == ".." then return "image_path_not_allowed" end
    if name ~= "" and name ~= "." then rest = "/" .. name .. rest end
    local real = chatgw.fs.realpath(parent == "" and "/" or parent)
    if real then
      return inside_image_dirs((real == "/" and "" or real) .. rest) and "image_not_found" or "image_path_not_allowed"
    end
    p = parent
  end
end

-- image_path must be in one of notify.image_dirs once symlinks are resolved.
local function allowed_path(path)
  local real = chatgw.fs.realpath(path)
  if not real then return nil, missing_reason(path) end
  if inside_image_dirs(real) then return real end
  return nil, "image_path_not_allowed"
end

local function fetch_image(url)
  if type(url) ~= "string" or not url:match("^https?://") then return nil, "image_fetch_failed: only http and https URLs" end
  local max = S.cfg.image_max_bytes
  local res, err = chatgw.http.request{ url = url, timeout_ms = 45000, connect_timeout_ms = 5000, follow_redirects = 3,
    max_body = max }
  if not res then
    if tostring(err):find("^too_large") then return nil, ("image_fetch_failed: the image is over %d bytes"):format(max) end
    return nil, "image_fetch_failed: " .. tostring(err)
  end
  if res.status ~= 200 then return nil, "image_fetch_failed: HTTP " .. res.status end
  local ct = res.headers["content-type"] or ""
  if not ct:lower():find("^image/") then return nil, "image_fetch_failed: not an image (Content-Type " .. ct .. ")" end
  if #res.body == 0 then return nil, "image_fetch_failed: empty body" end
  return res.body
end

local function image_route(req)
  local b = body_of(req)
  if not b then return bad("invalid_json") end
  local item = { caption = type(b.caption) == "string" and b.caption or nil }
  item.check = function()
    local p = type(b.image_path) == "string" and b.image_path ~= "" and b.image_path or nil
    local u = type(b.image_url) == "string" and b.image_url ~= "" and b.image_url or nil
    if not p and not u then return bad("missing_image_path_or_url") end
    if p then
      local real, why = allowed_path(p)
      if not real then return bad(why) end
      local f = io.open(real, "rb")
      if not f then return bad("image_not_found") end
      item.image_bytes = f:read("*a")
      f:close()
      if not item.image_bytes or #item.image_bytes == 0 then return bad("image_not_found") end
    else
      local bytes, err = fetch_image(u)
      if not bytes then return bad(err) end
      item.image_bytes = bytes
    end
  end
  return run(req, b, item)
end

local function alertmanager_route(req)
  local b = body_of(req)
  if not b then return bad("invalid_json") end
  local n, why = alertmanager.to_notify(b)
  if not n then return 400, { ok = false, error = "invalid_alertmanager_payload", detail = why } end
  local q = req.query
  local body = { target = q.target, project_id = q.project_id, chat_id = q.chat_id, text = n.text,
                 update_key = n.update_key, priority = n.priority, wait = q.wait == "1" or nil }
  if q.min_priority then body.channel_min_priority = q.min_priority end
  local item = { text = n.text }
  local st, out = run(req, body, item)
  if type(st) == "table" then st.alert_status = n.status end
  return st, out
end

local function projects_route()
  local cur = current()
  return { ok = true, path = S.path, hash = cur.hash, loaded_at = cur.loaded_at, projects = registry.list(cur.reg) }
end

local function outbox_route(req)
  local id = tonumber(req.params.id)
  if not id then return 400, { ok = false, error = "invalid_id" } end
  local st = outbox.status(id)
  if not st then return 404, { ok = false, error = "not_found" } end
  return { ok = true, id = st.id, status = st.status, channel = st.channel, chat_id = st.chat_id,
           message_id = st.message_id or NULL, message_ids = st.message_ids, error = st.error, attempts = st.attempts,
           kind = st.kind }
end

local function guard(req)
  if not cidr.is_internal(req.remote_addr or "", S.nets) then return 403, { ok = false, error = "forbidden" } end
  check_registry()
end

-- ---- the Lua API ----

local api = {}

function api.lookup(channel, chat_id, message_id)
  if type(channel) ~= "string" then error("chatgw.notify.lookup: channel must be a string", 2) end
  if chat_id == nil or message_id == nil then error("chatgw.notify.lookup: chat_id and message_id are required", 2) end
  local rows = chatgw.db.query([[SELECT n.project_id, n.meta, n.text, n.priority, n.outbox_id, n.update_key, n.created_at,
      o.message_id, o.message_ids FROM notify_messages n JOIN chat_outbox o ON o.id = n.outbox_id
    WHERE n.channel = ? AND n.chat_id = ? AND (o.message_id = ? OR o.message_ids LIKE ?)
    ORDER BY n.id DESC LIMIT 1]], channel, tostring(chat_id), tostring(message_id), '%"' .. tostring(message_id) .. '"%')
  local r = rows and rows[1]
  if not r then return nil end
  return { project_id = r.project_id, meta = r.meta and json.decode(r.meta) or nil, text = r.text,
           priority = r.priority,
           outbox_id = r.outbox_id, update_key = r.update_key, created_at = r.created_at, message_id = r.message_id }
end

function api.set_min_priority(channel, chat_id, level)
  if type(channel) ~= "string" or chat_id == nil then
    error("chatgw.notify.set_min_priority: channel and chat_id are required", 2)
  end
  if level == nil then return chatstore.state_delete(min_key(channel, tostring(chat_id))) end
  local l = S.gate:normalize(level)
  if not l then error("chatgw.notify.set_min_priority: level must be one of " .. table.concat(S.gate.levels, ", "), 2) end
  return chatstore.state_set(min_key(channel, tostring(chat_id)), l)
end

-- The gate's levels, lowest first (CHAT_GATEWAY_PRIORITY_LEVELS): a copy.
function api.levels()
  local out = {}
  for i, l in ipairs(S.gate.levels) do out[i] = l end
  return out
end

function api.min_priority(channel, chat_id) return chatstore.state_get(min_key(channel, tostring(chat_id))) end

chatgw.notify = api

function M.install(R)
  R.register_load_step(function(cfg, opts)
    S.cfg = cfg.notify
    local dir = (opts.config_path or ""):match("^(.*)/[^/]*$") or "."
    local function beside(p) return p:sub(1, 1) == "/" and p or (dir .. "/" .. p) end
    if cfg.notify.allow_cidrs and #cfg.notify.allow_cidrs > 0 then
      local nets, err = cidr.list(cfg.notify.allow_cidrs)
      if not nets then return { "notify.allow_cidrs: " .. tostring(err) } end
      S.nets = nets
    else
      S.nets = cidr.INTERNAL
    end
    S.gate = gatemod.new(gatemod.levels_from(os.getenv("CHAT_GATEWAY_PRIORITY_LEVELS") or os.getenv("GW_PRIORITY_LEVELS")))
    local env = os.getenv("PROJECTS_REGISTRY_PATH")
    S.explicit_path = (env and env ~= "") or cfg.notify.registry_path ~= nil
    S.path = beside((env and env ~= "" and env) or cfg.notify.registry_path or "projects.yml")
    local dirs = {}
    for _, d in ipairs(cfg.notify.image_dirs or {}) do dirs[#dirs + 1] = beside(d) end
    if #dirs == 0 then dirs[1] = (cfg.data_dir or "./data") .. "/images" end
    S.image_dirs = dirs
    return nil
  end)
  R.register_start("notify", function()
    shared:delete("checked")
    load_registry(shared:get("current") and "reload" or "boot")
    -- always: digests folded before a reload that turned the digest off still go out
    if chatgw._mode ~= "test" then
      supervisor.internal{ name = "notify.digest", module = "notify", lock = "notify-digest", lock_scope = "node",
        run = function()
          while true do
            local ok, err = pcall(deliver.flush_digests, chatgw.time())
            if not ok then chatgw.log.error("notify: digest flush failed", { error = tostring(err) }) end
            local _, serr = chatgw.sleep(1000)
            if serr then return nil, serr end
          end
        end }
    end
    return true
  end)
  R.register_listener_guard("notify", guard, function(remote) -- before the body is read
    if not cidr.is_internal(remote or "", S.nets) then return 403, { ok = false, error = "forbidden" } end
  end)
  local function on(route) route.listener, route.scope = "notify", "notify" R.register_builtin_route(route) end
  on({ method = "POST", path = "/v1/notify/text", fn = text_route, label = "POST /v1/notify/text" })
  on({ method = "POST", path = "/v1/notify/image", fn = image_route, label = "POST /v1/notify/image" })
  on({ method = "POST", path = "/v1/notify/alertmanager", fn = alertmanager_route, label = "POST /v1/notify/alertmanager" })
  on({ method = "GET", path = "/v1/notify/projects", fn = projects_route, label = "GET /v1/notify/projects" })
  on({ method = "GET", path = "/v1/outbox/:id", fn = outbox_route, label = "GET /v1/outbox/:id" })
end

return M
