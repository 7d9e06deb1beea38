-- An example handler: a public greeting, an authenticated echo, and a counter kept in a
-- shared dictionary (it survives reloads).
local hits = chatgw.shared("hello")

return {
  routes = {
    ["GET /hello"] = { function(req)
      return { ok = true, hello = req.query.name or "world" }
    end, public = true },

    ["POST /v1/echo/:id"] = function(req)
      local n = hits:incr("echo", 1, 0)
      return 201, { id = req.params.id, got = req.json, count = n }
    end,
  },
}
