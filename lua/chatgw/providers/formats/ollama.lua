-- chatgw.providers.formats.ollama: Ollama's chat API (no key).
--   POST {base}/api/chat {model, messages, stream, options:{temperature, num_predict}}
--   -> {message:{content}, done:true, done_reason, prompt_eval_count, eval_count}
--   stream (its default): NDJSON lines {message:{content}, done:false} ... {done:true, ...};
--   an error is {"error":"..."} (a line mid-stream, or the body with a 4xx/5xx)
--   GET {base}/api/tags -> {models:[{name}]}
local json = require "chatgw.json"
local stream = require "chatgw.providers.stream"

local type, tonumber = type, tonumber

local M = {}

function M.chat_request(p, a)
  local messages = {}
  if a.system then messages[1] = { role = "system", content = a.system } end
  for _, m in ipairs(a.messages) do messages[#messages + 1] = { role = m.role, content = m.content } end
  -- stream is always said: Ollama streams unless told not to
  local body = { model = a.model, messages = messages, stream = a.stream and true or false,
                 options = { temperature = a.temperature, num_predict = a.max_tokens } }
  return { url = p.base_url .. "/api/chat", json = body }
end

local function usage_of(j)
  return { input_tokens = tonumber(j.prompt_eval_count), output_tokens = tonumber(j.eval_count) }
end

function M.parse(j)
  if type(j) ~= "table" or type(j.message) ~= "table" then return nil, "protocol: no message in the answer" end
  local text = j.message.content
  if type(text) ~= "string" then return nil, "protocol: message.content is not a string" end
  return { text = text, finish_reason = type(j.done_reason) == "string" and j.done_reason or nil, usage = usage_of(j) }
end

function M.stream(emit, out)
  return stream.ndjson(function(line)
    local j = json.decode(line)
    if type(j) ~= "table" then return nil, "protocol: a stream line that is not JSON" end
    if j.error ~= nil then return nil, "upstream: " .. tostring(j.error) end
    local m = type(j.message) == "table" and j.message
    if m and type(m.content) == "string" and m.content ~= "" then emit(m.content) end
    if j.done == true then
      out.done = true
      out.finish_reason = type(j.done_reason) == "string" and j.done_reason or out.finish_reason
      out.usage = usage_of(j)
    end
    return true
  end)
end

function M.error_message(j, body)
  if type(j) == "table" and j.error ~= nil then return tostring(j.error) end
  return body and body:sub(1, 200) or nil
end

function M.models_request(p) return { url = p.base_url .. "/api/tags" } end

function M.parse_models(j)
  local out = {}
  for _, m in ipairs(type(j) == "table" and type(j.models) == "table" and j.models or {}) do
    if type(m) == "table" and type(m.name) == "string" then out[#out + 1] = m.name end
  end
  return out
end

return M
