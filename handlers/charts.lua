-- charts: `/chart <source>` or `/chart [title] <numbers>` renders a line chart with gnuplot
-- (Debian package gnuplot-nox) and sends it as a PNG with a caption.
--
--   /chart 3 5 2 8                  the numbers, in order (spaces or commas between them)
--   /chart Latency (ms) 12 15 11    the words before the numbers are the title
--   /chart cpu [title]              the configured source `cpu`
--
-- Sources are commands in the config, run through chatgw.exec (argv only, never a shell); their
-- stdout is CSV, `x,y` lines with an optional header line:
--
--   app:
--     charts:
--       sources:
--         cpu:
--           argv: ["/usr/local/bin/cpu-history", "--csv"]
--           title: "CPU (%)"          # optional; default: the source's name
--           timeout_ms: 10000         # optional; default: the charts module's timeout
--       gnuplot: "gnuplot"            # optional: the program
--       timeout_ms: 30000             # optional: gnuplot's timeout (default: the module's)
--
-- Both the source and gnuplot run under the `charts` exec module: its cap (1 at a time by
-- default, CHAT_GATEWAY_EXEC_MAX_CHARTS) and timeout (CHAT_GATEWAY_EXEC_TIMEOUT_CHARTS_MS).
--
-- Security: gnuplot runs backquoted commands and system(), so no chat text ever goes into its
-- script. The script is fixed text read from stdin; the data is a file of numbers this handler
-- formatted itself (`%.17g` of finite numbers); the title must consist of letters, digits,
-- spaces and - _ . : / ( ) % (at most 64) and is single-quoted, printed noenhanced. Everything
-- lives in a fresh directory under <data_dir>/charts-tmp, removed on every path.

local MAX_POINTS = 10000
local TITLE_MAX = 64
local WIDTH, HEIGHT = 800, 480
local PNG_SIGNATURE = "\137PNG\r\n\26\n"

local USAGE = "Usage: /chart <source> [title], or /chart [title] <numbers>\n"
  .. "e.g. /chart 3 5 2 8, /chart Latency (ms) 12 15 11"

local function settings()
  local app = chatgw.config.app
  local c = type(app) == "table" and app.charts or nil
  return type(c) == "table" and c or {}
end

local function sources()
  local s = settings().sources
  return type(s) == "table" and s or {}
end

