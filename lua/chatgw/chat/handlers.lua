-- chatgw.chat.handlers: the chat keys of handler files, checked while they load, and the
-- registry they fill (per state: a reload builds it afresh).
--
--   commands = { "explain", "ask" }  or  { explain = "explain an alert", ... }
--   on_command = function(msg, args) end           required with commands
--   on_message = function(msg) end                 non-command messages addressed to the bot
--   on_callback = function(cb) end                 button presses
--   capability = "alerts.explain"  or  { explain = "alerts.explain", ask = "ai.ask" }
--   channels = { "telegram", "ws" }                where the handler serves (default: everywhere)
--   groups = "all"                                 on_message for every group message
--   edits = true                                   edited messages reach the handler too
local loader = require "chatgw.loader"
local commands = require "chatgw.chat.commands"

local type, pairs, ipairs, tostring, sort = type, pairs, ipairs, tostring, table.sort

local M = {
  commands = {},        -- name -> { handler, description, capability, file, line }
  message_handlers = {},-- { handler entry, ... } in file order
  callback_handlers = {},
  by_name = {},         -- handler name -> entry
}

-- Commands the runtime answers itself unless a handler declares them.
M.BUILTIN = { help = true, start = true, auth = true }

local function is_list(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    n = n + 1
  end
  return n == #t
end

local function list_of_strings(v)
  if type(v) ~= "table" or not is_list(v) then return false end
  for _, s in ipairs(v) do if type(s) ~= "string" or s == "" then return false end end
  return true
end

loader.register_key("commands", function(v)
  if type(v) ~= "table" then return "commands must be a list of names or a table name = description, got " .. type(v) end
  if is_list(v) then
    for i, name in ipairs(v) do
      if not commands.valid_name(name) then
        return ("commands[%d] must be a command name ([A-Za-z0-9_], 1..64), got %s"):format(i, tostring(name))
      end
    end
  else
    for name, desc in pairs(v) do
      if not commands.valid_name(name) then return "command names must match [A-Za-z0-9_] (1..64), got " .. tostring(name) end
      if type(desc) ~= "string" then return "commands." .. name .. ": the description must be a string" end
    end
  end
end)

for _, key in ipairs({ "on_command", "on_message", "on_callback" }) do
  loader.register_key(key, function(v)
    if type(v) ~= "function" then return key .. " must be a function, got " .. type(v) end
  end)
end

loader.register_key("capability", function(v)
  if type(v) == "string" then
    if v == "" then return "capability must not be empty" end
    return nil
  end
  if type(v) ~= "table" then return "capability must be a string or a table command = capability, got " .. type(v) end
  for k, c in pairs(v) do
    if type(k) ~= "string" or type(c) ~= "string" or c == "" then
      return "capability: each entry must be command = \"capability\""
    end
  end
end)

loader.register_key("channels", function(v)
  if not list_of_strings(v) then return "channels must be a list of channel names like { \"telegram\", \"ws\" }" end
end)

loader.register_key("groups", function(v)
  if v ~= "all" and v ~= "mentioned" then return 'groups must be "all" or "mentioned", got ' .. tostring(v) end
end)

loader.register_key("edits", function(v)
  if type(v) ~= "boolean" then return "edits must be a boolean, got " .. type(v) end
end)

local function set_of(list)
  if not list then return nil end
  local s = {}
  for _, x in ipairs(list) do s[x] = true end
  return s
end

-- The whole file: keys that go together, and commands no other file declares.
loader.register_check(function(mod, ctx)
  local has_chat = mod.commands or mod.on_command or mod.on_message or mod.on_callback
  if not has_chat then
    for _, k in ipairs({ "capability", "channels", "groups", "edits" }) do
      if mod[k] ~= nil then ctx.problem(loader.key_line(ctx, k), k .. " needs commands, on_message or on_callback") end
    end
    return
  end
  if mod.commands and type(mod.on_command) ~= "function" then
    ctx.problem(loader.key_line(ctx, "commands"), "commands needs an on_command function")
  end
  if mod.on_command and not mod.commands then
    ctx.problem(loader.key_line(ctx, "on_command"), "on_command needs a commands list")
  end
  if type(mod.commands) ~= "table" then mod.commands = nil end
  local entry = { name = ctx.name, file = ctx.file, mod = mod, channels = set_of(type(mod.channels) == "table" and mod.channels or nil),
                  groups = mod.groups or "mentioned", edits = mod.edits == true }
  M.by_name[entry.name] = entry
  local cap = mod.capability
  local names = {}
  if mod.commands then
    if is_list(mod.commands) then
      for _, n in ipairs(mod.commands) do names[#names + 1] = { n:lower(), "" } end
    else
      for n, d in pairs(mod.commands) do names[#names + 1] = { n:lower(), d } end
      sort(names, function(a, b) return a[1] < b[1] end)
    end
  end
  if type(cap) == "table" then
    local lowered = {}
    for k, v in pairs(cap) do lowered[k:lower()] = v end
    cap = lowered
    local declared = {}
    for _, n in ipairs(names) do declared[n[1]] = true end
    for k in pairs(cap) do
      if not declared[k:lower()] then
        ctx.problem(loader.key_line(ctx, "capability"), "capability." .. k .. ": no such command in commands")
      end
    end
  end
  for _, n in ipairs(names) do
    local name, desc = n[1], n[2]
    local line = loader.line_of(ctx.source, '"' .. name .. '"') or loader.line_of(ctx.source, name)
      or loader.key_line(ctx, "commands")
    local other = M.commands[name]
    if other then
      ctx.problem(line, ("command /%s is already declared by %s:%d"):format(name, other.file, other.line))
    else
      local c = cap
      if type(cap) == "table" then c = cap[name] end
      M.commands[name] = { handler = entry, description = desc, capability = c, file = ctx.file, line = line }
    end
  end
  if type(mod.on_message) == "function" then
    entry.message_capability = type(cap) == "string" and cap or nil
    M.message_handlers[#M.message_handlers + 1] = entry
  end
  if type(mod.on_callback) == "function" then M.callback_handlers[#M.callback_handlers + 1] = entry end
end)

return M
