-- chatgw.chat.commands: a message's command, as every channel writes it.
--
--   M.parse("/Explain@MyBot  why is it red?", "mybot")
--     -> { name = "explain", args = "why is it red?", argv = { "why", "is", "it", "red?" },
--          bot = "MyBot", for_other_bot = false }
--
-- A command is "/" and 1..64 of [A-Za-z0-9_] at the very start of the text, then "@botname" or
-- nothing, then whitespace or the end. The name is lower-cased; "/cmd@otherbot" is a command
-- for another bot (for_other_bot: the dispatcher ignores it). Without a known bot username any
-- "@name" is taken as ours.
local M = {}

local find, lower, sub, gmatch = string.find, string.lower, string.sub, string.gmatch

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

function M.split(args)
  local argv = {}
  for w in gmatch(args, "%S+") do argv[#argv + 1] = w end
  return argv
end

function M.parse(text, bot_username)
  if type(text) ~= "string" or sub(text, 1, 1) ~= "/" then return nil end
  local s, e, name = find(text, "^/([%w_]+)")
  if not s or #name > 64 then return nil end
  local rest = sub(text, e + 1)
  local bot
  local bs, be, b = find(rest, "^@([%w_]+)")
  if bs then
    bot = b
    rest = sub(rest, be + 1)
  end
  if rest ~= "" and not find(rest, "^%s") then return nil end -- "/cmd-x", "/cmd.x": not a command
  local args = trim(rest)
  local for_other = bot ~= nil and bot_username ~= nil and bot_username ~= ""
    and lower(bot) ~= lower(bot_username)
  return { name = lower(name), args = args, argv = M.split(args), bot = bot, for_other_bot = for_other }
end

-- Command names as handlers declare them: 1..64 of [a-z0-9_] (any case is accepted and lowered).
function M.valid_name(name)
  return type(name) == "string" and #name >= 1 and #name <= 64 and name:match("^[%w_]+$") ~= nil
end

return M
