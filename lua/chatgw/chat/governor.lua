-- chatgw.chat.governor: one rate governor per bot account. It decides when anything may go to
-- a platform: sends, edits, deletions, chat actions. Nothing is queued here: the outbox sender
-- asks admit() for the first pending row of each chat, most important first, and waits the
-- time it is told; typing asks once and is dropped when the answer is no.
--
--   local gov = governor.get(def, account)
--   gov:admit(chat_id, is_group, class)  -> true | false, wait_ms, why ("frozen", "gone", "paced")
--       class: "final" (messages, final edits), "edit" (interim edits, deletions), "typing"
--   gov:freeze(scope, chat_id, seconds)  -- a 429: scope "chat" or "bot", exactly retry_after
--   gov:mark_gone(chat_id, reason) / gov:gone(chat_id) -> reason | nil / gov:back(chat_id)
--
-- Three limits, each a C limiter (they outlive reloads, so a reload never resets a budget):
-- per chat a token bucket (rate, burst), per group chat a 60 s window, per bot a sliding window
-- of bot_burst (default bot_rate) messages per bot_burst / bot_rate seconds.
-- admit() peeks all that apply and takes from all of them or from none. Typing also needs
-- two bot tokens free, so it never takes the last one a message could use.
--
-- Freezes and "gone" chats live in shared dictionaries (they outlive reloads) and in chat_state
-- (they outlive restarts): a bot frozen for 30 s is still frozen after a restart in that time,
-- and a chat that removed the bot fails fast until a message from it says it is back.
--
-- In cluster mode (docs/cluster.md) the three limits and the 429 freezes live in Redis: one
-- EVALSHA per decision (chat/governor_redis.lua), so every node shares them. When Redis cannot
-- answer (down: at once; timeout: after cluster.command_timeout_ms) the local limiters decide.
local chatgw = chatgw
local chatstore = require "chatgw.chat.store"
local cluster = require "chatgw.cluster"
local redis_gov = require "chatgw.chat.governor_redis"

local type, tostring, tonumber, ipairs, pairs, setmetatable = type, tostring, tonumber, ipairs, pairs, setmetatable
local max, ceil = math.max, math.ceil

local M = {}

M.pacing = true      -- chat.pacing: false turns the limits off (freezes still hold)
M.overrides = {}     -- chat.governor: channel -> { chat_rate, chat_burst, group_per_minute, bot_rate, bot_burst }

local frozen = chatgw.shared("chatgw.governor.frozen") -- "<channel>:<account>:<chat_id|*>" -> until (chatgw.time)
local gone = chatgw.shared("chatgw.governor.gone")     -- "<channel>:<account>:<chat_id>" -> reason

local metric_429 = chatgw.metrics.counter{ name = "chatgw_platform_429_total",
  help = "Rate-limit answers from chat platforms, by what they froze (chat or bot)",
  labels = { "channel", "account", "scope" } }
local metric_wait = chatgw.metrics.histogram{ name = "chatgw_governor_wait_seconds",
  help = "Time an outbound message that was due waited for the governor (pacing and freezes)",
  labels = { "channel" }, buckets = { 0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300 } }
M.metric_wait = metric_wait

local Gov = {}
Gov.__index = Gov

local cache = {} -- "<channel>:<account>" -> gov (this state)

-- The limits of a channel: its adapter's defaults (the platform's published limits) under the
-- config's chat.governor.<channel>. A nil rate means no limit of that kind.
local function limits_of(def)
  local l = {}
  for k, v in pairs(def.governor or {}) do l[k] = v end
  for k, v in pairs(M.overrides[def.name] or {}) do l[k] = v end
  return l
end

local function limiter(name, opts)
  opts.name = name
  opts.max_keys = opts.max_keys or 100000
  return chatgw.limiter(opts)
end

local function build(def, account)
  local base = ("chatgw.governor.%s.%s."):format(def.name, account)
  local l = limits_of(def)
  local g = setmetatable({ channel = def.name, account = account, prefix = def.name .. ":" .. account .. ":",
                           last_edit = {} }, Gov)
  if l.chat_rate then
    g.chat = limiter(base .. "chat", { rate = l.chat_rate, burst = max(1, l.chat_burst or 1) })
  end
  if l.group_per_minute then
    g.group = limiter(base .. "group", { limit = l.group_per_minute, window_ms = 60000 })
  end
  if l.bot_rate then
    -- a sliding window, not a bucket: "30 per second" holds in every second (a full bucket plus
    -- its refill would let twice that through one second)
    local n = max(2, math.floor(l.bot_burst or l.bot_rate))
    local window_ms = n / l.bot_rate * 1000
    g.bot = limiter(base .. "bot", { limit = n, window_ms = window_ms })
    g.bot_window = { limit = n, window_ms = math.floor(window_ms) } -- the same window, in Redis (cluster mode)
  end
  g.limits = l
  return g
end

-- The governor of a channel account (built once per state; config changes apply at a reload).
function M.get(def, account)
  local key = def.name .. ":" .. account
  local g = cache[key]
  if not g then
    g = build(def, account)
    cache[key] = g
  end
  return g
end

