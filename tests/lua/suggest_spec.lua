-- Plain-Lua checks for lua/chatgw/ai/suggest.lua (the prompt and the checks for the model's
-- answer in the `suggest` stage of the tasks API, after seed 000). Run from the repo root:
--   luajit tests/lua/suggest_spec.lua
package.path = "lua/?.lua;tests/lua/?.lua;" .. package.path

local spec = require "spec_helper"
local check = spec.check

-- The module must create no global and read none that does not exist: _G is strict from here
-- to the end (the spec's own names are locals too).
local globals_before = spec.strict_globals()

local suggest = require "chatgw.ai.suggest"
local json = require "chatgw.json"

local function has(list, s)
  for _, x in ipairs(list or {}) do
    if x == s then return true end
  end
  return false
end

local function has_prefix(list, p)
  for _, x in ipairs(list or {}) do
    if x:sub(1, #p) == p then return x end
  end
  return nil
end

local function show(t)
  if type(t) ~= "table" then return tostring(t) end
  local ok, s = pcall(json.encode, t)
  return ok and s or tostring(t)
end

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

-- A JSON answer around a patch (the patch text is JSON-escaped here).
local function answer(patch, extra)
  local obj = {
    summary = "Fix the off-by-one in the retry loop.",
    suggested_patch = patch,
    files_touched = { "src/retry.c" },
    verify_cmds = { "make test" },
    warnings = {},
  }
  for k, v in pairs(extra or {}) do obj[k] = v end
  return json.encode(obj)
end

local GOOD_PATCH = "diff --git a/src/retry.c b/src/retry.c\n"
  .. "index 3b18e51..a9c4f2d 100644\n"
  .. "--- a/src/retry.c\n"
  .. "+++ b/src/retry.c\n"
  .. "@@ -10,7 +10,7 @@ int retry(int n) {\n"
  .. "   int i;\n"
  .. "   int rc = -1;\n"
  .. "   /* try n times */\n"
  .. "-  for (i = 0; i <= n; i++) {\n"
  .. "+  for (i = 0; i < n; i++) {\n"
  .. "     rc = attempt(i);\n"
  .. "     if (rc == 0) break;\n"
  .. "   }\n"

---------------------------------------------------------------------------------------------
-- the prompts

check("SYSTEM asks for one strict JSON object", suggest.SYSTEM:find("strict JSON object", 1, true) ~= nil, suggest.SYSTEM)

do
  local ctx = {
    source = "telegram", chat_id = "42",
    file_snippets = { ["src/retry.c"] = "int retry(int n) {\n  return 0;\n}\n" },
  }
  local u = suggest.user_prompt("retries run one time too many", ctx)
  for _, k in ipairs({ "- summary: string\n", "- suggested_patch: string", "diff --git",
                       "- files_touched: array of strings", "- verify_cmds: array of strings",
                       "- warnings: array of strings\n", "\"already_applied\"", "'git apply --check'" }) do
    check("user_prompt: has " .. k:gsub("\n", "\\n"), u:find(k, 1, true) ~= nil)
  end
  check("user_prompt: file snippets pretty-printed (2 spaces) under FILE SNIPPETS",
    u:find('FILE SNIPPETS (authoritative, if present):\n{\n  "src/retry.c": "int retry(int n) {\\n  return 0;\\n}\\n"\n}\n\nOTHER CONTEXT:\n', 1, true) ~= nil, u)
  check("user_prompt: OTHER CONTEXT compact, sorted, without file_snippets",
    u:find('OTHER CONTEXT:\n{"chat_id":"42","source":"telegram"}\n\nISSUE:\nretries run one time too many', 1, true) ~= nil, u)
  check("user_prompt: ends with the prompt", u:sub(-29) == "retries run one time too many")
  check("user_prompt: context does not lose file_snippets (not mutated)", ctx.file_snippets ~= nil)

  local u0 = suggest.user_prompt("p", nil)
  check("user_prompt: no context -> {} and {}",
    u0:find("present):\n{}\n\nOTHER CONTEXT:\n{}\n\nISSUE:\np", 1, true) ~= nil, u0)

  -- the cuts: 12000 and 6000 UTF-16 units, never inside a UTF-8 sequence
  local big = { file_snippets = { ["a.txt"] = ("日本語"):rep(5000) }, note = ("é"):rep(7000) }
  local ub = suggest.user_prompt("p", big)
  local snip = ub:match("present%):\n(.-)\n\nOTHER CONTEXT:\n")
  local other = ub:match("OTHER CONTEXT:\n(.-)\n\nISSUE:\n")
  check("user_prompt: snippets cut to 12000 UTF-16 units", snip and suggest._u16len(snip) == 12000,
    snip and suggest._u16len(snip))
  check("user_prompt: other context cut to 6000 UTF-16 units", other and suggest._u16len(other) == 6000,
    other and suggest._u16len(other))
  local valid = true
  for _, cp in ipairs(spec.code_points(ub)) do
    if cp[2] < 0 then valid = false break end
  end
  check("user_prompt: the cuts keep UTF-8 valid", valid)
end

---------------------------------------------------------------------------------------------
-- first_json_object

do
  local o, raw = suggest.first_json_object('noise {"a": {"b": [1, 2, {"c": "}"}]}} tail {"x": 1}')
  check("first_json_object: nested objects, brace in a string", o and o.a and o.a.b[3].c == "}",
    show(o))
  check("first_json_object: raw substring", raw == '{"a": {"b": [1, 2, {"c": "}"}]}}', raw)

  o, raw = suggest.first_json_object([==[Use {curly} placeholders. {"say": "he said \"{hi}\" \\"}]==])
  check("first_json_object: skips an unparseable balanced candidate, escaped quotes",
    o and o.say == 'he said "{hi}" \\', show(o))
  check("first_json_object: raw of the second candidate", raw == [==[{"say": "he said \"{hi}\" \\"}]==], raw)

  o = suggest.first_json_object("the function `f() {` lacks its brace; answer: {\"ok\": true}")
  check("first_json_object: an unbalanced '{' is skipped", o and o.ok == true, show(o))

  check("first_json_object: none -> nil", suggest.first_json_object("no json here") == nil)
  check("first_json_object: unterminated -> nil", suggest.first_json_object('{"a": "b') == nil)
  check("first_json_object: not a string -> nil", suggest.first_json_object(nil) == nil)

  o = suggest.first_json_object('[{"k": 1}]')
  check("first_json_object: the object inside an array", o and o.k == 1, show(o))

  o = suggest.first_json_object('He wrote {"oops and then {"summary": "s"}')
  check("first_json_object: a stray quote before the object (second pass)", o and o.summary == "s",
    show(o))

  local t0 = os.clock()
  local none = suggest.first_json_object(("{"):rep(300000) .. ('{"'):rep(150000))
  check("first_json_object: 600 KB of '{' and '\"' in bounded time", none == nil and os.clock() - t0 < 5,
    os.clock() - t0)

  o = suggest.first_json_object('{"meta": 1} {"summary": "s"}',
    function(v) return v.summary ~= nil end)
  check("first_json_object: accept() skips a parsing object", o and o.summary == "s", show(o))
end

---------------------------------------------------------------------------------------------
-- check: accepted answers

do -- a clean JSON answer
  local text = [==[{
  "summary": "The retry loop runs n+1 times because of `<=`; use `<`.",
  "suggested_patch": "diff --git a/src/retry.c b/src/retry.c\nindex 3b18e51..a9c4f2d 100644\n--- a/src/retry.c\n+++ b/src/retry.c\n@@ -10,7 +10,7 @@ int retry(int n) {\n   int i;\n   int rc = -1;\n   /* try n times */\n-  for (i = 0; i <= n; i++) {\n+  for (i = 0; i < n; i++) {\n     rc = attempt(i);\n     if (rc == 0) break;\n   }\n",
  "files_touched": ["src/retry.c"],
  "verify_cmds": ["make test", "./build/tests/retry_test"],
  "warnings": []
}]==]
  local r = suggest.check(text)
  check("clean: ok", r.ok == true, show(r))
  check("clean: summary is the raw model output (as the seed)", r.summary == text)
  check("clean: summary_text is the JSON's summary",
    r.summary_text == "The retry loop runs n+1 times because of `<=`; use `<`.", r.summary_text)
  check("clean: patch unchanged", r.suggested_patch == GOOD_PATCH, r.suggested_patch)
  check("clean: files", same_list(r.files_touched, { "src/retry.c" }), show(r.files_touched))
  check("clean: verify_cmds", same_list(r.verify_cmds, { "make test", "./build/tests/retry_test" }),
    show(r.verify_cmds))
  check("clean: no warnings", #r.warnings == 0, show(r.warnings))
  check("clean: extracted_used false", r.extracted_used == false)
end

do -- a ```json fenced answer with prose around it
  local text = [==[Sure! Below is the fix as requested.

```json
{
  "summary": "Guard against a nil config before reading the port.",
  "suggested_patch": "diff --git a/lua/app/server.lua b/lua/app/server.lua\n--- a/lua/app/server.lua\n+++ b/lua/app/server.lua\n@@ -3,6 +3,7 @@ local M = {}\n \n function M.start(cfg)\n+  cfg = cfg or {}\n   local port = cfg.port or 8080\n   local host = cfg.host or \"127.0.0.1\"\n   return listen(host, port)\n end\n",
  "files_touched": ["lua/app/server.lua"],
  "verify_cmds": ["luajit tests/server_spec.lua"],
  "warnings": ["untested on Windows"]
}
```

Let me know if you want me to add a test as well.]==]
  local r = suggest.check(text)
  check("fenced: ok", r.ok == true, show(r))
  check("fenced: summary is the whole raw text", r.summary == text)
  check("fenced: extracted_used", r.extracted_used == true)
  check("fenced: model warning kept", same_list(r.warnings, { "untested on Windows" }), show(r.warnings))
  check("fenced: patch has the added line", r.suggested_patch:find("+  cfg = cfg or {}\n", 1, true) ~= nil)
end

do -- "Here is the patch:" then JSON, then notes containing braces
  local text = [==[Here is the patch:
{"summary": "Escape the channel name before building the key.", "suggested_patch": "diff --git a/src/keys.c b/src/keys.c\n--- a/src/keys.c\n+++ b/src/keys.c\n@@ -21,3 +21,3 @@ static void build_key(char *out, const char *chan) {\n   char buf[256];\n-  snprintf(buf, sizeof buf, \"%s:%s\", PREFIX, chan);\n+  snprintf(buf, sizeof buf, \"%s:%s\", PREFIX, escape(chan));\n   strcpy(out, buf);\n", "files_touched": ["src/keys.c"], "verify_cmds": ["make check"], "warnings": []}

Notes:
- The key format stays `{prefix}:{channel}`, so existing entries still match.
- If you also want {"strict": true} behaviour, say so.]==]
  local r = suggest.check(text)
  check("prose+notes with braces: ok", r.ok == true, show(r))
  check("prose+notes: the answer object, not the notes' {...}",
    r.summary_text == "Escape the channel name before building the key.", r.summary_text)
  check("prose+notes: files", same_list(r.files_touched, { "src/keys.c" }))
end

do -- braces and escaped quotes inside the patch string
  local text = [==[{"summary": "Emit valid JSON in the health line.",
"suggested_patch": "diff --git a/src/health.c b/src/health.c\n--- a/src/health.c\n+++ b/src/health.c\n@@ -5,4 +5,4 @@ void health(FILE *f, int up) {\n   if (f == NULL) { return; }\n-  fprintf(f, \"{ok: %d}\\n\", up);\n+  fprintf(f, \"{\\\"ok\\\": %s}\\n\", up ? \"true\" : \"false\");\n   fflush(f);\n }\n",
"files_touched": ["src/health.c"], "verify_cmds": ["make && ./health | jq ."], "warnings": ["prints \"true\"/\"false\" now, not 1/0"]}]==]
  local r = suggest.check(text)
  check("braces+escapes in the patch: ok", r.ok == true, show(r))
  check("braces+escapes: patch text decoded exactly",
    r.suggested_patch:find('+  fprintf(f, "{\\"ok\\": %s}\\n", up ? "true" : "false");\n', 1, true) ~= nil,
    r.suggested_patch)
  check("braces+escapes: warning with quotes kept",
    r.warnings[1] == 'prints "true"/"false" now, not 1/0', show(r.warnings))
  check("braces+escapes: whole text parsed (not extracted)", r.extracted_used == false)
end

do -- a new file (--- /dev/null) and a deleted file (+++ /dev/null)
  local patch = "diff --git a/docs/retry.md b/docs/retry.md\n"
    .. "new file mode 100644\nindex 0000000..e69de29\n"
    .. "--- /dev/null\n+++ b/docs/retry.md\n@@ -0,0 +1,2 @@\n+# Retry\n+n attempts, not n+1.\n"
    .. "diff --git a/old.txt b/old.txt\ndeleted file mode 100644\nindex e69de29..0000000\n"
    .. "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-obsolete\n"
    .. "diff --git a/a.sh b/b.sh\nsimilarity index 100%\nrename from a.sh\nrename to b.sh\n"
  local r = suggest.check(answer(patch, { files_touched = { "docs/retry.md", "old.txt", "b.sh" } }))
  check("/dev/null headers and a rename-only section: ok", r.ok == true, show(r))
  check("/dev/null: no count warnings", #r.warnings == 0, show(r.warnings))
end

do -- an empty patch is allowed (already applied)
  local r = suggest.check([==[{"summary": "The fix is already on main (commit 4e1f2a9).", "suggested_patch": "", "files_touched": [], "verify_cmds": ["git log -1 --oneline -- src/retry.c"], "warnings": ["already_applied"]}]==])
  check("empty patch: ok", r.ok == true, show(r))
  check("empty patch: suggested_patch is \"\"", r.suggested_patch == "")
  check("empty patch: model warning kept", same_list(r.warnings, { "already_applied" }), show(r.warnings))
  r = suggest.check('{"summary": "Nothing to change.", "files_touched": [], "verify_cmds": [], "warnings": []}')
  check("missing suggested_patch: ok with \"\"", r.ok == true and r.suggested_patch == "", show(r))
  r = suggest.check('{"summary": "x", "suggested_patch": null}')
  check("null suggested_patch: \"\"", r.ok == true and r.suggested_patch == "", show(r))
  r = suggest.check('{"summary": "x", "suggested_patch": "  \\n\\n "}')
  check("whitespace-only patch: \"\" (no patch)", r.ok == true and r.suggested_patch == "", show(r))
end

do -- the trailing newline: added with a warning, as the seed does
  local text = answer(GOOD_PATCH:sub(1, -2))
  local r = suggest.check(text)
  check("no trailing newline: ok (the seed appends one)", r.ok == true, show(r))
  check("no trailing newline: patch gets it", r.suggested_patch == GOOD_PATCH)
  check("no trailing newline: warning", has(r.warnings, "patch_missing_trailing_newline"),
    show(r.warnings))
end

do -- a fenced patch inside the string
  local r = suggest.check(answer("```diff\n" .. GOOD_PATCH .. "```"))
  check("fence inside the patch: ok", r.ok == true, show(r))
  check("fence inside the patch: removed", r.suggested_patch == GOOD_PATCH, r.suggested_patch)
  check("fence inside the patch: warning", has(r.warnings, "patch_code_fence_removed"), show(r.warnings))
end

do -- miscounted hunk: a warning, not a rejection
  local bad = GOOD_PATCH:gsub("@@ %-10,7 %+10,7 @@", "@@ -10,6 +10,9 @@")
  local r = suggest.check(answer(bad))
  check("miscounted hunk: ok", r.ok == true, show(r))
  check("miscounted hunk: warning",
    has_prefix(r.warnings, "patch_hunk_counts_mismatch: src/retry.c @@ -10,6 +10,9 @@") ~= nil,
    show(r.warnings))
  local r2 = suggest.check(answer(GOOD_PATCH .. "\n\n"))
  check("trailing blank lines after a full hunk: no count warning",
    r2.ok == true and has_prefix(r2.warnings, "patch_hunk_counts") == nil, show(r2))
end

---------------------------------------------------------------------------------------------
-- check: paths

do -- /srv/<project>/ stripped with a warning
  local text = [==[{"summary": "Raise the timeout.", "suggested_patch": "", "files_touched": ["/srv/myproj/src/a.c", "src/b.c", "./src/c.c", "src/a.c"], "verify_cmds": ["cd /srv/myproj && make test", "python3 /srv/myproj/tools/check.py --all", "cd /srv/myproj", "ls src/srv/handlers"], "warnings": []}]==]
  local r = suggest.check(text)
  check("/srv: ok", r.ok == true, show(r))
  check("/srv: prefix stripped, ./ removed, duplicates merged",
    same_list(r.files_touched, { "src/a.c", "src/b.c", "src/c.c" }), show(r.files_touched))
  check("/srv: warning names the path",
    has(r.warnings, "files_touched_not_repo_relative: /srv/myproj/src/a.c"), show(r.warnings))
  check("/srv: nothing dropped", has_prefix(r.warnings, "files_touched_dropped") == nil, show(r.warnings))
  check("/srv: verify_cmds made repo-relative",
    same_list(r.verify_cmds, { "make test", "python3 tools/check.py --all", "ls src/srv/handlers" }),
    show(r.verify_cmds))
  check("/srv: verify_cmds warning", has(r.warnings, "verify_cmds_contains_absolute_paths"),
    show(r.warnings))
end

do -- ../etc/passwd, /etc/passwd and friends rejected with a warning naming them
  local text = [==[{"summary": "Tighten permissions.", "suggested_patch": "", "files_touched": ["src/perm.c", "../etc/passwd", "/etc/passwd", "~/.ssh/config", "C:\\Windows\\win.ini", "src/../../x", ".git/hooks/pre-commit", "", "   "], "verify_cmds": [], "warnings": []}]==]
  local r = suggest.check(text)
  check("unsafe paths: ok, only the safe one kept", r.ok == true and same_list(r.files_touched, { "src/perm.c" }),
    show(r))
  check("unsafe paths: the seed's warning names the first three",
    has(r.warnings, "files_touched_not_repo_relative: ../etc/passwd, /etc/passwd, ~/.ssh/config (+3 more)"),
    show(r.warnings))
  check("unsafe paths: dropped ones named",
    has(r.warnings, "files_touched_dropped: ../etc/passwd, /etc/passwd, ~/.ssh/config (+3 more)"),
    show(r.warnings))
  local r2 = suggest.check('{"summary": "x", "files_touched": ["/srv/myproj/../../etc/passwd", "/srv/myproj/"]}')
  check("unsafe after stripping /srv/<p>/: dropped", r2.ok == true and #r2.files_touched == 0, show(r2))
end

do -- non-string items in files_touched
  local text = [==[{"summary": "Bump the limit.", "suggested_patch": "", "files_touched": ["src/limits.c", 42, null, {"path": "src/x.c"}, true, ["src/y.c"]], "verify_cmds": "make test", "warnings": ["ok", 7]}]==]
  local r = suggest.check(text)
  check("non-strings: ok", r.ok == true, show(r))
  check("non-strings: numbers become strings, others dropped",
    same_list(r.files_touched, { "src/limits.c", "42" }), show(r.files_touched))
  check("non-strings: warning with the count",
    has(r.warnings, "files_touched_non_string_items_dropped: 4"), show(r.warnings))
  check("non-strings: a string instead of a list -> [] and a warning",
    #r.verify_cmds == 0 and has(r.warnings, "verify_cmds_not_a_list"), show(r))
  check("non-strings: model warnings first, numbers coerced", r.warnings[1] == "ok" and r.warnings[2] == "7",
    show(r.warnings))
end

---------------------------------------------------------------------------------------------
-- check: rejections

do -- truncated: the model hit max_tokens inside the JSON (a {} inside the patch must not pass)
  local text = [==[{"summary": "Initialise the table.", "suggested_patch": "diff --git a/src/t.lua b/src/t.lua\n--- a/src/t.lua\n+++ b/src/t.lua\n@@ -1,3 +1,3 @@\n-local t\n+local t = {}\n local function f() return t end\n local function g(x) if x then]==]
  local r = suggest.check(text)
  check("truncated JSON: llm_non_json", r.ok == false and r.error == "llm_non_json", show(r))
  check("truncated JSON: raw_tail is the end of the output", r.raw_tail == text:sub(-800), r.raw_tail)
  check("truncated JSON: has a detail", type(r.detail) == "string" and #r.detail > 0, r.detail)
end

do -- truncated patch: no @@ hunk
  local patch = "diff --git a/src/retry.c b/src/retry.c\n--- a/src/retry.c\n+++ b/src/retry.c\n"
  local r = suggest.check(answer(patch))
  check("no @@: patch_truncated_or_invalid", r.ok == false and r.error == "patch_truncated_or_invalid",
    show(r))
  check("no @@: warnings end with patch_rejected_by_gateway",
    r.warnings and r.warnings[#r.warnings] == "patch_rejected_by_gateway", show(r.warnings))
  check("no @@: patch_tail", r.patch_tail == patch, r.patch_tail)
  check("no @@: extracted_used false", r.extracted_used == false)
end

do -- truncated patch: cut after a hunk header, no trailing newline
  local patch = "diff --git a/src/retry.c b/src/retry.c\n--- a/src/retry.c\n+++ b/src/retry.c\n"
    .. "@@ -10,7 +10,7 @@ int retry(int n) {"
  local r = suggest.check(answer(patch))
  check("hunk without lines: patch_truncated_or_invalid",
    r.ok == false and r.error == "patch_truncated_or_invalid", show(r))
  check("hunk without lines: the newline warning kept",
    has(r.warnings, "patch_missing_trailing_newline"), show(r.warnings))
end

do -- truncated: the second file's headers without a hunk
  local patch = GOOD_PATCH .. "diff --git a/src/retry.h b/src/retry.h\n--- a/src/retry.h\n+++ b/src/retry.h\n"
  local r = suggest.check(answer(patch))
  check("second file without hunk: patch_truncated_or_invalid",
    r.ok == false and r.error == "patch_truncated_or_invalid", show(r))
  check("second file without hunk: detail names the file", r.detail and r.detail:find("src/retry.h", 1, true),
    r.detail)
end

do -- not a diff at all; --- without a/; unsafe header paths; a non-string patch
  local r = suggest.check(answer("Change <= to < on line 13 of src/retry.c.\n"))
  check("prose patch: patch_truncated_or_invalid", r.error == "patch_truncated_or_invalid", show(r))
  r = suggest.check(answer((GOOD_PATCH:gsub("%-%-%- a/src/retry.c", "--- /srv/myproj/src/retry.c"))))
  check("--- /srv/... header: patch_truncated_or_invalid", r.error == "patch_truncated_or_invalid", show(r))
  r = suggest.check(answer((GOOD_PATCH:gsub("a/src/retry.c", "a/../../etc/passwd"))))
  check("a/../ path in the headers: patch_truncated_or_invalid",
    r.error == "patch_truncated_or_invalid" and r.detail:find("etc/passwd", 1, true) ~= nil, show(r))
  r = suggest.check('{"summary": "x", "suggested_patch": ["diff --git a/x b/x"]}')
  check("a list as the patch: patch_truncated_or_invalid", r.error == "patch_truncated_or_invalid", show(r))
end

do -- a patch over 20000 characters
  local lines = { "diff --git a/data/table.txt b/data/table.txt", "--- a/data/table.txt",
                  "+++ b/data/table.txt", "@@ -1,1 +1,700 @@", "-x" }
  for i = 1, 700 do lines[#lines + 1] = ("+row %04d: abcdefghijklmnopqrstuvwxyz"):format(i) end
  local patch = table.concat(lines, "\n") .. "\n"
  check("(the long patch is over 20000)", #patch > 20000, #patch)
  local text = "Here you go:\n" .. answer(patch) .. "\n"
  local r = suggest.check(text)
  check("long: patch_too_long", r.ok == false and r.error == "patch_too_long", show(r.detail))
  check("long: warnings end with the seed's marker",
    r.warnings and r.warnings[#r.warnings] == "patch_rejected_by_gateway: too_long", show(r.warnings))
  check("long: patch_tail is the last 1200", r.patch_tail == patch:sub(-1200))
  check("long: extracted_used + extracted_tail", r.extracted_used == true
    and r.extracted_tail == answer(patch):sub(-800))

  -- completeness is checked first (the seed's order): long and truncated -> truncated
  local r2 = suggest.check(answer(patch .. "diff --git a/b b/b\n--- a/b\n+++ b/b\n"))
  check("long and truncated: patch_truncated_or_invalid first", r2.error == "patch_truncated_or_invalid",
    show(r2.error))

  -- exactly 20000 is allowed; lengths are UTF-16 units like the seed's JavaScript
  local head = "diff --git a/x.txt b/x.txt\n--- a/x.txt\n+++ b/x.txt\n@@ -0,0 +1 @@\n+"
  local exact = head .. ("a"):rep(20000 - #head - 1) .. "\n"
  local r3 = suggest.check(answer(exact))
  check("exactly 20000: ok", #exact == 20000 and r3.ok == true, show(r3.error))
  local cjk = head .. ("修"):rep(8000) .. "\n" -- 24000+ bytes, 8000+ characters
  local r4 = suggest.check(answer(cjk))
  check("8000 CJK characters (24000 bytes): ok", #cjk > 20000 and r4.ok == true, show(r4.error))
end

do -- no JSON at all
  local text = [==[I could not find the retry loop in the provided context. Please share src/retry.c
so I can propose a patch.]==]
  local r = suggest.check(text)
  check("no JSON: llm_non_json", r.ok == false and r.error == "llm_non_json", show(r))
  check("no JSON: raw_tail", r.raw_tail == text)
  check("no JSON: no extracted_tail", r.extracted_tail == nil)
end

do -- a balanced candidate that does not parse
  local text = "Result: {summary: 'single quotes', suggested_patch: ''}"
  local r = suggest.check(text)
  check("JS-ish object: detail says it does not parse", r.detail and r.detail:find("does not parse", 1, true) ~= nil,
    r.detail)
  check("JS-ish object: llm_non_json with extracted_tail",
    r.error == "llm_non_json" and r.extracted_tail == "{summary: 'single quotes', suggested_patch: ''}",
    show(r))
end

do -- a JSON array instead of an object
  local text = [==[[{"summary": "Fix the loop.", "suggested_patch": "", "files_touched": ["src/retry.c"], "verify_cmds": [], "warnings": []}]]==]
  local r = suggest.check(text)
  check("array: llm_non_json", r.ok == false and r.error == "llm_non_json", show(r))
  check("array: detail says array", r.detail and r.detail:find("array", 1, true) ~= nil, r.detail)
  r = suggest.check('"{\\"summary\\": \\"x\\"}"')
  check("a JSON string: llm_non_json", r.error == "llm_non_json", show(r))
  r = suggest.check("null")
  check("null: llm_non_json", r.error == "llm_non_json", show(r))
end

do -- objects without the suggest keys
  local r = suggest.check('{"answer": "use < instead of <="}')
  check("object with none of the keys: llm_non_json", r.error == "llm_non_json", show(r))
  r = suggest.check('{"result": {"summary": "Wrapped.", "suggested_patch": "", "files_touched": ["a.c"]}}')
  check("wrapped in {\"result\": ...}: unwrapped", r.ok == true and r.summary_text == "Wrapped."
    and same_list(r.files_touched, { "a.c" }), show(r))
end

do -- for_json: empty lists are written []
  local r = suggest.check('{"summary": "Nothing to do.", "suggested_patch": "", "files_touched": [], "verify_cmds": [], "warnings": []}')
  local enc = json.encode(suggest.for_json(r))
  check("for_json: empty lists as []", enc:find('"files_touched":[]', 1, true) and enc:find('"warnings":[]', 1, true)
    and enc:find('"verify_cmds":[]', 1, true), enc)
  check("for_json: the result itself unchanged", type(r.files_touched) == "table")
  local r2 = suggest.check(answer(GOOD_PATCH))
  local back = json.decode(json.encode(suggest.for_json(r2)))
  check("for_json: round trip keeps the fields", back.ok == true and back.suggested_patch == GOOD_PATCH
    and back.files_touched[1] == "src/retry.c", show(back))
end

do -- empty and odd inputs never raise
  check("empty: llm_non_json", suggest.check("").error == "llm_non_json")
  check("nil: llm_non_json", suggest.check(nil).error == "llm_non_json")
  check("number: llm_non_json", suggest.check(42).error == "llm_non_json")
  local seed, bad = 12345, nil
  local function rnd(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n + 1
  end
  local tokens = { "{", "}", "[", "]", '"', "\\", ":", ",", "summary", '"suggested_patch"', " ",
                   "\n", "diff --git a/x b/x", "@@", "+", "-", "null", "1", "é", "```" }
  for _ = 1, 300 do
    local t = {}
    for k = 1, rnd(30) do t[k] = tokens[rnd(#tokens)] end
    local s = table.concat(t)
    local ok, r = pcall(suggest.check, s)
    if not ok or type(r) ~= "table" or type(r.ok) ~= "boolean" then bad = ("%q: %s"):format(s, tostring(r)) break end
  end
  check("random: check never raises, always a result", bad == nil, bad)
end

setmetatable(_G, nil)
local new_globals = {}
for k in pairs(_G) do
  if not globals_before[k] then new_globals[#new_globals + 1] = tostring(k) end
end
check("no global created", #new_globals == 0, table.concat(new_globals, ", "))

spec.report()
