-- Specs of handlers/ops.lua: chatgw test handlers tests/handlers/ops_spec.lua
-- The commands are the owner's by policy. So that these cases do not depend on the
-- deployment's config/policy.yml and app: settings, each runs under the policy and the
-- app.ops settings given here (both restored afterwards): user 42 is the owner, user 43 an owner
-- with small output limits, anyone else is refused.
local POLICY = [[
rules:
  - match: { channel: test, user_id: "42" }
    allow: ["*"]
  - match: { channel: test, user_id: "43" }
    allow: ["*"]
    output_limits: { max_lines: 10, max_chars: 300 }
  - match: { capability: [ops.status, ops.logs, ops.ps] }
    allow: []
    deny_message: "Only the owner may use ops commands."
]]

local function case(name, app, fn)
  test(name, function(t)
    t:policy(POLICY)
    t:config("app.ops", app)
    fn(t)
  end)
end

local function owner(t, id) return t:chat():user{ id = id or "42" } end

local function lines(n, prefix)
  local out = {}
  for i = 1, n do out[i] = (prefix or "line ") .. i end
  return table.concat(out, "\n") .. "\n"
end

local function count_lines(s) local _, n = s:gsub("\n", "") return n + 1 end

local PS_OUT = "  PID USER     %CPU %MEM     ELAPSED CMD\n    1 root      0.3  0.1    01:02:03 /sbin/init\n"

