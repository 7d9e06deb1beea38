-- Plain-Lua checks for lua/chatgw/notify/cidr.lua: network parsing, address matching and the
-- notify listener's built-in internal list. Run from the repo root: luajit tests/lua/cidr_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path

local spec = require "spec_helper"
local check = spec.check
local globals_before = spec.strict_globals()
local cidr = require "chatgw.notify.cidr"

-- parse: accepted networks and their canonical text
local good = {
  { "10.0.0.0/8", "10.0.0.0/8", 4, 8 },
  { "192.168.1.5", "192.168.1.5/32", 4, 32 },
  { "0.0.0.0/0", "0.0.0.0/0", 4, 0 },
  { "255.255.255.255", "255.255.255.255/32", 4, 32 },
  { "10.1.2.3/8", "10.0.0.0/8", 4, 8 },               -- host bits cleared
  { "172.31.255.255/12", "172.16.0.0/12", 4, 12 },
  { "::1/128", "::1/128", 6, 128 },
  { "::1", "::1/128", 6, 128 },
  { "::/0", "::/0", 6, 0 },
  { "fc00::/7", "fc00::/7", 6, 7 },
  { "FE80::/10", "fe80::/10", 6, 10 },
  { "fe80:0:0:0:0:0:0:0/10", "fe80::/10", 6, 10 },
  { "2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1/128", 6, 128 },   -- the first longest run
  { "2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1/128", 6, 128 }, -- a single 0 is not "::"
  { "1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0/128", 6, 128 },
  { "::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8/128", 6, 128 },
  { "0001:0002::", "1:2::/128", 6, 128 },
  { "::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104", 6, 104 },
  { "::FFFF:1.2.3.4", "::ffff:1.2.3.4/128", 6, 128 },
  { "64:ff9b::10.0.0.1/96", "64:ff9b::/96", 6, 96 },
  { "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304/128", 6, 128 },
  { "fd12:3456:789a:1::/64", "fd12:3456:789a:1::/64", 6, 64 },
}
for _, g in ipairs(good) do
  local n, err = cidr.parse(g[1])
  check("parse " .. g[1], n and n.text == g[2] and n.family == g[3] and n.prefix == g[4],
        n and (n.text .. " family " .. n.family .. " prefix " .. n.prefix) or err)
end
check("tostring(net) is its text", tostring(cidr.parse("10.0.0.0/8")) == "10.0.0.0/8")
check("an IPv4 /n is the mapped /96+n", cidr.parse("10.0.0.0/8").bits == 104)

local bad = {
  "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/08",
  "10.0.0.0/8/8", "10.0.0.0/ 8", " 10.0.0.0/8", "10.0.0.0/8 ", "10.0.0", "10.0.0.0.0", "10.0.0.256",
  "256.0.0.0", "010.0.0.1", "10.00.0.1", "1.2.3.04", "0x0a.0.0.0", "10.0.0.a", "1e1.0.0.0",
  "167772161", "10..0.1", "localhost", "::ffff:10.0.0.0/8x", ":::", "1:::2", "1::2::3", ":1::", "1::2:",
  ":", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8",
  "12345::", "g::1", "::ffff:1.2.3", "::ffff:1.2.3.256", "::1.2.3.4:5", "1.2.3.4::",
  "1:2:3:4:5:6:7:1.2.3.4", "fe80::1%eth0", "fe80::%eth0/10", "[::1]", "[::1]/128", "::1 ", "١.2.3.4",
}
for _, t in ipairs(bad) do
  local n, err = cidr.parse(t)
  check("reject " .. ("%q"):format(t), n == nil and type(err) == "string", n and n.text)