local function usage(prefix)
  local names = {}
  for name in pairs(sources()) do names[#names + 1] = tostring(name) end
  table.sort(names)
  local list = #names > 0 and ("\nSources: " .. table.concat(names, ", ")) or ""
  return (prefix and (prefix .. "\n") or "") .. USAGE .. list
end

local function is_name(s) return #s <= 64 and s:match("^[A-Za-z0-9_.-]+$") ~= nil end

local function title_ok(s)
  return #s <= TITLE_MAX and s:match("^[A-Za-z0-9 %-_%.:/()%%]+$") ~= nil
end

local function clip(s) return #s > 32 and (s:sub(1, 32) .. "...") or s end

-- A finite number written in decimal (an exponent allowed), or nil.
local function number(s)
  if not s:match("^[+-]?%d*%.?%d*[eE]?[+-]?%d*$") or not s:match("%d") then return nil end
  local v = tonumber(s)
  if v == nil or v ~= v or v == math.huge or v == -math.huge then return nil end
  return v
end

-- Looks like a number, or like someone meant one (nan, inf, 1e999, 0x10): where the numbers
-- start, and an error there when it does not parse.
local function numberish(tok)
  for piece in tok:gmatch("[^,]+") do
    local l = piece:lower():gsub("^[+-]", "")
    if tonumber(piece) ~= nil or l == "nan" or l == "inf" or l == "infinity" then return true end
  end
  return false
end

local function fmt(v) return ("%.6g"):format(v) end

-- The message's words: the title, then the numbers (spaces or commas between them).
local function parse_message(argv)
  local words, points, i = {}, {}, 1
  while argv[i] and not numberish(argv[i]) do
    words[#words + 1] = argv[i]
    i = i + 1
  end
  for j = i, #argv do
    for piece in argv[j]:gmatch("[^,]+") do
      local v = number(piece)
      if not v then return nil, ("Not a finite decimal number: %s"):format(clip(piece)) end
      if #points >= MAX_POINTS then return nil, ("Too many points: at most %d."):format(MAX_POINTS) end
      points[#points + 1] = { #points + 1, v }
    end
  end
  return table.concat(words, " "), points
end

-- CSV of `x,y` lines, an optional header first; blank lines are skipped.
local function parse_csv(text, name)
  local points, n, seen = {}, 0, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", ""):match("^%s*(.-)%s*$")
    if line ~= "" then
      local a, b = line:match("^([^,]-)%s*,%s*([^,]*)$")
      local x, y = a and number(a), b and number(b)
      if not (x and y) then
        if seen then
          return nil, ("The source '%s' gave a bad line %d (expected x,y numbers)."):format(name, n)
        end -- the first line may be a header
      else
        if #points >= MAX_POINTS then
          return nil, ("The source '%s' gave too many points: at most %d."):format(name, MAX_POINTS)
        end
        points[#points + 1] = { x, y }
      end
      seen = true
    end
  end
  if #points == 0 then return nil, ("The source '%s' gave no data."):format(name) end
  return points
end

local function exec_failure(what, err)
  if err:find("^timeout:") then return what .. " timed out." end
  if err:find("^busy:") then return "Charts are busy right now; try again in a minute." end
  return what .. " could not be run."
end

local function load_source(name, src)
  local argv = type(src) == "table" and src.argv
  local ok = type(argv) == "table" and #argv > 0
  local args = {}
  for i, a in ipairs(ok and argv or {}) do
    if type(a) ~= "string" and type(a) ~= "number" then ok = false break end
    args[i] = tostring(a)
  end
  if not ok then
    chatgw.log.warn("charts: app.charts.sources." .. name .. ".argv must be a list of strings")
    return nil, ("The source '%s' is not configured right (app.charts.sources.%s.argv)."):format(name, name)
  end
  local r, err = chatgw.exec{ argv = args, module = "charts",
                              timeout_ms = type(src.timeout_ms) == "number" and src.timeout_ms or nil }
  if not r then
    chatgw.log.warn("charts: source failed", { source = name, error = err })
    return nil, exec_failure(("The source '%s'"):format(name), err)
  end
  if r.code ~= 0 then
    chatgw.log.warn("charts: source failed", { source = name, code = r.code, stderr = r.stderr:sub(1, 500) })
    return nil, ("The source '%s' failed (exit status %d)."):format(name, r.code)
  end
  if r.truncated then return nil, ("The source '%s' printed too much."):format(name) end
  return parse_csv(r.stdout, name)
end

-- ---- rendering, in a temporary directory that is always removed ----

local function make_dir()
  local base = tostring(chatgw.config.data_dir or "./data"):gsub("/+$", "") .. "/charts-tmp"
  chatgw.fs.mkdir(base, 448) -- 0700; it may exist already
  local dir = base .. "/" .. chatgw.crypto.hex(chatgw.crypto.random_bytes(8))
  local ok, err = chatgw.fs.mkdir(dir, 448)
  if not ok then return nil, err end
  return dir
end

local function remove_dir(dir)
  os.remove(dir .. "/data.csv")
  os.remove(dir .. "/chart.png")
  local ok, err = os.remove(dir)
  if not ok then chatgw.log.warn("charts: could not remove the temporary directory", { error = err }) end
end

local function script(title)
  local terminal = settings().terminal == "png" and "png" or "pngcairo"
  local lines = {
    ("set terminal %s size %d,%d noenhanced"):format(terminal, WIDTH, HEIGHT),
    "set output 'chart.png'",
    "set datafile separator ','",
    "set key off",
    "set grid",
  }
  if title ~= "" then -- allowlisted already; '' is how gnuplot escapes a quote
    lines[#lines + 1] = ("set title '%s' noenhanced"):format(title:gsub("'", "''"))
  end
  lines[#lines + 1] = "plot 'data.csv' using 1:2 with linespoints linewidth 2 pointtype 7"
  lines[#lines + 1] = "unset output"
  return table.concat(lines, "\n") .. "\n"
end

local function render_in(dir, points, title)
  local rows = {}
  for i, p in ipairs(points) do rows[i] = ("%.17g,%.17g"):format(p[1], p[2]) end
  local f = assert(io.open(dir .. "/data.csv", "wb"))
  f:write(table.concat(rows, "\n"), "\n")
  f:close()
  local cfg = settings()
  local r, err = chatgw.exec{ argv = { type(cfg.gnuplot) == "string" and cfg.gnuplot or "gnuplot" },
                              module = "charts", cwd = dir, stdin = script(title),
                              timeout_ms = type(cfg.timeout_ms) == "number" and cfg.timeout_ms or nil }
  if not r then
    chatgw.log.warn("charts: gnuplot failed", { error = err })
    if err:find("^spawn:") then return nil, "Charts are not available: gnuplot could not be started." end
    return nil, exec_failure("Rendering the chart", err)
  end
  if r.code ~= 0 then
    chatgw.log.warn("charts: gnuplot failed", { code = r.code, stderr = r.stderr:sub(1, 500) })
    return nil, ("Rendering the chart failed (gnuplot exit status %d)."):format(r.code)
  end
  local png = io.open(dir .. "/chart.png", "rb")
  local bytes = png and png:read("*a")
  if png then png:close() end
  if not bytes or bytes:sub(1, 8) ~= PNG_SIGNATURE then
    return nil, "Rendering the chart failed (gnuplot made no image)."
  end
  return bytes
end

local function render(points, title)
  local dir, err = make_dir()
  if not dir then
    chatgw.log.error("charts: cannot create a temporary directory", { error = err })
    return nil, "Charts are not available: no temporary directory."
  end
  local ok, png, why = pcall(render_in, dir, points, title)
  remove_dir(dir)
  if not ok then error(png, 0) end
  return png, why
end

local function caption(title, points)
  local lo, hi = math.huge, -math.huge
  for _, p in ipairs(points) do lo, hi = math.min(lo, p[2]), math.max(hi, p[2]) end
  return ("%s%d point%s, min %s, max %s, last %s"):format(title ~= "" and (title .. ": ") or "",
    #points, #points == 1 and "" or "s", fmt(lo), fmt(hi), fmt(points[#points][2]))
end

return {
  commands = { chart = "draw a chart: /chart <source> or /chart [title] <numbers>" },
  capability = { chart = "charts.render" },

  on_command = function(msg)
    local argv = msg.argv
    if #argv == 0 then return msg:reply(usage()) end
    local src = is_name(argv[1]) and sources()[argv[1]] or nil
    local title, points, err
    if src ~= nil then
      title = #argv > 1 and table.concat(argv, " ", 2) or nil
      if not title then
        title = type(src) == "table" and type(src.title) == "string" and title_ok(src.title) and src.title or argv[1]
      end
    else
      title, points = parse_message(argv)
      if not title then return msg:reply(usage(points)) end
      if #points == 0 then
        if #argv == 1 and is_name(argv[1]) then return msg:reply(usage(("Unknown source '%s'."):format(argv[1]))) end
        return msg:reply(usage("No numbers to chart."))
      end
    end
    if title ~= "" and not title_ok(title) then
      return msg:reply(("A chart title may use only letters, digits, spaces and - _ . : / ( ) %%, "
        .. "at most %d characters."):format(TITLE_MAX))
    end
    msg:typing()
    if src ~= nil then
      points, err = load_source(argv[1], src)
      if not points then return msg:reply(err) end
    end
    local png, why = render(points, title)
    if not png then return msg:reply(why) end
    chatgw.log.info("charts: rendered", { points = #points, bytes = #png, source = src ~= nil and argv[1] or nil })
    return msg:reply{ image_bytes = png, caption = caption(title, points) }
  end,
}
