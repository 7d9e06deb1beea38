-- webchat: serves a chat page at GET / (public: it holds no secret) and answers its messages.
-- The page (page.html, next to this file) connects to the ws path with a token the user types.

-- This file's directory, from the chunk name loadfile gave it ("@/path/to/webchat.lua").
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local f, err = io.open(dir .. "page.html", "rb")
if not f then error("cannot read the page next to webchat.lua: " .. err) end
local page = f:read("*a"):gsub("{{WS_PATH}}", chatgw.config.ws.path)  -- read once per (re)load
f:close()

return {
  routes = {
    ["GET /"] = { function()
      return 200, page, { ["Content-Type"] = "text/html; charset=utf-8",
                          ["Cache-Control"] = "no-store" }
    end, public = true },
  },

  commands = { echo = "repeat the text", count = "count to n, streamed (default 3)" },

  on_command = function(msg, args)
    if msg.command == "echo" then
      if args == "" then return msg:reply("Usage: /echo <text>") end
      return msg:reply{ text = args, buttons = { { { text = "Again", data = "again" } } } }
    end
    local n = math.min(tonumber(msg.argv[1]) or 3, 10)
    local s = msg:stream()            -- the ws channel gets the finished text as one message
    for i = 1, n do
      s:write((i > 1 and " " or "") .. i)
      chatgw.sleep(100)
    end
    s:finish()
  end,

  on_message = function(msg) msg:reply("You said: " .. msg.text) end,

  on_callback = function(cb)         -- the "Again" button of /echo: the pressed message's text
    if cb.data == "again" then cb:reply("again: " .. cb.message.text) end
  end,
}