end
local _, e = cidr.parse("010.0.0.1")
check("leading zeros: the error says why", e and e:find("'010.0.0.1'", 1, true) and e:find("leading zeros", 1, true), e)
_, e = cidr.parse("10.0.0.0/33")
check("prefix error names the range", e and e:find("0..32", 1, true), e)
_, e = cidr.parse("::/129")
check("IPv6 prefix error names the range", e and e:find("0..128", 1, true), e)
check("a non-string is an error, not a raise", select(2, cidr.parse(nil)) ~= nil and select(2, cidr.parse(10)) ~= nil)

-- list
local nets, lerr = cidr.list({ "10.0.0.0/8", "fd00::/8" })
check("list parses each", nets and #nets == 2 and nets[2].text == "fd00::/8", lerr)
nets, lerr = cidr.list({ "10.0.0.0/8", "10.0.0.999/8", "x" })
check("list names the bad entry", nets == nil and lerr:find("entry 2", 1, true) and lerr:find("10.0.0.999/8", 1, true), lerr)
check("list of a single string", #cidr.list("127.0.0.1") == 1)
check("empty list", #cidr.list({}) == 0)
check("list of a non-table is an error", cidr.list(nil) == nil and cidr.list(5) == nil)

-- is_internal: the built-in list
local cases = {
  { "127.0.0.1", true }, { "127.255.255.254", true }, { "128.0.0.1", false }, { "126.255.255.255", false },
  { "::1", true }, { "[::1]", true }, { "0:0:0:0:0:0:0:1", true }, { "::2", false }, { "::", false },
  { "10.0.0.0", true }, { "10.255.255.255", true }, { "11.0.0.1", false }, { "9.255.255.255", false },
  { "172.15.255.255", false }, { "172.16.0.0", true }, { "172.31.255.255", true }, { "172.32.0.0", false },
  { "192.168.0.1", true }, { "192.168.255.255", true }, { "192.169.0.1", false }, { "192.167.255.255", false },
  { "100.63.255.255", false }, { "100.64.0.0", true }, { "100.127.255.255", true }, { "100.128.0.0", false },
  { "169.254.1.1", true }, { "169.253.255.255", false }, { "169.255.0.0", false },
  { "fc00::", true }, { "fd12::1", true }, { "FD12::1", true }, { "fbff:ffff::1", false }, { "fe00::1", false },
  { "fe80::1", true }, { "fe80::1%lo", true }, { "fe80::1%eth0", true }, { "[fe80::1%eth0]", true },
  { "febf:ffff::1", true }, { "fec0::1", false },
  { "::ffff:192.168.1.1", true }, { "::ffff:127.0.0.1", true }, { "::FFFF:10.1.2.3", true },
  { "::ffff:c0a8:101", true }, { "::ffff:8.8.8.8", false }, { "::ffff:172.15.255.255", false },
  { "::192.168.1.1", false }, -- IPv4-compatible, not mapped
  { "2001:db8::1", false }, { "2606:4700::1111", false }, { "8.8.8.8", false }, { "1.1.1.1", false },
  { "0.0.0.0", false }, { "255.255.255.255", false },
  { "localhost", false }, { "", false }, { "010.0.0.1", false }, { "10.0.0.1/32", false },
  { "10.0.0.256", false }, { "10.0.0.1%eth0", false }, { "[10.0.0.1]", false }, { "[::1", false },
  { "::1]", false }, { "fe80::1%", false }, { "fe80::1%eth 0", false }, { "%eth0", false },
  { " 127.0.0.1", false }, { "127.0.0.1\n", false }, { "127.0.0.1:8080", false }, { "::ffff:127.0.0.1%lo", true },
}
for _, c in ipairs(cases) do
  local ok, got = pcall(cidr.is_internal, c[1])
  check(("is_internal '%s' -> %s"):format(c[1]:gsub("\n", "\\n"), tostring(c[2])), ok and got == c[2], ok and tostring(got) or got)
end
local odd = { 127, true, {}, function() end }
for i = 1, #odd do
  local v = odd[i]
  local ok, got = pcall(cidr.is_internal, v)
  check("is_internal of a " .. type(v) .. " is false, no raise", ok and got == false)
end
check("is_internal(nil) is false", cidr.is_internal(nil) == false)

-- INTERNAL is the documented list
local texts = {}
for i, n in ipairs(cidr.INTERNAL) do texts[i] = n.text end
check("INTERNAL", table.concat(texts, " ") ==
  "127.0.0.0/8 ::1/128 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 169.254.0.0/16 fc00::/7 fe80::/10",
  table.concat(texts, " "))

-- contains with a custom list (notify.allow_cidrs replaces the built-in list)
local custom = assert(cidr.list({ "203.0.113.0/24", "2001:db8:1::/48", "::ffff:198.51.100.0/120" }))
check("custom: IPv4 in", cidr.contains(custom, "203.0.113.77"))
check("custom: mapped form of an IPv4 net", cidr.contains(custom, "::ffff:203.0.113.1"))
check("custom: IPv4 out", not cidr.contains(custom, "203.0.114.1"))
check("custom: IPv6 in", cidr.contains(custom, "2001:db8:1:ffff::5"))
check("custom: IPv6 out", not cidr.contains(custom, "2001:db8:2::5"))
check("custom: an IPv6-written IPv4 net matches the IPv4 address", cidr.contains(custom, "198.51.100.9"))
check("custom: replaces the built-ins", not cidr.is_internal("127.0.0.1", custom))
check("is_internal with nets", cidr.is_internal("203.0.113.5", custom))
check("empty list contains nothing", not cidr.contains({}, "127.0.0.1"))
check("contains accepts a single net", cidr.contains(cidr.parse("10.0.0.0/8"), "10.9.9.9"))
check("nets not a table: false", cidr.contains(nil, "10.0.0.1") == false)
check("0.0.0.0/0 covers IPv4 only", cidr.contains(cidr.list("0.0.0.0/0"), "8.8.8.8")
  and cidr.contains(cidr.list("0.0.0.0/0"), "::ffff:8.8.8.8") and not cidr.contains(cidr.list("0.0.0.0/0"), "2001:db8::1"))
check("::/0 covers everything", cidr.contains(cidr.list("::/0"), "8.8.8.8") and cidr.contains(cidr.list("::/0"), "2001:db8::1"))
check("/32 host", cidr.contains(cidr.list("192.168.1.5"), "192.168.1.5") and not cidr.contains(cidr.list("192.168.1.5"), "192.168.1.6"))
check("odd prefix /7 boundary", cidr.contains(cidr.list("fc00::/7"), "fdff:ffff::1") and not cidr.contains(cidr.list("fc00::/7"), "fe00::"))
check("/31 boundary", cidr.contains(cidr.list("10.0.0.2/31"), "10.0.0.3") and not cidr.contains(cidr.list("10.0.0.2/31"), "10.0.0.4"))
check("/127 boundary", cidr.contains(cidr.list("::4/127"), "::5") and not cidr.contains(cidr.list("::4/127"), "::6"))

-- address: canonical text
local addrs = {
  { "10.1.2.3", "10.1.2.3", 4 }, { "FE80::1%eth0", "fe80::1", 6 }, { "[::1]", "::1", 6 },
  { "::FFFF:10.1.2.3", "::ffff:10.1.2.3", 6 }, { "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1", 6 },
  { "1:0:0:2:0:0:0:3", "1:0:0:2::3", 6 }, { "0:0:0:0:0:0:0:0", "::", 6 },
}
for _, a in ipairs(addrs) do
  local t, fam = cidr.address(a[1])
  check("address " .. a[1], t == a[2] and fam == a[3], tostring(t))
end
check("address of garbage is nil", cidr.address("localhost") == nil and cidr.address(nil) == nil)

-- no globals created
local leaked = {}
for k in pairs(_G) do if not globals_before[k] then leaked[#leaked + 1] = tostring(k) end end
check("no globals created", #leaked == 0, table.concat(leaked, ", "))

spec.report()
