-- chatgw.chat.channels.telegram.markdown: a reply's text with format = "markdown" turned into
-- plain text plus Telegram Bot API MessageEntity records, so that the Telegram adapter sends
-- `text` and `entities` (no parse_mode): nothing is left for Telegram to parse, so no escaping
-- can fail on its side. Pure Lua 5.1/LuaJIT: no globals, no chatgw global, no C modules.
--
--   md.to_entities(src) -- -> text, entities: { { type =, offset =, length = [, url =] [, language =] }, ... }
--                       --    sorted by offset, then by length (longest first); {} when none
--   md.plain(src)       -- -> text alone (the plain-text fallback); always to_entities(src)'s text
--   md.escape(s)        -- s with a "\" before each of  _ * [ ] ( ) ~ ` > # + - = | { } . !  and  \
--                       --    (Telegram's MarkdownV2 escaping; and plain(escape(s)) == s here too)
--   md.utf16_len(s)     -- UTF-16 code units of the UTF-8 string s (an invalid byte counts 1)
--
-- Offsets and lengths are in UTF-16 code units of the returned text (the markup removed), as
-- Telegram counts them (https://core.telegram.org/api/entities): a code point above U+FFFF
-- (most emoji) counts 2, every other valid code point 1, every byte of an invalid sequence 1.
-- The text keeps every byte of src that is not consumed markup, in order. Any input is accepted
-- and nothing raises: a number is read as its tostring, any other non-string as "".
--
-- The subset recognised (anything else is literal text, kept as written):
--   ```lang\n...\n```  pre, with language = the first word after the opening fence, or without
--                      a language when there is none. The opening fence is a line of 3 or more
--                      backticks (up to 3 spaces before them) and an info string without a
--                      backtick, followed by a newline; the block ends at the next line of at
--                      least as many backticks (up to 3 spaces before, spaces/tabs/CR after) or,
--                      unclosed, at the end of the text. Both fence lines are removed (the
--                      newline before the closing fence too, the one after it stays); the lines
--                      between are the text, literal: no markers, no escapes.
--   `code`             code: a run of N backticks up to the next run of exactly N backticks
--                      (``a ` b`` holds a backtick); the text between is literal, byte for
--                      byte (no trimming, no escapes, newlines kept). No closing run: literal.
--   **bold** __bold__  bold (CommonMark reading of __: bold, not underline)
--   *italic* _italic_  italic
--   ~~strike~~         strikethrough (exactly two tildes; a single ~ is literal)
--   [text](url)        text_link with url, when url starts (any case) with http://, https://,
--                      tg:// or mailto: (something after), has no space or control character,
--                      is at most 2048 bytes and text is not empty; otherwise the brackets,
--                      parentheses and url all stay literal text. The url may hold balanced
--                      parentheses and backslash escapes (\) is a literal ")"). Links do not
--                      nest; emphasis does not cross a link's brackets.
--   \c                 a literal c, for c any character that escape() escapes; a backslash
--                      before anything else (or at the end) is itself literal.
-- Emphasis (* ** _ __ ~~) follows CommonMark's delimiter-run algorithm (nesting, ***x*** as
-- bold and italic, the rule of 3), with the stricter flanking rule CommonMark uses for _
-- applied to every marker: a run opens only at a word start (left-flanking and, when also
-- right-flanking, preceded by punctuation) and closes only at a word end, so snake_case_name,
-- 2*3*4, 2 * 3 = 6 and a*b stay literal. An unmatched run is literal. For flanking, CJK, kana,
-- fullwidth forms, symbols, emoji and other code points above U+FFFF count as punctuation (so
-- 这是**重要**的 works without spaces); other letters (Latin, Cyrillic, ...) as letters.
-- Emphasis may span line breaks (blank lines too) but never a pre block.
--
-- Entities Telegram would refuse or rewrite are never produced: every two entities are disjoint
-- or nested; code and pre contain no entity and are inside none (Telegram: "pre and code can't
-- be part of other entities"): a bold/italic/strikethrough around code is cut into the parts
-- before and after it, code inside a link's text loses its code entity (the link stays); an
-- entity inside one of the same type is dropped (it adds nothing); empty entities are dropped.
-- Not recognised: headings, lists, quotes, tables, underline, spoiler, ~~~ fences, autolinks,
-- images (![alt](url) is "!" and a link), HTML.
local M = {}

local byte, sub, find, match, gsub, rep, char = string.byte, string.sub, string.find, string.match,
  string.gsub, string.rep, string.char
local concat, sort = table.concat, table.sort

local MAX_URL = 2048

-- The characters escape() escapes, which a backslash makes literal (by byte and by character).
local ESCAPABLE = "_*[]()~`>#+-=|{}.!\\"
local ESC = {}
for k = 1, #ESCAPABLE do
  ESC[byte(ESCAPABLE, k)] = true
  ESC[sub(ESCAPABLE, k, k)] = true
end

local function as_string(s)
  if type(s) == "string" then return s end
  if type(s) == "number" then return tostring(s) end
  return ""
end

-- UTF-8 (strict, RFC 3629): the code point at byte i of s and its byte length, or -1, 1 for an
-- invalid byte (overlong forms, surrogates, above U+10FFFF, truncated sequences).
local function decode(s, i)
  local b = byte(s, i)
  if not b then return nil, 0 end
  if b < 0x80 then return b, 1 end
  local want, min, c
  if b >= 0xC2 and b < 0xE0 then want, min, c = 1, 0x80, b - 0xC0
  elseif b >= 0xE0 and b < 0xF0 then want, min, c = 2, 0x800, b - 0xE0
  elseif b >= 0xF0 and b < 0xF5 then want, min, c = 3, 0x10000, b - 0xF0
  else return -1, 1 end
  for j = 1, want do
    local x = byte(s, i + j)
    if not x or x < 0x80 or x > 0xBF then return -1, 1 end
    c = c * 64 + (x - 0x80)
  end
  if c < min or c > 0x10FFFF or (c >= 0xD800 and c <= 0xDFFF) then return -1, 1 end
  return c, want + 1
end

-- The code point that ends just before byte i of s (nil at the start), -1 for an invalid byte.
local function decode_before(s, i)
  if i <= 1 then return nil end
  local j = i - 1
  while j > 1 and j > i - 4 do
    local b = byte(s, j)
    if b < 0x80 or b >= 0xC0 then break end
    j = j - 1
  end
  local c, len = decode(s, j)
  if j + len == i then return c end
  return -1
end

local function utf16_len(s)
  s = as_string(s)
  if not find(s, "[\128-\255]") then return #s end
  local n, i, len = 0, 1, #s
  while i <= len do
    local b = byte(s, i)
    if b < 0x80 then
      n, i = n + 1, i + 1
    else
      local c, l = decode(s, i)
      n, i = n + (c >= 0x10000 and 2 or 1), i + l
    end
  end
  return n
end

-- Character classes for flanking.
local SPACE, PUNCT, OTHER = 0, 1, 2

local function class(c)
  if c == nil then return SPACE end
  if c < 0x80 then
    if c == 32 or (c >= 9 and c <= 13) then return SPACE end
    if (c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) then return OTHER end
    return PUNCT -- ASCII punctuation and control characters
  end
  if c < 0 then return PUNCT end -- an invalid byte
  if c == 0xA0 or c == 0x1680 or (c >= 0x2000 and c <= 0x200A) or c == 0x2028 or c == 0x2029
     or c == 0x202F or c == 0x205F or c == 0x3000 then
    return SPACE
  end
  if (c >= 0xA1 and c <= 0xBF) or c == 0xD7 or c == 0xF7
     or (c >= 0x200B and c <= 0x200F)  -- zero-width characters, ZWJ, direction marks
     or (c >= 0x2010 and c <= 0x2BFF)  -- general punctuation .. arrows, math, symbols, dingbats
     or (c >= 0x2E00 and c <= 0x9FFF)  -- supplemental punctuation, CJK, kana, CJK ideographs
     or (c >= 0xF900 and c <= 0xFAFF)  -- CJK compatibility ideographs
     or (c >= 0xFE00 and c <= 0xFE6F)  -- variation selectors, CJK compatibility/small forms
     or (c >= 0xFF00 and c <= 0xFFEF)  -- halfwidth and fullwidth forms
     or c >= 0x10000 then              -- emoji, CJK extensions, other astral code points
    return PUNCT
  end
  return OTHER
end

-- can_open, can_close of a delimiter run between the classes before and after it.
local function flanking(before, after)
  local left = after ~= SPACE and (after ~= PUNCT or before ~= OTHER)
  local right = before ~= SPACE and (before ~= PUNCT or after ~= OTHER)
  return left and (not right or before == PUNCT), right and (not left or after == PUNCT)
end

local function scheme_ok(url)
  local l = url:sub(1, 10):lower()
  return find(l, "^https?://.") ~= nil or find(l, "^tg://.") ~= nil or find(l, "^mailto:.") ~= nil
end

local function unescape(s)
  return (gsub(s, "\\(.)", function(c) if ESC[c] then return c end end))
end

-- The url of a link whose "(" is just before byte i: url, the byte after its ")"; or nil.
local function parse_url(s, i)
  local n, depth, j = #s, 0, i
  local last = i + MAX_URL
  while j <= n and j <= last do
    local b = byte(s, j)
    if b == 92 then
      j = j + ((ESC[byte(s, j + 1) or 0] and 2) or 1)
    elseif b == 40 then
      depth, j = depth + 1, j + 1
    elseif b == 41 then
      if depth == 0 then
        if j == i then return nil end
        return unescape(sub(s, i, j - 1)), j + 1
      end
      depth, j = depth - 1, j + 1
    elseif b <= 32 or b == 127 then
      return nil
    else
      j = j + 1
    end
  end
  return nil
end

-- The output being built: text parts, the UTF-16 position, the entities (with s and e set as
-- their start and end are written).
local function new_out()
  return { parts = {}, np = 0, pos = 0, ents = {}, ne = 0 }
end

local function put(out, s)
  if s ~= "" then
    out.np = out.np + 1
    out.parts[out.np] = s
    out.pos = out.pos + utf16_len(s)
  end
end

local function new_entity(out, typ)
  local e = { type = typ }
  out.ne = out.ne + 1
  out.ents[out.ne] = e
  e.seq = out.ne
  return e
end

-- Pieces of an inline segment.
local TEXT, DELIM, CODE = 1, 2, 3

local function add_to(list_owner, field, e)
  local l = list_owner[field]
  if not l then l = {}; list_owner[field] = l end
  l[#l + 1] = e
end

-- Parse one inline segment (text outside pre blocks) and write it to out.
local function inline(s, out)
  local n = #s
  if n == 0 then return end
  if not find(s, "[\\`*_~%[%]]") then put(out, s) return end

  local pieces, np = {}, 0
  local function push(p) np = np + 1; pieces[np] = p; return p end

  -- The delimiter list (a doubly linked list after a sentinel), in source order.
  local head = { idx = 0 }
  local tail, next_idx = head, 0
  local brackets, nb, links = {}, 0, 0

  -- Backtick runs of the segment by length (for closing a code span), with a cursor each.
  local runs, cursor
  local function closer_of(m, after)
    if not runs then
      runs, cursor = {}, {}
      local p = 1
      while true do
        local a, b = find(s, "`+", p)
        if not a then break end
        local len = b - a + 1
        local l = runs[len]
        if not l then l = {}; runs[len] = l; cursor[len] = 1 end
        l[#l + 1] = a
        p = b + 1
      end
    end
    local l = runs[m]
    if not l then return nil end
    local c = cursor[m]
    while l[c] and l[c] < after do c = c + 1 end
    cursor[m] = c
    return l[c]
  end

  local function remove(d)
    d.prev.next = d.next
    if d.next then d.next.prev = d.prev else tail = d.prev end
    d.removed = true
  end

  -- CommonMark's "process emphasis" over the delimiters after bottom; they are all gone after.
  local function process(bottom)
    local openers_bottom = {}
    local closer = bottom.next
    while closer do
      if closer.can_close then
        local key = closer.ch * 8 + (closer.can_open and 4 or 0) + closer.orig % 3
        local limit = openers_bottom[key] or bottom.idx
        local opener = closer.prev
        while opener ~= bottom and opener.idx > limit do
          if opener.ch == closer.ch and opener.can_open then
            if closer.ch == 126 then break end
            -- the rule of 3
            if not ((opener.can_close or closer.can_open) and (opener.orig + closer.orig) % 3 == 0
                    and not (opener.orig % 3 == 0 and closer.orig % 3 == 0)) then
              break
            end
          end
          opener = opener.prev
        end
        if opener ~= bottom and opener.idx > limit then
          local use, typ
          if closer.ch == 126 then use, typ = 2, "strikethrough"
          elseif opener.n >= 2 and closer.n >= 2 then use, typ = 2, "bold"
          else use, typ = 1, "italic" end
          local e = new_entity(out, typ)
          opener.n = opener.n - use
          opener.piece.kept = opener.n
          add_to(opener.piece, "opens", e)
          closer.n = closer.n - use
          closer.piece.kept = closer.n
          add_to(closer.piece, "closes", e)
          -- the delimiters between them are literal now
          local d = opener.next
          while d ~= closer do d.removed = true; d = d.next end
          opener.next, closer.prev = closer, opener
          if opener.n == 0 then remove(opener) end
          if closer.n == 0 then
            local nx = closer.next
            remove(closer)
            closer = nx
          end
        else
          openers_bottom[key] = closer.prev.idx
          local nx = closer.next
          if not closer.can_open then remove(closer) end
          closer = nx
        end
      else
        closer = closer.next
      end
    end
    bottom.next = nil
    tail = bottom
  end

  local i, text_start = 1, 1
  local function flush(upto)
    if upto >= text_start then push({ t = TEXT, s = sub(s, text_start, upto) }) end
  end

  while i <= n do
    local b = byte(s, i)
    if b == 92 then -- backslash
      local c = byte(s, i + 1)
      if c and ESC[c] then
        flush(i - 1)
        push({ t = TEXT, s = char(c) })
        i = i + 2
        text_start = i
      else
        i = i + 1
      end
    elseif b == 96 then -- backtick run: a code span if a run as long follows
      local j = i
      while byte(s, j) == 96 do j = j + 1 end
      local m = j - i
      local c = closer_of(m, j)
      if c then
        flush(i - 1)
        push({ t = CODE, s = sub(s, j, c - 1) })
        i = c + m
        text_start = i
      else
        i = j
      end
    elseif b == 42 or b == 95 or b == 126 then -- * _ ~
      local j = i
      while byte(s, j) == b do j = j + 1 end
      local m = j - i
      if b == 126 and m ~= 2 then
        i = j
      else
        flush(i - 1)
        local p = push({ t = DELIM, ch = b, kept = m })
        local can_open, can_close = flanking(class(decode_before(s, i)), class((decode(s, j))))
        if can_open or can_close then
          next_idx = next_idx + 1
          local d = { piece = p, ch = b, n = m, orig = m, can_open = can_open, can_close = can_close,
                      idx = next_idx, prev = tail }
          tail.next = d
          tail = d
        end
        i = j
        text_start = i
      end
    elseif b == 91 then -- [
      flush(i - 1)
      local p = push({ t = TEXT, s = "[" })
      nb = nb + 1
      brackets[nb] = { piece = p, bottom = tail, src = i, links = links }
      i = i + 1
      text_start = i
    elseif b == 93 and nb > 0 then -- ]
      local top = brackets[nb]
      brackets[nb] = nil
      nb = nb - 1
      local url, after
      if top.links == links and byte(s, i + 1) == 40 and i > top.src + 1 and not top.bottom.removed then
        url, after = parse_url(s, i + 2)
        if url and not scheme_ok(url) then url = nil end
      end
      if url then
        flush(i - 1)
        local e = new_entity(out, "text_link")
        e.url = url
        top.piece.s = ""
        add_to(top.piece, "opens", e)
        push({ t = TEXT, s = "", closes = { e } })
        process(top.bottom)
        links = links + 1
        i = after
        text_start = i
      else
        i = i + 1
      end
    else
      i = i + 1
    end
  end
  flush(n)
  process(head)

  for k = 1, np do
    local p = pieces[k]
    local l = p.closes
    if l then for x = 1, #l do l[x].e = out.pos end end
    if p.t == TEXT then
      put(out, p.s)
    elseif p.t == DELIM then
      if p.kept > 0 then put(out, rep(char(p.ch), p.kept)) end
    else
      local e = new_entity(out, "code")
      e.s = out.pos
      put(out, p.s)
      e.e = out.pos
    end
    l = p.opens
    if l then for x = 1, #l do l[x].s = out.pos end end
  end
end

-- Split src into inline segments and pre blocks, and write them to out.
local function blocks(src, out)
  local n = #src
  local seg_start, ls = 1, 1
  while ls <= n do
    local le = find(src, "\n", ls, true)
    if not le then break end
    local fb, fence, info = byte(src, ls), nil, nil
    if fb == 96 or fb == 32 then fence, info = match(sub(src, ls, le - 1), "^ ? ? ?(```+)([^`]*)$") end
    if fence then
      -- look for the closing fence
      local cs, ce = le + 1, nil
      while cs <= n do
        local e = find(src, "\n", cs, true) or n + 1
        local fb2, f = byte(src, cs), nil
        if fb2 == 96 or fb2 == 32 then f = match(sub(src, cs, e - 1), "^ ? ? ?(```+)[ \t\r]*$") end
        if f and #f >= #fence then ce = e break end
        cs = e + 1
      end
      local content
      if ce then
        content = cs > le + 1 and sub(src, le + 1, cs - 2) or ""
        if byte(content, -1) == 13 then content = sub(content, 1, -2) end
      else
        content = sub(src, le + 1, n)
      end
      inline(sub(src, seg_start, ls - 1), out)
      local e = new_entity(out, "pre")
      e.language = match(info, "^%s*(%S+)")
      e.s = out.pos
      put(out, content)
      e.e = out.pos
      if not ce then
        seg_start = n + 1
        break
      end
      -- the closing line's own line end stays, CRLF included
      seg_start = (ce > cs and byte(src, ce - 1) == 13) and ce - 1 or ce
      ls = ce + 1
    else
      ls = le + 1
    end
  end
  inline(sub(src, seg_start, n), out)
end

local RANK = { pre = 1, text_link = 2, bold = 3, italic = 4, strikethrough = 5, code = 6 }
local SPLIT = { bold = true, italic = true, strikethrough = true }

local function by_position(a, b)
  if a.s ~= b.s then return a.s < b.s end
  local la, lb = a.e - a.s, b.e - b.s
  if la ~= lb then return la > lb end
  if a.type ~= b.type then return RANK[a.type] < RANK[b.type] end
  return a.seq < b.seq
end

-- Make the entities acceptable to Telegram (see the header) and in the order of the API.
local function finish(ents)
  local list = {}
  for k = 1, #ents do
    local e = ents[k]
    if e.e > e.s then list[#list + 1] = e end
  end
  sort(list, by_position)

  -- code inside a link: drop the code; collect the codes left
  local kept, codes, link_end = {}, {}, -1
  for k = 1, #list do
    local e = list[k]
    if e.type == "text_link" then
      if e.e > link_end then link_end = e.e end
      kept[#kept + 1] = e
    elseif e.type == "code" then
      if e.s >= link_end then
        kept[#kept + 1] = e
        codes[#codes + 1] = e
      end
    else
      kept[#kept + 1] = e
    end
  end

  -- bold/italic/strikethrough around code: cut into the parts around each code
  local out, seq = {}, #ents
  for k = 1, #kept do
    local e = kept[k]
    if SPLIT[e.type] and #codes > 0 then
      local lo, hi = 1, #codes + 1 -- the first code with s >= e.s
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if codes[mid].s < e.s then lo = mid + 1 else hi = mid end
      end
      local at = e.s
      local c = codes[lo]
      if c and c.s < e.e then
        while c and c.s < e.e do
          if c.s > at then
            seq = seq + 1
            out[#out + 1] = { type = e.type, s = at, e = c.s, seq = seq }
          end
          at = c.e
          lo = lo + 1
          c = codes[lo]
        end
        if e.e > at then
          seq = seq + 1
          out[#out + 1] = { type = e.type, s = at, e = e.e, seq = seq }
        end
      else
        out[#out + 1] = e
      end
    else
      out[#out + 1] = e
    end
  end
  sort(out, by_position)

  -- an entity inside one of its own type adds nothing
  local result, type_end = {}, {}
  for k = 1, #out do
    local e = out[k]
    if not (type_end[e.type] and e.e <= type_end[e.type]) then
      type_end[e.type] = e.e
      local r = { type = e.type, offset = e.s, length = e.e - e.s }
      if e.url then r.url = e.url end
      if e.language then r.language = e.language end
      result[#result + 1] = r
    end
  end
  return result
end

function M.to_entities(src)
  src = as_string(src)
  local out = new_out()
  blocks(src, out)
  return concat(out.parts), finish(out.ents)
end

function M.plain(src)
  return (M.to_entities(src))
end

function M.escape(s)
  return (gsub(as_string(s), "[_%*%[%]%(%)~`>#%+%-=|{}%.!\\]", "\\%0"))
end

M.utf16_len = utf16_len

return M
