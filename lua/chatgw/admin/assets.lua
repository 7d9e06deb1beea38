-- chatgw.admin.assets: the admin page's files (lua/chatgw/admin/static/, installed beside this
-- file by `make install`), read once per state. index.html is the manifest: each
-- {{asset:NAME}} in it names a file of static/ and becomes /admin/assets/<stem>.<sha256
-- prefix>.<ext>, served with a year's cache (the name changes with the content); the page
-- itself is no-store. Every answer carries the page's security headers.
local chatgw = chatgw

local M = {}

M.CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
  .. "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

local TYPES = { js = "application/javascript; charset=utf-8", css = "text/css; charset=utf-8",
                svg = "image/svg+xml", html = "text/html; charset=utf-8" }

-- This file's directory ("@/usr/share/chatgw/lua/chatgw/admin/assets.lua"), then static/.
local DIR = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "static/"
M.DIR = DIR

local function read(name)
  local f, err = io.open(DIR .. name, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

local function headers(ctype, cache)
  return { ["Content-Type"] = ctype, ["Cache-Control"] = cache, ["Content-Security-Policy"] = M.CSP,
           ["X-Content-Type-Options"] = "nosniff", ["Referrer-Policy"] = "no-referrer",
           ["X-Frame-Options"] = "DENY" }
end

local page, files, problem -- the page with hashed names; hashed name -> { body, type }

local function load()
  files, problem = {}, nil
  local html, err = read("index.html")
  if not html then
    problem = "cannot read " .. DIR .. "index.html: " .. tostring(err)
    return
  end
  page = html:gsub("{{asset:([%w_.-]+)}}", function(name)
    local body, rerr = read(name)
    if not body then
      problem = problem or ("cannot read " .. DIR .. name .. ": " .. tostring(rerr))
      return "/admin/assets/missing"
    end
    local stem, ext = name:match("^(.-)%.(%w+)$")
    local hashed = ("%s.%s.%s"):format(stem, chatgw.crypto.sha256(body, "hex"):sub(1, 16), ext)
    files[hashed] = { body = body, type = TYPES[ext] or "application/octet-stream" }
    return "/admin/assets/" .. hashed
  end)
  local ws = chatgw.config and chatgw.config.ws or {}
  local ws_path = ws.enabled ~= false and ws.path or "" -- "": no WebSocket, no live view
  page = page:gsub("{{ws_path}}", function() return (ws_path:gsub('[&"<>]', "")) end)
end

-- GET /admin: the page (public: it holds no secret; the data comes from the API with a token).
function M.page()
  if not files then load() end
  if problem then
    chatgw.log.error("admin page: " .. problem)
    return 503, { ok = false, error = "admin_assets_missing", message = "the admin page's files are not installed" },
      headers("application/json", "no-store")
  end
  return 200, page, headers(TYPES.html, "no-store")
end

-- GET /admin/assets/:file: a hashed name of the page's current files, else 404.
function M.asset(req)
  if not files then load() end
  local f = files[req.params.file]
  if not f then
    return 404, { ok = false, error = "not_found", message = "no such asset (the page names the current ones)" },
      headers("application/json", "no-store")
  end
  return 200, f.body, headers(f.type, "public, max-age=31536000, immutable")
end

-- The hashed names (tests, tools).
function M.names()
  if not files then load() end
  local out = {}
  for k in pairs(files) do out[#out + 1] = k end
  table.sort(out)
  return out
end

return M
