-- ws-chat: one room. Messages go to every connection with scope chat.read; the last 50 are
-- kept in a shared dictionary so a reload (or a late joiner) loses nothing.
local history = chatgw.shared("room.history", { max_bytes = 256 * 1024 })
local json = chatgw.json
local KEEP = 50

local function recent()
  local raw = history:get("recent")
  return raw and json.decode(raw) or {}
end

return {
  methods = {
    ["room.send"] = function(conn, params)
      if not conn:has_scope("chat.write") then return nil, "forbidden: chat.write needed" end
      if type(params) ~= "table" or type(params.text) ~= "string" or params.text == "" then
        return nil, "invalid_params: text is required"
      end
      local msg = { from = conn.device or conn.id, text = params.text, at = chatgw.time() }
      local list = recent()
      list[#list + 1] = msg
      while #list > KEEP do table.remove(list, 1) end
      history:set("recent", json.encode(list))
      local n = chatgw.ws.broadcast("room.message", msg, { scope = "chat.read" })
      return { delivered = n }
    end,

    ["room.history"] = function(conn)
      local list = recent()
      return { messages = #list > 0 and list or json.empty_array }
    end,
  },

  on_connect = function(conn)
    conn.data.joined = chatgw.time()
    chatgw.ws.broadcast("room.joined", { who = conn.device or conn.id },
                        { scope = "chat.read", exclude = { conn.id } })
  end,

  on_disconnect = function(conn, code)
    chatgw.ws.broadcast("room.left", { who = conn.device or conn.id, code = code },
                        { scope = "chat.read" })
  end,
}
