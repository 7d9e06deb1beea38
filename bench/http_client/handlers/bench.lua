-- The chatgw side of the outbound HTTP benchmark.
-- GET /bench/http?url=...&total=N&conc=C: C background tasks send N GET requests to url with
-- chatgw.http.request (keep-alive, one process, one loop) and the route answers with the count
-- and the elapsed time. CPU time is read by run.sh from /proc.
return {
  routes = {
    ["GET /bench/http"] = { function(req)
      local url, total, conc = req.query.url, tonumber(req.query.total), tonumber(req.query.conc)
      local next_i, ok, bad, running = 0, 0, 0, conc
      local t0 = chatgw.now()
      for _ = 1, conc do
        chatgw.spawn(function()
          while next_i < total do
            next_i = next_i + 1
            local res = chatgw.http.request{ url = url }
            if res and res.status == 200 and #res.body > 0 then ok = ok + 1 else bad = bad + 1 end
          end
          running = running - 1
        end)
      end
      while running > 0 do chatgw.sleep(2) end
      local secs = (chatgw.now() - t0) / 1000
      return { requests = ok, errors = bad, seconds = secs, rps = ok / secs }
    end, public = true },
  },
}
