-- Benchmark handler: the work of one notify call.
-- POST /v1/notify/text  (bearer auth is checked by the runtime: the route is not public)
--   body {"text": "..."} -> 200 {"ok":true,"id":<n>}, n from a shared-dict counter
--   missing/empty/non-string text -> 400 {"ok":false,"error":"text_required"}
-- The runtime has already decoded the JSON body into req.json.
local counters = chatgw.shared("bench_notify")

return {
  routes = {
    ["POST /v1/notify/text"] = function(req)
      local body = req.json
      local text = type(body) == "table" and body.text or nil
      if type(text) ~= "string" or text == "" then
        return 400, { ok = false, error = "text_required" }
      end
      local id = counters:incr("id", 1, 0)
      return { ok = true, id = id }
    end,
  },
}
