-- Plain-Lua checks for lua/chatgw/chat/split.lua (splitting a long message into parts).
-- Run from the repo root: luajit tests/lua/split_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path

local spec = require "spec_helper"
local check = spec.check

-- The module must create no global and read none that does not exist: _G is strict from here
-- to the end (the spec's own names are locals too).
local globals_before = spec.strict_globals()

local split = require "chatgw.chat.split"

local code_points = spec.code_points

local function valid_utf8(s)
  for _, cp in ipairs(code_points(s)) do
    if cp[2] < 0 then return false end
  end
  return true
end

local function units(s, unit)
  local n = 0
  for _, cp in ipairs(code_points(s)) do
    n = n + (unit == "bytes" and cp[3] or (unit == "utf16" and cp[2] >= 0x10000) and 2 or 1)
  end
  return n
end

local function starts_with(s, p) return s:sub(1, #p) == p end
local function ends_with(s, p) return p == "" or s:sub(-#p) == p end

-- The text back from parts and cuts: strip each added close and reopen, join with the seps.
-- Also returns the byte offsets in text where the parts were cut (after each sep).
local function restore(parts, cuts)
  if #cuts ~= #parts - 1 then return nil, "cuts: " .. #cuts .. " for " .. #parts .. " parts" end
  local out, offsets, len = {}, {}, 0
  for i, part in ipairs(parts) do
    local head = cuts[i - 1] and cuts[i - 1].reopen or ""
    local tail = cuts[i] and cuts[i].close or ""
    if not starts_with(part, head) or not ends_with(part, tail) then
      return nil, ("part %d lacks its reopen %q or close %q"):format(i, head, tail)
    end
    local core = part:sub(#head + 1, #part - #tail)
    out[#out + 1] = core
    len = len + #core
    if cuts[i] then
      if not cuts[i].sep:match("^[ \t\r\n]*$") then return nil, ("sep %d is %q"):format(i, cuts[i].sep) end
      out[#out + 1] = cuts[i].sep
      len = len + #cuts[i].sep
      offsets[#offsets + 1] = len + 1
    end
  end
  return table.concat(out), offsets
end

-- Are the code blocks of part balanced? ``` fences (a line opening, a "```" line closing) or
-- <pre> tags.
local function balanced(part, format)
  if format == "html" then
    local _, opens = part:lower():gsub("<pre[%s>]", "")
    local _, closes = part:lower():gsub("</pre>", "")
    return opens == closes
  end
  local open = false
  for line in (part .. "\n"):gmatch("(.-)\n") do
    if open and line:match("^```[ \t\r]*$") then open = false
    elseif not open and line:match("^```[^`]*$") then open = true end
  end
  return not open
end

local function show(parts)
  local t = {}
  for i, p in ipairs(parts) do t[i] = ("%q"):format(p) end
  return table.concat(t, " | ")
end

-- Split and check what holds for every split: at least one part, each non-empty (text ~= "")
-- and <= max in the unit, valid UTF-8 (valid input), and the text restored from parts and cuts.
-- Returns parts, cuts, and nil or what was wrong.
local function split_ok(text, max, opts)
  local parts, cuts = split.split(text, max, opts)
  local unit = opts and opts.unit or "codepoints"
  local why
  if #parts < 1 then why = "no part" end
  for i, p in ipairs(parts) do
    if units(p, unit) > max then why = ("part %d has %d %s > %d"):format(i, units(p, unit), unit, max) end
    if p == "" and text ~= "" then why = ("part %d is empty"):format(i) end
    if valid_utf8(text) and not valid_utf8(p) then why = ("part %d is not valid UTF-8"):format(i) end
  end
  local back, err = restore(parts, cuts)
  if not why and back ~= text then why = err or "the parts do not restore the text" end
  return parts, cuts, why
end

-- check(name) a split with split_ok's properties and, when want is given, exactly these parts.
local function expect(name, text, max, opts, want)
  local parts, cuts, why = split_ok(text, max, opts)
  if want and not why and show(parts) ~= show(want) then why = "want " .. show(want) end
  check(name, why == nil, (why or "") .. "\n     got  " .. show(parts))
  return parts, cuts
end

local function rep(s, n, sep) return (s .. (sep or "")):rep(n - 1) .. s end

-- Length.
do
  check("length: utf16 counts an astral code point 2", split.length("字😀a", "utf16") == 4)
  check("length: codepoints", split.length("字😀a", "codepoints") == 3 and split.length("字😀a") == 3)
  check("length: bytes", split.length("字😀a", "bytes") == 8)
  check("length: empty", split.length("", "utf16") == 0)
  check("length: an invalid byte is one code point, one unit",
        split.length("a\255\254b", "codepoints") == 4 and split.length("a\255\254b", "utf16") == 4)
  check("length: an encoded surrogate is 3 invalid bytes", split.length("\237\160\128", "utf16") == 3)
  check("length: a truncated sequence is one code point a byte", split.length("\229\151a", "codepoints") == 3)
end

-- Texts that fit.
do
  expect("short: unchanged", "hello world", 16, nil, { "hello world" })
  expect("empty: one empty part", "", 16, nil, { "" })
  local cuts = select(2, split.split("", 16))
  check("empty: no cuts", #cuts == 0)
  expect("exactly max: unchanged", ("a"):rep(16), 16, nil, { ("a"):rep(16) })
  expect("exactly max in utf16: unchanged", ("😀"):rep(8), 16, { unit = "utf16" }, { ("😀"):rep(8) })
  expect("short with newlines and fences: unchanged", "```\nx\n```\n\n", 16, { format = "markdown" },
         { "```\nx\n```\n\n" })
end

-- The kinds of boundaries, in order of preference.
do
  local a, b, c = ("a"):rep(30), ("b"):rep(30), ("c"):rep(30)
  expect("a blank line before a line break", a .. "\n\n" .. b .. "\n" .. c, 70, nil, { a, b .. "\n" .. c })
  expect("a line break before a space", a .. "\n" .. b .. " " .. c, 70, nil, { a, b .. " " .. c })
  expect("a space before a hard cut", a .. " " .. b .. " " .. c, 70, nil, { a .. " " .. b, c })
  expect("a hard cut when there is no boundary", ("x"):rep(100), 40, nil,
         { ("x"):rep(40), ("x"):rep(40), ("x"):rep(20) })
  local words = rep("word", 20, " ")
  local parts = expect("words: each part ends at a word", words, 32)
  local whole = true
  for _, p in ipairs(parts) do
    if not p:match("^word[ word]*$") or p:match("  ") or p:sub(-4) ~= "word" then whole = false end
  end
  check("words: no word is cut and no part starts or ends with a space", whole, show(parts))
  check("words: parts are as long as they can be", #parts[1] == 29, show(parts))

  -- The dropped separators: a whole run of spaces, trailing spaces of a line, blank lines; the
  -- indentation of the next line stays.
  local _, cuts = expect("separators: a run of spaces is dropped", a .. "   " .. b, 40, nil, { a, b })
  check("separators: the run is the sep", cuts[1].sep == "   " and cuts[1].close == "" and cuts[1].reopen == "")
  _, cuts = expect("separators: blank lines dropped, indentation kept", a .. " \n\n\n  " .. b, 40, nil,
                   { a, "  " .. b })
  check("separators: sep is the spaces and the newlines", cuts[1].sep == " \n\n\n", ("%q"):format(cuts[1].sep))
  expect("separators: CRLF line ends", a .. "\r\n" .. b .. "\r\n" .. c, 70, nil, { a .. "\r\n" .. b, c })
  expect("separators: tabs are spaces", a .. "\t" .. b, 40, nil, { a, b })
end

-- The max/4 rule: a boundary counts only if the part keeps at least max/4.
do
  local text = "ab\n\n" .. rep("word", 20, " ")
  local parts = expect("max/4: a lone early blank line is not a cut", text, 40)
  check("max/4: the first part goes on past it, to a word", starts_with(parts[1], "ab\n\nword") and
        #parts[1] > 10 and parts[1]:sub(-4) == "word", show(parts))
  local b50 = ("b"):rep(50)
  expect("max/4: a line of exactly max/4 is kept", ("a"):rep(10) .. "\n" .. b50, 40, nil,
         { ("a"):rep(10), ("b"):rep(40), ("b"):rep(10) })
  expect("max/4: a line under max/4 is not, the cut is hard", ("a"):rep(9) .. "\n" .. b50, 40, nil,
         { ("a"):rep(9) .. "\n" .. ("b"):rep(30), ("b"):rep(20) })
  expect("max/4: an early space falls to a later line break", "a " .. ("b"):rep(20) .. "\n" .. ("c"):rep(30),
         40, nil, { "a " .. ("b"):rep(20), ("c"):rep(30) })
end

-- Emoji: astral code points count 2 in utf16, are never split, and clusters stay whole.
do
  local smiles = ("😀"):rep(3000)
  local parts = expect("emoji: 3000 😀 in utf16, max 4096", smiles, 4096, { unit = "utf16" })
  check("emoji: two parts, 2048 and 952 emoji", #parts == 2 and parts[1] == ("😀"):rep(2048)
        and parts[2] == ("😀"):rep(952), #parts .. " parts")
  check("emoji: each part <= 4096 units and valid UTF-8", units(parts[1], "utf16") == 4096 and
        valid_utf8(parts[1]) and valid_utf8(parts[2]))
  parts = expect("emoji: the same in codepoints fits one part", smiles, 4096, { unit = "codepoints" })
  check("emoji: one part", #parts == 1)
  parts = expect("emoji: the same in bytes", smiles, 4096, { unit = "bytes" })
  check("emoji: 3 parts of whole sequences in bytes", #parts == 3 and #parts[1] == 4096 and #parts[3] == 952 * 4)
  parts = expect("emoji: odd max in utf16 never halves a surrogate pair", smiles:sub(1, 400), 17, { unit = "utf16" })
  check("emoji: 8 emoji a part at max 17", parts[1] == ("😀"):rep(8))

  -- Clusters: each part must be whole clusters; the part lengths put a hard cut inside one.
  local function whole_clusters(name, cluster, count, max, unit)
    local parts = expect(name, cluster:rep(count), max, { unit = unit })
    local ok = #parts > 1
    for _, p in ipairs(parts) do
      if p:gsub(cluster:gsub("%p", "%%%0"), "") ~= "" then ok = false end
    end
    check(name .. ": only whole clusters", ok, show(parts))
  end
  whole_clusters("ZWJ family 👨‍👩‍👧 (8 units), utf16 max 20", "👨‍👩‍👧", 10, 20, "utf16")
  whole_clusters("ZWJ family, codepoints max 17", "👨‍👩‍👧", 10, 17, "codepoints")
  whole_clusters("ZWJ family, bytes max 40", "👨‍👩‍👧", 10, 40, "bytes")
  whole_clusters("flag 🇩🇪 (two regional indicators), utf16 max 18", "🇩🇪", 20, 18, "utf16")
  whole_clusters("flag, codepoints max 17", "🇩🇪", 20, 17, "codepoints")
  whole_clusters("skin tone 👍🏽, codepoints max 17", "👍🏽", 20, 17, "codepoints")
  whole_clusters("keycap 1️⃣, codepoints max 16", "1️⃣", 10, 16, "codepoints")
  whole_clusters("emoji style ❤️, codepoints max 17", "❤️", 20, 17, "codepoints")
  whole_clusters("tag flag 🏴󠁧󠁢󠁳󠁣󠁴󠁿, codepoints max 20", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", 6, 20, "codepoints")
  whole_clusters("combining accent e\204\129, codepoints max 17", "e\204\129", 20, 17, "codepoints")
  parts = expect("flags: pairs counted from the start of a run", "x" .. ("🇩🇪"):rep(20), 17, { unit = "codepoints" })
  check("flags: first part is x and 8 flags", parts[1] == "x" .. ("🇩🇪"):rep(8), show(parts))

  -- A cluster longer than max is cut anyway (at a code point boundary).
  local chain = ("👨‍"):rep(20) .. "👨"
  parts = expect("one cluster longer than max: cut anyway", chain, 16, { unit = "utf16" })
  check("one cluster longer than max: several valid parts", #parts > 1)
  -- A cluster followed by text: the cut moves to the cluster's start, not after the text before.
  parts = expect("cluster after words: cut before the cluster", ("a"):rep(14) .. "👨‍👩‍👧", 16, { unit = "codepoints" })
  check("cluster after words: the family stays whole", parts[2] == "👨‍👩‍👧", show(parts))
end

-- CJK: 3 bytes, 1 code point, 1 utf16 unit.
do
  local cjk = ("字"):rep(5000)
  local parts = expect("CJK: 5000 字 in bytes, max 4000", cjk, 4000, { unit = "bytes" })
  check("CJK: 4 parts of 1333, 1333, 1333, 1001 characters",
        #parts == 4 and #parts[1] == 3999 and #parts[4] == 3003, #parts .. " parts")
  parts = expect("CJK: in codepoints, max 4000", cjk, 4000, { unit = "codepoints" })
  check("CJK: 4000 and 1000", #parts == 2 and units(parts[1], "codepoints") == 4000)
  parts = expect("CJK: in utf16, max 4000", cjk, 4000, { unit = "utf16" })
  check("CJK: 4000 and 1000 in utf16", #parts == 2 and units(parts[2], "utf16") == 1000)
  local text = rep(("汉字"):rep(12), 10, "\n")
  parts = expect("CJK lines: cut at line ends", text, 60, { unit = "codepoints" })
  check("CJK lines: 2 lines a part", parts[1] == ("汉字"):rep(12) .. "\n" .. ("汉字"):rep(12), show(parts))
end

-- Code blocks in markdown (and plain): kept whole when they fit, else closed and reopened.
do
  local lines = {}
  for i = 1, 30 do lines[i] = ("print(%d)  # a comment"):format(i) end
  local intro = "Here is the code that prints the numbers, one per line, as asked."
  local block = "```python\n" .. table.concat(lines, "\n") .. "\n```"
  local text = intro .. "\n\n" .. block .. "\n\nThat is all."
  for _, format in ipairs({ "markdown", "plain" }) do
    local parts, cuts = expect("fence (" .. format .. "): a long block", text, 200, { format = format })
    check("fence (" .. format .. "): the intro is a part of its own", parts[1] == intro, show(parts))
    local ok = #parts >= 4
    for i = 2, #parts do
      if not starts_with(parts[i], "```python\n") then ok = false end
      if i < #parts and not ends_with(parts[i], "\n```") then ok = false end
      if not balanced(parts[i], "markdown") then ok = false end
      for line in (parts[i] .. "\n"):gmatch("(.-)\n") do -- cut at lines: only whole lines
        if not (line:match("^print%(%d+%)  # a comment$") or line == "```python" or line == "```"
                or line == "" or line == "That is all.") then ok = false end
      end
    end
    check("fence (" .. format .. "): every part balanced, reopened with the language, cut at lines", ok, show(parts))
    check("fence (" .. format .. "): the reopen and close are in cuts",
          cuts[2].close == "\n```" and cuts[2].reopen == "```python\n" and cuts[2].sep == "\n"
          and cuts[1].close == "" and cuts[1].sep == "\n\n")
    check("fence (" .. format .. "): the last part ends the text", ends_with(parts[#parts], "```\n\nThat is all."))
  end

  local parts = expect("fence: no language reopens with ```", "```\n" .. rep("x = 1", 40, "\n") .. "\n```", 64,
                       { format = "markdown" })
  local ok = #parts > 1
  for _, p in ipairs(parts) do
    if not starts_with(p, "```\nx = 1") or not ends_with(p, "\n```") or not balanced(p) then ok = false end
  end
  check("fence: every part ``` ... ```", ok, show(parts))

  parts = expect("fence: a line longer than max is hard cut inside the block",
                 "```\n" .. ("x"):rep(300) .. "\n```", 100, { format = "markdown" })
  ok = #parts == 4
  for _, p in ipairs(parts) do
    if not p:match("^```\nx+\n```$") then ok = false end
  end
  check("fence: hard cuts inside, every part balanced", ok, show(parts))

  local code = rep("local a = 1", 3, "\n")
  text = ("p"):rep(60) .. "\n```lua\n" .. code .. "\n```\n" .. ("q"):rep(60)
  expect("fence: a block that fits is not cut", text, 120, { format = "markdown" },
         { ("p"):rep(60) .. "\n```lua\n" .. code .. "\n```", ("q"):rep(60) })
  expect("fence: a boundary before the block rather than in it", text, 100, { format = "markdown" },
         { ("p"):rep(60), "```lua\n" .. code .. "\n```", ("q"):rep(60) })
  parts = expect("fence: spaces inside a block are not cut at", "```\n" .. rep("word", 40, " ") .. "\n```", 50,
                 { format = "markdown" })
  ok = true
  for _, p in ipairs(parts) do
    if not balanced(p) then ok = false end
  end
  check("fence: balanced, and the code keeps its spaces (restore checked)", ok and parts[2]:sub(5, 5) ~= "\n", show(parts))
  parts = expect("fence: an unclosed block is closed in all parts but the last",
                 "```sh\n" .. rep("echo hi", 20, "\n"), 40, { format = "markdown" })
  check("fence: unclosed: every part but the last balanced", balanced(parts[1]) and not balanced(parts[#parts]),
        show(parts))
  parts = expect("fence: in html format ``` is text", "```\n" .. rep("x = 1", 40, "\n") .. "\n```", 64,
                 { format = "html" })
  check("fence: html: no reopen", not starts_with(parts[2], "```"), show(parts))
  parts = expect("fence: tiny max with a long opener: split as text",
                 "```javascript\n" .. rep("x = 1", 10, "\n") .. "\n```", 16, { format = "markdown" })
  check("fence: tiny max: no reopen", not starts_with(parts[2], "```"), show(parts))
end

-- Code blocks in html: <pre> and <pre><code class="language-x">.
do
  local lines = {}
  for i = 1, 30 do lines[i] = ("print(%d) -- a &lt;comment&gt;"):format(i) end
  local opener = '<pre><code class="language-lua">'
  local text = "<b>Code</b>:\n" .. opener .. table.concat(lines, "\n") .. "</code></pre>\nDone."
  local parts, cuts = expect("pre: a long <pre><code> block", text, 200, { format = "html" })
  local ok = #parts >= 3
  for i, p in ipairs(parts) do
    if not balanced(p, "html") then ok = false end
    if i > 1 and not starts_with(p, opener) then ok = false end
    if i < #parts and not ends_with(p, "</code></pre>") then ok = false end
    if i > 1 and not p:sub(#opener + 1):match("^print") then ok = false end -- cut at lines
  end
  check("pre: every part balanced, reopened with the same opener", ok, show(parts))
  check("pre: the cuts", cuts[1].close == "</code></pre>" and cuts[1].reopen == opener and cuts[1].sep == "\n")
  check("pre: the end", ends_with(parts[#parts], "</code></pre>\nDone."))

  parts = expect("pre: a plain <pre> block", "<pre>" .. rep("x = 1", 40, "\n") .. "</pre>", 64, { format = "html" })
  ok = #parts > 1
  for _, p in ipairs(parts) do
    if not p:match("^<pre>x = 1.*x = 1</pre>$") then ok = false end
  end
  check("pre: every part <pre>...</pre>", ok, show(parts))
  parts = expect("pre: <PRE> in capitals", "<PRE>" .. rep("x = 1", 40, "\n") .. "</PRE>", 64, { format = "html" })
  check("pre: capitals reopen as written", starts_with(parts[2], "<PRE>x") and ends_with(parts[1], "</pre>"),
        show(parts))
  parts = expect("pre: in markdown format <pre> is text", "<pre>" .. rep("x = 1", 40, "\n") .. "</pre>", 64,
                 { format = "markdown" })
  check("pre: markdown: no reopen", not starts_with(parts[2], "<pre>"), show(parts))
end

-- Invalid UTF-8 does not crash, and counts a code point a byte.
do
  local parts = expect("invalid: 100 bytes \\255, max 16 bytes", ("\255"):rep(100), 16, { unit = "bytes" })
  check("invalid: 7 parts", #parts == 7 and parts[1] == ("\255"):rep(16))
  parts = expect("invalid: mixed with valid sequences", ("\255é\192\175字\237\160\128😀"):rep(20), 16,
                 { unit = "utf16" })
  local ok = true
  for _, p in ipairs(parts) do
    -- each part is whole tokens: the valid sequences are never split
    if p:gsub("é", ""):gsub("字", ""):gsub("😀", ""):gsub("[\255\192\175\237\160\128]", "") ~= "" then
      ok = false
    end
    if p:find("\195$") or p:find("^\169") then ok = false end
  end
  check("invalid: valid sequences are whole in every part", ok, show(parts))
  expect("invalid: a truncated sequence before a space", ("\229\151 "):rep(30), 16, { format = "markdown" })
end

-- Argument errors name the function.
do
  local function raises(name, want, f, ...)
    local ok, err = pcall(f, ...)
    check(name, not ok and tostring(err):find(want, 1, true) ~= nil, tostring(err))
  end
  raises("error: max below 16", "split.split: max", split.split, "text", 15)
  raises("error: max not an integer", "split.split: max", split.split, "text", 16.5)
  raises("error: max a string", "split.split: max", split.split, "text", "100")
  raises("error: max missing", "split.split: max", split.split, "text")
  raises("error: text not a string", "split.split: text", split.split, nil, 100)
  raises("error: unknown unit", "split.split: unit", split.split, "text", 100, { unit = "chars" })
  raises("error: unknown format", "split.split: format", split.split, "text", 100, { format = "rtf" })
  raises("error: opts not a table", "split.split: opts", split.split, "text", 100, "utf16")
  raises("error: length's unknown unit", "split.length: unit", split.length, "text", "chars")
  raises("error: length's text", "split.length: text", split.length, 42)
  local _, err = pcall(function() local parts = split.split("text", 15); return parts end)
  check("error: raised at the caller's line", tostring(err):find("split_spec.lua", 1, true) ~= nil, tostring(err))
  check("error: 16 is accepted", pcall(split.split, ("a"):rep(40), 16))
end

-- Random texts: every part <= max and non-empty, valid UTF-8 from valid input, whole valid
-- sequences from invalid input, the text restored (by plain concatenation with the seps when it
-- has no fence), no part starting or ending with its separator, balanced blocks.
do
  local words = { "a", "hello", "world", "chatgw", "x", "the", "quick", "é", "ß€", "\t" }
  local pieces = { " ", " ", " ", "\n", "\n\n", "😀", "👨‍👩‍👧", "🇩🇪", "👍🏽", "字", "汉字", "  " }
  local invalid = { "\255", "\192\175", "\237\160\128", "\229\151" }
  local seed = 20240607
  local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end
  local units_list = { "utf16", "codepoints", "bytes" }
  local formats = { "plain", "markdown", "html" }
  local function random_text(fenced, bad)
    local t = {}
    for _ = 1, rnd(160) do
      local r = rnd(10)
      if r <= 5 then t[#t + 1] = words[rnd(#words)]
      elseif r <= 9 then t[#t + 1] = pieces[rnd(#pieces)]
      elseif bad then t[#t + 1] = invalid[rnd(#invalid)]
      elseif fenced then -- a whole block of random lines
        local code = {}
        for k = 1, rnd(12) do code[k] = words[rnd(#words)] .. (" "):rep(rnd(3) - 1) .. words[rnd(#words)] end
        t[#t + 1] = (rnd(2) == 1 and "\n```lua\n" or "\n```\n") .. table.concat(code, "\n") .. "\n```\n"
      end
    end
    return table.concat(t)
  end

  local runs, bad_run = 0, nil
  for n = 1, 300 do
    local fenced, bad = n % 3 == 0, n % 5 == 0 and n % 3 ~= 0
    local text = random_text(fenced, bad)
    local max = 15 + rnd(186)
    local opts = { unit = units_list[rnd(3)], format = fenced and (rnd(2) == 1 and "markdown" or "plain") or formats[rnd(3)] }
    local parts, cuts, why = split_ok(text, max, opts)
    if not why and units(text, opts.unit) > max and #parts < 2 then why = "a text over max in one part" end
    if not why and not fenced then
      local joined = {}
      for i, p in ipairs(parts) do
        joined[#joined + 1] = p
        if cuts[i] then
          if cuts[i].close ~= "" or cuts[i].reopen ~= "" then why = "a close or reopen without a fence" end
          joined[#joined + 1] = cuts[i].sep
        end
      end
      if table.concat(joined) ~= text then why = "concatenation differs" end
    end
    for i, c in ipairs(cuts) do
      if not why and c.sep ~= "" then
        if parts[i]:match("[ \t\n]$") then why = ("part %d ends with whitespace before its sep"):format(i) end
        if parts[i + 1]:match("^\n") or (not c.sep:find("\n") and parts[i + 1]:match("^[ \t]")) then
          why = ("part %d starts with its separator"):format(i + 1)
        end
      end
    end
    if not why and bad then -- every cut falls at a code point boundary of the text
      local _, offsets = restore(parts, cuts)
      local boundary = {}
      for _, cp in ipairs(code_points(text)) do boundary[cp[1]] = true end
      for _, o in ipairs(offsets) do
        if not boundary[o] then why = "a cut inside a valid sequence at byte " .. o end
      end
    end
    if not why and fenced and max >= 40 then
      for i, p in ipairs(parts) do
        if not balanced(p, "markdown") then why = ("part %d has unbalanced fences"):format(i) end
      end
    end
    if why then
      bad_run = ("%s; max=%d unit=%s format=%s\n     text=%q\n     parts=%s"):format(why, max, opts.unit,
                opts.format, text, show(parts))
      break
    end
    runs = runs + 1
  end
  check("random: 300 texts (fenced, invalid, plain) split with every property", runs == 300, bad_run)
end

setmetatable(_G, nil)
local new_globals = {}
for k in pairs(_G) do
  if not globals_before[k] then new_globals[#new_globals + 1] = tostring(k) end
end
check("no global created", #new_globals == 0, table.concat(new_globals, ", "))

spec.report()
