-- Specs of handlers/charts.lua: chatgw test handlers tests/handlers/charts_spec.lua
-- gnuplot and the sources are stubbed (t:stub_exec): the gnuplot stub checks the script and the
-- data file it is given, and writes the "PNG" where the script says. Every case runs with
-- chatgw.config.data_dir pointing at a directory of its own (`chatgw test` keeps the
-- deployment's data_dir in chatgw.config), and the last case checks it was left empty.
local DATA = (os.getenv("TMPDIR") or "/tmp"):gsub("/+$", "") .. "/chatgw-charts-spec."
  .. chatgw.crypto.hex(chatgw.crypto.random_bytes(6))
assert(chatgw.fs.mkdir(DATA, 448), "cannot create " .. DATA)

local function case(name, fn)
  test(name, function(t)
    local cfg = chatgw.config
    local old = cfg.data_dir
    cfg.data_dir = DATA
    local ok, err = xpcall(fn, function(e)
      return type(e) == "table" and e or debug.traceback(tostring(e), 2)
    end, t)
    cfg.data_dir = old
    if not ok then error(err, 0) end
  end)
end

local FAKE_PNG = "\137PNG\r\n\26\n" .. string.rep("\0", 24) .. "fake image"

local SCRIPT = table.concat({
  "set terminal pngcairo size 800,480 noenhanced",
  "set output 'chart.png'",
  "set datafile separator ','",
  "set key off",
  "set grid",
  "%s", -- the title line, or nothing
  "plot 'data.csv' using 1:2 with linespoints linewidth 2 pointtype 7",
  "unset output",
}, "\n") .. "\n"

local function expected_script(title)
  if not title then return (SCRIPT:gsub("%%s\n", "")) end
  return (SCRIPT:gsub("%%s", (("set title '%s' noenhanced"):format(title):gsub("%%", "%%%%"))))
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function exists(path) return os.rename(path, path) ~= nil end

-- A gnuplot stub: records what it was given (seen.cwd, seen.stdin, seen.data), then answers
-- `result` (default: exit 0 having written the PNG).
local function stub_gnuplot(t, seen, result)
  t:stub_exec("^gnuplot$", function(opts)
    seen.argv, seen.module, seen.cwd, seen.stdin = opts.argv, opts.module, opts.cwd, opts.stdin
    seen.data = read(opts.cwd .. "/data.csv")
    if result ~= nil then
      local f = assert(io.open(opts.cwd .. "/chart.png", "wb")) -- a half-made file to clean up
      f:write("partial")
      f:close()
      return result
    end
    local f = assert(io.open(opts.cwd .. "/chart.png", "wb"))
    f:write(FAKE_PNG)
    f:close()
    return { code = 0 }
  end)
end

local function check_rendered_in_a_removed_tmp_dir(t, seen)
  local base = DATA .. "/charts-tmp/"
  t:eq(seen.cwd:sub(1, #base), base, "gnuplot ran in a directory under <data_dir>/charts-tmp")
  t:ok(seen.cwd:match("/charts%-tmp/%x+$"), "a random directory name: " .. seen.cwd)
  t:ok(not exists(seen.cwd .. "/data.csv"), "data.csv removed")
  t:ok(not exists(seen.cwd .. "/chart.png"), "chart.png removed")
  t:ok(not exists(seen.cwd), "the temporary directory removed")
end

-- Runs fn with app.charts set to charts (the default config has none), and puts it back.
local function with_charts(charts, fn)
  local app = chatgw.config.app
  local old = app.charts
  app.charts = charts
  local ok, err = pcall(fn)
  app.charts = old
  if not ok then error(err, 0) end
end

case("/chart with numbers renders a PNG and sends it with a caption", function(t)
  local seen = {}
  stub_gnuplot(t, seen)
  local r = t:chat():user():send("/chart 3 5 2 8")
  t:eq(#r, 1, "replies")
  t:eq(r[1].image_bytes, #FAKE_PNG, "the PNG's bytes are sent")
  t:eq(r[1].caption, "4 points, min 2, max 8, last 8")
  t:eq(#t:exec_calls(), 1, "one exec: gnuplot")
  t:eq(seen.module, "charts", "under the charts exec module")
  t:eq(#seen.argv, 1, "gnuplot with no arguments: the script comes on stdin")
  t:eq(seen.stdin, expected_script(nil), "the script is fixed text")
  t:eq(seen.data, "1,3\n2,5\n3,2\n4,8\n", "the data file: numbers it formatted itself")
  check_rendered_in_a_removed_tmp_dir(t, seen)
end)

case("/chart takes a title before the numbers, and commas between them", function(t)
  local seen = {}
  stub_gnuplot(t, seen)
  local r = t:chat():user():send("/chart CPU (%) 10:00/x_y-z 1.5,2e1, -3 ,4")
  t:eq(r[1].image_bytes, #FAKE_PNG, "image")
  t:eq(r[1].caption, "CPU (%) 10:00/x_y-z: 4 points, min -3, max 20, last 4")
  t:eq(seen.stdin, expected_script("CPU (%) 10:00/x_y-z"), "the allowlisted title, single-quoted, noenhanced")
  t:eq(seen.data, "1,1.5\n2,20\n3,-3\n4,4\n", "data")
  check_rendered_in_a_removed_tmp_dir(t, seen)
end)

case("a hostile title never reaches gnuplot: refused, nothing runs", function(t)
  local c = t:chat():user()
  for _, text in ipairs({
    "/chart `touch /tmp/chatgw-pwned` 1 2 3",
    "/chart $(id) 1 2",
    "/chart \"; system('id') 1 2",
    "/chart a'b 1 2",
    "/chart x\\\ny 1 2",
    "/chart " .. string.rep("a", 65) .. " 1 2",
    "/chart титул 1 2",
  }) do
    local r = c:send(text)
    t:eq(#r, 1, "one reply to " .. text)
    t:contains(r[1].text, "A chart title may use only letters, digits, spaces", text)
    t:eq(r[1].image_bytes, nil, "no image")
  end
  t:eq(#t:exec_calls(), 0, "neither gnuplot nor anything else ran")
end)

case("bad input gets the usage or a clear reason, and runs nothing", function(t)
  local c = t:chat():user()
  t:contains(c:send("/chart")[1].text, "Usage: /chart <source> [title], or /chart [title] <numbers>")
  for text, reason in pairs({
    ["/chart 1 nan 3"] = "Not a finite decimal number: nan",
    ["/chart inf"] = "Not a finite decimal number: inf",
    ["/chart 1 -Infinity"] = "Not a finite decimal number: -Infinity",
    ["/chart 1e999"] = "Not a finite decimal number: 1e999",
    ["/chart 0x10 1"] = "Not a finite decimal number: 0x10",
    ["/chart 1 2 three"] = "Not a finite decimal number: three",
    ["/chart 1,,2,x"] = "Not a finite decimal number: x",
    ["/chart mem"] = "Unknown source 'mem'.",
    ["/chart just words"] = "No numbers to chart.",
  }) do
    local r = c:send(text)
    t:eq(#r, 1, "one reply to " .. text)
    t:contains(r[1].text, reason, text)
    t:contains(r[1].text, "Usage: /chart", text)
  end
  local many = {}
  for i = 1, 10001 do many[i] = tostring(i % 10) end
  t:contains(c:send("/chart " .. table.concat(many, ","))[1].text, "Too many points: at most 10000.")
  t:eq(#t:exec_calls(), 0, "nothing ran")
end)

case("10,000 points are fine", function(t)
  local seen = {}
  stub_gnuplot(t, seen)
  local many = {}
  for i = 1, 10000 do many[i] = tostring(i % 7) end
  local r = t:chat():user():send("/chart " .. table.concat(many, ","))
  t:eq(r[1].image_bytes, #FAKE_PNG, "image")
  t:contains(r[1].caption, "10000 points, min 0, max 6")
  local _, lines = seen.data:gsub("\n", "")
  t:eq(lines, 10000, "data lines")
end)

case("a configured source: its argv runs as given, its CSV is charted", function(t)
  with_charts({ sources = { cpu = { argv = { "/usr/local/bin/cpu-csv", "--last", 3, "$(id);`id`" },
                                    title = "CPU (%)" } } }, function()
    local seen = {}
    t:stub_exec("cpu%-csv", { code = 0, stdout = "time,cpu\r\n1,2\r\n\r\n2, 5\n 3 ,4.25\n" })
    stub_gnuplot(t, seen)
    local r = t:chat():user():send("/chart cpu")
    t:eq(r[1].image_bytes, #FAKE_PNG, "image")
    t:eq(r[1].caption, "CPU (%): 3 points, min 2, max 5, last 4.25")
    local calls = t:exec_calls()
    t:eq(#calls, 2, "the source, then gnuplot")
    t:eq(chatgw.json.encode(calls[1].argv), '["/usr/local/bin/cpu-csv","--last","3","$(id);`id`"]',
         "argv as configured: no shell added")
    t:eq(calls[1].module, "charts", "the source runs under the charts module too")
    t:eq(seen.data, "1,2\n2,5\n3,4.25\n", "the data file")
    t:eq(seen.stdin, expected_script("CPU (%)"), "script")
    check_rendered_in_a_removed_tmp_dir(t, seen)

    -- a title in the message wins; the source's name is the default title
    t:eq(t:chat():user():send("/chart cpu load now")[1].caption, "load now: 3 points, min 2, max 5, last 4.25")
    t:contains(t:chat():user():send("/chart cpu $(id)")[1].text, "A chart title may use only")
  end)
  with_charts({ sources = { mem = { argv = { "mem-csv" } } } }, function()
    t:stub_exec("^mem%-csv$", { stdout = "1,10\n" })
    stub_gnuplot(t, {})
    t:eq(t:chat():user():send("/chart mem")[1].caption, "mem: 1 point, min 10, max 10, last 10")
    t:contains(t:chat():user():send("/chart")[1].text, "Sources: mem")
  end)
end)

case("a source that fails, times out or prints junk gets a clear reply; gnuplot never runs", function(t)
  with_charts({ sources = {
      bad = { argv = { "bad-src" } }, slow = { argv = { "slow-src" }, timeout_ms = 500 },
      junk = { argv = { "junk-src" } }, empty = { argv = { "empty-src" } },
      big = { argv = { "big-src" } }, broken = { argv = "bad-src --all" } } }, function()
    t:stub_exec("^bad%-src$", { code = 3, stderr = "no such metric" })
    t:stub_exec("^slow%-src$", "timeout: the command ran longer than 500 ms")
    t:stub_exec("^junk%-src$", { stdout = "x,y\n1,2\n2,`touch /tmp/pwned`\n" })
    t:stub_exec("^empty%-src$", { stdout = "x,y\n" })
    local big = {}
    for i = 1, 10001 do big[i] = i .. ",1" end
    t:stub_exec("^big%-src$", { stdout = table.concat(big, "\n") })
    local c = t:chat():user()
    t:eq(c:send("/chart bad")[1].text, "The source 'bad' failed (exit status 3).")
    t:eq(c:send("/chart slow")[1].text, "The source 'slow' timed out.")
    t:eq(c:send("/chart junk")[1].text, "The source 'junk' gave a bad line 3 (expected x,y numbers).")
    t:eq(c:send("/chart empty")[1].text, "The source 'empty' gave no data.")
    t:eq(c:send("/chart big")[1].text, "The source 'big' gave too many points: at most 10000.")
    t:contains(c:send("/chart broken")[1].text, "The source 'broken' is not configured right")
    for _, call in ipairs(t:exec_calls()) do
      t:ok(call.argv[1] ~= "gnuplot", "gnuplot did not run")
    end
  end)
end)

case("a gnuplot failure gets a clear reply and leaves no temp file", function(t)
  local seen = {}
  stub_gnuplot(t, seen, { code = 1, stderr = "line 0: ')' expected" })
  local r = t:chat():user():send("/chart 1 2 3")
  t:eq(#r, 1, "replies")
  t:eq(r[1].text, "Rendering the chart failed (gnuplot exit status 1).")
  t:eq(r[1].image_bytes, nil, "no image")
  check_rendered_in_a_removed_tmp_dir(t, seen)
end)

case("a gnuplot timeout gets a clear reply and leaves no temp file", function(t)
  local seen = {}
  stub_gnuplot(t, seen, "timeout: the command ran longer than 120000 ms")
  local r = t:chat():user():send("/chart 1 2 3")
  t:eq(r[1].text, "Rendering the chart timed out.")
  check_rendered_in_a_removed_tmp_dir(t, seen)
end)

case("gnuplot that exits 0 without an image gets a clear reply", function(t)
  local seen = {}
  t:stub_exec("^gnuplot$", function(opts) seen.cwd = opts.cwd return { code = 0 } end)
  t:eq(t:chat():user():send("/chart 1 2")[1].text, "Rendering the chart failed (gnuplot made no image).")
  t:ok(not exists(seen.cwd), "the temporary directory removed")
end)

case("busy and spawn failures of gnuplot", function(t)
  local n = 0
  t:stub_exec("^gnuplot$", function()
    n = n + 1
    if n == 1 then return "busy: 1000 calls are waiting" end
    return "spawn: gnuplot: no such file or directory"
  end)
  local c = t:chat():user()
  t:eq(c:send("/chart 1 2")[1].text, "Charts are busy right now; try again in a minute.")
  t:eq(c:send("/chart 1 2")[1].text, "Charts are not available: gnuplot could not be started.")
end)

case("/help lists /chart with its description", function(t)
  t:contains(t:chat():user():send("/help")[1].text,
             "/chart - draw a chart: /chart <source> or /chart [title] <numbers>")
end)

case("no temporary file or directory is left behind", function(t)
  t:ok(exists(DATA .. "/charts-tmp"), "charts-tmp was made under data_dir")
  t:ok(os.remove(DATA .. "/charts-tmp"), "charts-tmp is empty (rmdir succeeds)")
  t:ok(os.remove(DATA), "the spec's data dir is empty")
end)