case("/ps runs ps through chatgw.exec in the ops module, never a shell", nil, function(t)
  t:stub_exec("^ps$", { code = 0, stdout = PS_OUT })
  local r = owner(t):send("/ps")
  t:eq(#r, 1)
  t:eq(r[1].text, "ps:\n" .. PS_OUT:gsub("\n$", ""))
  local call = t:exec_calls()[1]
  t:eq(call.module, "ops")
  t:eq(table.concat(call.argv, " "), "ps -eo pid,user,%cpu,%mem,etime,cmd --sort=-%cpu")
end)

case("/logs without app.ops.services says which setting to fill", nil, function(t)
  t:contains(owner(t):send("/logs api")[1].text, "app.ops.services")
  t:eq(#t:exec_calls(), 0, "nothing run")
end)

case("/logs <service> [n] runs journalctl for a service on the allowlist", { services = { "api", "worker" } }, function(t)
  t:stub_exec("^journalctl$", function(opts)
    return { code = 0, stdout = "Dec 01 10:00:00 host api[1]: started " .. opts.argv[3] .. " " .. opts.argv[5] .. "\n" }
  end)
  local u = owner(t)
  local r = u:send("/logs api 20")
  t:eq(r[1].text, "logs of api (last 20 lines):\nDec 01 10:00:00 host api[1]: started api 20")
  t:eq(table.concat(t:exec_calls()[1].argv, " "), "journalctl -u api -n 20 --no-pager")
  t:eq(t:exec_calls()[1].module, "ops")
  u:send("/logs worker")
  t:eq(t:exec_calls()[2].argv[5], "50", "n defaults to 50")
end)

case("/logs refuses services off the list and a bad n, running nothing", { services = { "api" } }, function(t)
  t:stub_exec("^journalctl$", { code = 0, stdout = "x\n" })
  local u = owner(t)
  t:eq(u:send("/logs sshd")[1].text, "/logs: sshd is not on the list of services (app.ops.services): api.")
  t:eq(u:send("/logs api;reboot")[1].text, "/logs: api;reboot is not on the list of services (app.ops.services): api.")
  t:contains(u:send("/logs api 5 more")[1].text, "Usage: /logs <service> [n]")
  t:contains(u:send("/logs api 0")[1].text, "n must be a whole number from 1 to 500")
  t:contains(u:send("/logs api 501")[1].text, "n must be a whole number from 1 to 500")
  t:contains(u:send("/logs api ten")[1].text, "n must be a whole number from 1 to 500")
  t:contains(u:send("/logs")[1].text, "Usage: /logs <service> [n]")
  t:eq(#t:exec_calls(), 0, "nothing run")
  u:send("/logs api 500")
  t:eq(#t:exec_calls(), 1, "500 is allowed")
end)

case("configured argv with {service} and {n}", { services = { "api" }, logs_argv = { "/usr/bin/tail", "-n", "{n}", "/var/log/{service}.log" },
                                                ps_argv = { "/bin/ps", "aux" } }, function(t)
  t:stub_exec("tail", { code = 0, stdout = "a\n" })
  t:stub_exec("/bin/ps", { code = 0, stdout = "b\n" })
  local u = owner(t)
  u:send("/logs api 7")
  u:send("/ps")
  t:eq(table.concat(t:exec_calls()[1].argv, " "), "/usr/bin/tail -n 7 /var/log/api.log")
  t:eq(table.concat(t:exec_calls()[2].argv, " "), "/bin/ps aux")
end)

case("output over the limits is clipped with a note of how much was cut", { services = { "api" } }, function(t)
  t:stub_exec("^ps$", { code = 0, stdout = lines(200) })
  t:stub_exec("^journalctl$", { code = 0, stdout = lines(200) })
  local u = owner(t, "43") -- 10 lines, 300 characters
  local ps = u:send("/ps")[1].text
  t:eq(ps, "ps:\n" .. lines(8):gsub("\n$", "") .. "\n… (192 more lines cut)")
  local logs = u:send("/logs api 200")[1].text
  t:ok(count_lines(logs) <= 10, "within max_lines")
  t:contains(logs, "… (192 earlier lines cut)\nline 193\n")
  t:ok(logs:sub(-8) == "line 200", "the newest lines are kept")
  -- default limits (60 lines, 6000 characters)
  local big = owner(t):send("/ps")[1].text
  t:eq(count_lines(big), 60)
  t:contains(big, "line 58\n… (142 more lines cut)")
end)

case("a long line is cut by characters, and the note says how many", nil, function(t)
  t:stub_exec("^ps$", { code = 0, stdout = string.rep("x", 1000) .. "\n" })
  local text = owner(t, "43"):send("/ps")[1].text
  local n = select(2, text:gsub("[^\128-\191]", ""))
  t:ok(n <= 300, "within max_chars, got " .. n)
  t:contains(text, "characters cut)")
  t:ok(not text:find("truncated", 1, true), "not cut again by the runtime")
end)

case("a failing command, a timeout and a missing program get clear replies", { services = { "api" } }, function(t)
  local u = owner(t)
  t:stub_exec("^journalctl$", { code = 1, stdout = "", stderr = "Failed to add filter for units: No data available\n" })
  t:eq(u:send("/logs api")[1].text, "logs of api (last 50 lines): journalctl exited with code 1:\nFailed to add filter for units: No data available")
  t:stub_exec("^ps$", "timeout: the call ran past 60000 ms")
  t:contains(owner(t):send("/ps")[1].text, "ps: ps did not finish in time and was stopped")
end)

case("a program that cannot be started", nil, function(t)
  t:stub_exec("^ps$", "spawn: ps: no such file or directory")
  t:eq(owner(t):send("/ps")[1].text, "ps: could not run ps (spawn: ps: no such file or directory).")
end)

case("/status shows the version, channels, outboxes, providers, breakers, loops and exec", nil, function(t)
  local r = owner(t):send("/status")
  t:eq(#r, 1)
  local text = r[1].text
  if os.getenv("SHOW_STATUS") then io.stderr:write(text, "\n") end
  t:contains(text, "chatgw " .. chatgw.version .. ", up ")
  t:contains(text, "\nChannels:\n")
  t:contains(text, "  test:default: ok")
  t:contains(text, "\nBreakers: ")
  t:contains(text, "\nLoops: ")
  t:contains(text, "\nExec: ")
  t:ok(text:find("AI providers", 1, true), "providers")
end)

case("ops is for the owner only", { services = { "api" } }, function(t)
  local u = t:chat():user{ id = "7" }
  for _, cmd in ipairs({ "/status", "/ps", "/logs api" }) do
    t:eq(u:send(cmd)[1].text, "Only the owner may use ops commands.", cmd)
  end
  t:eq(#t:exec_calls(), 0, "nothing run")
end)
