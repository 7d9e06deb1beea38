-- The outbox benchmark's driver (bench/outbox/run.sh):
--   GET /bench/outbox?n=20000&chats=200&producers=50
-- producers tasks accept n messages (chatgw.chat.send on the test channel, round robin over
-- chats), each accept timed; then waits until every one is delivered to the sink. Answers the
-- counts, the accept latency percentiles and the elapsed times.
local function pct(sorted, p) return sorted[math.max(1, math.ceil(#sorted * p))] end

local function pending()
  local rows = chatgw.db.query([[SELECT count(*) AS n FROM chat_outbox WHERE channel = 'test'
    AND status IN ('queued', 'sending')]])
  return rows and rows[1] and rows[1].n or -1
end

local function count(status)
  local rows = chatgw.db.query("SELECT count(*) AS n FROM chat_outbox WHERE channel = 'test' AND status = ?", status)
  return rows and rows[1] and rows[1].n or -1
end

return {
  routes = {
    ["GET /bench/outbox"] = function(req)
      local n = tonumber(req.query.n) or 20000
      local chats = tonumber(req.query.chats) or 200
      local producers = tonumber(req.query.producers) or 50
      local delivered0 = count("delivered")
      local lat, next_i, done, failed = {}, 0, 0, 0
      local t0 = chatgw.now()
      for _ = 1, producers do
        chatgw.spawn(function()
          while next_i < n do
            next_i = next_i + 1
            local i = next_i
            local a = chatgw.now()
            local h = chatgw.chat.send{ channel = "test", chat_id = "c" .. (i % chats), text = "message " .. i }
            lat[#lat + 1] = (chatgw.now() - a) * 1000 -- µs
            if not h then failed = failed + 1 end
            done = done + 1
          end
        end)
      end
      while done < n do chatgw.sleep(5) end
      local accept_ms = chatgw.now() - t0
      local deadline = chatgw.now() + 120000
      while pending() > 0 and chatgw.now() < deadline do chatgw.sleep(20) end
      local total_ms = chatgw.now() - t0
      table.sort(lat)
      local delivered = count("delivered") - delivered0
      return { n = n, chats = chats, producers = producers, failed = failed, delivered = delivered,
               accept_ms = accept_ms, total_ms = total_ms, msgs_per_s = delivered / (total_ms / 1000),
               accept_p50_us = pct(lat, 0.5), accept_p99_us = pct(lat, 0.99), accept_max_us = lat[#lat] }
    end,
  },
}
