-- chatgw.providers.stream: incremental parsers for streamed answers, fed the body in chunks
-- cut anywhere (inside a line, inside a UTF-8 character): lines are only read once complete.
--
--   local p = stream.sse(function(event, data) ... end)   -- text/event-stream (WHATWG rules)
--   local p = stream.ndjson(function(line) ... end)       -- one JSON value per line (Ollama)
--   p:feed(chunk) -> true | nil, err     (err: what the callback returned as its error)
--   p:finish()    -> true | nil, err     (a last event or line without its terminator)
--
-- SSE: `event:` names the next event, `data:` lines join with "\n", a blank line dispatches,
-- lines starting with ":" are comments, CRLF, LF and CR all end lines, one space after the
-- colon is dropped. The callback returns nothing to go on, or nil, err to stop.
local find, sub = string.find, string.sub

local M = {}

local Lines = {}
Lines.__index = Lines

-- Calls on_line(line) for each complete line of the chunks; a CR at a chunk's end waits for the
-- next chunk (it may be half of a CRLF).
local function lines(on_line)
  return setmetatable({ buf = "", on_line = on_line }, Lines)
end

function Lines:feed(chunk)
  local buf = self.buf .. chunk
  local pos = 1
  while true do
    local s, e = find(buf, "[\r\n]", pos)
    if not s then break end
    local c = sub(buf, s, s)
    if c == "\r" then
      if s == #buf then break end -- CR last: maybe CRLF split across chunks
      if sub(buf, s + 1, s + 1) == "\n" then e = s + 1 end
    end
    local ok, err = self.on_line(sub(buf, pos, s - 1))
    if ok == nil and err then self.buf = "" return nil, err end
    pos = e + 1
  end
  self.buf = sub(buf, pos)
  return true
end

function Lines:finish()
  local rest = self.buf:gsub("\r$", "")
  self.buf = ""
  if rest ~= "" then return self.on_line(rest) end
  return true
end

function M.sse(on_event)
  local event, data = nil, nil
  local l = lines(function(line)
    if line == "" then
      if data then
        local ev, d = event or "message", data
        event, data = nil, nil
        local ok, err = on_event(ev, d)
        if ok == nil and err then return nil, err end
      end
      event = nil
      return true
    end
    if sub(line, 1, 1) == ":" then return true end
    local colon = find(line, ":", 1, true)
    local field, value = line, ""
    if colon then
      field, value = sub(line, 1, colon - 1), sub(line, colon + 1)
      if sub(value, 1, 1) == " " then value = sub(value, 2) end
    end
    if field == "data" then data = data and (data .. "\n" .. value) or value
    elseif field == "event" then event = value end
    return true
  end)
  local p = { l = l }
  function p.feed(_, chunk) return l:feed(chunk) end
  function p.finish()
    local ok, err = l:feed("\n\n") -- an event at the end without its blank line still counts
    l.buf = ""
    return ok, err
  end
  return p
end

function M.ndjson(on_line)
  local l = lines(function(line)
    if line:find("%S") then return on_line(line) end
    return true
  end)
  return { feed = function(_, chunk) return l:feed(chunk) end, finish = function() return l:finish() end }
end

return M
