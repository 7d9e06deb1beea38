-- chatgw.registry: the gateway registry (seed 002), /v1/gateways on the main listener (scope
-- admin). A gateway is a Telegram bot, a Feishu app, an AI provider or a generic JSON webhook,
-- created, changed and deleted through the API while chatgw runs; its credentials are stored
-- encrypted (registry/secrets.lua) and never answered. Each state starts the stored gateways
-- before the chat layer starts its accounts, so a reload or a restart brings them back; the
-- API starts and stops them at once. Bots from the environment and the config file are listed
-- too, read only.
local json = require "chatgw.json"
local secrets = require "chatgw.registry.secrets"
local types = require "chatgw.registry.types"
local store = require "chatgw.registry.store"
local shared = require "chatgw.registry.cluster"
local chat = require "chatgw.chat"
local telegram = require "chatgw.chat.channels.telegram"
local feishu = require "chatgw.chat.channels.feishu"
local providers = require "chatgw.providers"
local pconfig = require "chatgw.providers.config"
local errtrace = require "chatgw.errtrace"

local type, tostring, ipairs, pairs, pcall = type, tostring, ipairs, pairs, pcall
local NULL = json.null

local M = {}
local R
local live = {}     -- id -> the running gateway's type (this state's)
local hooks = {}    -- webhook id -> { secret, handler }
local broken = {}   -- id -> why it could not start ("cannot decrypt credentials", ...)

local ID = "^[a-z0-9_-]+$"
local PREFIX = { telegram_bot = "tg", feishu_app = "fs", ai = "ai", webhook = "wh" }
local CHANNEL = { telegram_bot = "telegram", feishu_app = "feishu" }

local auditlog = require "chatgw.audit"

-- An audit entry of a registry action (never a credential: ids, types, names, what changed),
-- and the admin page told at once.
local function audit(kind, fields)
  pcall(auditlog.record, kind, fields)
  require("chatgw.admin.live").changed(kind)
end

local function fail(status, code, field, extra)
  local b = { ok = false, error = code, field = field }
  for k, v in pairs(extra or {}) do b[k] = v end
  return status, b
end

-- ---- running gateways ----

local function provider_of(g, c)
  local pre = pconfig.PRESETS[c.provider]
  local base = c.baseUrl or os.getenv(c.provider:upper() .. "_BASE_URL") or pre.base_url
  return { name = g.id, kind = pre.kind, api_key = c.apiKey, api_key_env = "(gateway registry)",
    model = c.model or pre.model, max_tokens = g.config.max_tokens or pre.max_tokens or 1024,
    temperature = g.config.temperature or pre.temperature, timeout_ms = g.config.timeout_ms or 60000,
    headers = {}, base_url = pconfig.versioned(base, pre.kind) }
end

-- Starts g (a row) with its decrypted credentials c. now: the state is live (the API), so the
-- chat layer starts the account here; at a state's start it does so itself, after this.
local function start(g, c, now)
  local ok, err
  if g.type == "telegram_bot" then
    ok, err = telegram.add_account{ name = g.id, token = c.botToken, mode = g.config.mode,
      webhook_url = g.config.webhook_url, username = g.config.username }
  elseif g.type == "feishu_app" then
    ok, err = feishu.add_account{ name = g.id, app_id = c.appId, app_secret = c.appSecret,
      verification_token = c.verificationToken, encrypt_key = c.encryptKey, stream = g.config.stream }
  elseif g.type == "ai" then
    ok, err = providers.add(provider_of(g, c))
  elseif g.type == "webhook" then
    hooks[g.id] = { secret = c.secret, handler = g.config.handler }
    ok = true
  end
  if not ok then return nil, err end
  if now and CHANNEL[g.type] then
    local sok, serr = chat.start_account(CHANNEL[g.type], g.id)
    if not sok then return nil, serr end
  end
  live[g.id], broken[g.id] = g.type, nil
  return true
end

local function stop(id)
  local kind = live[id]
  live[id] = nil
  if kind == "telegram_bot" then
    chat.stop_account("telegram", id, "gateway stopped")
    telegram.remove_account(id)
  elseif kind == "feishu_app" then
    chat.stop_account("feishu", id, "gateway stopped")
    feishu.remove_account(id)
  elseif kind == "ai" then
    providers.remove(id)
  elseif kind == "webhook" then
    hooks[id] = nil
  end
end

