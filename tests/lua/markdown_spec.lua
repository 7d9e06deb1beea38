-- Plain-Lua checks for lua/chatgw/chat/channels/telegram/markdown.lua (a reply's markdown as
-- Telegram text plus MessageEntity records). Run from the repo root:
--   luajit tests/lua/markdown_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path

local spec = require "spec_helper"
local check = spec.check

-- The module must create no global and read none that does not exist: _G is strict from here
-- to the end (the spec's own names are locals too).
local globals_before = spec.strict_globals()

local md = require "chatgw.chat.channels.telegram.markdown"

local code_points = spec.code_points

local function ref_utf16(s)
  local n = 0
  for _, cp in ipairs(code_points(s)) do n = n + (cp[2] >= 0x10000 and 2 or 1) end
  return n
end

local function valid_utf8(s)
  for _, cp in ipairs(code_points(s)) do
    if cp[2] < 0 then return false end
  end
  return true
end

-- byte_at[u] = the byte index in s where UTF-16 offset u starts (only at code point
-- boundaries; nil inside a surrogate pair), byte_at[len] = #s + 1.
local function utf16_map(s)
  local map, u = {}, 0
  for _, cp in ipairs(code_points(s)) do
    map[u] = cp[1]
    u = u + (cp[2] >= 0x10000 and 2 or 1)
  end
  map[u] = #s + 1
  return map
end

-- The substring of text an entity covers (nil if its bounds are not code point boundaries).
local function covered(text, e)
  local map = utf16_map(text)
  local a, b = map[e.offset], map[e.offset + e.length]
  if not a or not b then return nil end
  return text:sub(a, b - 1)
end

local function show_ents(ents)
  local t = {}
  for i, e in ipairs(ents) do
    t[i] = ("%s@%d+%d"):format(e.type, e.offset, e.length) .. (e.url and (" " .. e.url) or "")
           .. (e.language and (" " .. e.language) or "")
  end
  return table.concat(t, ", ")
end

local ALLOWED = { bold = true, italic = true, strikethrough = true, code = true, pre = true, text_link = true }

-- Is a a subsequence of b (bytes)?
local function subsequence(a, b)
  local j = 1
  for i = 1, #a do
    local c = a:byte(i)
    while j <= #b and b:byte(j) ~= c do j = j + 1 end
    if j > #b then return false end
    j = j + 1
  end
  return true
end

-- What must hold for every src: nil, or what is wrong.
local function invariants(src)
  local ok, text, ents = pcall(md.to_entities, src)
  if not ok then return "raised: " .. tostring(text) end
  if type(text) ~= "string" or type(ents) ~= "table" then return "not a string and a table" end
  if md.plain(src) ~= text then return "plain(src) differs from to_entities(src)'s text" end
  if not subsequence(text, src) then return "the text is not the source with parts removed" end
  if valid_utf8(src) and not valid_utf8(text) then return "the text of valid UTF-8 is not valid UTF-8" end
  if not src:find("[\\`*_~%[]") and (text ~= src or #ents > 0) then return "a text without markers changed" end
  local len, map = md.utf16_len(text), utf16_map(text)
  for i, e in ipairs(ents) do
    local where = ("entity %d (%s)"):format(i, show_ents({ e }))
    if not ALLOWED[e.type] then return where .. ": unknown type" end
    if type(e.offset) ~= "number" or e.offset ~= math.floor(e.offset) or e.offset < 0 then return where .. ": offset" end
    if type(e.length) ~= "number" or e.length ~= math.floor(e.length) or e.length <= 0 then return where .. ": length" end
    if e.offset + e.length > len then return where .. ": past the end of the text (" .. len .. ")" end
    if not map[e.offset] or not map[e.offset + e.length] then return where .. ": inside a code point" end
    if e.type == "text_link" then
      if type(e.url) ~= "string" or not (e.url:lower():find("^https?://.") or e.url:lower():find("^tg://.")
                                         or e.url:lower():find("^mailto:.")) then
        return where .. ": bad url"
      end
    elseif e.url ~= nil then return where .. ": url on a non-link" end
    if e.language ~= nil and (e.type ~= "pre" or type(e.language) ~= "string" or e.language == "") then
      return where .. ": language"
    end
    local n = ents[i + 1]
    if n and (n.offset < e.offset or (n.offset == e.offset and n.length > e.length)) then
      return where .. ": not sorted before the next"
    end
  end
  for i = 1, #ents do
    local a = ents[i]
    for j = i + 1, #ents do
      local b = ents[j]
      local a_end, b_end = a.offset + a.length, b.offset + b.length
      local disjoint = b.offset >= a_end or a.offset >= b_end
      local nested = (b.offset >= a.offset and b_end <= a_end) or (a.offset >= b.offset and a_end <= b_end)
      if not disjoint and not nested then return ("entities %d and %d overlap partially"):format(i, j) end
      local pa, pb = a.type == "code" or a.type == "pre", b.type == "code" or b.type == "pre"
      if not disjoint and (pa or pb) then return ("entities %d and %d: a code/pre shares text"):format(i, j) end
      if not disjoint and a.type == b.type then return ("entities %d and %d: same type nested"):format(i, j) end
    end
  end
  return nil
end

-- check(name) that src gives want_text and entities shown as want (show_ents), and the invariants.
local function expect(name, src, want_text, want)
  local text, ents = md.to_entities(src)
  local why = invariants(src)
  if not why and text ~= want_text then why = ("text %q, want %q"):format(text, want_text) end
  if not why and want and show_ents(ents) ~= want then why = ("entities [%s], want [%s]"):format(show_ents(ents), want) end
  check(name, why == nil, why)
  return text, ents
end

-- Each construct alone.
do
  expect("bold **", "**bold**", "bold", "bold@0+4")
  expect("bold __ (CommonMark: __ is bold)", "__bold__", "bold", "bold@0+4")
  expect("italic *", "*it*", "it", "italic@0+2")
  expect("italic _", "_it_", "it", "italic@0+2")
  expect("strikethrough ~~", "~~gone~~", "gone", "strikethrough@0+4")
  expect("code", "`x = 1`", "x = 1", "code@0+5")
  expect("code with a double run holds a backtick", "``a ` b``", "a ` b", "code@0+5")
  expect("code keeps its spaces and newlines", "` a\nb `", " a\nb ", "code@0+5")
  expect("link", "[site](https://example.org/a?b=1)", "site", "text_link@0+4 https://example.org/a?b=1")
  expect("link http", "[x](http://e.org)", "x", "text_link@0+1 http://e.org")
  expect("link tg", "[me](tg://user?id=42)", "me", "text_link@0+2 tg://user?id=42")
  expect("link mailto", "[mail](mailto:a@b.c)", "mail", "text_link@0+4 mailto:a@b.c")
  expect("link scheme in capitals", "[x](HTTPS://E.ORG)", "x", "text_link@0+1 HTTPS://E.ORG")
  expect("link with balanced parentheses", "[Lua](https://en.wikipedia.org/wiki/Lua_(programming_language))",
         "Lua", "text_link@0+3 https://en.wikipedia.org/wiki/Lua_(programming_language)")
  expect("link with an escaped ) in the url", "[x](https://e.org/a\\)b)", "x", "text_link@0+1 https://e.org/a)b")
  expect("constructs in a sentence", "a **b** c _d_ e ~~f~~ `g` [h](http://i.j) k",
         "a b c d e f g h k", "bold@2+1, italic@6+1, strikethrough@10+1, code@12+1, text_link@14+1 http://i.j")
  expect("bold then punctuation", "**Note:** read *this*.", "Note: read this.", "bold@0+5, italic@11+4")
  expect("emphasis inside parentheses", "(*x*) [**y**]", "(x) [y]", "italic@1+1, bold@5+1")
  expect("over a line break", "**a\nb**", "a\nb", "bold@0+3")
end

-- Nesting.
do
  expect("bold inside italic", "*a **b** c*", "a b c", "italic@0+5, bold@2+1")
  expect("italic inside bold", "**a _b_ c**", "a b c", "bold@0+5, italic@2+1")
  expect("bold and italic ***", "***both***", "both", "bold@0+4, italic@0+4")
  expect("strike inside bold", "**a ~~b~~**", "a b", "bold@0+3, strikethrough@2+1")
  expect("link with bold text", "[a **b**](https://x.org)", "a b", "text_link@0+3 https://x.org, bold@2+1")
  expect("bold around a link", "**see [docs](https://d.org)**", "see docs", "bold@0+8, text_link@4+4 https://d.org")
  expect("the same type nested adds nothing", "*a _b_ c*", "a b c", "italic@0+5")
  expect("emphasis does not cross a link's text", "*a [b* c](http://x.y)", "*a b* c", "text_link@3+4 http://x.y")
  -- code and pre are in no entity and contain none
  expect("bold around code is cut around it", "**a `c` b**", "a c b", "bold@0+2, code@2+1, bold@3+2")
  expect("bold exactly around code: only the code", "**`c`**", "c", "code@0+1")
  expect("code in a link's text: the link stays", "[`f()`](https://d.org)", "f()", "text_link@0+3 https://d.org")
  expect("markers inside code are literal", "`**a** _b_ [c](http://d.e) \\*`", "**a** _b_ [c](http://d.e) \\*",
         "code@0+28")
  expect("a code span wins over emphasis it crosses", "*a `b* c`", "*a b* c", "code@3+4")
  expect("a code span wins over a link it crosses", "[a `b](http://x.y)`", "[a b](http://x.y)", "code@3+14")
end

-- Unmatched markers, snake_case and arithmetic: literal.
do
  expect("arithmetic 2*3 = 6", "2*3 = 6", "2*3 = 6", "")
  expect("arithmetic 2*3*4", "2*3*4", "2*3*4", "")
  expect("arithmetic with spaces", "2 * 3 * 4 = 24", "2 * 3 * 4 = 24", "")
  expect("snake_case_name", "use snake_case_name here", "use snake_case_name here", "")
  expect("__init__-like intraword", "a__b__c", "a__b__c", "")
  expect("a lone *", "*", "*", "")
  expect("a lone **", "a ** b", "a ** b", "")
  expect("unclosed bold", "**never closed", "**never closed", "")
  expect("unclosed code", "`never closed", "`never closed", "")
  expect("a list of * items", "* one\n* two", "* one\n* two", "")
  expect("one ~ is literal", "~5 min, ~x~", "~5 min, ~x~", "")
  expect("three ~ are literal", "~~~a~~~", "~~~a~~~", "")
  expect("mismatched runs: the extra is literal", "**a*", "*a", "italic@1+1")
  expect("intraword _ inside italic", "_a_b_", "a_b", "italic@0+3")
  expect("a lone [ and ]", "a [b] c ] d [", "a [b] c ] d [", "")
  expect("brackets without a url", "[a](", "[a](", "")
  expect("a url with a space", "[a](http://x y)", "[a](http://x y)", "")
  expect("empty link text", "[](http://x.y)", "[](http://x.y)", "")
  expect("empty url", "[a]()", "[a]()", "")
  expect("a scheme alone", "[a](http://)", "[a](http://)", "")
  expect("a url over 2048 bytes", "[a](http://" .. ("x"):rep(2100) .. ")", "[a](http://" .. ("x"):rep(2100) .. ")", "")
  expect("markers around spaces", "** a **", "** a **", "")
end

-- Links with bad schemes stay literal (their text is still parsed).
do
  expect("javascript:", "[x](javascript:alert(1))", "[x](javascript:alert(1))", "")
  expect("ftp:", "[f](ftp://host/file)", "[f](ftp://host/file)", "")
  expect("no scheme", "[r](/relative/path)", "[r](/relative/path)", "")
  expect("data:", "[d](data:text/html,hi)", "[d](data:text/html,hi)", "")
  expect("a bad link's text is still parsed", "[**b**](file:///etc/passwd)", "[b](file:///etc/passwd)", "bold@1+1")
  expect("a bad link then a good one", "[a](x:y) [b](http://c.d)", "[a](x:y) b", "text_link@9+1 http://c.d")
  expect("links do not nest", "[a [b](http://c.d) e](http://f.g)", "[a b e](http://f.g)", "text_link@3+1 http://c.d")
end

-- Escapes.
do
  expect("\\* is a literal *", "\\*not italic\\*", "*not italic*", "")
  expect("escaped _ and `", "\\_a\\_ \\`b\\`", "_a_ `b`", "")
  expect("escaped brackets", "\\[a\\](http://x.y)", "[a](http://x.y)", "")
  expect("escaped backslash then bold", "\\\\**b**", "\\b", "bold@1+1")
  expect("a backslash before a letter stays", "C:\\Users\\x", "C:\\Users\\x", "")
  expect("a backslash at the end stays", "end\\", "end\\", "")
  expect("an escape inside emphasis", "*a \\* b*", "a * b", "italic@0+5")
  expect("an escaped backtick then a code span", "\\``x`", "`x", "code@1+1")
  expect("escapes are literal inside code", "`\\*`", "\\*", "code@0+2")
  local reserved = "_*[]()~`>#+-=|{}.!\\"
  local all_ok = true
  for k = 1, #reserved do
    local c = reserved:sub(k, k)
    if md.plain("\\" .. c) ~= c then all_ok = false end
  end
  check("a backslash makes every reserved character literal", all_ok)
end

-- Code and pre blocks.
do
  expect("pre with a language", "```lua\nlocal x = 1\n```", "local x = 1", "pre@0+11 lua")
  expect("pre without a language", "```\nplain\n```", "plain", "pre@0+5")
  expect("pre: the first word of the info string", "```python extra words\nx\n```", "x", "pre@0+1 python")
  expect("pre between lines: the newlines around stay", "before\n```sh\necho hi\n```\nafter",
         "before\necho hi\nafter", "pre@7+7 sh")
  expect("pre: markers inside are literal", "```\n**a** _b_ `c` [d](http://e.f) \\*\n```",
         "**a** _b_ `c` [d](http://e.f) \\*", "pre@0+32")
  expect("pre: several lines and blank lines kept", "```\na\n\n  b\n```", "a\n\n  b", "pre@0+6")
  expect("pre: a longer closing fence", "````\na\n```\nb\n`````", "a\n```\nb", "pre@0+7")
  expect("pre: a shorter fence inside does not close", "````md\n```\nx\n```\n````", "```\nx\n```", "pre@0+9 md")
  expect("pre: indented fences (up to 3 spaces)", "   ```js\n  x\n   ```", "  x", "pre@0+3 js")
  expect("pre: an unclosed block runs to the end", "a\n```py\nunclosed *x*\n", "a\nunclosed *x*\n", "pre@2+13 py")
  expect("pre: empty block is dropped", "```\n```", "", "")
  expect("pre: CRLF line ends", "a\r\n```js\r\nx\r\n```\r\nb", "a\r\nx\r\nb", "pre@3+1 js")
  expect("pre: emphasis around is separate", "**a**\n```\n*b*\n```\n*c*", "a\n*b*\nc", "bold@0+1, pre@2+3, italic@6+1")
  expect("pre: emphasis cannot cross a block", "**a\n```\nb\n```\nc**", "**a\nb\nc**", "pre@4+1")
  expect("a fence not at a line start is a code span", "say ```x``` now", "say x now", "code@4+1")
  expect("a fence without a newline after it is literal", "```lua", "```lua", "")
  expect("an info string with a backtick is no fence (a code span)", "```a`b\nc\n```", "a`b\nc\n", "code@0+6")
  expect("pre with emoji inside and before", "😀\n```\n👨‍👩‍👧 x\n```", "😀\n👨‍👩‍👧 x", "pre@3+10")
end

-- UTF-16 offsets.
do
  expect("emoji before an entity shifts it by 2", "😀**b**", "😀b", "bold@2+1")
  local _, e0 = md.to_entities(" **b** *i*")
  local _, e1 = md.to_entities("x **b** *i*")
  local _, e2 = md.to_entities("😀 **b** *i*")
  check("emoji: a 😀 shifts every later entity by 2, an ASCII letter by 1",
        e2[1].offset == e0[1].offset + 2 and e2[2].offset == e0[2].offset + 2
        and e1[1].offset == e0[1].offset + 1 and e2[1].length == 1, show_ents(e2))
  expect("two emoji and a space", "😀😀 *i*", "😀😀 i", "italic@5+1")
  expect("emoji inside bold", "**😀**", "😀", "bold@0+2")
  expect("CJK without spaces", "这是**重要**的", "这是重要的", "bold@2+2")
  expect("CJK italic and code", "中文_斜体_和`代码`", "中文斜体和代码", "italic@2+2, code@5+2")
  local text, ents = expect("a ZWJ family inside bold", "家族 **👨‍👩‍👧** ok", "家族 👨‍👩‍👧 ok", "bold@3+8")
  check("ZWJ family: the bold covers exactly the family", covered(text, ents[1]) == "👨‍👩‍👧")
  expect("combining marks count per code point", "e\204\129 *x*", "e\204\129 x", "italic@3+1")
  expect("flag and skin tone", "🇩🇪👍🏽 [x](http://y.z)", "🇩🇪👍🏽 x", "text_link@9+1 http://y.z")
  expect("astral CJK (U+20000) counts 2", "𠀀**b**", "𠀀b", "bold@2+1")
  expect("Cyrillic snake_case stays literal", "переменная_один_два", "переменная_один_два", "")
  expect("emphasis next to emoji", "😀*a*😀", "😀a😀", "italic@2+1")
  text, ents = expect("entities cover what was marked, after emoji",
                      "😀 **bold** 字 _it_ `c😀de` [li👨‍👩‍👧nk](https://x.y) ~~s~~", "😀 bold 字 it c😀de li👨‍👩‍👧nk s")
  local want = { "bold", "it", "c😀de", "li👨‍👩‍👧nk", "s" }
  local got, ok = {}, #ents == #want
  for i, e in ipairs(ents) do
    got[i] = covered(text, e) or "?"
    if got[i] ~= want[i] then ok = false end
  end
  check("entities cover what was marked: the covered texts", ok, table.concat(got, " | "))
end

-- Empty, odd and huge inputs.
do
  expect("empty input", "", "", "")
  local t, e = md.to_entities(nil)
  check("nil input: empty text, no entities", t == "" and #e == 0)
  t = md.to_entities(42)
  check("a number is its tostring", t == "42")
  check("a table is empty text", md.plain({}) == "")
  expect("invalid UTF-8 kept byte for byte", "\255**\254**\192", "\255\254\192", "bold@1+1")
  expect("only markers", "**__~~``[]()\\", "**__~~``[]()\\", "")

  local unit = "Some **bold** and _italic_ text with `code`, a [link](https://example.org) 😀 字.\n"
  local big = {}
  while #table.concat(big) < 100 * 1024 do big[#big + 1] = unit end
  big[#big + 1] = "```lua\n" .. ("x = 1\n"):rep(200) .. "```\n"
  local src = table.concat(big)
  local t0 = os.clock()
  local text, ents = md.to_entities(src)
  local dt = os.clock() - t0
  check(("huge: %d KB of markdown in %.3f s (< 2 s)"):format(math.floor(#src / 1024), dt), dt < 2)
  check("huge: every entity found", #ents == (#big - 1) * 4 + 1, #ents)
  check("huge: the invariants hold", invariants(src) == nil, invariants(src))
  check("huge: the last entity is the pre", ents[#ents].type == "pre" and ents[#ents].language == "lua")
  check("huge: the text length", md.utf16_len(text) == ents[#ents].offset + ents[#ents].length + 1)

  -- adversarial 100 KB inputs: each in bounded time
  local runs = {}
  for k = 1, 440 do runs[#runs + 1] = ("`"):rep(k) .. "a" end
  local nasty = {
    { "unclosed links", ("[a]("):rep(25600) },
    { "nested brackets", ("["):rep(50000) .. ("](http://x.y)"):rep(4000) },
    { "backtick runs of every length", table.concat(runs) },
    { "openers only", ("*a "):rep(34000) },
    { "closers only", ("a* "):rep(34000) },
    { "mixed openers and closers", ("_a* *b_ "):rep(12800) },
    { "one long run", ("_"):rep(102400) },
    { "many lines of fences", ("```\n"):rep(25600) },
    { "many open fences", ("```x\n"):rep(20480) },
    { "escapes", ("\\*"):rep(51200) },
    { "emoji and markers", ("😀*_~`["):rep(10240) },
  }
  local worst, worst_name, all_ok = 0, "", true
  for _, case in ipairs(nasty) do
    local c0 = os.clock()
    local ok = pcall(md.to_entities, case[2])
    local d = os.clock() - c0
    if not ok then all_ok = false end
    if d > worst then worst, worst_name = d, case[1] end
  end
  check(("adversarial: 11 inputs of ~100 KB, none raises, the slowest (%s) %.3f s < 2 s"):format(worst_name, worst),
        all_ok and worst < 2)
end

-- escape().
do
  local reserved = { "_", "*", "[", "]", "(", ")", "~", "`", ">", "#", "+", "-", "=", "|", "{", "}", ".", "!", "\\" }
  local ok, bad = true, nil
  for _, c in ipairs(reserved) do
    if md.escape(c) ~= "\\" .. c then ok, bad = false, c end
  end
  check("escape: each of _*[]()~`>#+-=|{}.! and \\ gets a backslash", ok, bad)
  check("escape: all together", md.escape("_*[]()~`>#+-=|{}.!\\") ==
        "\\_\\*\\[\\]\\(\\)\\~\\`\\>\\#\\+\\-\\=\\|\\{\\}\\.\\!\\\\")
  local others = "abc XYZ 019 /:@$%^&,;'\"<?\n\t😀 字 é"
  check("escape: nothing else changes", md.escape(others) == others)
  check("escape: a sentence", md.escape("1+1=2. (ok!) a_b") == "1\\+1\\=2\\. \\(ok\\!\\) a\\_b")
  check("escape: empty", md.escape("") == "")
  check("escape: every other byte 0..255 unchanged", (function()
    local set = {}
    for _, c in ipairs(reserved) do set[c] = true end
    for b = 0, 255 do
      local c = string.char(b)
      if not set[c] and md.escape(c) ~= c then return false end
    end
    return true
  end)())
  local text, ents = md.to_entities(md.escape("**a** _b_ `c` [d](http://e.f) \\ ~~g~~\n```\nh\n```"))
  check("escape: to_entities(escape(s)) is s, without entities",
        text == "**a** _b_ `c` [d](http://e.f) \\ ~~g~~\n```\nh\n```" and #ents == 0, text)
end

-- utf16_len().
do
  check("utf16_len: empty", md.utf16_len("") == 0)
  check("utf16_len: ASCII", md.utf16_len("hello") == 5)
  check("utf16_len: CJK 1 each", md.utf16_len("汉字") == 2)
  check("utf16_len: emoji 2", md.utf16_len("😀") == 2)
  check("utf16_len: ZWJ family 8", md.utf16_len("👨‍👩‍👧") == 8)
  check("utf16_len: é precomposed 1, decomposed 2", md.utf16_len("é") == 1 and md.utf16_len("e\204\129") == 2)
  check("utf16_len: U+FFFF 1, U+10000 2, U+10FFFF 2",
        md.utf16_len("\239\191\191") == 1 and md.utf16_len("\240\144\128\128") == 2 and md.utf16_len("\244\143\191\191") == 2)
  check("utf16_len: an invalid byte counts 1", md.utf16_len("a\255b") == 3)
  check("utf16_len: an encoded surrogate is 3 invalid bytes", md.utf16_len("\237\160\128") == 3)
  check("utf16_len: an overlong form is 2 invalid bytes", md.utf16_len("\192\175") == 2)
  check("utf16_len: a truncated sequence counts 1 a byte", md.utf16_len("\240\159\152") == 3 and md.utf16_len("\229\151a") == 3)
  check("utf16_len: above U+10FFFF is 4 invalid bytes", md.utf16_len("\244\144\128\128") == 4)
  check("utf16_len: a stray continuation byte counts 1", md.utf16_len("\128\191") == 2)
end

-- Random strings from markers, letters, spaces, newlines, emoji, backslashes, brackets: never
-- raises, and the invariants (see invariants()) hold.
do
  local tokens = { "*", "**", "***", "_", "__", "~", "~~", "`", "``", "```", "\n```\n", "\n```lua\n", "\n````\n",
                   "[", "]", "(", ")", "](http://x.y)", "](https://e.org/a_(b))", "](ftp://z)", "](tg://u)", "\\",
                   "\\*", "\\_", "\\`", "\\\\", "a", "b", "word", "2", "x_y", " ", " ", "  ", "\n", "\n\n", "\r\n",
                   "😀", "👨‍👩‍👧", "字", "重要", "é", "e\204\129", ".", ",", "!", "(", "-", "\255", "\t" }
  local seed = 20240611
  local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n + 1 end
  local count, fail = 0, nil
  for _ = 1, 500 do
    local t = {}
    for k = 1, rnd(60) do t[k] = tokens[rnd(#tokens)] end
    local src = table.concat(t)
    local why = invariants(src)
    if why then fail = ("%s\n     src=%q"):format(why, src) break end
    count = count + 1
  end
  check("random: 500 strings keep every invariant", count == 500, fail)

  -- escape() round-trips random strings of the same alphabet
  local rt, bad = 0, nil
  for _ = 1, 200 do
    local t = {}
    for k = 1, rnd(40) do t[k] = tokens[rnd(#tokens)] end
    local s = table.concat(t)
    local text, ents = md.to_entities(md.escape(s))
    if text ~= s or #ents ~= 0 then bad = ("%q"):format(s) break end
    rt = rt + 1
  end
  check("random: to_entities(escape(s)) == s, no entities, for 200 strings", rt == 200, bad)
end

setmetatable(_G, nil)
local new_globals = {}
for k in pairs(_G) do
  if not globals_before[k] then new_globals[#new_globals + 1] = tostring(k) end
end
check("no global created", #new_globals == 0, table.concat(new_globals, ", "))

spec.report()
