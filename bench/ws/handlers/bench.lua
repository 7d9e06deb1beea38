-- bench/ws: the fan-out benchmark's one method. The sender's params come back as the payload of
-- an event to every connected client with role "node" (encoded once, see runtime/ws.c).
local broadcast = chatgw.ws.broadcast
local to_nodes = { role = "node" }

return {
  methods = {
    ["bench.broadcast"] = function(conn, params)
      broadcast("bench", params, to_nodes)
    end,
  },
}