-- Forget the built governors: the next get() reads the limits again (a reload's new config).
function M.reset() cache = {} end

local function now() return chatgw.time() end

-- ms until the freeze on key ends, or nil.
local function frozen_ms(key)
  local untl = frozen:get(key)
  if not untl then return nil end
  local left = (untl - now()) * 1000
  if left <= 0 then return nil end
  return left
end

function Gov:frozen(chat_id)
  local a = frozen_ms(self.prefix .. "*")
  local b = frozen_ms(self.prefix .. tostring(chat_id))
  if a and b then return max(a, b) end
  return a or b
end

function Gov:admit(chat_id, is_group, class)
  chat_id = tostring(chat_id)
  if gone:get(self.prefix .. chat_id) then return false, 0, "gone" end
  local f = self:frozen(chat_id)
  if f then return false, ceil(f), "frozen" end
  if cluster.enabled then
    local ok, wait, why = self:admit_redis(chat_id, is_group, class)
    if ok ~= nil then return ok, wait, why end
  end
  if not M.pacing then return true end
  local wait = 0
  local chat, group, bot = self.chat, is_group and self.group or nil, self.bot
  local function peek(lim, key, n)
    if not lim then return end
    local ok, ms = lim:peek(key, n)
    if not ok then wait = max(wait, ms or 1) end
  end
  peek(chat, chat_id, 1)
  peek(group, chat_id, 1)
  peek(bot, "*", class == "typing" and 2 or 1)
  local edit_gap = self.limits.edit_interval_ms
  local last = class == "edit" and edit_gap and self.last_edit[chat_id]
  if last then -- interim edits of one chat at least edit_interval_ms apart, whatever the burst
    local t = chatgw.now()
    if t - last < edit_gap then wait = max(wait, edit_gap - (t - last)) end
  end
  if wait > 0 then return false, wait, "paced" end
  if class == "edit" and edit_gap then self.last_edit[chat_id] = chatgw.now() end
  if chat then chat:take(chat_id) end
  if group then group:take(chat_id) end
  if bot then bot:take("*") end
  return true
end

-- Cluster mode: the interim-edit gap first (kept per node: one stream edits from one node, and
-- an edit refused here must not have taken from Redis' buckets), then Redis decides. nil: it
-- could not.
function Gov:admit_redis(chat_id, is_group, class)
  local edit_gap = M.pacing and class == "edit" and self.limits.edit_interval_ms
  local last, t = edit_gap and self.last_edit[chat_id], chatgw.now()
  if last and t - last < edit_gap then return false, edit_gap - (t - last), "paced" end
  local ok, wait, why = redis_gov.admit(self, chat_id, is_group, class, M.pacing)
  if ok and edit_gap then self.last_edit[chat_id] = t end
  return ok, wait, why
end

-- Whether the chat still had room when a 429 came for it: then the limit it hit was not the
-- chat's own (Telegram's answer does not say which), so it is the bot's.
function Gov:chat_had_room(chat_id, is_group)
  chat_id = tostring(chat_id)
  if not self.chat then return false end
  if cluster.enabled then
    local ok = redis_gov.admit(self, chat_id, is_group, "final", true, true)
    if ok ~= nil then return ok end
  end
  if not self.chat:peek(chat_id) then return false end
  if is_group and self.group and not self.group:peek(chat_id) then return false end
  return true
end

-- A rate-limit answer: freeze exactly what it names for exactly retry_after seconds.
function Gov:freeze(scope, chat_id, seconds)
  seconds = type(seconds) == "number" and seconds > 0 and seconds or 1
  scope = scope == "bot" and "bot" or "chat"
  local key = self.prefix .. (scope == "bot" and "*" or tostring(chat_id))
  local untl = now() + seconds
  local cur = frozen:get(key)
  if not cur or cur < untl then
    -- the TTL only collects the entry; the end is `untl`, read against chatgw.time()
    frozen:set(key, untl, ceil(seconds * 1000) + 60000)
    chatstore.state_set("frozen:" .. key, untl)
  end
  if cluster.enabled then redis_gov.freeze(self, scope == "bot" and "*" or tostring(chat_id), seconds) end
  metric_429:inc({ channel = self.channel, account = self.account, scope = scope })
  chatgw.log.warn("chat platform rate limit: frozen", { channel = self.channel, account = self.account,
    scope = scope, chat_id = scope == "chat" and tostring(chat_id) or "-", seconds = seconds })
end

-- A chat the bot was removed from (blocked, kicked, deleted): messages to it fail at once.
function Gov:mark_gone(chat_id, reason)
  local key = self.prefix .. tostring(chat_id)
  if gone:get(key) then return end
  gone:set(key, tostring(reason or "gone"))
  chatstore.state_set("gone:" .. key, tostring(reason or "gone"))
end

function Gov:gone(chat_id) return gone:get(self.prefix .. tostring(chat_id)) end

-- A message came from the chat: the bot is (again) a member.
function Gov:back(chat_id)
  local key = self.prefix .. tostring(chat_id)
  if not gone:get(key) then return false end
  gone:delete(key)
  chatgw.db.exec("DELETE FROM chat_state WHERE k = ?", "gone:" .. key)
  chatgw.log.info("chat: the bot is back in a chat it had been removed from", { channel = self.channel,
    account = self.account, chat_id = tostring(chat_id) })
  return true
end

-- At a sender's start: the freezes and gone chats recorded before a restart.
function Gov:restore()
  local rows = chatgw.db.query([[SELECT k, v FROM chat_state WHERE k >= ? AND k < ? OR k >= ? AND k < ?]],
    "frozen:" .. self.prefix, "frozen:" .. self.prefix .. "\255", "gone:" .. self.prefix, "gone:" .. self.prefix .. "\255")
  local t = now()
  for _, r in ipairs(rows or {}) do
    local kind, key = r.k:match("^(%a+):(.*)$")
    if kind == "frozen" then
      local untl = tonumber(r.v)
      if untl and untl > t then
        frozen:set(key, untl, ceil((untl - t) * 1000) + 60000)
      else
        chatgw.db.exec("DELETE FROM chat_state WHERE k = ?", r.k)
      end
    elseif kind == "gone" then
      gone:set(key, r.v)
    end
  end
end

return M
