-- chatgw.providers.formats.gemini: Google's Gemini generateContent API.
--   POST {base}/models/{model}:generateContent, x-goog-api-key
--   {contents:[{role: user|model, parts:[{text}]}], systemInstruction?, generationConfig?}
--   -> {candidates:[{content:{parts:[{text}]}, finishReason}], usageMetadata}
--   stream: :streamGenerateContent?alt=sse, SSE `data:` events of the same shape
--   errors {"error":{"code","message","status"}} (a bad key: 400 INVALID_ARGUMENT,
--   reason API_KEY_INVALID); GET {base}/models -> {models:[{name: "models/..."}]}
local json = require "chatgw.json"
local stream = require "chatgw.providers.stream"

local type, tonumber, concat = type, tonumber, table.concat

local M = {}

function M.chat_request(p, a)
  local system, contents = a.system, {}
  for _, m in ipairs(a.messages) do
    if m.role == "system" then
      system = system and (system .. "\n\n" .. m.content) or m.content
    else
      contents[#contents + 1] = { role = m.role == "assistant" and "model" or "user", parts = { { text = m.content } } }
    end
  end
  local body = { contents = contents,
    generationConfig = { temperature = a.temperature, maxOutputTokens = a.max_tokens } }
  if system then body.systemInstruction = { parts = { { text = system } } } end
  local url = p.base_url .. "/models/" .. a.model .. (a.stream and ":streamGenerateContent" or ":generateContent")
  return { url = url, query = a.stream and { alt = "sse" } or nil, headers = { ["x-goog-api-key"] = p.api_key },
           json = body }
end

local function usage_of(u)
  if type(u) ~= "table" then return nil end
  return { input_tokens = tonumber(u.promptTokenCount), output_tokens = tonumber(u.candidatesTokenCount) }
end

-- The text of one answer (or stream event), its finish reason, or why there is none.
local function text_of(j)
  local c = type(j.candidates) == "table" and j.candidates[1]
  if type(c) ~= "table" then
    local fb = type(j.promptFeedback) == "table" and j.promptFeedback
    if fb and fb.blockReason then return nil, nil, "bad_request: the prompt was blocked (" .. tostring(fb.blockReason) .. ")" end
    return "", nil
  end
  local parts = {}
  local content = type(c.content) == "table" and c.content or {}
  for _, part in ipairs(type(content.parts) == "table" and content.parts or {}) do
    if type(part) == "table" and type(part.text) == "string" and not part.thought then parts[#parts + 1] = part.text end
  end
  return concat(parts), type(c.finishReason) == "string" and c.finishReason or nil
end

function M.parse(j)
  if type(j) ~= "table" then return nil, "protocol: the answer is not a JSON object" end
  local text, finish, err = text_of(j)
  if not text then return nil, err end
  if type(j.candidates) ~= "table" then return nil, "protocol: no candidates in the answer" end
  return { text = text, finish_reason = finish, usage = usage_of(j.usageMetadata) }
end

function M.stream(emit, out)
  return stream.sse(function(_, data)
    local j = json.decode(data)
    if type(j) ~= "table" then return nil, "protocol: a stream event that is not JSON" end
    if type(j.error) == "table" then
      return nil, "upstream: " .. tostring(j.error.message or j.error.status or "error in the stream")
    end
    local text, finish, err = text_of(j)
    if not text then return nil, err end
    if text ~= "" then emit(text) end
    if finish then out.finish_reason = finish end
    if j.usageMetadata then out.usage = usage_of(j.usageMetadata) end
    return true
  end)
end

-- A bad key is a 400 whose details say API_KEY_INVALID: an auth error, not a bad request.
function M.is_auth_error(status, j)
  local e = type(j) == "table" and type(j.error) == "table" and j.error
  if not e or status ~= 400 then return false end
  for _, d in ipairs(type(e.details) == "table" and e.details or {}) do
    if type(d) == "table" and d.reason == "API_KEY_INVALID" then return true end
  end
  return type(e.message) == "string" and e.message:find("API key not valid", 1, true) ~= nil
end

function M.error_message(j, body)
  local e = type(j) == "table" and j.error
  if type(e) == "table" and e.message then return tostring(e.message) end
  if type(j) == "table" and j[1] and type(j[1].error) == "table" then return tostring(j[1].error.message) end
  return body and body:sub(1, 200) or nil
end

function M.models_request(p)
  return { url = p.base_url .. "/models", headers = { ["x-goog-api-key"] = p.api_key } }
end

function M.parse_models(j)
  local out = {}
  for _, m in ipairs(type(j) == "table" and type(j.models) == "table" and j.models or {}) do
    if type(m) == "table" and type(m.name) == "string" then out[#out + 1] = (m.name:gsub("^models/", "")) end
  end
  return out
end

return M
