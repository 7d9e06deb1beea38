-- chatgw.notify.registry: seed 000's projects registry (config/projects.yml,
-- PROJECTS_REGISTRY_PATH): per-project default chat ids for /v1/notify/*, per-chat minimum
-- priorities, and the project's on-demand (chart export) settings. Pure: it parses text it is
-- given with chatgw.config's line-numbered YAML loader; reading the file, hashing, reload and
-- logging are the caller's (chatgw.notify).
--
--   local registry = require "chatgw.notify.registry"
--   local reg, errors = registry.parse(text, "config/projects.yml", { "LOW", "MEDIUM", "HIGH", "CRITICAL" })
--   -- errors: { "config/projects.yml:14: projects.x.notify_overrides[1].min_priority: ...", ... }
--   -- reg.warnings: the same shape, for things accepted but worth a WARN (unknown keys, ...)
--   registry.defaults(reg, "crypto_agent", "telegram")        --> { "-5242302064" } | nil
--   registry.overrides_of(reg, "crypto_agent", "telegram", "-5242302064")  --> "CRITICAL" | nil
--   registry.on_demand(reg, "crypto_agent")   --> { url=, token=, token_env=, window_spec_id= } | nil
--   registry.list(reg)                        --> JSON-able summary (GET /v1/notify/projects)
--   registry.empty(levels)                    --> the empty registry (a missing or broken file at boot)
--
-- File format, as seed 000 reads it (src/integrations/runtime/project_registry.ts,
-- src/core/notify_overrides.ts, src/core/project_registry_types.ts, intent_router.ts):
--
--   projects:
--     crypto_agent:
--       notify:
--         telegram_chat_ids: ["-5242302064"]     # a list, or one scalar; numbers or strings
--         feishu_chat_ids: oc_d69f1c419652e849c85e6d15cf467c2f
--         overrides: ...                         # like notify_overrides (alias: target_overrides)
--       notify_overrides:                        # list form ...
--         - { target: telegram, chat_id: "-5242302064", min_priority: CRITICAL }
--       # ... or map form:  notify_overrides: { telegram: { "-5242302064": HIGH },
--       #                                       feishu: { oc_x: { min_priority: HIGH } } }
--       on_demand: { url: ..., token: ..., token_env: ..., window_spec_id: ... }
--       # flat aliases: on_demand_url, on_demand_token, on_demand_token_env, on_demand_window_spec_id
--
-- Semantics (the seed's, unless marked "chatgw"):
-- * Chat ids are strings, exactly as written: `- -5242302064` and `- "-5242302064"` are the same
--   id; a number is never re-typed (chatgw: the seed's JS numbers would round ids past 2^53 and
--   turn 0x1F/1e3 into 31/1000). Empty ids are dropped, as the seed does (chatgw: with a warning,
--   and a repeated id is kept once, with a warning).
-- * List form items: target | channel | provider (telegram, tg, feishu, fs; any case),
--   chat_id | chatId | chat, min_priority | minPriority | priority; the first present of each
--   group wins, as in the seed. Map form: only the keys telegram and feishu; a chat's value is a
--   level or { min_priority: level }.
-- * notify_overrides is applied first, then notify.overrides (or, when that is absent,
--   notify.target_overrides) over it; within one, a later entry for the same chat wins.
-- * Levels are matched trimmed and case-insensitively against `levels` (default LOW, MEDIUM,
--   HIGH, CRITICAL; CHAT_GATEWAY_PRIORITY_LEVELS) and stored upper-case (chatgw: the seed checked
--   overrides against the fixed four even when the env replaced the levels).
-- * on_demand: each of url, token, token_env, window_spec_id from on_demand.<key>, else the flat
--   on_demand_<key>; trimmed; empty means absent. (The seed's consumers fall back to the
--   crypto_agent project when a project has none: that is theirs to do, not the registry's.)
--
-- What is an error, what a warning (chatgw's choices; the seed validated nothing, dropping a bad
-- override with a console warning and reading whatever else YAML gave it):
-- * Errors ("file:line: path: message"; the registry is refused, so a reload keeps the last good
--   one): YAML syntax, duplicate keys (the seed's YAML library refused those too), anchors/aliases
--   and tags (chatgw.config's rules), a top level / projects / project / notify / on_demand that is
--   not a mapping, a chat id that is a mapping, a list or null, and any override the seed would
--   have dropped or misread: unknown or missing level, unknown or missing target, missing chat id,
--   an override section that is neither a list nor a map, a list item that is not a mapping.
--   An override silently dropped would lower a chat's gate without anyone noticing.
--   Errors come in two rounds: YAML and shape errors (a wrong type anywhere) first, all of them;
--   the value errors above only once the shapes are right. Each round is sorted by line.
-- * Warnings (accepted; reg.warnings, for the caller to log at WARN): unknown keys at any level
--   (the seed ignored them and other tools share the file: tolerated, but a typo such as
--   `telegram_chat_id` would otherwise go unnoticed), on_demand at the top level (the seed reads
--   it per project only), empty or repeated chat ids, a repeated override, an alias shadowed by
--   another (target and channel both given, overrides and target_overrides both given).
-- * An empty file (or only comments, or `projects:` with nothing) is an empty registry.

local config = require "chatgw.config"
local json = require "chatgw.json"

local M = {}

M.DEFAULT_LEVELS = { "LOW", "MEDIUM", "HIGH", "CRITICAL" }
M.TARGETS = { "telegram", "feishu" }

local NULL = config.null
local format, concat = string.format, table.concat

local TARGET_ALIAS = { telegram = "telegram", tg = "telegram", feishu = "feishu", fs = "feishu" }

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- levels: a list or a "LOW,MEDIUM ..." string -> { names = {...}, index = { NAME = rank } }
local function level_set(levels)
  local list = {}
  if type(levels) == "string" then
    for w in levels:gmatch("[^%s,]+") do list[#list + 1] = w end
  elseif type(levels) == "table" then
    for _, w in ipairs(levels) do list[#list + 1] = tostring(w) end
  end
  local names, index = {}, {}
  for _, w in ipairs(list) do
    local up = trim(w):upper()
    if up ~= "" and not index[up] then
      names[#names + 1] = up
      index[up] = #names
    end
  end
  if #names == 0 then return level_set(M.DEFAULT_LEVELS) end
  return { names = names, index = index }
end

---------------------------------------------------------------------------
-- Schema: chatgw.config's DSL has no "list or map", so the file is read twice: first as plain
-- YAML (type any) to see the shape of each override section, then by a schema made for that
-- shape, which keeps every value's text and line.
---------------------------------------------------------------------------

local STR = { type = "string" }
local ANY = { type = "any" }
local IDS = { type = "list", items = STR, single = true }

-- A mapping whose known keys have schemas and whose other keys are kept (as plain YAML) so they
-- can be warned about.
local function loose(fields) return { type = "dict", reserved = fields, values = ANY } end

local function is_list(v) return type(v) == "table" and v[1] ~= nil end
local function is_map(v) return type(v) == "table" and v[1] == nil and next(v) ~= nil end
local function absent(v) return v == nil or v == NULL or v == "" end

local ITEM_KEYS = {
  target = { "target", "channel", "provider" },
  chat_id = { "chat_id", "chatId", "chat" },
  min_priority = { "min_priority", "minPriority", "priority" },
}
local ITEM_FIELDS = {}
for _, keys in pairs(ITEM_KEYS) do
  for _, k in ipairs(keys) do ITEM_FIELDS[k] = STR end
end
local ITEM = loose(ITEM_FIELDS)

local function chat_map_schema(raw)
  if not is_map(raw) then return { type = "dict", values = ANY } end -- null/{}; else "expected mapping"
  local fields = {}
  for chat, v in pairs(raw) do
    if v == NULL then fields[chat] = ANY -- kept (as null) so that it is reported
    elseif type(v) == "table" then fields[chat] = loose({ min_priority = STR })
    else fields[chat] = STR end
  end
  return { type = "map", fields = fields }
end

local function overrides_schema(raw)
  if is_list(raw) then return { type = "list", items = ITEM } end
  if is_map(raw) then
    return loose({ telegram = chat_map_schema(raw.telegram), feishu = chat_map_schema(raw.feishu) })
  end
  return ANY -- absent, empty, or a scalar (reported while compiling)
end

local function project_schema(raw)
  local p = type(raw) == "table" and raw or {}
  local n = type(p.notify) == "table" and p.notify or {}
  return loose({
    notify = loose({
      telegram_chat_ids = IDS, feishu_chat_ids = IDS,
      overrides = overrides_schema(n.overrides),
      target_overrides = overrides_schema(n.target_overrides),
    }),
    notify_overrides = overrides_schema(p.notify_overrides),
    on_demand = loose({ url = STR, token = STR, token_env = STR, window_spec_id = STR }),
    on_demand_url = STR, on_demand_token = STR, on_demand_token_env = STR,
    on_demand_window_spec_id = STR,
  })
end

local function file_schema(raw)
  local projects
  if is_map(raw) and is_map(raw.projects) then
    local fields = {}
    for id, p in pairs(raw.projects) do fields[id] = project_schema(p) end
    projects = { type = "map", fields = fields }
  else
    projects = { type = "dict", values = project_schema(nil) } -- null/{}; else "expected mapping"
  end
  return loose({ projects = projects })
end

---------------------------------------------------------------------------
-- Compiling the converted file
---------------------------------------------------------------------------

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function new_registry(file, levels)
  return { file = file, levels = levels.names, projects = {}, ids = {}, warnings = {} }
end

function M.empty(levels)
  return new_registry("(none)", level_set(levels or M.DEFAULT_LEVELS))
end

-- Messages sorted by line, then text: pairs() order must not show in logs or tests.
local function sort_messages(list)
  local function line_of(m) return tonumber(m:match("^.-:(%d+): ")) or 0 end
  table.sort(list, function(a, b)
    local la, lb = line_of(a), line_of(b)
    if la ~= lb then return la < lb end
    return a < b
  end)
  return list
end

local function compile(doc, lines, file, levels)
  local reg = new_registry(file, levels)
  local errors, warnings = {}, reg.warnings
  local function line(path, fallback) return lines[path] or (fallback and lines[fallback]) or 1 end
  local function err(path, msg, fallback)
    errors[#errors + 1] = format("%s:%d: %s: %s", file, line(path, fallback), path, msg)
  end
  local function warn(path, msg, fallback)
    warnings[#warnings + 1] = format("%s:%d: %s: %s", file, line(path, fallback), path, msg)
  end
  local function join(path, key) return path == "" and key or path .. "." .. key end
  local function unknown(t, path, known, hint)
    for _, k in ipairs(sorted_keys(t)) do
      if not known[k] then
        warn(join(path, k), hint and hint(k) or "unknown key, ignored")
      end
    end
  end
  local level_list = concat(levels.names, ", ")
  local function level_of(v, path)
    local up = trim(v):upper()
    if levels.index[up] then return up end
    if up == "" then err(path, "empty min_priority (one of " .. level_list .. ")") return nil end
    err(path, format("unknown priority '%s' (one of %s)", v, level_list))
    return nil
  end

  -- top level
  unknown(doc, "", { projects = true }, function(k)
    if k == "on_demand" then
      return "ignored at the top level: seed 000 reads on_demand per project (projects.<id>.on_demand)"
    end
    return "unknown key, ignored"
  end)

  local KNOWN_PROJECT = { notify = true, notify_overrides = true, on_demand = true, on_demand_url = true,
                          on_demand_token = true, on_demand_token_env = true, on_demand_window_spec_id = true }
  local KNOWN_NOTIFY = { telegram_chat_ids = true, feishu_chat_ids = true, overrides = true,
                         target_overrides = true }
  local KNOWN_ON_DEMAND = { url = true, token = true, token_env = true, window_spec_id = true }
  local KNOWN_MAP_FORM = { telegram = true, feishu = true }

  -- A chat id list (maybe with holes where an item was null) -> list of strings.
  local function chat_ids(list, path)
    local out, seen = {}, {}
    local n = 0
    while lines[format("%s[%d]", path, n + 1)] do n = n + 1 end
    local single = n == 0
    if single then n = table.maxn(list) end -- one scalar, or nothing
    for i = 1, n do
      local ipath = single and path or format("%s[%d]", path, i)
      local v = list[i]
      if v == nil then
        err(ipath, "expected a chat id (a string or a number), got null")
      elseif v == "" then
        warn(ipath, "empty chat id, ignored")
      elseif seen[v] then
        warn(ipath, format("chat id '%s' repeated (first at line %d), kept once", v, line(seen[v])))
      else
        seen[v] = ipath
        out[#out + 1] = v
      end
    end
    return out
  end

  -- Overrides of one section (`value` converted by overrides_schema) into `out`.
  local function apply_overrides(value, path, out)
    local set_here = { telegram = {}, feishu = {} }
    local function set(target, chat, level, cpath)
      if set_here[target][chat] then
        warn(cpath, format("override for %s chat '%s' repeated (first at line %d), the later wins",
          target, chat, line(set_here[target][chat])))
      end
      set_here[target][chat] = cpath
      out[target][chat] = level
    end
    if absent(value) or (type(value) == "table" and next(value) == nil) then return end
    if type(value) ~= "table" then
      err(path, "expected a list of {target, chat_id, min_priority} or a map {telegram: {<chat_id>: <level>}, feishu: {...}}")
      return
    end
    if lines[path .. "[1]"] then -- list form
      local i = 1
      while lines[format("%s[%d]", path, i)] do
        local ipath = format("%s[%d]", path, i)
        local item = value[i] or {}
        unknown(item, ipath, ITEM_FIELDS)
        local got = {}
        for name, keys in pairs(ITEM_KEYS) do
          for _, k in ipairs(keys) do
            if item[k] ~= nil then
              if got[name] then
                warn(ipath .. "." .. k, format("ignored: %s is given (line %d)", got[name].key,
                  line(ipath .. "." .. got[name].key)))
              else
                got[name] = { key = k, value = item[k], path = ipath .. "." .. k }
              end
            end
          end
        end
        local ok = true
        local chat = got.chat_id and trim(got.chat_id.value)
        if not chat or chat == "" then
          err(got.chat_id and got.chat_id.path or ipath, "missing chat_id", ipath)
          ok = false
        end
        local target
        if not got.target or trim(got.target.value) == "" then
          err(got.target and got.target.path or ipath, "missing target (telegram or feishu)", ipath)
          ok = false
        else
          target = TARGET_ALIAS[trim(got.target.value):lower()]
          if not target then
            err(got.target.path, format("unknown target '%s' (telegram, tg, feishu or fs)", got.target.value))
            ok = false
          end
        end
        local level
        if not got.min_priority then
          err(ipath, "missing min_priority (one of " .. level_list .. ")")
          ok = false
        else
          level = level_of(got.min_priority.value, got.min_priority.path)
          ok = ok and level ~= nil
        end
        if ok then set(target, chat, level, ipath) end
        i = i + 1
      end
      return
    end
    -- map form
    unknown(value, path, KNOWN_MAP_FORM, function(k)
      local alias = TARGET_ALIAS[k:lower()]
      if alias then return format("ignored: the map form takes '%s' (seed 000 ignores '%s' here)", alias, k) end
      return "unknown key, ignored (the map form takes telegram and feishu)"
    end)
    for _, target in ipairs(M.TARGETS) do
      local tpath = path .. "." .. target
      for _, key in ipairs(sorted_keys(value[target] or {})) do
        local v = value[target][key]
        local cpath = tpath .. "." .. key
        local chat = trim(key)
        local raw_level, lpath = v, cpath
        if type(v) == "table" then
          unknown(v, cpath, { min_priority = true })
          raw_level, lpath = v.min_priority, cpath .. ".min_priority"
        end
        if chat == "" then
          err(cpath, "empty chat id")
        elseif raw_level == nil or raw_level == NULL then
          err(cpath, "missing min_priority (one of " .. level_list .. ")")
        else
          local level = level_of(raw_level, lpath)
          if level then set(target, chat, level, cpath) end
        end
      end
    end
  end

  for _, id in ipairs(sorted_keys(doc.projects or {})) do
    local p = doc.projects[id]
    local ppath = "projects." .. id
    unknown(p, ppath, KNOWN_PROJECT)
    local notify = p.notify
    unknown(notify, ppath .. ".notify", KNOWN_NOTIFY)
    local proj = {
      id = id,
      line = line(ppath),
      telegram_chat_ids = chat_ids(notify.telegram_chat_ids, ppath .. ".notify.telegram_chat_ids"),
      feishu_chat_ids = chat_ids(notify.feishu_chat_ids, ppath .. ".notify.feishu_chat_ids"),
      overrides = { telegram = {}, feishu = {} },
    }
    apply_overrides(p.notify_overrides, ppath .. ".notify_overrides", proj.overrides)
    if not absent(notify.overrides) then
      if not absent(notify.target_overrides) then
        warn(ppath .. ".notify.target_overrides", format("ignored: notify.overrides is given (line %d)",
          line(ppath .. ".notify.overrides")))
      end
      apply_overrides(notify.overrides, ppath .. ".notify.overrides", proj.overrides)
    else
      apply_overrides(notify.target_overrides, ppath .. ".notify.target_overrides", proj.overrides)
    end

    local od = p.on_demand
    unknown(od, ppath .. ".on_demand", KNOWN_ON_DEMAND)
    local on_demand, any = {}, false
    for _, k in ipairs({ "url", "token", "token_env", "window_spec_id" }) do
      local v = od[k]
      if v == nil or trim(v) == "" then v = p["on_demand_" .. k] end
      if v ~= nil and trim(v) ~= "" then
        on_demand[k] = trim(v)
        any = true
      end
    end
    proj.on_demand = any and on_demand or nil

    reg.projects[id] = proj
    reg.ids[#reg.ids + 1] = id
  end

  if #errors > 0 then return nil, sort_messages(errors) end
  sort_messages(warnings)
  return reg
end

-- registry.parse(text, file, levels) -> reg | nil, errors
function M.parse(text, file, levels)
  file = file or "(text)"
  local lv = level_set(levels or M.DEFAULT_LEVELS)
  if type(text) ~= "string" then
    return nil, { format("%s:1: expected the registry's text, got %s", file, type(text)) }
  end
  local raw, errors = config.load_text(text, file, ANY)
  if errors and #errors > 0 then return nil, errors end
  if raw == nil or raw == NULL then return new_registry(file, lv) end
  local doc, lines
  doc, errors, lines = config.load_text(text, file, file_schema(raw))
  if not doc then return nil, errors end
  return compile(doc, lines, file, lv)
end

---------------------------------------------------------------------------
-- Lookups
---------------------------------------------------------------------------

-- Lookups and list() accept any table of reg's shape, also one that went through JSON (a reg is
-- plain data: strings, numbers and tables) or a bare { projects = {} }.
local function project(reg, project_id)
  if type(reg) ~= "table" or type(reg.projects) ~= "table" or project_id == nil then return nil end
  local p = reg.projects[tostring(project_id)]
  return type(p) == "table" and p or nil
end

local function target_of(target)
  if type(target) ~= "string" then return nil end
  return TARGET_ALIAS[target:lower()]
end

-- registry.overrides_of(reg, project_id, target, chat_id) -> level | nil
function M.overrides_of(reg, project_id, target, chat_id)
  local p = project(reg, project_id)
  local t = target_of(target)
  if not p or not t or chat_id == nil then return nil end
  local o = type(p.overrides) == "table" and p.overrides[t]
  return type(o) == "table" and o[tostring(chat_id)] or nil
end

-- registry.defaults(reg, project_id, target) -> { chat ids } (a copy) | nil (unknown project).
-- target: telegram | feishu (tg, fs); any other raises (a caller's mistake: "both" is two calls).
function M.defaults(reg, project_id, target)
  local t = target_of(target)
  if not t then error("chatgw.notify.registry.defaults: target must be telegram or feishu, got "
    .. tostring(target), 2) end
  local p = project(reg, project_id)
  if not p then return nil end
  local out = {}
  for i, id in ipairs(p[t .. "_chat_ids"] or {}) do out[i] = id end
  return out
end

-- registry.on_demand(reg, project_id) -> { url=, token=, token_env=, window_spec_id= } (a copy;
-- only the keys given) | nil
function M.on_demand(reg, project_id)
  local p = project(reg, project_id)
  if not p or type(p.on_demand) ~= "table" then return nil end
  local out = {}
  for k, v in pairs(p.on_demand) do out[k] = v end
  return out
end

local function array(t)
  if #t == 0 then return json.empty_array end
  local out = {}
  for i, v in ipairs(t) do out[i] = v end
  return out
end

-- registry.list(reg) -> { count, levels, projects = [ { id, telegram_chat_ids, feishu_chat_ids,
--   overrides = { telegram = { chat = LEVEL }, feishu = {...} }, on_demand? }, ... ] (sorted by
--   id), warnings }. on_demand shows url, token_env, window_spec_id and has_token: never a token.
-- Encodes with chatgw.json (empty lists as []); the caller adds the file, hash and load time.
function M.list(reg)
  if type(reg) ~= "table" then reg = M.empty() end
  local all = type(reg.projects) == "table" and reg.projects or {}
  local projects = {}
  for _, id in ipairs(sorted_keys(all)) do
    local p = project(reg, id)
    if p then
      local entry = {
        id = id,
        telegram_chat_ids = array(p.telegram_chat_ids or {}),
        feishu_chat_ids = array(p.feishu_chat_ids or {}),
        overrides = { telegram = {}, feishu = {} },
      }
      for _, t in ipairs(M.TARGETS) do
        local o = type(p.overrides) == "table" and p.overrides[t]
        for chat, level in pairs(type(o) == "table" and o or {}) do entry.overrides[t][chat] = level end
      end
      if type(p.on_demand) == "table" then
        entry.on_demand = { url = p.on_demand.url, token_env = p.on_demand.token_env,
                            window_spec_id = p.on_demand.window_spec_id,
                            has_token = p.on_demand.token ~= nil }
      end
      projects[#projects + 1] = entry
    end
  end
  return {
    count = #projects,
    levels = array(reg.levels or M.DEFAULT_LEVELS),
    projects = array(projects),
    warnings = array(reg.warnings or {}),
  }
end

return M
