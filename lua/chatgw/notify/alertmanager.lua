-- chatgw.notify.alertmanager: Prometheus Alertmanager's webhook (version 4) as a notify. Pure.
--
--   alertmanager.to_notify(payload) -> { text, update_key, priority, status } | nil, why
--
-- The text: a first line "[FIRING:2] <alertname> (<other group labels>)" (or RESOLVED), then
-- per alert its summary or description (annotations), else its labels, and the link. The
-- update_key is the groupKey, so the resolved notice edits the firing one in place. Priority
-- from the severity label (common, else the first alert's): critical -> CRITICAL, warning ->
-- HIGH, info -> LOW, anything else MEDIUM.
local type, tostring, concat, sort = type, tostring, table.concat, table.sort

local M = {}

M.SEVERITY = { critical = "CRITICAL", warning = "HIGH", info = "LOW" }
M.MAX_ALERTS = 20

local function labels_text(l, skip)
  local keys = {}
  for k, v in pairs(type(l) == "table" and l or {}) do
    if not (skip and skip[k]) and type(v) ~= "table" then keys[#keys + 1] = k end
  end
  sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(l[k]) end
  return concat(parts, ", ")
end

function M.to_notify(p)
  if type(p) ~= "table" or type(p.alerts) ~= "table" then return nil, "not an Alertmanager payload (no alerts)" end
  local status = p.status == "resolved" and "RESOLVED" or "FIRING"
  local firing = 0
  for _, a in ipairs(p.alerts) do if type(a) == "table" and a.status ~= "resolved" then firing = firing + 1 end end
  local gl = type(p.groupLabels) == "table" and p.groupLabels or {}
  local cl = type(p.commonLabels) == "table" and p.commonLabels or {}
  local name = gl.alertname or cl.alertname or "alert"
  local others = labels_text(gl, { alertname = true })
  local lines = { ("[%s:%d] %s%s"):format(status, status == "FIRING" and firing or #p.alerts, tostring(name),
    others ~= "" and (" (" .. others .. ")") or "") }
  for i, a in ipairs(p.alerts) do
    if i > M.MAX_ALERTS then
      lines[#lines + 1] = ("... and %d more"):format(#p.alerts - M.MAX_ALERTS)
      break
    end
    if type(a) == "table" then
      local an = type(a.annotations) == "table" and a.annotations or {}
      local what = an.summary or an.description or an.message
      local l = labels_text(a.labels, { alertname = true, severity = true })
      local line = "- " .. (what and tostring(what) or l)
      if what and l ~= "" then line = line .. " [" .. l .. "]" end
      if a.status == "resolved" and status == "FIRING" then line = line .. " (resolved)" end
      lines[#lines + 1] = line
    end
  end
  if type(p.externalURL) == "string" and p.externalURL ~= "" then lines[#lines + 1] = p.externalURL end
  local sev = cl.severity
  if sev == nil and type(p.alerts[1]) == "table" and type(p.alerts[1].labels) == "table" then sev = p.alerts[1].labels.severity end
  local prio = M.SEVERITY[type(sev) == "string" and sev:lower() or ""] or "MEDIUM"
  return { text = concat(lines, "\n"), update_key = type(p.groupKey) == "string" and p.groupKey or nil,
           priority = prio, status = status:lower() }
end

return M