local function decrypted(g)
  local key, why = secrets.key()
  if not key then
    return nil, why == "missing" and "cannot decrypt credentials: CHAT_GATEWAY_ENCRYPTION_KEY is not set" or why
  end
  local pt, err = secrets.decrypt(key, g.id, g.credentials_enc)
  if not pt then return nil, err end
  local c = json.decode(pt)
  if type(c) ~= "table" then return nil, "cannot decrypt credentials" end
  return c
end

-- ---- what the API shows ----

local STATUS = { ok = "connected", starting = "connecting", off = "disconnected", error = "error" }

-- The status from the running gateway itself: the channel's state (its last poll, event or
-- send), the provider's breaker; the stored one (set by /test) otherwise.
local function status_of(g)
  local s = { status = g.status, last_connected_at = g.last_connected_at, last_error_at = g.last_error_at,
              last_error = g.last_error }
  if broken[g.id] then
    s.status, s.last_error = "error", broken[g.id]
  elseif CHANNEL[g.type] then
    local st = chat.account_state(CHANNEL[g.type], g.id)
    if st then
      s.status = STATUS[st.state] or "connecting"
      s.last_connected_at = st.last_ok_at or s.last_connected_at
      if st.last_error then s.last_error, s.last_error_at = st.last_error, st.last_error_at end
    elseif not live[g.id] then
      s.status = "disconnected"
    end
  elseif g.type == "ai" then
    local p = providers.get(g.id)
    local h = providers.health().providers[g.id]
    if not p then s.status = "disconnected"
    elseif h and h.breaker == "open" then s.status, s.last_error = "error", "the provider's breaker is open" end
  elseif g.type == "webhook" then
    s.status = hooks[g.id] and "connected" or "disconnected"
  end
  return s
end

local function view(g)
  local s = status_of(g)
  return { id = g.id, name = g.name, type = g.type, config = g.config,
    credential_info = g.credential_info, status = s.status, last_connected_at = s.last_connected_at or NULL,
    last_error_at = s.last_error_at or NULL, last_error = s.last_error or NULL,
    created_at = g.created_at, updated_at = g.updated_at, source = "registry", read_only = false,
    webhook_path = g.type == "webhook" and ("/webhooks/" .. g.id) or nil }
end

-- Bots and providers of the environment and the config file: shown, not changed here.
local function read_only()
  local out = {}
  local function channel_entries(kind, channel, mod)
    for _, a in ipairs(mod.accounts()) do
      if a.source ~= "registry" then
        local st = chat.account_state(channel, a.name) or {}
        local off = (channel == "telegram" and not a.token) or (channel == "feishu" and not (a.app_id and a.app_secret))
        out[#out + 1] = { id = a.name, name = a.name, type = kind, source = "env", read_only = true,
          config = { mode = a.mode }, credential_info = { type = kind, env = a.token_env or a.app_secret_env },
          status = off and "disconnected" or (STATUS[st.state] or "connecting"),
          last_connected_at = st.last_ok_at or NULL, last_error = st.last_error or a.off_reason or NULL,
          last_error_at = st.last_error_at or NULL }
      end
    end
  end
  channel_entries("telegram_bot", "telegram", telegram)
  channel_entries("feishu_app", "feishu", feishu)
  for _, p in ipairs(providers.list()) do
    if p.source ~= "registry" then
      out[#out + 1] = { id = p.name, name = p.name, type = "ai", source = "env", read_only = true,
        config = { model = p.model }, credential_info = { type = "ai", provider = p.name, model = p.model, env = p.api_key_env },
        status = p.off_reason and "disconnected" or "connected", last_error = p.off_reason or NULL,
        last_connected_at = NULL, last_error_at = NULL }
    end
  end
  return out
end

local function taken(id)
  if store.get(id) then return true end
  for _, g in ipairs(read_only()) do if g.id == id then return true end end
  return false
end

-- ---- the API ----

local function body_of(req)
  if type(req.json) ~= "table" or req.json[1] ~= nil then return nil end
  return req.json
end

