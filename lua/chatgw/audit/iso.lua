-- chatgw.audit.iso: epoch seconds <-> ISO-8601 in UTC, without os.time (which reads the local
-- time zone). Pure: tests/lua/audit_spec.lua runs it.
--
--   iso.format(1714564800.25)          --> "2024-05-01T12:00:00.250Z"
--   iso.parse("2024-05-01T12:00:00Z")  --> 1714564800   (also "+08:00" offsets, fractions,
--                                          a date alone, and a space instead of "T")
--   iso.since("1714564800")            --> 1714564800   (epoch seconds, or ISO) | nil
local floor, tonumber = math.floor, tonumber

local M = {}

-- days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local DAYS_IN = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

function M.format(t)
  local ms = floor(t * 1000 + 0.5)
  local s = floor(ms / 1000)
  ms = ms - s * 1000
  local days = floor(s / 86400)
  local rem = s - days * 86400
  local y, m, d = civil_from_days(days)
  return ("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"):format(y, m, d, floor(rem / 3600), floor(rem % 3600 / 60),
    rem % 60, ms)
end

function M.parse(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > DAYS_IN[mo] then return nil end
  local h, mi, sec, frac, zone = 0, 0, 0, 0, "Z"
  if rest ~= "" then
    local hh, mm, tail = rest:match("^[T ](%d%d):(%d%d)(.*)$")
    if not hh then return nil end
    h, mi = tonumber(hh), tonumber(mm)
    local ss, tail2 = tail:match("^:(%d%d)(.*)$")
    if ss then sec, tail = tonumber(ss), tail2 end
    local f, tail3 = tail:match("^[.,](%d+)(.*)$")
    if f then frac, tail = tonumber("0." .. f), tail3 end
    zone = tail
    if h > 23 or mi > 59 or sec > 60 then return nil end
  end
  local offset = 0
  if zone ~= "Z" and zone ~= "z" and zone ~= "" then -- none: UTC
    local sign, oh, om = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec + frac - offset
end

-- A `since` parameter: epoch seconds (digits, an optional fraction) or ISO-8601. nil: invalid.
function M.since(s)
  if type(s) ~= "string" then return nil end
  if s:match("^%d+$") or s:match("^%d+%.%d+$") then return tonumber(s) end
  return M.parse(s)
end

return M
