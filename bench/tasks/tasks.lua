-- wrk script of the tasks benchmark (bench/tasks/run.sh): POST /v1/tasks, every request with a
-- new task_id, so each one is a real task (store claim, model call, stored answer), never a
-- cached answer. Ids are "<BENCH_TASK_PREFIX>-<thread>-<counter>"; run.sh gives every wrk run a
-- prefix of its own (a random part and the run's name), so ids never repeat in one chatgw.
--   BENCH_TOKEN=... BENCH_TASK_PREFIX=... wrk -s bench/tasks/tasks.lua http://127.0.0.1:PORT/v1/tasks
-- BENCH_TASK_LIMIT=N (optional): the thread stops after N answers and ends the run at once
-- (SIGINT to wrk's main thread, which then prints its summary; wrk -d is only a cap). Use -t1.
-- Prints bench/wrk/common.lua's BENCH line, then
--   TASKS notok=N cached=N
-- notok: answers 200 whose body lacks "ok":true (e.g. llm_failed); cached: answers marked
-- "cached":true (an id seen before). Both must be 0.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "../wrk/common.lua") -- bench_auth, and done() printing the BENCH line

local prefix = os.getenv("BENCH_TASK_PREFIX")
if not prefix or prefix == "" then error("BENCH_TASK_PREFIX is not set") end

local limit = tonumber(os.getenv("BENCH_TASK_LIMIT") or "")

-- Ends the whole run (not only this thread): wrk's main thread sleeps for -d, or until a signal.
local function end_run()
  wrk.thread:stop()
  local ok, ffi = pcall(require, "ffi") -- wrk embeds LuaJIT
  if not ok then return end
  pcall(ffi.cdef, "int getpid(void); long syscall(long number, ...); int kill(int pid, int sig);")
  local pid = ffi.C.getpid()
  local tgkill = ({ x64 = 234, arm64 = 131 })[ffi.arch]
  if tgkill then -- to the main thread itself (tid = pid), so that its sleep ends
    ffi.C.syscall(tgkill, ffi.cast("long", pid), ffi.cast("long", pid), ffi.cast("long", 2))
  else
    ffi.C.kill(pid, 2)
  end
end

local threads = {}
local next_id = 1
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  threads[#threads + 1] = thread
end

local path, headers, head
local n, answers = 0, 0
notok, cached = 0, 0

function init(args)
  path = wrk.path
  headers = { ["Authorization"] = bench_auth, ["Content-Type"] = "application/json" }
  head = '{"task_id":"' .. prefix .. "-" .. tostring(tid) .. "-"
end

function request()
  n = n + 1
  return wrk.format("POST", path, headers,
    head .. n .. '","stage":"analyze","prompt":"why?","context":{"k":"v"}}')
end

function response(status, hdrs, body)
  answers = answers + 1
  if limit and answers == limit then end_run() end
  if status == 200 then
    if not body:find('"ok":true', 1, true) then
      notok = notok + 1
      if notok <= 3 then io.stderr:write("not ok: " .. body:sub(1, 300) .. "\n") end
    end
    if body:find('"cached":true', 1, true) then cached = cached + 1 end
  end
end

local bench_done = done
function done(summary, latency, requests)
  bench_done(summary, latency, requests)
  local bad, hit = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (tonumber(t:get("notok")) or 0)
    hit = hit + (tonumber(t:get("cached")) or 0)
  end
  io.write(string.format("TASKS notok=%d cached=%d\n", bad, hit))
end
