-- chatgw.notify.cidr: IP networks and the notify listener's "internal only" check. Pure Lua 5.1 /
-- LuaJIT; no requires.
--
--   local cidr = require "chatgw.notify.cidr"
--   local net, err = cidr.parse("10.0.0.0/8")          -- also "::1/128", "fc00::/7", "192.168.1.5"
--   local nets, err = cidr.list({ "10.0.0.0/8", "fd00::/8" })   -- err names the bad entry
--   cidr.contains(nets, "10.1.2.3")                     -- true/false, never raises on addr
--   cidr.is_internal(peer_addr [, nets])                -- nets default cidr.INTERNAL
--   cidr.address("FE80::1%eth0")                        -- "fe80::1": canonical text, or nil
--
-- Addresses and networks are kept as 16 bytes: an IPv4 address a.b.c.d is the IPv4-mapped
-- ::ffff:a.b.c.d and an IPv4 /n is the IPv6 /96+n, so "10.0.0.0/8" and "::ffff:10.0.0.0/104"
-- are the same network, and a peer given as ::ffff:10.1.2.3 (a dual-stack socket's view of an
-- IPv4 client) is matched by the IPv4 networks. ::10.1.2.3 (the deprecated IPv4-compatible form)
-- is not IPv4. A net that covers ::ffff:0:0/96 (::/0 for instance) covers every IPv4 address too.
--
-- What is accepted (strictly; anything else is rejected, never guessed at):
-- * IPv4: four dotted decimal octets 0..255. An octet with a leading zero ("010.0.0.1",
--   "1.2.3.00") is REJECTED: inet_aton() reads it as octal (010 = 8) while others read decimal,
--   so it cannot be given one meaning safely. No shorthand forms ("10.1", "167772161", hex).
-- * IPv6: eight groups of 1..4 hex digits (either case), one "::" standing for one or more zero
--   groups, an optional dotted IPv4 tail in place of the last two groups ("::ffff:1.2.3.4",
--   "64:ff9b::10.0.0.1").
-- * A network: an address, optionally "/" and a decimal prefix (0..32 for IPv4 syntax, 0..128
--   for IPv6; no sign, no leading zeros). No prefix means a host (/32, /128). Host bits set
--   ("10.1.2.3/8") are allowed and cleared: the net is 10.0.0.0/8 (net.text says so).
--   No zone and no brackets in a network.
-- * An address given to contains()/is_internal()/address() may also be in brackets ("[::1]")
--   and carry a zone ("fe80::1%eth0"): the zone is dropped (IPv6 only; the zone is letters,
--   digits, ".", "_", "-"). Anything unparseable ("localhost", "", nil, "10.0.0.1/32") is simply
--   not contained.
--
-- A net is { family = 4|6, prefix = n (as written, in its family), bits = n (of the 128),
-- bytes = { 16 numbers, host bits zero }, text = canonical "a.b.c.d/n" or RFC 5952 "x::y/n" };
-- tostring(net) is its text.

local M = {}

local find, sub, match, format = string.find, string.sub, string.match, string.format
local tonumber, type, ipairs = tonumber, type, ipairs
local floor = math.floor
local concat = table.concat

-- "a.b.c.d" -> { a, b, c, d } or nil.
local function parse_v4(s)
  local a, b, c, d = match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local out = {}
  local parts = { a, b, c, d }
  for i = 1, 4 do
    local p = parts[i]
    if #p > 3 or (#p > 1 and sub(p, 1, 1) == "0") then return nil end
    local n = tonumber(p)
    if n > 255 then return nil end
    out[i] = n
  end
  return out
end

