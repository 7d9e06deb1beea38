-- http-echo: routes, a shared counter, a timer and an outbound call behind a breaker.
local stats = chatgw.shared("echo")
local upstream = chatgw.breaker { name = "echo-upstream", failures = 3, open_ms = 5000 }

-- Count uptime ticks: started once the handlers are live, stopped on reload.
chatgw.every(1000, function() stats:incr("ticks", 1, 0) end)

return {
  routes = {
    ["GET /ping"] = { function() return "pong" end, public = true },

    ["POST /v1/echo/:id"] = function(req)
      local n = stats:incr("echoes", 1, 0)
      return 201, { id = req.params.id, query = req.query, got = req.json, n = n }
    end,

    ["GET /v1/stats"] = function()
      return { echoes = stats:get("echoes") or 0, ticks = stats:get("ticks") or 0 }
    end,

    -- Calls the configured upstream; a failing upstream opens the breaker (503 at once).
    ["GET /v1/fetch"] = function(req)
      local res, err = upstream:call(function()
        return chatgw.http.request { url = chatgw.config.app.upstream .. "/", timeout_ms = 2000 }
      end)
      if not res then return 503, { ok = false, error = err } end
      return { ok = true, status = res.status, bytes = #res.body }
    end,
  },
}
