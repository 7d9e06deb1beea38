-- Benchmark routes for bench/exec/run.sh.
--   GET /bench/exec?n=2000[&conc=64][&module=m][&cmd=/bin/true]  n chatgw.exec calls, timed
--   GET /bench/latency?mode=idle|sleep|burn&ms=5000    lateness of a chatgw.every(10) timer
--       while nothing / 8 sleeping children / 8 CPU-burning children run
local function stats(samples)
  table.sort(samples)
  local n, sum = #samples, 0
  for _, v in ipairs(samples) do sum = sum + v end
  local function pct(p) return samples[math.max(1, math.ceil(n * p))] end
  return { ticks = n, mean_ms = sum / n, p50_ms = pct(0.50), p99_ms = pct(0.99), max_ms = samples[n] }
end

return {
  routes = {
    -- conc workers (default 64) share the n calls: at most conc calls wait at once, so the
    -- bounded wait queue (CHAT_GATEWAY_EXEC_QUEUE_MAX, 1000) is never what limits the run
    ["GET /bench/exec"] = function(req)
      local n = tonumber(req.query.n) or 2000
      local conc = tonumber(req.query.conc) or 64
      local argv = { req.query.cmd or "/bin/true" }
      local module = req.query.module
      local next_i, done, failed, errors = 0, 0, 0, {}
      local t0 = chatgw.now()
      for _ = 1, conc do
        chatgw.spawn(function()
          while next_i < n do
            next_i = next_i + 1
            local r, err = chatgw.exec{ argv = argv, module = module }
            if not r or r.code ~= 0 then
              failed = failed + 1
              errors[err or "exit " .. tostring(r.code)] = true
            end
            done = done + 1
          end
        end)
      end
      while done < n do chatgw.sleep(2) end
      local ms = chatgw.now() - t0
      local e = {}
      for k in pairs(errors) do e[#e + 1] = k end
      return { n = n, conc = conc, failed = failed, errors = e[1] and e or nil, elapsed_ms = ms,
               per_second = n / (ms / 1000), module = module or "default" }
    end,
    ["GET /bench/latency"] = function(req)
      local mode = req.query.mode or "idle"
      local dur = tonumber(req.query.ms) or 5000
      local samples, last = {}, chatgw.now()
      local timer = chatgw.every(10, function()
        local now = chatgw.now()
        samples[#samples + 1] = now - last - 10
        last = now
      end)
      local running = 0
      if mode ~= "idle" then
        local argv = mode == "sleep" and { "/bin/sleep", tostring(dur / 1000 + 5) }
                                      or { "/bin/sh", "-c", "while :; do :; done" }
        for _ = 1, 8 do
          running = running + 1
          chatgw.spawn(function()
            chatgw.exec{ argv = argv, module = "bench", timeout_ms = dur } -- killed at the end
            running = running - 1
          end)
        end
      end
      chatgw.sleep(dur)
      timer:cancel()
      while running > 0 do chatgw.sleep(10) end
      table.remove(samples, 1)
      local s = stats(samples)
      s.mode = mode
      return s
    end,
  },
}