-- Groups of one side of "::" (or of a whole address): a list of 16-bit numbers, or nil.
-- allow_v4: the last field may be a dotted IPv4 address (two groups).
local function parse_groups(part, allow_v4, out)
  if part == "" then return out end
  local pos, len = 1, #part
  while true do
    local colon = find(part, ":", pos, true)
    local field = sub(part, pos, colon and colon - 1 or len)
    if not colon and allow_v4 and find(field, ".", 1, true) then
      local q = parse_v4(field)
      if not q then return nil end
      out[#out + 1] = q[1] * 256 + q[2]
      out[#out + 1] = q[3] * 256 + q[4]
      return out
    end
    if not match(field, "^%x%x?%x?%x?$") then return nil end -- also catches an empty field
    out[#out + 1] = tonumber(field, 16)
    if not colon then return out end
    pos = colon + 1
  end
end

-- "x:y::z" -> 16 bytes, or nil.
local function parse_v6(s)
  if s == "" or #s > 45 then return nil end -- 45: the longest text form (with an IPv4 tail)
  local head, tail = s, nil
  local dc = find(s, "::", 1, true)
  if dc then
    if find(s, "::", dc + 1, true) then return nil end -- a second "::", or ":::"
    head, tail = sub(s, 1, dc - 1), sub(s, dc + 2)
  end
  local h = parse_groups(head, tail == nil, {})
  if not h then return nil end
  local groups = h
  if tail ~= nil then
    local t = parse_groups(tail, true, {})
    if not t then return nil end
    local zeros = 8 - #h - #t
    if zeros < 1 then return nil end -- "::" stands for at least one group
    groups = {}
    for i = 1, #h do groups[#groups + 1] = h[i] end
    for _ = 1, zeros do groups[#groups + 1] = 0 end
    for i = 1, #t do groups[#groups + 1] = t[i] end
  elseif #h ~= 8 then
    return nil
  end
  local bytes = {}
  for i = 1, 8 do
    local g = groups[i]
    bytes[2 * i - 1] = floor(g / 256)
    bytes[2 * i] = g % 256
  end
  return bytes
end

local function mapped(q)
  return { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, q[1], q[2], q[3], q[4] }
end

local function is_mapped(b)
  for i = 1, 10 do if b[i] ~= 0 then return false end end
  return b[11] == 255 and b[12] == 255
end

-- RFC 5952 text of 16 bytes (IPv4-mapped shown as ::ffff:a.b.c.d).
local function format_v6(b)
  if is_mapped(b) then
    return format("::ffff:%d.%d.%d.%d", b[13], b[14], b[15], b[16])
  end
  local g = {}
  for i = 1, 8 do g[i] = b[2 * i - 1] * 256 + b[2 * i] end
  -- the longest run of two or more zero groups (the first of equal runs) becomes "::"
  local best, best_len, i = nil, 1, 1
  while i <= 8 do
    if g[i] == 0 then
      local j = i
      while j < 8 and g[j + 1] == 0 do j = j + 1 end
      if j - i + 1 > best_len then best, best_len = i, j - i + 1 end
      i = j + 1
    else
      i = i + 1
    end
  end
  local function hex(from, to)
    local t = {}
    for k = from, to do t[#t + 1] = format("%x", g[k]) end
    return concat(t, ":")
  end
  if not best then return hex(1, 8) end
  return hex(1, best - 1) .. "::" .. hex(best + best_len, 8)
end

-- An address for contains(): 16 bytes and its family, or nil.
local function parse_addr(a)
  if type(a) ~= "string" or a == "" or #a > 80 then return nil end
  local bracketed = false
  if sub(a, 1, 1) == "[" then
    if sub(a, -1) ~= "]" then return nil end
    a, bracketed = sub(a, 2, -2), true
  end
  local pct = find(a, "%", 1, true)
  if pct then
    if not match(sub(a, pct + 1), "^[%w%._%-]+$") then return nil end
    a = sub(a, 1, pct - 1)
    if not find(a, ":", 1, true) then return nil end -- a zone only on IPv6
  end
  if find(a, ":", 1, true) then
    local b = parse_v6(a)
    if b then return b, 6 end
    return nil
  end
  if bracketed then return nil end
  local q = parse_v4(a)
  if q then return mapped(q), 4 end
  return nil
end

local Net = {}
Net.__index = Net
Net.__tostring = function(n) return n.text end

-- cidr.parse(text) -> net | nil, err
function M.parse(text)
  if type(text) ~= "string" then return nil, "expected a string, got " .. type(text) end
  local shown = format("'%s'", #text > 60 and sub(text, 1, 60) .. "..." or text)
  local addr, plen = match(text, "^([^/]*)/(.*)$")
  if not addr then addr = text end
  if find(addr, "[%%%[%]]") then return nil, shown .. ": no zone or brackets in a network" end
  local family, bytes = 4, nil
  if find(addr, ":", 1, true) then
    family, bytes = 6, parse_v6(addr)
    if not bytes then return nil, shown .. ": not a valid IPv6 address" end
  else
    local q = parse_v4(addr)
    if not q then
      return nil, shown .. ": not a valid IPv4 address (four decimal octets 0..255, no leading zeros)"
    end
    bytes = mapped(q)
  end
  local max = family == 4 and 32 or 128
  local prefix = max
  if plen then
    if not match(plen, "^%d+$") or (#plen > 1 and sub(plen, 1, 1) == "0") or tonumber(plen) > max then
      return nil, format("%s: the prefix must be a number 0..%d", shown, max)
    end
    prefix = tonumber(plen)
  end
  local bits = family == 4 and prefix + 96 or prefix
  local full, rem = floor(bits / 8), bits % 8
  if rem > 0 then
    local d = 2 ^ (8 - rem)
    bytes[full + 1] = floor(bytes[full + 1] / d) * d
    full = full + 1
  end
  for i = full + 1, 16 do bytes[i] = 0 end
  local t
  if family == 4 then
    t = format("%d.%d.%d.%d/%d", bytes[13], bytes[14], bytes[15], bytes[16], prefix)
  else
    t = format_v6(bytes) .. "/" .. prefix
  end
  return setmetatable({ family = family, prefix = prefix, bits = bits, bytes = bytes, text = t }, Net)
end

-- cidr.list(texts) -> nets | nil, "entry <i> ('<text>'): <why>". A single string is a list of one.
function M.list(texts)
  if type(texts) == "string" then texts = { texts } end
  if type(texts) ~= "table" then return nil, "expected a list of networks, got " .. type(texts) end
  local nets = {}
  for i, t in ipairs(texts) do
    local n, err = M.parse(t)
    if not n then return nil, format("entry %d: %s", i, err) end
    nets[i] = n
  end
  return nets
end

local function in_net(n, b)
  local bits = n.bits
  local nb = n.bytes
  local full = floor(bits / 8)
  for i = 1, full do
    if b[i] ~= nb[i] then return false end
  end
  local rem = bits % 8
  if rem > 0 then
    local d = 2 ^ (8 - rem)
    if floor(b[full + 1] / d) ~= floor(nb[full + 1] / d) then return false end
  end
  return true
end

-- cidr.contains(nets, addr) -> boolean. nets: a list from cidr.list (or one net from cidr.parse).
function M.contains(nets, addr)
  local b = parse_addr(addr)
  if not b or type(nets) ~= "table" then return false end
  if getmetatable(nets) == Net then return in_net(nets, b) end
  for _, n in ipairs(nets) do
    if in_net(n, b) then return true end
  end
  return false
end

-- cidr.address(addr) -> canonical text ("10.1.2.3", "fe80::1", "::ffff:10.1.2.3"), family | nil
function M.address(addr)
  local b, family = parse_addr(addr)
  if not b then return nil end
  if family == 4 then return format("%d.%d.%d.%d", b[13], b[14], b[15], b[16]), 4 end
  return format_v6(b), 6
end

M.INTERNAL_TEXT = {
  "127.0.0.0/8", "::1/128",                          -- loopback
  "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",   -- RFC 1918
  "100.64.0.0/10",                                   -- RFC 6598 shared (CGNAT, Tailscale)
  "169.254.0.0/16",                                  -- IPv4 link-local
  "fc00::/7",                                        -- unique local
  "fe80::/10",                                       -- IPv6 link-local
}
M.INTERNAL = assert(M.list(M.INTERNAL_TEXT))

-- cidr.is_internal(addr [, nets]) -> boolean
function M.is_internal(addr, nets)
  return M.contains(nets or M.INTERNAL, addr)
end

return M
