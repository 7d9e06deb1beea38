-- chatgw.providers.formats.anthropic: the Anthropic Messages API.
--   POST {base}/messages, x-api-key, anthropic-version: 2023-06-01
--   {model, max_tokens, system?, messages:[{role: user|assistant, content}], temperature?, stream?}
--   -> {content:[{type:"text", text}], stop_reason, usage:{input_tokens, output_tokens}}
--   stream: SSE events message_start, content_block_start, content_block_delta (text_delta),
--   content_block_stop, message_delta (stop_reason, usage), message_stop, ping, error
--   errors {"type":"error","error":{"type","message"}} (529 overloaded); GET {base}/models
local json = require "chatgw.json"
local stream = require "chatgw.providers.stream"

local type, tonumber, concat = type, tonumber, table.concat

local M = {}

M.VERSION = "2023-06-01"

local function headers(p)
  return { ["x-api-key"] = p.api_key, ["anthropic-version"] = M.VERSION }
end

function M.chat_request(p, a)
  local system, messages = a.system, {}
  for _, m in ipairs(a.messages) do
    if m.role == "system" then -- Anthropic takes the system prompt apart
      system = system and (system .. "\n\n" .. m.content) or m.content
    else
      messages[#messages + 1] = { role = m.role, content = m.content }
    end
  end
  local body = { model = a.model, max_tokens = a.max_tokens, system = system, messages = messages,
                 temperature = a.temperature, stream = a.stream and true or nil }
  return { url = p.base_url .. "/messages", headers = headers(p), json = body }
end

local function usage_of(u, into)
  if type(u) ~= "table" then return into end
  into = into or {}
  into.input_tokens = tonumber(u.input_tokens) or into.input_tokens
  into.output_tokens = tonumber(u.output_tokens) or into.output_tokens
  return into
end

function M.parse(j)
  if type(j) ~= "table" or type(j.content) ~= "table" then return nil, "protocol: no content in the answer" end
  local parts = {}
  for _, c in ipairs(j.content) do
    if type(c) == "table" and c.type == "text" and type(c.text) == "string" then parts[#parts + 1] = c.text end
  end
  return { text = concat(parts), finish_reason = type(j.stop_reason) == "string" and j.stop_reason or nil,
           usage = usage_of(j.usage) }
end

function M.stream(emit, out)
  return stream.sse(function(event, data)
    local j = json.decode(data)
    if type(j) ~= "table" then return nil, "protocol: a stream event that is not JSON" end
    local t = j.type or event
    if t == "content_block_delta" then
      local d = type(j.delta) == "table" and j.delta or {}
      if d.type == "text_delta" and type(d.text) == "string" and d.text ~= "" then emit(d.text) end
    elseif t == "message_start" then
      out.usage = usage_of(type(j.message) == "table" and j.message.usage, out.usage)
    elseif t == "message_delta" then
      local d = type(j.delta) == "table" and j.delta or {}
      if type(d.stop_reason) == "string" then out.finish_reason = d.stop_reason end
      out.usage = usage_of(j.usage, out.usage)
    elseif t == "message_stop" then
      out.done = true
    elseif t == "error" then
      local e = type(j.error) == "table" and j.error or {}
      local code = e.type == "overloaded_error" and "overloaded" or e.type == "rate_limit_error" and "rate_limited"
        or "upstream"
      return nil, ("%s: %s"):format(code, tostring(e.message or e.type or "error in the stream"))
    end
    return true -- ping, content_block_start/stop, and events added later
  end)
end

function M.error_message(j, body)
  local e = type(j) == "table" and j.error
  if type(e) == "table" and e.message then return tostring(e.message) end
  return body and body:sub(1, 200) or nil
end

function M.models_request(p) return { url = p.base_url .. "/models", headers = headers(p) } end

-- {data:[{id}]}, as OpenAI's list
M.parse_models = require("chatgw.providers.formats.openai").parse_models

return M