local function create(req)
  local b = body_of(req)
  if not b then return fail(400, "invalid_request", nil, { message = "the body must be a JSON object" }) end
  local key, why = secrets.key()
  if not key then
    if why == "missing" then
      return fail(503, "encryption_key_missing", nil,
        { message = "set CHAT_GATEWAY_ENCRYPTION_KEY (32 bytes: 64 hex digits or base64) to store credentials" })
    end
    return fail(503, "encryption_key_invalid", nil, { message = why })
  end
  if type(b.name) ~= "string" or b.name == "" or #b.name > 128 then return fail(400, "missing_field", "name") end
  if not types.known(b.type) then return fail(400, "invalid_type", "type", { types = types.ORDER }) end
  local id = b.id
  if id ~= nil and (type(id) ~= "string" or #id > 64 or not id:match(ID)) then
    return fail(400, "invalid_field", "id", { message = "an id is 1 to 64 of a-z, 0-9, _ and -" })
  end
  local c, cfg, info = types.check(b.type, b.credentials, b.config)
  if not c then return fail(400, cfg, info) end
  if id == nil then
    repeat id = PREFIX[b.type] .. "-" .. chatgw.crypto.hex(chatgw.crypto.random_bytes(4)) until not taken(id)
  elseif taken(id) then
    return fail(409, "id_taken", "id")
  end
  local g = { id = id, name = b.name, type = b.type, config = cfg, credential_info = info,
              credentials_enc = secrets.encrypt(key, id, json.encode(c)) }
  local ok, err = store.insert(g)
  if not ok then return fail(500, "store_failed", nil, { message = tostring(err) }) end
  local row = store.get(id)
  local sok, serr = start(row, c, true)
  if not sok then
    stop(id)
    store.delete(id)
    return fail(409, "cannot_start", nil, { message = tostring(serr) })
  end
  shared.push(row)
  audit("gateway.create", { who = req.auth and req.auth.name, addr = req.remote_addr, what = id,
    detail = { id = id, type = b.type, name = b.name } })
  chatgw.log.info("gateway created", { id = id, type = b.type })
  return 201, { ok = true, gateway = view(row) }
end

local function find(req)
  local id = req.params.id
  local g = store.get(id)
  if g then return g end
  for _, e in ipairs(read_only()) do if e.id == id then return nil, e end end
  return nil
end

local function get_one(req)
  local g, ro = find(req)
  if ro then return { ok = true, gateway = ro } end
  if not g then return fail(404, "not_found", "id") end
  return { ok = true, gateway = view(g) }
end

local function list(req)
  local q = req.query
  local limit = tonumber(q.limit or 50)
  if not limit or limit < 1 or limit > 200 or limit % 1 ~= 0 then return fail(400, "invalid_field", "limit") end
  if q.type and not types.known(q.type) then return fail(400, "invalid_type", "type") end
  local all = {}
  for _, g in ipairs(store.all()) do all[#all + 1] = view(g) end
  for _, g in ipairs(read_only()) do all[#all + 1] = g end
  table.sort(all, function(a, b) return a.id < b.id end)
  local out, next_cursor = {}, nil
  for _, g in ipairs(all) do
    if (not q.type or g.type == q.type) and (not q.status or g.status == q.status)
        and (not q.cursor or g.id > q.cursor) then
      if #out == limit then next_cursor = out[#out].id break end
      out[#out + 1] = g
    end
  end
  return { ok = true, gateways = #out > 0 and out or json.empty_array, next_cursor = next_cursor or NULL }
end

-- Every gateway as GET /v1/gateways shows it, in id order (the admin page's live view).
function M.snapshot()
  local all = {}
  for _, g in ipairs(store.all()) do all[#all + 1] = view(g) end
  for _, g in ipairs(read_only()) do all[#all + 1] = g end
  table.sort(all, function(a, b) return a.id < b.id end)
  return all
end

local function update(req)
  local g, ro = find(req)
  if ro then return fail(409, "read_only", "id", { message = "this bot comes from the environment or the config file" }) end
  if not g then return fail(404, "not_found", "id") end
  local b = body_of(req)
  if not b then return fail(400, "invalid_request", nil, { message = "the body must be a JSON object" }) end
  if b.type ~= nil and b.type ~= g.type then return fail(400, "invalid_field", "type", { message = "the type cannot change" }) end
  if b.id ~= nil and b.id ~= g.id then return fail(400, "invalid_field", "id", { message = "the id cannot change" }) end
  if b.name ~= nil and (type(b.name) ~= "string" or b.name == "" or #b.name > 128) then
    return fail(400, "invalid_field", "name")
  end
  local key, why = secrets.key()
  if not key then return fail(503, why == "missing" and "encryption_key_missing" or "encryption_key_invalid") end
  local creds = b.credentials
  if creds == nil then
    local c, err = decrypted(g)
    if not c then return fail(409, "cannot_decrypt", "credentials", { message = err }) end
    creds = c
  end
  local c, cfg, info = types.check(g.type, creds, b.config ~= nil and b.config or g.config)
  if not c then return fail(400, cfg, info) end
  g.name, g.config, g.credential_info = b.name or g.name, cfg, info
  g.credentials_enc = secrets.encrypt(key, g.id, json.encode(c))
  local ok, err = store.update(g)
  if not ok then return fail(500, "store_failed", nil, { message = tostring(err) }) end
  stop(g.id)
  local row = store.get(g.id)
  local sok, serr = start(row, c, true)
  if not sok then
    broken[g.id] = tostring(serr)
    store.set_status(g.id, "error", tostring(serr))
  end
  shared.push(store.get(g.id))
  local changed = {}
  for _, k in ipairs({ "name", "config", "credentials" }) do if b[k] ~= nil then changed[#changed + 1] = k end end
  audit("gateway.update", { who = req.auth and req.auth.name, addr = req.remote_addr, what = g.id,
    detail = { id = g.id, type = g.type, changed = changed } })
  return { ok = true, gateway = view(store.get(g.id)) }
end

local function delete(req)
  local g, ro = find(req)
  if ro then return fail(409, "read_only", "id", { message = "this bot comes from the environment or the config file" }) end
  if not g then return fail(404, "not_found", "id") end
  stop(g.id)
  broken[g.id] = nil
  store.delete(g.id)
  shared.push_delete(g.id)
  audit("gateway.delete", { who = req.auth and req.auth.name, addr = req.remote_addr, what = g.id,
    detail = { id = g.id, type = g.type } })
  chatgw.log.info("gateway deleted", { id = g.id, type = g.type })
  return { ok = true, id = g.id, deleted = true }
end

-- getMe, the tenant token, or the provider's model list, now. Updates the stored status.
local function test(req)
  local g, ro = find(req)
  if not g and not ro then return fail(404, "not_found", "id") end
  local e = g or ro
  local t0 = chatgw.now()
  local ok, details, err
  if g and broken[g.id] then
    ok, err = false, broken[g.id]
  elseif e.type == "telegram_bot" then
    ok, details = telegram.probe(e.id)
    if not ok then err, details = details, nil end
  elseif e.type == "feishu_app" then
    ok, details = feishu.probe(e.id)
    if not ok then err, details = details, nil end
  elseif e.type == "ai" then
    local v = providers.validate(e.id)
    ok, err, details = v.valid, v.error, { models = v.models, code = v.code, reason = v.reason }
  else
    ok, details = hooks[e.id] ~= nil, { path = "/webhooks/" .. e.id }
    if not ok then err = "not running" end
  end
  local ms = math.floor((chatgw.now() - t0) * 10 + 0.5) / 10
  if g then store.set_status(g.id, ok and "connected" or "error", not ok and tostring(err) or nil) end
  audit("gateway.test", { who = req.auth and req.auth.name, addr = req.remote_addr, what = e.id,
    detail = { id = e.id, type = e.type, success = ok and true or false } })
  return { success = ok and true or false, latency_ms = ms, error = err and tostring(err) or NULL,
           details = details or {} }
end

-- POST /webhooks/:id: a generic inbound JSON webhook. The secret as a bearer token, or as
-- GitHub's X-Hub-Signature-256 (HMAC-SHA256 of the body); then the handler named in the
-- gateway's config: a function in some handler file's `webhooks` table, fn(req, gateway).
local function webhook_route(req)
  local id = req.params.id
  local h = hooks[id]
  if not h then return 404, { ok = false, error = "not_found" } end
  local auth = req.headers.authorization
  local sig = req.headers["x-hub-signature-256"]
  local good = false
  if type(auth) == "string" then
    local tok = auth:match("^[Bb]earer%s+(.-)%s*$")
    good = tok ~= nil and chatgw.crypto.constant_time_eq(tok, h.secret)
  elseif type(sig) == "string" then
    local want = "sha256=" .. chatgw.crypto.hmac_sha256(h.secret, req.body, "hex")
    good = chatgw.crypto.constant_time_eq(sig:lower(), want)
  end
  if not good then return 401, { ok = false, error = "unauthorized" } end
  if type(req.json) ~= "table" then return 400, { ok = false, error = "invalid_json" } end
  for _, mod in ipairs(R.handlers or {}) do
    local fn = type(mod.module.webhooks) == "table" and mod.module.webhooks[h.handler]
    if fn then
      local g = store.get(id)
      local ok, a, b, c = xpcall(fn, errtrace.handler, req, { id = id, name = g and g.name, config = g and g.config })
      if not ok then
        chatgw.log.error("webhook handler failed", { id = id, handler = h.handler, file = mod.file,
          error = errtrace.locate(tostring(a), fn) })
        return 500, { ok = false, error = "internal_error", request_id = req.id }
      end
      if a == nil then return { ok = true } end
      return a, b, c
    end
  end
  return 503, { ok = false, error = "no_handler", handler = h.handler }
end

-- ---- cluster mode: a change another node made (registry/cluster.lua) ----

-- Applies the shared entry e of id when it is newer than this node's row: the row replaced (or
-- deleted for a tombstone) and the gateway restarted (or stopped). true when something changed.
local function apply_shared(id, e)
  local have = store.get(id)
  if have and (tonumber(have.updated_at) or 0) >= (tonumber(e.updated_at) or 0) then return false end
  if e.deleted then
    if not have then return false end
    stop(id)
    broken[id] = nil
    store.delete(id)
    chatgw.log.info("gateway deleted on another node", { id = id })
    return true
  end
  if not types.known(e.type) or type(e.credentials_enc) ~= "string" then return false end
  local ok, err = store.put(e)
  if not ok then
    chatgw.log.error("gateway from another node not stored", { id = id, error = tostring(err) })
    return false
  end
  stop(id)
  local row = store.get(id)
  local c
  c, err = decrypted(row)
  if c then ok, err = start(row, c, true) end
  if not c or not ok then
    broken[id] = tostring(err)
    store.set_status(id, "error", tostring(err))
    chatgw.log.error("gateway cannot start", { id = id, type = row.type, error = tostring(err) })
  end
  chatgw.log.info(have and "gateway changed on another node" or "gateway created on another node", { id = id, type = row.type })
  return true
end

local function sync_loop()
  while true do
    local ok, err = shared.sync(apply_shared)
    if not ok then chatgw.log.debug("gateway registry: no sync with Redis", { error = tostring(err) }) end
    chatgw.sleep(shared.sync_interval_ms)
  end
end

-- ---- install ----

-- The stored gateways, started in a new state (boot or reload) before the chat accounts.
local function start_all()
  live, hooks, broken = {}, {}, {}
  local rows = store.all()
  for _, g in ipairs(rows) do
    local c, err = decrypted(g)
    local ok
    if c then ok, err = start(g, c, false) end
    if not ok then
      broken[g.id] = tostring(err)
      chatgw.log.error("gateway cannot start", { id = g.id, type = g.type, error = tostring(err) })
    end
  end
  if #rows > 0 then chatgw.log.info("gateways started", { count = #rows }) end
  return true
end

function M.install(runtime)
  R = runtime
  R.register_handler_key("webhooks", function(v)
    if type(v) ~= "table" then return "webhooks must be a table of name = function(req, gateway), got " .. type(v) end
    for k, fn in pairs(v) do
      if type(k) ~= "string" or type(fn) ~= "function" then
        return "webhooks: each entry must be name = function(req, gateway)"
      end
    end
  end)
  R.register_start("registry", function()
    if chatgw._mode == "test" then return true end
    return start_all()
  end, { before = "chat" })
  local cluster = require "chatgw.cluster"
  cluster.on("registry", function(m)
    if type(m) ~= "table" or type(m.id) ~= "string" then return end
    local e = shared.get(m.id)
    if e then apply_shared(m.id, e) end
  end)
  R.register_start("registry.cluster", function()
    if cluster.enabled and chatgw._mode ~= "test" then
      require("chatgw.supervisor").internal{ name = "cluster.registry", run = sync_loop }
    end
    return true
  end)
  local function route(method, path, fn)
    R.register_builtin_route({ method = method, path = path, fn = fn, label = method .. " " .. path, scope = "admin" })
  end
  route("GET", "/v1/gateways", list)
  route("POST", "/v1/gateways", create)
  route("GET", "/v1/gateways/:id", get_one)
  route("PUT", "/v1/gateways/:id", update)
  route("DELETE", "/v1/gateways/:id", delete)
  route("POST", "/v1/gateways/:id/test", test)
  R.register_builtin_route({ method = "POST", path = "/webhooks/:id", fn = webhook_route, public = true,
    label = "POST /webhooks/:id" })
end

return M
