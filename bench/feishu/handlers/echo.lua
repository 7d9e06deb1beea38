-- The Feishu benchmark's bot: every /echo gets its text back.
return {
  commands = { echo = "repeat" },
  on_command = function(msg, args) msg:reply("echo: " .. args) end,
}
