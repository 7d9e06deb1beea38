-- chatgw.chat.split: cut a message text that is longer than a chat platform allows into parts
-- (the outbox sender calls it before delivery). Pure Lua: no chatgw global, no C modules.
--
--   split.length(text, unit)         -- text's length in unit ("codepoints" by default)
--   split.split(text, max, opts)     -- -> parts, cuts
--     opts.unit   = "utf16" | "codepoints" | "bytes"  (default "codepoints")
--     opts.format = "plain" | "markdown" | "html"     (default "plain")
--
-- Units: Telegram allows 4096 characters and counts them in UTF-16 code units
-- (https://core.telegram.org/api/entities: "UTF-16 is used when computing the length and
-- offsets of entities in the MTProto and bot APIs, by counting the number of UTF-16 code
-- units"), so a code point above U+FFFF (most emoji) counts 2 there; Feishu limits the text
-- request body in bytes. An invalid UTF-8 byte counts as one code point (1 unit, 1 byte).
--
-- Every part is <= max and non-empty (the only part of "" is ""). A text that fits is the only
-- part; otherwise each part is the longest prefix that fits and ends at the best boundary:
-- a blank line, then a line break, then a space or tab, then any code point boundary (a hard
-- cut, moved back to the start of an emoji cluster: ZWJ sequences, variation selectors, skin
-- tones, keycaps, tags, flags, combining accents). A boundary other than a hard cut counts only
-- if the part keeps at least max/4, so an early lone newline does not make a tiny part.
-- The whitespace cut at is dropped: the part ends before it and the next starts after it (after
-- the last newline of it: the next line's indentation stays).
--
-- Code blocks (``` fences in plain and markdown, <pre>...</pre> in html): a boundary outside a
-- block is preferred. A block that alone does not fit is cut at a line inside it (else a hard
-- cut; never at a space, which in code is content), the part closes it ("\n```", "</pre>" or
-- "</code></pre>") and the next part reopens it with the same opener ("```lua\n", "<pre>" or
-- "<pre><code class=...>"), all counted within max. A block whose close and reopen would take
-- more than max/2 (a tiny max) is split as plain text.
--
-- cuts[i] says how parts[i] and parts[i + 1] came from the text: sep is the text dropped
-- between them, close the text added at the end of parts[i], reopen the text added at the start
-- of parts[i + 1]. Stripping close and reopen and joining the parts with the seps gives the text.
local M = {}

local byte, sub, find, lower = string.byte, string.sub, string.find, string.lower

local UNITS = { utf16 = true, codepoints = true, bytes = true }
local FORMATS = { plain = true, markdown = true, html = true }

-- Code points of text: starts[i] is the first byte of code point i (starts[n + 1] = #text + 1),
-- cps[i] its value or -1 for an invalid byte. Strict: no overlongs, surrogates or > U+10FFFF.
local function decode(text)
  local starts, cps, n, i, len = {}, {}, 0, 1, #text
  while i <= len do
    local b, c, size = byte(text, i), -1, 1
    if b < 0x80 then
      c = b
    elseif b >= 0xC2 and b <= 0xF4 then
      local more = b < 0xE0 and 1 or b < 0xF0 and 2 or 3
      local lo, hi = 0x80, 0xBF -- the range of the second byte
      if b == 0xE0 then lo = 0xA0 elseif b == 0xED then hi = 0x9F
      elseif b == 0xF0 then lo = 0x90 elseif b == 0xF4 then hi = 0x8F end
      local v = b % (more == 1 and 0x20 or more == 2 and 0x10 or 0x08)
      for k = 1, more do
        local x = byte(text, i + k)
        if not x or x < lo or x > hi then v = nil break end
        v, lo, hi = v * 64 + x % 64, 0x80, 0xBF
      end
      if v then c, size = v, more + 1 end
    end
    n = n + 1
    starts[n], cps[n] = i, c
    i = i + size
  end
  starts[n + 1] = len + 1
  return starts, cps, n
end

local function check_unit(fname, unit)
  if unit == nil then return "codepoints" end
  if not UNITS[unit] then
    error(("%s: unit must be \"utf16\", \"codepoints\" or \"bytes\", not %s"):format(fname, tostring(unit)), 3)
  end
  return unit
end

-- Prefix sums of the lengths: w[i] is the length of code points 1..i in unit.
local function prefix_sums(starts, cps, n, unit)
  local w = { [0] = 0 }
  for i = 1, n do
    local d = 1
    if unit == "bytes" then d = starts[i + 1] - starts[i]
    elseif unit == "utf16" and cps[i] >= 0x10000 then d = 2 end -- a surrogate pair
    w[i] = w[i - 1] + d
  end
  return w
end

function M.length(text, unit)
  if type(text) ~= "string" then error("split.length: text must be a string, not " .. type(text), 2) end
  unit = check_unit("split.length", unit)
  if unit == "bytes" then return #text end
  local starts, cps, n = decode(text)
  return prefix_sums(starts, cps, n, unit)[n]
end

-- Does code point c belong to the character before it?
local function attaches(c)
  return c == 0x200D or c == 0xFE0E or c == 0xFE0F or c == 0x20E3 -- ZWJ, text/emoji style, keycap
      or (c >= 0x1F3FB and c <= 0x1F3FF)                           -- skin tones
      or (c >= 0xE0020 and c <= 0xE007F)                           -- tags (subdivision flags)
      or (c >= 0x0300 and c <= 0x036F)                             -- combining accents
end

-- glue[i]: no hard cut right before code point i.
local function glue_marks(cps, n)
  local glue, ri = {}, 0 -- ri: the position of code point i in a run of regional indicators
  for i = 1, n do
    local c = cps[i]
    ri = (c >= 0x1F1E6 and c <= 0x1F1FF) and ri + 1 or 0
    glue[i] = attaches(c) or cps[i - 1] == 0x200D or ri % 2 == 0 and ri > 0 -- 2nd of a flag
  end
  return glue
end

-- Whitespace runs, keyed by their first code point: last code point, newline count, last newline.
local function whitespace_runs(cps, n)
  local run_end, run_nl, run_last, start = {}, {}, {}, nil
  for i = 1, n + 1 do
    local c = cps[i]
    if c == 32 or c == 9 or c == 13 or c == 10 then
      if not start then start, run_nl[i] = i, 0 end
      if c == 10 then run_nl[start], run_last[start] = run_nl[start] + 1, i end
    elseif start then
      run_end[start], start = i - 1, nil
    end
  end
  return run_end, run_nl, run_last
end

-- Code blocks, in code point indices: the opener runs open_start..open_end (a fence line and its
-- newline, or the <pre...> tag), the closer close_start..close_end (n + 1 when unclosed).
local function fenced_blocks(text, at, n)
  local blocks, pos, open = {}, 1, nil
  while pos <= #text do
    local nl = find(text, "\n", pos, true)
    local line = sub(text, pos, (nl or #text + 1) - 1)
    if open and find(line, "^```[ \t\r]*$") then
      open.close_start, open.close_end, open = at[pos], at[pos + #line - 1], nil
    elseif not open and find(line, "^```[^`]*$") then
      open = { open_start = at[pos], open_end = nl and at[nl] or n, reopen = line .. "\n",
               close = "\n```", close_start = n + 1, close_end = n + 1 }
      blocks[#blocks + 1] = open
    end
    if not nl then break end
    pos = nl + 1
  end
  return blocks
end

local function pre_blocks(text, at, n)
  local low, blocks, pos = lower(text), {}, 1
  while true do
    local s = find(low, "<pre[%s>]", pos)
    local gt = s and find(low, ">", s, true)
    if not gt then break end
    local close, _, code_gt = "</pre>", find(low, "^<code[^>]*>", gt + 1)
    if code_gt then gt, close = code_gt, "</code></pre>" end
    local b = { open_start = at[s], open_end = at[gt], reopen = sub(text, s, gt), close = close,
                close_start = n + 1, close_end = n + 1 }
    blocks[#blocks + 1] = b
    local xs, xe = find(low, "</pre>", gt + 1, true)
    if not xs then break end
    if code_gt and sub(low, xs - 7, xs - 1) == "</code>" then xs = xs - 7 end
    b.close_start, b.close_end, pos = at[xs], at[xe], xe + 1
  end
  return blocks
end

local OUT = {} -- the zone of a cut outside any code block

function M.split(text, max, opts)
  if type(text) ~= "string" then error("split.split: text must be a string, not " .. type(text), 2) end
  if type(max) ~= "number" or max % 1 ~= 0 or max < 16 then
    error("split.split: max must be an integer >= 16, not " .. tostring(max), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("split.split: opts must be a table or nil", 2) end
  opts = opts or {}
  local unit = check_unit("split.split", opts.unit)
  local format = opts.format or "plain"
  if not FORMATS[format] then
    error(("split.split: format must be \"plain\", \"markdown\" or \"html\", not %s"):format(tostring(format)), 2)
  end

  local starts, cps, n = decode(text)
  local w = prefix_sums(starts, cps, n, unit)
  if w[n] <= max then return { text }, {} end

  local glue = glue_marks(cps, n)
  local run_end, run_nl, run_last = whitespace_runs(cps, n)
  local at = {} -- code point index by its first byte
  for i = 1, n do at[starts[i]] = i end
  local block = {} -- block[i]: the block open after code point i (opener .. before the closer's end)
  for _, b in ipairs((format == "html" and pre_blocks or fenced_blocks)(text, at, n)) do
    b.wr, b.wc = M.length(b.reopen, unit), M.length(b.close, unit)
    if 2 * (b.wr + b.wc) <= max then
      for i = b.open_start, b.close_end - 1 do block[i] = b end
    end
  end

  -- The zone of a cut keeping code points ..e and going on at s: OUT, the block it cuts inside
  -- (at least one code point of its content on either side), or nil (a fence line or an opener).
  local function zone(e, s)
    local b = block[e]
    if not b then return OUT end
    if e > b.open_end and s < b.close_start then return b end
    return nil
  end

  local parts, cuts = {}, {}
  local p, prefix, wp = 1, "", 0 -- the part starts at code point p, after prefix (a reopen)
  while wp + w[n] - w[p - 1] > max do
    local budget = max - wp
    local last = p -- the last code point that fits (one always does: wp <= max / 2)
    while w[last + 1] - w[p - 1] <= budget do last = last + 1 end
    local function fits(e, z) return w[e] - w[p - 1] <= budget - (z == OUT and 0 or z.wc) end

    -- The best boundary: outside a block before inside one; a blank line, a line, a space
    -- (none inside a block); the longest part on a tie.
    local best_rank, e, s, z = 0, nil, nil, nil
    for i = p + 1, last + 1 do
      local stop = run_end[i]
      if stop then -- whitespace from i to stop: cut before it
        local nl = run_nl[i]
        local ci, si = i - 1, nl > 0 and run_last[i] + 1 or stop + 1
        local zi = si <= n and zone(ci, si)
        if zi and fits(ci, zi) and 4 * (w[ci] - w[p - 1]) >= max then
          local rank = (nl >= 2 and 3 or nl == 1 and 2 or 1) + (zi == OUT and 3 or 0)
          if zi ~= OUT and nl == 0 then rank = 0 end
          if rank > 0 and rank >= best_rank then best_rank, e, s, z = rank, ci, si, zi end
        end
      end
    end

    if not e then -- a hard cut: the longest part that fits and does not split a cluster
      local any
      for ci = last, p, -1 do
        local zi = zone(ci, ci + 1)
        if zi and fits(ci, zi) then
          any = any or ci
          if not glue[ci + 1] then e = ci break end
        end
      end
      e = e or any or last -- the window is one cluster; or no cut keeps the fences: plain
      s, z = e + 1, zone(e, e + 1)
      if not z or not fits(e, z) then z = OUT end
    end

    local close, reopen = "", ""
    if z ~= OUT then close, reopen = z.close, z.reopen end
    parts[#parts + 1] = prefix .. sub(text, starts[p], starts[e + 1] - 1) .. close
    cuts[#cuts + 1] = { sep = sub(text, starts[e + 1], starts[s] - 1), close = close, reopen = reopen }
    p, prefix, wp = s, reopen, z == OUT and 0 or z.wr
  end
  parts[#parts + 1] = prefix .. sub(text, starts[p])
  return parts, cuts
end

return M
