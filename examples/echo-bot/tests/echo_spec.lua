-- Specs of the echo bot: chatgw test examples/echo-bot/handlers
test("/echo repeats the text", function(t)
  local r = t:chat():user():send("/echo hello there")
  t:eq(#r, 1, "replies")
  t:eq(r[1].text, "hello there")
end)

test("/echo without text explains itself", function(t)
  t:eq(t:chat():user():send("/echo")[1].text, "Usage: /echo <text>")
end)

test("/count counts words", function(t)
  t:eq(t:chat():user():send("/count one two  three")[1].text, "3 words")
end)

test("plain messages are echoed in private chats", function(t)
  t:eq(t:chat():user():send("hi")[1].text, "You said: hi")
end)

test("in a group only when mentioned", function(t)
  local g = t:group()
  local u = g:user{ name = "Bob" }
  t:eq(#u:send("chatter"), 0, "no reply to chatter")
  t:eq(u:send("hello bot", { mentioned = true })[1].text, "You said: hello bot")
end)

test("replies quote the message in groups", function(t)
  local r = t:group():user():send("/echo quoted", { mentioned = true })
  t:ok(r[1].reply_to ~= nil, "quoted")
end)
