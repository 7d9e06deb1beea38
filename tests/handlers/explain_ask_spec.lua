-- Specs of handlers/explain.lua and handlers/ask.lua: chatgw test handlers tests/handlers
-- (the model is stubbed: an OpenAI-compatible answer from DeepSeek, the default provider).
local function answer(text)
  return function(opts)
    local j = opts.json or {}
    local body = { choices = { { message = { role = "assistant", content = text }, finish_reason = "stop" } },
                   usage = { prompt_tokens = 5, completion_tokens = 3 } }
    if j.stream then
      return { status = 200, headers = { ["content-type"] = "text/event-stream" },
        body = "data: " .. chatgw.json.encode({ choices = { { delta = { content = text } } } }) .. "\n\n"
          .. "data: " .. chatgw.json.encode({ choices = { { delta = {}, finish_reason = "stop" } } }) .. "\n\ndata: [DONE]\n\n" }
    end
    return { status = 200, json = body }
  end
end

test("/explain <text> streams a facts-only answer", function(t)
  t:stub_http("POST .*/chat/completions", answer("Disk usage crossed 90%."))
  local r = t:chat():user():send("/explain disk alert on db-1")
  t:eq(#r, 1, "one message")
  t:eq(r[1].text, "Disk usage crossed 90%.")
  local call = t:http_calls()[1]
  t:contains(call.json.messages[1].content, "Facts-only")
  t:contains(call.json.messages[2].content, "PROMPT:\ndisk alert on db-1")
end)

test("/explain as a reply takes the replied text as context", function(t)
  t:stub_http("POST .*/chat/completions", answer("It restarted."))
  local c = t:chat()
  local u = c:user()
  local m = u:send("/ask what is up?")[1]
  local r = u:send("/explain", { reply_to = m })
  t:eq(r[#r].text, "It restarted.")
  local calls = t:http_calls()
  t:contains(calls[#calls].json.messages[2].content, "replied_text")
end)

test("/explain without text or reply explains itself", function(t)
  t:contains(t:chat():user():send("/explain")[1].text, "Usage: /explain")
end)

test("/ask remembers the conversation, /reset forgets it", function(t)
  t:stub_http("POST .*/chat/completions", answer("Paris."))
  local u = t:chat():user()
  t:eq(u:send("/ask capital of France?")[1].text, "Paris.")
  u:send("/ask and Italy?")
  local calls = t:http_calls()
  t:eq(#calls[#calls].json.messages, 3, "question, answer, question")
  t:contains(u:send("/reset")[1].text, "afresh")
  u:send("/ask hello")
  calls = t:http_calls()
  t:eq(#calls[#calls].json.messages, 1, "forgotten")
end)

test("a provider failure is said, not hidden", function(t)
  t:stub_http("POST .*/chat/completions", { status = 401, json = { error = { message = "bad key" } } })
  local r = t:chat():user():send("/ask anything")
  t:contains(r[#r].text, "auth")
end)
