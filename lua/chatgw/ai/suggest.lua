-- chatgw.ai.suggest: the prompt and the checks for the model's answer in the `suggest` stage of
-- the tasks API (POST /v1/tasks), compatible with seed 000 (CHAT-GATEWAY,
-- src/core/internal_api.ts at the seed's commit). Pure Lua: requires only chatgw.json.
--
--   suggest.SYSTEM                              -- system message
--   suggest.user_prompt(prompt, context)        -- user message (the seed's layout)
--   suggest.first_json_object(text [, accept])  -- -> obj, raw_substring | nil
--   suggest.check(model_text)                   -- -> result table; never raises
--   suggest.for_json(result)                    -- -> copy with empty lists as json.empty_array
--
-- check, in the seed's order:
--  1. JSON: the whole text, else the first balanced {...} candidate (strings and escapes
--     honoured) -> else llm_non_json {raw_tail, extracted_tail}.
--  2. warnings, files_touched, verify_cmds become lists of strings (model warnings first).
--  3. files_touched: a leading /srv/<project>/ is stripped; every offender is named (up to 3)
--     in "files_touched_not_repo_relative: ..." (the seed's warning); what stays unsafe is dropped.
--  4. verify_cmds: "cd /srv/<p> && " and /srv/<p>/ prefixes are removed, with the seed's
--     warning "verify_cmds_contains_absolute_paths".
--  5. suggested_patch, when non-empty: a missing final newline is added with the warning
--     "patch_missing_trailing_newline" (the seed does this: it does NOT reject); then the
--     completeness check -> patch_truncated_or_invalid; then > 20000 -> patch_too_long. Both
--     carry {extracted_used, extracted_tail, patch_tail, warnings + "patch_rejected_by_gateway"}.
--  Success: { ok = true, summary = THE RAW MODEL OUTPUT (as the seed: its `summary` is the whole
--  text, prose and fences included), summary_text = the JSON's own summary, suggested_patch,
--  files_touched, verify_cmds, warnings, extracted_used }. Lists are plain Lua arrays; encode
--  for_json(result), which writes an empty one as [] (cjson writes {} for an empty table).
--
-- Departures from the seed (it computes the normalised fields, then drops them on success and
-- returns only summary; here they are returned):
--  * A whole text that is valid JSON but not an object (array, string, null) is llm_non_json
--    (seed: accepted as an empty suggestion; null crashed it). An object must have at least one
--    of the five keys: a candidate without any is skipped (so {"result": {...}} is unwrapped
--    and a stray {} cannot pass as an answer); none at all -> llm_non_json.
--  * A candidate that does not parse is skipped and the next '{' tried (seed: only the first);
--    a '{' inside a JSON string is tried after the structural ones; the work is bounded
--    (200 decodes, 4 linear passes), so hostile output cannot stall the event loop.
--  * Lists: numbers become strings (as the seed's String()); other non-strings (null, bool,
--    objects) are dropped with "<field>_non_string_items_dropped: N" (seed: "null",
--    "[object Object]"); a non-list value gives "<field>_not_a_list" (seed: silent []). Items
--    are trimmed, empty ones dropped (seed drops ""), files_touched deduplicated, "./" removed.
--  * Unsafe paths also include "..", "~", drive letters, a .git component, control characters
--    (seed: only "/..." and ":/"), and are dropped; "x/srv/y" relative paths are not flagged.
--  * Patch: whitespace-only is "" (no patch); a ```diff fence around it is removed
--    ("patch_code_fence_removed"); no fake "index 0000000..0000000" line is injected (git apply
--    does not need it). Checked per "diff --git" section: "--- a/<p>" or "--- /dev/null", then
--    "+++ b/<p>" or "+++ /dev/null" (seed: only a/ and b/, so new files were rejected), then
--    >= 1 "@@" hunk with a ' ', '+' or '-' line; metadata-only sections (rename, mode, binary)
--    pass; >= 1 hunk overall; header/rename paths must be safe as above (git refuses them too).
--    Hunk line counts are only warned about ("patch_hunk_counts_mismatch"), not enforced:
--    models miscount and `git apply --recount` repairs it. A non-string patch is invalid.
--  * Lengths (20000, tails of 800/1200, prompt cuts of 12000/6000) count UTF-16 units like the
--    seed's JavaScript, and cuts fall on UTF-8 boundaries.
--  * user_prompt's JSON has sorted keys (JavaScript kept insertion order; Lua cannot), and an
--    empty table is written {} (an empty array and object look the same once decoded).
local json = require "chatgw.json"

local byte, sub, find, match, gsub, gmatch, lower, format =
  string.byte, string.sub, string.find, string.match, string.gsub, string.gmatch, string.lower,
  string.format
local concat, sort = table.concat, table.sort
local floor = math.floor
local type, tostring, tonumber, pairs, ipairs, next, pcall =
  type, tostring, tonumber, pairs, ipairs, next, pcall
local min = math.min

local M = {}

M.MAX_PATCH_CHARS = 20000
M.MAX_CANDIDATES = 200

-- The prompts ask for what the checks below accept (in chatgw's words; the seed's layout:
-- the key list and rules, then file snippets, other context and the issue).
M.SYSTEM = "You are a careful engineering assistant. State facts only and propose no risky actions. "
  .. "Answer with one strict JSON object and nothing else (no markdown)."

local PROMPT_HEAD = "Answer with exactly one JSON object with these keys and no others:\n"
  .. "- summary: string\n"
  .. "- suggested_patch: string: a complete git unified diff beginning with \"diff --git\", or \"\" for no change\n"
  .. "- files_touched: array of strings: paths relative to the repository root\n"
  .. "- verify_cmds: array of strings: commands run from the repository root (no absolute /srv paths)\n"
  .. "- warnings: array of strings\n"
  .. "Do not wrap the object in code fences.\n\n"
  .. "Rules:\n"
  .. "1) A patch carries the usual headers for each file:\n"
  .. "   diff --git a/<path> b/<path>\n"
  .. "   --- a/<path>\n"
  .. "   +++ b/<path>\n"
  .. "   @@ ...\n"
  .. "2) Paths are relative to the repository root; never write absolute paths such as /srv/...\n"
  .. "3) Keep the patch as small and as safe as the fix allows.\n"
  .. "4) When file snippets are given below, the patch must apply to exactly that text. If the\n"
  .. "   change is already there, give suggested_patch \"\" and the warning \"already_applied\".\n"
  .. "5) Give each hunk at least 3 lines of context, so that 'git apply --check' succeeds.\n\n"
  .. "FILE SNIPPETS (authoritative, if present):\n"

local KEYS = { "summary", "suggested_patch", "files_touched", "verify_cmds", "warnings" }

---------------------------------------------------------------------------------------------
-- UTF-16 lengths and cuts of UTF-8 text (an invalid byte counts as one unit)

local function u16len(s)
  local _, cont = gsub(s, "[\128-\191]", "")
  local _, astral = gsub(s, "[\240-\247]", "")
  return #s - cont + astral
end

local function cp_len(b)
  if b >= 0xF0 then return 4, 2 elseif b >= 0xE0 then return 3, 1
  elseif b >= 0xC0 then return 2, 1 end
  return 1, 1
end

-- The longest prefix of s of at most n UTF-16 units ending on a code point boundary.
local function head_u16(s, n)
  if #s <= n then return s end
  local i, units, len = 1, 0, #s
  while i <= len do
    local l, w = cp_len(byte(s, i))
    if units + w > n then break end
    units, i = units + w, i + l
  end
  return sub(s, 1, i - 1)
end

-- The longest suffix of s of at most n UTF-16 units starting on a code point boundary.
local function tail_u16(s, n)
  s = tostring(s or "")
  if #s <= n then return s end
  local j, units = #s, 0
  while j >= 1 do
    local k = j
    while k > 1 and j - k < 3 do
      local b = byte(s, k)
      if b < 0x80 or b >= 0xC0 then break end
      k = k - 1
    end
    local w = byte(s, k) >= 0xF0 and 2 or 1
    if units + w > n then break end
    units, j = units + w, k - 1
  end
  return sub(s, j + 1)
end

---------------------------------------------------------------------------------------------
-- JSON helpers

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k ~= floor(k) then return false end
    n = n + 1
  end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

-- JSON text of v; indent = "  " for JSON.stringify(v, null, 2)-style output, nil for compact.
local function encode(v, indent, cur, depth)
  cur, depth = cur or "", depth or 0
  if type(v) == "table" then
    if depth > 64 then return "null" end
    if next(v) == nil then return "{}" end
    local inner = indent and (cur .. indent) or ""
    local nl = indent and "\n" or ""
    local parts = {}
    if is_array(v) then
      for i = 1, #v do parts[i] = inner .. encode(v[i], indent, inner, depth + 1) end
      return "[" .. nl .. concat(parts, "," .. nl) .. nl .. (indent and cur or "") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    sort(keys)
    local byname = {}
    for k, x in pairs(v) do byname[tostring(k)] = x end
    for i, k in ipairs(keys) do
      parts[i] = inner .. json.encode(k) .. (indent and ": " or ":")
        .. encode(byname[k], indent, inner, depth + 1)
    end
    return "{" .. nl .. concat(parts, "," .. nl) .. nl .. (indent and cur or "") .. "}"
  end
  local tv = type(v)
  if tv == "string" or tv == "number" or tv == "boolean" or v == json.null then
    local ok, s = pcall(json.encode, v)
    if ok then return s end
  end
  return "null"
end

function M.user_prompt(prompt, context)
  prompt = prompt == nil and "" or tostring(prompt)
  if context == nil or context == json.null then context = {} end
  local snippets, other = nil, context
  if type(context) == "table" then
    snippets = context.file_snippets
    other = {}
    for k, v in pairs(context) do
      if k ~= "file_snippets" then other[k] = v end
    end
  end
  -- JavaScript's `context.file_snippets || {}`: every falsy value means none
  if snippets == nil or snippets == json.null or snippets == false or snippets == ""
      or snippets == 0 then
    snippets = {}
  end
  return PROMPT_HEAD .. head_u16(encode(snippets, "  "), 12000) .. "\n\n"
    .. "OTHER CONTEXT:\n" .. head_u16(encode(other), 6000) .. "\n\n"
    .. "ISSUE:\n" .. prompt
end

---------------------------------------------------------------------------------------------
-- first balanced JSON object

-- One pass over s from the '{' at i, outside strings from there on (JSON strings and their
-- escapes skipped): the '{' met outside strings in order, the matching '}' of each (false if
-- none), and the first '{' met inside a string (nil if none), where another pass may start.
local function tokenize(s, i)
  local starts, ends, stack, sp = {}, {}, {}, 0
  local pos, in_string_brace = i, nil
  while true do
    local j = find(s, '[{}"]', pos)
    if not j then break end
    local c = byte(s, j)
    if c == 34 then
      local k, close = j + 1, nil
      while true do
        local q = find(s, '["\\]', k)
        if not q then break end
        if byte(s, q) == 92 then
          k = q + 2
        else
          close = q
          break
        end
      end
      if not in_string_brace then
        local b = find(sub(s, j + 1, (close or #s + 1) - 1), "{", 1, true)
        if b then in_string_brace = j + b end
      end
      if not close then break end
      pos = close + 1
    elseif c == 123 then
      starts[#starts + 1] = j
      ends[j] = false
      sp = sp + 1
      stack[sp] = j
      pos = j + 1
    else
      if sp > 0 then
        ends[stack[sp]] = j
        stack[sp] = nil
        sp = sp - 1
      end
      pos = j + 1
    end
  end
  return starts, ends, in_string_brace
end

-- -> obj, raw | nil, nil, first rejected candidate, its reason. Candidates are the balanced
-- {...} in text order, those inside a JSON string of an earlier pass last; the work is
-- bounded: 4 passes, MAX_CANDIDATES decodes, about 4 * #text decoded bytes.
local function scan(text, accept)
  local tries, budget, tried = 0, 4 * #text + 65536, {}
  local rejected, why
  local from, passes = find(text, "{", 1, true), 0
  while from and passes < 4 do
    passes = passes + 1
    local starts, ends, next_from = tokenize(text, from)
    for _, i in ipairs(starts) do
      local j = ends[i]
      if j and not tried[i] then
        if tries >= M.MAX_CANDIDATES or budget < 0 then return nil, nil, rejected, why end
        tried[i] = true
        tries = tries + 1
        budget = budget - (j - i + 1)
        local raw = sub(text, i, j)
        local v, err = json.decode(raw)
        if type(v) == "table" and (not accept or accept(v)) then return v, raw end
        if not rejected then
          rejected = raw
          why = type(v) == "table" and "has none of the keys " .. concat(KEYS, ", ")
            or "does not parse: " .. tostring(err)
        end
      end
    end
    from = next_from
  end
  return nil, nil, rejected, why
end

-- The first balanced {...} in text that parses as a JSON object (and passes accept(obj), if
-- given): obj, raw substring; else nil. Without accept any object counts, {} included.
function M.first_json_object(text, accept)
  if type(text) ~= "string" then return nil end
  local obj, raw = scan(text, accept)
  if obj then return obj, raw end
  return nil
end

---------------------------------------------------------------------------------------------
-- fields

local function has_suggest_key(v)
  for _, k in ipairs(KEYS) do
    if v[k] ~= nil then return true end
  end
  return false
end

local function trim(s)
  return (match(s, "^%s*(.-)%s*$"))
end

local function name_list(t)
  local shown = {}
  for i = 1, min(#t, 3) do shown[i] = t[i] end
  local s = concat(shown, ", ")
  if #t > 3 then s = s .. format(" (+%d more)", #t - 3) end
  return s
end

local function str_list(v, field, warn)
  if v == nil or v == json.null then return {} end
  if type(v) ~= "table" or not is_array(v) then
    warn[#warn + 1] = field .. "_not_a_list"
    return {}
  end
  local out, dropped = {}, 0
  for i = 1, #v do
    local x = v[i]
    if type(x) == "number" then
      x = (x == floor(x) and x > -2 ^ 53 and x < 2 ^ 53) and format("%d", x) or tostring(x)
    end
    if type(x) == "string" then
      x = trim(x)
      if x ~= "" then out[#out + 1] = x end
    else
      dropped = dropped + 1
    end
  end
  if dropped > 0 then warn[#warn + 1] = format("%s_non_string_items_dropped: %d", field, dropped) end
  return out
end

local function strip_dot(p)
  while sub(p, 1, 2) == "./" do p = sub(p, 3) end
  return p
end

-- A repo-relative path that stays inside the repo.
local function path_ok(p)
  if p == "" or find(p, "^[/\\~]") or find(p, "^%a:") or find(p, ":/", 1, true)
      or find(p, "%c") then
    return false
  end
  for comp in gmatch(p, "[^/\\]+") do
    if comp == ".." or lower(comp) == ".git" then return false end
  end
  return true
end

local function clean_files(files, warn)
  local out, seen, offenders, dropped = {}, {}, {}, {}
  for _, p in ipairs(files) do
    local q = strip_dot(p)
    local ok = path_ok(q)
    if not ok then
      offenders[#offenders + 1] = p
      local rest = match(q, "^/srv/[^/]+/(.*)$")
      if rest then
        q = strip_dot(rest)
        ok = path_ok(q)
      end
      if not ok then dropped[#dropped + 1] = p end
    end
    if ok and not seen[q] then
      seen[q] = true
      out[#out + 1] = q
    end
  end
  if #offenders > 0 then
    warn[#warn + 1] = "files_touched_not_repo_relative: " .. name_list(offenders)
  end
  if #dropped > 0 then warn[#warn + 1] = "files_touched_dropped: " .. name_list(dropped) end
  return out
end

local function clean_cmds(cmds, warn)
  local out, flagged = {}, false
  for _, c in ipairs(cmds) do
    if find(" " .. c, "[%s\"'=]/srv/") then
      flagged = true
      c = gsub(c, "^cd%s+/srv/[^/%s;&]+/?%s*&&%s*", "")
      c = gsub(c, "^cd%s+/srv/[^/%s;&]+/?%s*;%s*", "")
      if find(c, "^cd%s+/srv/[^/%s;&]+/?%s*$") then c = "" end
      local s = gsub(" " .. c, "([%s\"'=])/srv/[^/%s\"';&]+/", "%1")
      c = trim(sub(s, 2))
    end
    if c ~= "" then out[#out + 1] = c end
  end
  if flagged then warn[#warn + 1] = "verify_cmds_contains_absolute_paths" end
  return out
end

---------------------------------------------------------------------------------------------
-- patch

-- "--- a/<p>" / "+++ b/<p>" name (after the marker): true | false, why
local function header_name_ok(name, prefix)
  name = gsub(name, "\t.*$", "")
  name = gsub(name, "%s+$", "")
  if name == "/dev/null" then return true end
  local quoted = match(name, '^"(.*)"$')
  if quoted then name = quoted end
  if sub(name, 1, 2) ~= prefix then
    return false, format("header must name %s<path> or /dev/null: %s", prefix, name)
  end
  if not path_ok(sub(name, 3)) then
    return false, "path not repo-relative in patch header: " .. sub(name, 3)
  end
  return true
end

local function hunk_counts_ok(h)
  local o1, o2, _, n2 = match(h.header, "^@@ %-(%d+),?(%d*) %+(%d+),?(%d*) @@")
  if not o1 then return nil end
  local want_old, want_new = tonumber(o2) or 1, tonumber(n2) or 1
  local old, new, i, body = 0, 0, 1, h.body
  while (old < want_old or new < want_new) and i <= #body do
    local c = sub(body[i], 1, 1)
    if c == " " or c == "" then old, new = old + 1, new + 1
    elseif c == "-" then old = old + 1
    elseif c == "+" then new = new + 1 end
    i = i + 1
  end
  if old ~= want_old or new ~= want_new then return false end
  for k = i, #body do
    local c = sub(body[k], 1, 1)
    if c == " " or c == "+" or c == "-" then return false end
  end
  return true
end

-- -> true | false, detail; appends warnings to warn
local function validate_patch(p, warn)
  local sections, cur, hunk, total_hunks = 0, nil, nil, 0
  local mismatch, bad_header

  local function close_hunk()
    if not hunk then return true end
    local h = hunk
    hunk = nil
    if h.content == 0 then
      return false, format("hunk without content lines in %s (truncated?)", cur.path or "?")
    end
    local ok = hunk_counts_ok(h)
    if ok == nil and not bad_header then bad_header = (cur.path or "?") .. " " .. h.header end
    if ok == false and not mismatch then mismatch = (cur.path or "?") .. " " .. h.header end
    return true
  end

  local function close_section()
    if not cur then return true end
    local ok, why = close_hunk()
    if not ok then return false, why end
    if cur.state == "old" then
      return false, format("--- without +++ in %s (truncated?)", cur.path or "?")
    elseif cur.state == "new" then
      return false, format("file headers without a hunk in %s (truncated?)", cur.path or "?")
    end
    return true
  end

  for line in gmatch(p, "([^\n]*)\n") do
    line = gsub(line, "\r$", "")
    if find(line, "^diff %-%-git ") then
      local ok, why = close_section()
      if not ok then return false, why end
      sections = sections + 1
      cur = { state = "ext" }
      local a, b = match(line, "^diff %-%-git a/(.-) b/(.-)%s*$")
      if a then
        cur.path = b
        if not path_ok(a) or not path_ok(b) then
          return false, "path not repo-relative in patch header: " .. line
        end
      elseif not find(line, '^diff %-%-git "?a/') then
        return false, "diff --git header must name a/<path> b/<path>: " .. line
      end
    elseif cur then
      local st = cur.state
      if st == "ext" then
        if sub(line, 1, 4) == "--- " then
          local ok, why = header_name_ok(sub(line, 5), "a/")
          if not ok then return false, "--- " .. why end
          cur.state = "old"
        elseif sub(line, 1, 2) == "@@" then
          return false, format("hunk before the ---/+++ headers in %s", cur.path or "?")
        else
          local rp = match(line, "^rename from (.*)$") or match(line, "^rename to (.*)$")
            or match(line, "^copy from (.*)$") or match(line, "^copy to (.*)$")
          if rp and not path_ok(trim(rp)) then
            return false, "path not repo-relative in patch header: " .. line
          end
        end
      elseif st == "old" then
        if sub(line, 1, 4) ~= "+++ " then
          return false, format("--- without +++ in %s", cur.path or "?")
        end
        local ok, why = header_name_ok(sub(line, 5), "b/")
        if not ok then return false, "+++ " .. why end
        cur.state = "new"
      elseif sub(line, 1, 2) == "@@" then
        local ok, why = close_hunk()
        if not ok then return false, why end
        hunk = { header = line, content = 0, body = {} }
        total_hunks = total_hunks + 1
        cur.state = "hunk"
      elseif st == "new" then
        return false, format("no @@ hunk after the file headers in %s", cur.path or "?")
      elseif st == "hunk" then
        local c = sub(line, 1, 1)
        if c == " " or c == "+" or c == "-" then
          hunk.content = hunk.content + 1
          hunk.body[#hunk.body + 1] = line
        elseif c == "" or c == "\\" then
          hunk.body[#hunk.body + 1] = line
        else
          cur.state = "garbage" -- text after a hunk: ignored, as git apply does
          local ok, why = close_hunk()
          if not ok then return false, why end
        end
      end
    end
  end
  local ok, why = close_section()
  if not ok then return false, why end
  if sections == 0 then return false, 'no "diff --git" header' end
  if total_hunks == 0 then return false, "no @@ hunk" end
  if bad_header then warn[#warn + 1] = "patch_hunk_header_invalid: " .. bad_header end
  if mismatch then warn[#warn + 1] = "patch_hunk_counts_mismatch: " .. mismatch end
  return true
end

---------------------------------------------------------------------------------------------
-- check

local function non_json(text, detail, rejected)
  return {
    ok = false,
    error = "llm_non_json",
    detail = detail,
    raw_tail = tail_u16(text, 800),
    extracted_tail = rejected and tail_u16(rejected, 800) or nil,
  }
end

local KIND = { ["["] = "an array", ['"'] = "a string", t = "a boolean", f = "a boolean",
               n = "null" }

function M.check(model_text)
  if model_text == nil then model_text = "" end
  if type(model_text) ~= "string" then
    return non_json(tostring(model_text), "model output is a " .. type(model_text) .. ", not text")
  end
  if not find(model_text, "%S") then return non_json(model_text, "empty model output") end

  -- 1. the JSON object
  local obj, raw, extracted_used
  local whole = json.decode(model_text)
  if whole ~= nil then
    local first = match(model_text, "^%s*(.)")
    if first ~= "{" then
      return non_json(model_text, "the answer is JSON " .. (KIND[first] or "a number")
        .. ", not an object")
    end
    if type(whole) == "table" and has_suggest_key(whole) then
      obj, raw, extracted_used = whole, model_text, false
    end
  end
  if not obj then
    local rejected, why
    obj, raw, rejected, why = scan(model_text, has_suggest_key)
    if not obj then
      if rejected then
        return non_json(model_text, "no usable JSON object (the first candidate " .. why .. ")",
          rejected)
      end
      return non_json(model_text, "no balanced {...} object in the output")
    end
    extracted_used = true
  end

  -- 2. lists of strings
  local gw = {} -- the gateway's warnings, after the model's own
  local warn = str_list(obj.warnings, "warnings", gw)
  local files = str_list(obj.files_touched, "files_touched", gw)
  local cmds = str_list(obj.verify_cmds, "verify_cmds", gw)
  for _, w in ipairs(gw) do warn[#warn + 1] = w end

  -- 3, 4. repo-relative paths
  files = clean_files(files, warn)
  cmds = clean_cmds(cmds, warn)

  -- 5. the patch
  local function patch_fail(code, detail, patch, marker)
    local w = {}
    for i, x in ipairs(warn) do w[i] = x end
    w[#w + 1] = marker
    return {
      ok = false,
      error = code,
      detail = detail,
      extracted_used = extracted_used,
      extracted_tail = extracted_used and tail_u16(raw, 800) or nil,
      patch_tail = tail_u16(patch, 1200),
      warnings = w,
    }
  end

  local patch = obj.suggested_patch
  if patch == nil or patch == json.null then patch = "" end
  if type(patch) ~= "string" then
    return patch_fail("patch_truncated_or_invalid",
      "suggested_patch is a " .. (type(patch) == "table" and "JSON list or object" or type(patch))
        .. ", not a string", "", "patch_rejected_by_gateway")
  end
  if not find(patch, "%S") then patch = "" end
  if patch ~= "" then
    local body = match(patch, "^%s*```[%w_.+-]*[ \t]*\r?\n(.*)$")
    if body then
      patch = match(body, "^(.-\n)[ \t]*```%s*$") or body
      warn[#warn + 1] = "patch_code_fence_removed"
    end
    if sub(patch, -1) ~= "\n" then
      warn[#warn + 1] = "patch_missing_trailing_newline"
      patch = patch .. "\n"
    end
    local ok, why = validate_patch(patch, warn)
    if not ok then
      return patch_fail("patch_truncated_or_invalid", why, patch, "patch_rejected_by_gateway")
    end
  end
  local n = u16len(patch)
  if n > M.MAX_PATCH_CHARS then
    return patch_fail("patch_too_long",
      format("patch is %d characters, more than %d", n, M.MAX_PATCH_CHARS), patch,
      "patch_rejected_by_gateway: too_long")
  end

  local summary_text = obj.summary
  if type(summary_text) == "number" then summary_text = tostring(summary_text) end
  if type(summary_text) ~= "string" then summary_text = "" end
  return {
    ok = true,
    summary = model_text, -- the seed's summary: the raw model output
    summary_text = summary_text,
    suggested_patch = patch,
    files_touched = files,
    verify_cmds = cmds,
    warnings = warn,
    extracted_used = extracted_used,
  }
end

-- A copy of a check result for chatgw.json.encode: an empty list becomes json.empty_array
-- (else it would be written {}).
function M.for_json(result)
  local out = {}
  for k, v in pairs(result) do
    if type(v) == "table" and next(v) == nil then v = json.empty_array end
    out[k] = v
  end
  return out
end

M._u16len, M._head_u16, M._tail_u16 = u16len, head_u16, tail_u16
return M
