-- chatgw.audit.iso (epoch <-> ISO-8601 in UTC) and the query filters' time parsing.
-- Run from the repo root: luajit tests/lua/audit_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path
local spec = require "spec_helper"
local check = spec.check
local iso = require "chatgw.audit.iso"

print("# format")
check("the epoch", iso.format(0) == "1970-01-01T00:00:00.000Z", iso.format(0))
check("a time with ms", iso.format(1714564800.25) == "2024-05-01T12:00:00.250Z", iso.format(1714564800.25))
check("a leap day", iso.format(951782400) == "2000-02-29T00:00:00.000Z", iso.format(951782400))
check("the end of a year", iso.format(1704067199.999) == "2023-12-31T23:59:59.999Z", iso.format(1704067199.999))

print("# parse")
check("Z", iso.parse("2024-05-01T12:00:00Z") == 1714564800)
check("a date alone is midnight UTC", iso.parse("2024-05-01") == 1714521600)
check("no seconds", iso.parse("2024-05-01T12:00Z") == 1714564800)
check("a fraction", iso.parse("2024-05-01T12:00:00.5Z") == 1714564800.5)
check("an offset", iso.parse("2024-05-01T20:00:00+08:00") == 1714564800)
check("a negative offset without colon", iso.parse("2024-05-01T07:00:00-0500") == 1714564800)
check("a space for T", iso.parse("2024-05-01 12:00:00Z") == 1714564800)
check("no zone is UTC", iso.parse("2024-05-01T12:00:00") == 1714564800)
for _, bad in ipairs({ "", "yesterday", "2024-13-01", "2024-02-30", "2024-05-01T25:00:00Z", "2024-05-01T12:00:00+8",
                       "2024-05-01X", "12345-01-01" }) do
  check("refused: " .. bad, iso.parse(bad) == nil)
end
for t = -86400 * 400, 86400 * 20000, 86400 * 37 + 3671 do
  if iso.parse(iso.format(t)) ~= t then check("round trip " .. t, false, iso.format(t)) break end
end
check("round trips over 55 years", true)

print("# since")
check("epoch seconds", iso.since("1714564800") == 1714564800)
check("epoch with a fraction", iso.since("1714564800.5") == 1714564800.5)
check("ISO", iso.since("2024-05-01T12:00:00Z") == 1714564800)
check("refused: -1", iso.since("-1") == nil)
check("refused: 1e9", iso.since("1e9") == nil)
check("refused: a table", iso.since({}) == nil)

spec.report()
