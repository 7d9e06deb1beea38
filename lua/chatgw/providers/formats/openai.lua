-- chatgw.providers.formats.openai: the OpenAI chat completions wire format, spoken by openai,
-- deepseek, groq, mistral, xai and any OpenAI-compatible server (vLLM, LM Studio, ...).
--   POST {base}/chat/completions, Authorization: Bearer <key>
--   {model, messages:[{role, content}], temperature, max_tokens, stream}
--   -> {choices:[{message:{content}, finish_reason}], usage:{prompt_tokens, completion_tokens}}
--   stream: SSE `data: {"choices":[{"delta":{"content":...}}]}` ... `data: [DONE]`
--   errors {"error":{"message","type","code"}}; GET {base}/models -> {data:[{id}]}
local json = require "chatgw.json"
local stream = require "chatgw.providers.stream"

local type, tonumber = type, tonumber

local M = {}

-- Presets known to take stream_options (usage in the last chunk); an unknown server may not.
local STREAM_USAGE = { openai = true, deepseek = true, groq = true, xai = true, grok = true }

function M.chat_request(p, a)
  local messages = {}
  if a.system then messages[1] = { role = "system", content = a.system } end
  for _, m in ipairs(a.messages) do messages[#messages + 1] = { role = m.role, content = m.content } end
  local body = { model = a.model, messages = messages, max_tokens = a.max_tokens, temperature = a.temperature }
  if a.stream then
    body.stream = true
    if STREAM_USAGE[p.name] then body.stream_options = { include_usage = true } end
  end
  local headers = { Authorization = p.api_key and ("Bearer " .. p.api_key) or nil }
  return { url = p.base_url .. "/chat/completions", headers = headers, json = body }
end

local function usage_of(u)
  if type(u) ~= "table" then return nil end
  return { input_tokens = tonumber(u.prompt_tokens), output_tokens = tonumber(u.completion_tokens) }
end

function M.parse(j)
  local c = type(j) == "table" and type(j.choices) == "table" and j.choices[1]
  local msg = type(c) == "table" and c.message
  if type(msg) ~= "table" then return nil, "protocol: no choices[0].message in the answer" end
  local text = msg.content
  if text == json.null or text == nil then text = "" end
  if type(text) ~= "string" then return nil, "protocol: choices[0].message.content is not a string" end
  return { text = text, finish_reason = type(c.finish_reason) == "string" and c.finish_reason or nil,
           usage = usage_of(j.usage) }
end

-- A parser of the stream; out collects finish_reason and usage; emit(delta) for each text.
function M.stream(emit, out)
  return stream.sse(function(_, data)
    if data == "[DONE]" then out.done = true return true end
    local j = json.decode(data)
    if type(j) ~= "table" then return nil, "protocol: a stream event that is not JSON" end
    if j.error ~= nil then
      local e = type(j.error) == "table" and j.error or { message = tostring(j.error) }
      return nil, "upstream: " .. tostring(e.message or e.type or "error in the stream")
    end
    if j.usage and j.usage ~= json.null then out.usage = usage_of(j.usage) end
    local c = type(j.choices) == "table" and j.choices[1]
    if type(c) == "table" then
      local d = type(c.delta) == "table" and c.delta
      if d and type(d.content) == "string" and d.content ~= "" then emit(d.content) end
      if type(c.finish_reason) == "string" then out.finish_reason = c.finish_reason end
    end
    return true
  end)
end

function M.error_message(j, body)
  local e = type(j) == "table" and j.error
  if type(e) == "table" and e.message then return tostring(e.message) end
  if type(e) == "string" then return e end
  if type(j) == "table" and type(j.message) == "string" then return j.message end
  return body and body:sub(1, 200) or nil
end

function M.models_request(p)
  return { url = p.base_url .. "/models", headers = { Authorization = p.api_key and ("Bearer " .. p.api_key) or nil } }
end

function M.parse_models(j)
  local out = {}
  for _, m in ipairs(type(j) == "table" and type(j.data) == "table" and j.data or {}) do
    if type(m) == "table" and type(m.id) == "string" then out[#out + 1] = m.id end
  end
  return out
end

return M
